"""Raw text in, entities with character offsets out: the tokenizer, the model
and span extraction put together. The CLI, the HTTP service and the Dask job
all call this.

An entity's ``score`` is the lowest, over its tokens, of the model's
probability for the tag it gave that token (softmax output, or CRF marginal):
a number in [0, 1] that is high only when every token of the span is sure.
"""
import importlib.resources
import os
import time

import numpy as np

from fastner.model import WindowTagger
from fastner.settings import setting
from fastner.tokenize import split_sentences, tokenize

DEFAULT_MODEL = "fastner-conll03.npz"


def _firsts(counts):
    """Flat index of each group's first token, then the total: [0, c0, c0 + c1, ...]."""
    return np.concatenate([[0], np.cumsum(np.asarray(counts, dtype=np.int64))])


def shipped_model_path():
    """The model that ships with fastner: the data package ``fastner.models``, which
    is the repository's models/ folder in a checkout and inside the wheel when installed."""
    return os.fspath(importlib.resources.files("fastner.models") / DEFAULT_MODEL)


def default_model_path():
    """$FASTNER_MODEL, else the shipped model."""
    return setting("FASTNER_MODEL") or shipped_model_path()


class Tagger:
    def __init__(self, model, name="model", metadata=None):
        self.model, self.name = model, name
        self.metadata = metadata if metadata is not None else getattr(model, "metadata", {})
        # how long load() took: reading the file, building the inference cache
        self.load_seconds = {"read": None, "cache": None}
        self.cache_bytes = 0

    @classmethod
    def load(cls, path=None, cache_mb=None):
        """Load a model file and build its inference cache (``cache_mb`` MB at most;
        default $FASTNER_CACHE_MB or 64; 0 disables it)."""
        path = os.fspath(path or default_model_path())
        name = os.path.basename(path)
        started = time.perf_counter()
        model = WindowTagger.load(path)
        read = time.perf_counter()
        if cache_mb is None:
            cache_mb = setting("FASTNER_CACHE_MB")
        cache_bytes = model.build_inference_cache(cache_mb) if cache_mb > 0 else 0
        tagger = cls(model, name[:-4] if name.endswith(".npz") else name)
        tagger.load_seconds = {"read": round(read - started, 3),
                               "cache": round(time.perf_counter() - read, 3)}
        tagger.cache_bytes = cache_bytes
        return tagger

    def tag_tokens(self, sentences, docs=None):
        """Pre-tokenised sentences → per sentence {"entities": [...], "tags": [...]}.

        Entities carry token offsets (token_start, token_end; end exclusive).
        ``docs`` numbers each sentence's document (default: all one document);
        document-level features look across a document's sentences.
        """
        tags, conf, lengths = self.model.tag_ids(sentences, docs)
        first = _firsts(lengths)
        names = self.model.tagset.names
        out = [{"entities": [], "tags": [names[t] for t in tags[a:b]]}
               for a, b in zip(first[:-1], first[1:])]
        for s, a, b, label, score in self._entities(tags, conf, first):
            out[s]["entities"].append({"text": " ".join(sentences[s][a:b]), "label": label,
                                       "token_start": a, "token_end": b, "score": score})
        return out

    def _entities(self, tags, conf, first):
        """(group, start, end, label, score) of each entity in the flat tag array, with
        start/end counted from the first token of its group (sentence or text);
        ``first``: each group's first flat token, then the total."""
        starts, ends, kinds, scores = self.model.tagset.entity_runs(tags, conf)
        group = np.searchsorted(first, starts, side="right") - 1
        types = self.model.tagset.entity_types
        for g, a, b, k, score in zip(group.tolist(), (starts - first[group]).tolist(),
                                     (ends - first[group]).tolist(), kinds.tolist(),
                                     scores.tolist()):
            yield g, a, b, types[k], round(score, 4)

    def tag_texts(self, texts, include_tokens=False):
        """Raw texts → per text {"entities": [...]} with character offsets.

        ``start``/``end`` index the text in Python code points (end exclusive)
        and ``text == input[start:end]``; token_start/token_end count tokens
        from the start of the text. With include_tokens, also the tokens with
        their offsets and tags.
        """
        return self.tag_tokenized(texts, [tokenize(t) for t in texts], include_tokens)

    def tag_tokenized(self, texts, tokenized, include_tokens=False):
        """tag_texts for texts already run through fastner.tokenize.tokenize.

        Each text is one document; its sentences are tagged together with every
        other text's, in one batch, and entities found on the flat tag array.
        """
        sentences, docs = [], []
        for doc, tokens in enumerate(tokenized):
            for sent in split_sentences(tokens):
                sentences.append([t[0] for t in sent])
                docs.append(doc)
        tags, conf, _ = self.model.tag_ids(sentences, docs)
        first = _firsts([len(t) for t in tokenized])           # each text's first flat token
        results = [{"entities": []} for _ in texts]
        for d, a, b, label, score in self._entities(tags, conf, first):
            start, end = tokenized[d][a][1], tokenized[d][b - 1][2]
            results[d]["entities"].append({"text": texts[d][start:end], "label": label,
                                           "start": start, "end": end, "token_start": a,
                                           "token_end": b, "score": score})
        if include_tokens:
            names = self.model.tagset.names
            for d, tokens in enumerate(tokenized):
                results[d]["tokens"] = [{"text": tok, "start": s, "end": e, "tag": names[t]}
                                        for (tok, s, e), t in
                                        zip(tokens, tags[first[d]:first[d + 1]].tolist())]
        return results

    def tag_text(self, text, include_tokens=False):
        return self.tag_texts([text], include_tokens)[0]

    def tag_token_lists(self, sentences, include_tokens=False):
        """Pre-tokenised sentences → per sentence {"entities": [...]} with character
        offsets into the sentence's tokens joined by single spaces."""
        results = []
        for tokens, tagged in zip(sentences, self.tag_tokens(sentences)):
            starts, at = [], 0
            for tok in tokens:
                starts.append(at)
                at += len(tok) + 1
            entities = [dict(ent, start=starts[ent["token_start"]],
                             end=starts[ent["token_end"] - 1] + len(tokens[ent["token_end"] - 1]))
                        for ent in tagged["entities"]]
            result = {"entities": entities}
            if include_tokens:
                result["tokens"] = [{"text": tok, "start": s, "end": s + len(tok), "tag": tag}
                                    for tok, s, tag in zip(tokens, starts, tagged["tags"])]
            results.append(result)
        return results

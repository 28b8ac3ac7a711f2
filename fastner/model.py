"""The window tagger: parameters, windows, forward/backward through the kernels,
and decoding (docs/derivations.md holds the math; fastner._kernels the fast code).

Parameters live in one flat float buffer with named views, and the gradient
buffer mirrors it, so the optimiser can treat the dense parameters as one
slice and the embedding tables row by row.
"""
import itertools

import numpy as np

from fastner import _kernels
from fastner._text import TokenRows, token_strings
from fastner.features import MEMO_LIMIT, DocumentContext, Spellings

# the parameters updated as one slice (the character CNN's are small and touched by
# almost every batch); they come first in the flat buffer, the embedding tables after
DENSE = ("W", "b", "U", "c", "trans", "start", "end", "char.table", "char.W", "char.b")
LOSSES = ("softmax", "crf")


class WindowTagger:
    """Collobert & Weston's window network over K = 2·half_window + 1 positions.

    features: WordFeature first, then small categorical features, and optionally a
    CharFeature (kept apart as ``chars``: its vectors are computed from the spelling,
    not looked up); each position's input is the concatenation of the table
    features' vectors and then the character vector (width E).
    loss: "softmax" (per-token cross-entropy, IOB-constrained Viterbi at
    decode time) or "crf" (sentence-level likelihood with learned transitions).
    ``ops`` is fastner._kernels or fastner.reference (same signatures).
    """

    def __init__(self, features, tagset, half_window=2, hidden=300, activation="tanh",
                 loss="softmax", dropout=0.0, ops=_kernels, dtype=np.float32):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}")
        if activation not in _kernels.ACTIVATIONS or activation == "identity":
            raise ValueError(f"activation must be tanh, hardtanh or relu; got {activation!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        features = list(features)
        chars = [f for f in features if f.kind == "chars"]
        if len(chars) > 1:
            raise ValueError("at most one chars feature")
        self.chars = chars[0] if chars else None
        self.features = [f for f in features if f.kind != "chars"]
        self.tagset = tagset
        self.half_window, self.hidden = int(half_window), int(hidden)
        self.activation, self.loss, self.dropout = activation, loss, float(dropout)
        self.ops, self.dtype = ops, np.dtype(dtype)
        self.K = 2 * self.half_window + 1
        self.offsets = np.cumsum([0] + [f.dim for f in self.features])[:-1].tolist()
        self.char_offset = sum(f.dim for f in self.features)   # the character vector's
        self.E = self.char_offset + (self.chars.dim if self.chars else 0)
        self.D = self.K * self.E
        T = len(tagset)
        self.layout = [("W", (self.hidden, self.D)), ("b", (self.hidden,)),
                       ("U", (T, self.hidden)), ("c", (T,)),
                       ("trans", (T, T)), ("start", (T,)), ("end", (T,))]
        if self.chars is not None:
            c = self.chars
            self.layout += [("char.table", (c.n_chars, c.char_dim)),
                            ("char.W", (c.dim, c.WIDTH * c.char_dim)), ("char.b", (c.dim,))]
        self.layout += [(f"table.{f.name}", (f.size, f.dim)) for f in self.features]
        self.flat = np.zeros(sum(int(np.prod(s)) for _, s in self.layout), dtype=self.dtype)
        self.params = self.views(self.flat)
        self.dense_size = sum(int(np.prod(s)) for n, s in self.layout if n in DENSE)
        self.mask_trans, self.mask_start = tagset.transition_mask()
        # features whose id is a function of the token alone go through one memo
        # (sentence_windows); the others (gazetteers) look at the whole sentence
        self._per_token = [i for i, f in enumerate(self.features)
                           if getattr(f, "per_token", True)]
        # token → its ids under every per-token feature, found by a token string or by
        # a span of a text (fastner._text.TokenRows); bounded like the features' memos,
        # and tokens past 32 characters are not kept (clients choose what it holds)
        self._ids_memo = TokenRows(len(self._per_token), MEMO_LIMIT) if self._per_token else None
        # every id column a function of the token alone (no document, sentence or
        # character features): then span_feature_ids gives token_feature_ids
        self.uses_documents = any(getattr(f, "needs_context", False) for f in self.features)
        # a second-stage model (docvote) reads a first pass's labels of every token; at
        # tagging time from ``first_stage`` (a fastner.tagger.Tagger, set when loaded)
        self.needs_first_pass = any(getattr(f, "needs_first_pass", False)
                                    for f in self.features)
        self.first_stage = None
        # the features that need the document's sentences side by side (doccase); the
        # docvote feature is computed over every token at once (token_feature_ids)
        self._sentence_contexts = any(getattr(f, "needs_context", False)
                                      and not getattr(f, "needs_first_pass", False)
                                      for f in self.features)
        # {"file": a name beside this model's file, or "model": a model's name; "sha256":
        # its digest}: the first stage a second stage was trained with (its configuration)
        self.first_stage_file = None
        self.ids_from_spans = (len(self._per_token) == self.n_columns
                               and not self.uses_documents)

    # -- parameters -------------------------------------------------------

    def views(self, flat):
        """Named views into a flat buffer laid out like the parameters."""
        out, at = {}, 0
        for name, shape in self.layout:
            size = int(np.prod(shape))
            out[name] = flat[at:at + size].reshape(shape)
            at += size
        return out

    def tables(self, views=None):
        views = self.params if views is None else views
        return [views[f"table.{f.name}"] for f in self.features]

    def init_params(self, rng, word_init=None):
        """Uniform ±sqrt(6/(fan_in+fan_out)) weights, zero biases, small random tables.

        ``word_init``: optional (rows, vectors) to copy into the word table
        (GloVe vectors for the words GloVe has; the rest stay random).
        """
        p = self.params
        for name in ("W", "U", "char.W"):
            if name not in p:
                continue
            fan_out, fan_in = p[name].shape
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            p[name][...] = rng.uniform(-bound, bound, size=p[name].shape)
        for name in ("b", "c", "trans", "start", "end", "char.b"):
            if name in p:
                p[name][...] = 0.0
        for table in self.tables() + ([p["char.table"]] if self.chars else []):
            # a few thousand rows at a time: the same draws as one call (the generator
            # keeps no state between calls), without a 160 MB float64 temporary
            for lo in range(0, table.shape[0], 8192):
                rows = table[lo:lo + 8192]
                rows[...] = rng.normal(0.0, 0.1, size=rows.shape)
        if word_init is not None:
            rows, vectors = word_init
            self.tables()[0][rows] = vectors

    # -- windows ----------------------------------------------------------

    @property
    def n_columns(self):
        """Id columns per token: one per table feature, then the spelling's row in a
        Spellings when the model has character features."""
        return len(self.features) + (self.chars is not None)

    def new_spellings(self):
        """A fresh Spellings for numbering tokens' spellings (None without chars)."""
        return Spellings(self.chars) if self.chars is not None else None

    def _need_spellings(self, spellings):
        if self.chars is not None and spellings is None:
            raise ValueError("this model has character features: pass the Spellings that "
                             "numbered the tokens (model.new_spellings())")

    def token_ids(self, tokens, context=None, spellings=None):
        """Per id column, int32 (n,) ids of one sentence's tokens (``context``: the
        sentence's DocumentContext, for document-level features; ``spellings``: the
        Spellings numbering them, for character features). A second stage's votes
        need the whole document: sentences_ids and token_feature_ids fill them in."""
        self._need_spellings(spellings)
        ids = [f.ids(tokens, context) for f in self.features]
        if self.chars is not None:
            ids.append(spellings.ids(tokens))
        return ids

    def sentences_ids(self, sentences, docs=None, spellings=None, first_pass=None):
        """token_ids of each sentence; ``docs`` gives each sentence's document number
        (default: all sentences form one document). ``first_pass``: a second-stage
        model's first-pass labels of every token laid end to end (first_pass_labels;
        default: what ``first_stage`` says)."""
        if not self.uses_documents:
            return [self.token_ids(tokens, spellings=spellings) for tokens in sentences]
        docs = [0] * len(sentences) if docs is None else list(docs)
        contexts = {}
        for tokens, doc in zip(sentences, docs):
            contexts.setdefault(doc, []).append(tokens)
        contexts = {doc: DocumentContext(sents) for doc, sents in contexts.items()}
        out = [self.token_ids(tokens, contexts[doc], spellings)
               for tokens, doc in zip(sentences, docs)]
        if self.needs_first_pass:
            lengths = [len(t) for t in sentences]
            votes = self._votes(list(itertools.chain.from_iterable(sentences)), lengths,
                                docs, first_pass)
            at = 0
            for ids, n in zip(out, lengths):
                for i, column in votes.items():
                    ids[i] = column[at:at + n]
                at += n
        return out

    def _votes(self, tokens, lengths, docs, first_pass=None):
        """{feature index: int32 ids of every token} for the docvote features, over the
        sentences laid end to end (``first_pass``: their labels; default: the first
        stage's)."""
        if first_pass is None:
            first_pass = self.first_pass_labels(tokens, lengths, docs)
        lengths = np.asarray(lengths, np.int64)
        token_docs = (np.zeros(len(tokens), np.int64) if docs is None
                      else np.repeat(np.asarray(docs, np.int64), lengths))
        lowered = [t.lower() for t in tokens]
        return {i: f.document_ids(lowered, first_pass, token_docs)
                for i, f in enumerate(self.features) if getattr(f, "needs_first_pass", False)}

    def labels_of_tags(self, tag_names):
        """Labels as the docvote feature counts them: 0 for O, 1 + k for this model's
        entity type k (B- and I- alike), from tag names (a first stage's tag set)."""
        types = {t: k + 1 for k, t in enumerate(self.tagset.entity_types)}
        return np.array([0 if t == "O" else types[t.split("-", 1)[1]] for t in tag_names],
                        dtype=np.int32)

    def first_pass_labels(self, tokens, lengths, docs=None):
        """The first stage's labels (labels_of_tags) of every token of sentences laid end
        to end (``lengths`` tokens each)."""
        stage = self.first_stage
        if stage is None:
            raise ValueError("this second-stage model (docvote feature) has no first-stage "
                             "model to tag with: set model.first_stage (Tagger.load does)")
        if getattr(self, "_labels_of", (None,))[0] is not stage:
            # tag id of the first stage -> label, made once per first stage
            self._labels_of = (stage, self.labels_of_tags(stage.model.tagset.names))
        tags, _ = stage._predict(tokens, lengths, docs, confidence=False)
        return self._labels_of[1][tags]

    def windows(self, sentences_ids):
        """Stack sentences into per-feature (B, K) window id matrices, PAD at edges.

        sentences_ids: list over sentences of per-feature id arrays (from token_ids).
        """
        return window_columns(self.stacked_windows(sentences_ids))

    def stacked_windows(self, sentences_ids):
        """windows() as one int32 (B, K, columns) array, the layout the fused training
        steps and the inference scorer read."""
        lengths = np.array([len(ids[0]) for ids in sentences_ids], dtype=np.int32)
        return self.ops.window_ids(self._laid_end_to_end(sentences_ids), lengths, self.K)

    def _laid_end_to_end(self, sentences_ids):
        """int32 (B, columns): per-sentence token_ids as one row per token."""
        if not sentences_ids:
            return np.zeros((0, self.n_columns), np.int32)
        return np.stack([np.concatenate([ids[f] for ids in sentences_ids])
                         for f in range(self.n_columns)], axis=1).astype(np.int32)

    # -- forward / backward -------------------------------------------------

    def forward(self, ids, rng=None, spellings=None):
        """Scores S (B, T) for per-column window ids; returns (S, cache for backward).

        With ``rng`` (training), inverted dropout is applied to the hidden layer.
        ``spellings``: the Spellings the character column numbers (character features).
        """
        ops, p = self.ops, self.params
        B = ids[0].shape[0]
        X = np.empty((B, self.D), dtype=self.dtype)
        for f_ids, table, offset in zip(ids, self.tables(), self.offsets):
            ops.lookup_forward(f_ids, table, X, offset)
        chars = None
        if self.chars is not None:
            chars = self._char_vectors(ids[-1], spellings)
            ops.lookup_forward(chars[0], chars[1], X, self.char_offset)
        hidden = ops.affine_act_forward(X, p["W"], p["b"], self.activation)
        keep = None
        output_in = hidden                   # the output layer's input: hidden after dropout
        if rng is not None and self.dropout > 0.0:
            keep = (rng.random(hidden.shape) >= self.dropout).astype(self.dtype)
            keep /= (1.0 - self.dropout)
            output_in = hidden * keep
        S = ops.affine_act_forward(output_in, p["U"], p["c"], "identity")
        return S, (ids, X, hidden, output_in, keep, S, chars)

    def _char_vectors(self, window_rows, spellings):
        """The character vectors of the spellings a batch's windows use (derivations
        §W5): (window ids
        renumbered into them, the vectors (n, J), their arg-max positions, the
        character windows) — what the backward pass needs too."""
        self._need_spellings(spellings)
        p = self.params
        rows, local = np.unique(window_rows, return_inverse=True)
        chars_pk, lengths = spellings.positions(rows)
        vectors, argmax = self.ops.char_cnn_forward(chars_pk, lengths, p["char.table"],
                                                    p["char.W"], p["char.b"])
        local = np.ascontiguousarray(local.reshape(window_rows.shape), dtype=np.int32)
        return local, vectors, argmax, chars_pk

    def backward(self, cache, dS, grads):
        """Add ∂J/∂θ into the named gradient views ``grads`` from δ_S (derivations §B2–§B5)."""
        ops, p = self.ops, self.params
        ids, X, hidden, output_in, keep, S, chars = cache
        d_output_in = np.empty_like(output_in)
        ops.affine_act_backward(dS, S, output_in, p["U"], "identity", grads["U"], grads["c"],
                                d_output_in)
        d_hidden = d_output_in if keep is None else d_output_in * keep
        dX = np.empty_like(X)
        ops.affine_act_backward(d_hidden, hidden, X, p["W"], self.activation, grads["W"],
                                grads["b"], dX)
        for f_ids, dtable, offset in zip(ids, self.tables(grads), self.offsets):
            ops.lookup_backward(f_ids, dX, dtable, offset)
        if chars is not None:                  # derivations §W3–§W5
            local, vectors, argmax, chars_pk = chars
            d_vectors = np.zeros_like(vectors)
            ops.lookup_backward(local, dX, d_vectors, self.char_offset)
            ops.char_cnn_backward(d_vectors, argmax, chars_pk, p["char.table"], p["char.W"],
                                  grads["char.table"], grads["char.W"], grads["char.b"])

    def loss_and_backward(self, ids, y, lengths, grads, rng=None, spellings=None):
        """Mean loss of a batch and its gradient added into ``grads``.

        y: int32 (B,) gold tags; lengths: int32 sentence lengths (CRF only).
        """
        S, cache = self.forward(ids, rng, spellings)
        if self.loss == "softmax":
            loss, dS = self.ops.softmax_xent_forward_backward(S, y)
        else:
            trans, start, end = self.transitions()
            dS = np.empty_like(S)
            loss = self.ops.crf_forward_backward(S, y, lengths, trans, start, end, dS,
                                                 grads["trans"], grads["start"], grads["end"])
        self.backward(cache, dS, grads)
        return loss

    def transitions(self):
        """Transition, start and end scores with invalid IOB2 moves set to -inf."""
        p = self.params
        if self.loss == "crf":
            return ((p["trans"] + self.mask_trans).astype(self.dtype),
                    (p["start"] + self.mask_start).astype(self.dtype),
                    np.ascontiguousarray(p["end"]))
        return (self.mask_trans.astype(self.dtype), self.mask_start.astype(self.dtype),
                np.zeros(len(self.tagset), self.dtype))

    # -- decoding -----------------------------------------------------------

    def decode(self, S, lengths, confidence=True, transitions=None):
        """Best IOB2-valid tag ids and each token's confidence in its tag (None when
        ``confidence`` is False: the CRF's marginals are then not computed; with
        ``confidence="entities"`` the CRF's are computed for tokens in entities only,
        NaN at O tokens, which is all entity scores need).

        The confidence is the model's probability of that tag for that token:
        the softmax output (loss "softmax") or the CRF marginal (loss "crf").
        ``transitions``: this model's ``transitions()`` computed earlier (a tagger
        keeps them with its inference cache), else computed here.
        """
        trans, start, end = self.transitions() if transitions is None else transitions
        if self.loss == "crf":
            if not confidence:
                return self.ops.viterbi_decode(S, lengths, trans, start, end), None
            return self.ops.crf_decode(S, lengths, trans, start, end,
                                       entities_only=confidence == "entities")
        probs = self.ops.softmax_forward(S)
        with np.errstate(divide="ignore"):
            scores = np.log(probs)
        tags = self.ops.viterbi_decode(scores, lengths, trans, start, end)
        conf = probs[np.arange(len(tags)), tags] if len(tags) else np.zeros(0, self.dtype)
        return tags, conf

    def predict(self, window_ids, lengths, confidence=True, spellings=None):
        """Best tag ids of windows (per-column (B, K) ids of sentences laid end to end,
        ``lengths`` tokens each) through the plain forward pass, and their confidences
        unless ``confidence`` is False (then None). fastner.tagger.Tagger scores through
        its inference cache instead and decodes with ``decode``."""
        S, _ = self.forward(window_ids, spellings=spellings)
        return self.decode(S, lengths, confidence)

    def sentence_windows(self, tokens, lengths, docs=None, spellings=None, first_pass=None):
        """Per-column (N, K) window ids of sentences given as all their tokens laid end
        to end and the number of tokens of each; ``docs`` numbers each sentence's
        document (document-level features look across it); ``spellings`` numbers the
        spellings for character features; ``first_pass`` as in sentences_ids."""
        return window_columns(self.stacked_sentence_windows(tokens, lengths, docs, spellings,
                                                            first_pass))

    def stacked_sentence_windows(self, tokens, lengths, docs=None, spellings=None,
                                 first_pass=None):
        """sentence_windows as one int32 (N, K, columns) array (stacked_windows' layout)."""
        return self.windows_of_ids(self.token_feature_ids(tokens, lengths, docs, spellings,
                                                          first_pass), lengths)

    def windows_of_ids(self, ids, lengths):
        """int32 (N, K, columns) windows of sentences' tokens given by their (N, columns)
        ids (token_feature_ids or span_feature_ids)."""
        return self.ops.window_ids(np.ascontiguousarray(ids, dtype=np.int32),
                                   np.asarray(lengths, dtype=np.int32), self.K)

    def token_feature_ids(self, tokens, lengths, docs=None, spellings=None, first_pass=None):
        """int32 (N, columns): each token's id in every column, for sentences given as
        in sentence_windows (the windows are built from these)."""
        self._need_spellings(spellings)
        if self._sentence_contexts:
            bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
            sentences = [tokens[a:b] for a, b in zip(bounds, bounds[1:])]
            return self._laid_end_to_end(self.sentences_ids(sentences, docs, spellings,
                                                            first_pass))
        per_token = self._feature_ids(tokens)
        if len(self._per_token) == self.n_columns:
            return per_token                  # every feature a function of the token alone
        ids = np.empty((len(tokens), self.n_columns), np.int32)
        ids[:, self._per_token] = per_token
        if len(self._per_token) < len(self.features):
            # gazetteers: one pass each over the tokens lower-cased once; no match runs
            # past the end of its sentence. docvote: the first pass's votes per document.
            lowered = [t.lower() for t in tokens]
            ends = np.repeat(np.cumsum(lengths), lengths).tolist()
            for i, f in enumerate(self.features):
                if i not in self._per_token and not getattr(f, "needs_first_pass", False):
                    ids[:, i] = f.match(lowered, ends)
            if self.needs_first_pass:
                for i, column in self._votes(tokens, lengths, docs, first_pass).items():
                    ids[:, i] = column
        if self.chars is not None:
            ids[:, -1] = spellings.ids(tokens)
        return ids

    def span_feature_ids(self, text, starts, ends):
        """token_feature_ids for tokens given as spans of ``text`` (int64 start and end
        offsets), for a model whose ids_from_spans: looked up by the spans' characters,
        with a string made only for each token the memo lacks."""
        if not self.ids_from_spans:
            raise ValueError("span_feature_ids: this model has features that look beyond "
                             "the token; use token_feature_ids")
        ids, missed = self._ids_memo.rows_of_spans(text, starts, ends)
        if len(missed):
            self._fill_missed(token_strings(text, starts[missed], ends[missed]), ids, missed)
        return ids

    def _feature_ids(self, tokens):
        """(N, per-token features) int32 ids of tokens, through one memo for all those
        features: a repeated token costs one lookup instead of one per feature (in C:
        fastner._text.TokenRows)."""
        tokens = tokens if isinstance(tokens, list) else list(tokens)
        ids, missed = self._ids_memo.rows_of_tokens(tokens)
        if len(missed):
            self._fill_missed([tokens[i] for i in missed.tolist()], ids, missed)
        return ids

    def _fill_missed(self, missed_tokens, ids, missed):
        """Compute the rows of ``missed_tokens`` (the tokens at ``missed`` that the memo
        lacked), write them into ``ids`` and remember them."""
        new = list(dict.fromkeys(missed_tokens))          # each distinct token once
        rows = np.empty((len(new), len(self._per_token)), np.int32)
        for column, f in enumerate(self._per_token):
            rows[:, column] = self.features[f].ids(new)
        self._ids_memo.add(new, rows)
        row_of = {token: r for r, token in enumerate(new)}
        ids[missed] = rows[[row_of[t] for t in missed_tokens]]

    def _feature_ids_python(self, tokens):
        """_feature_ids without the memo: each feature's ids of every token (the twin
        tests compare it with)."""
        ids = np.empty((len(tokens), len(self._per_token)), np.int32)
        for column, f in enumerate(self._per_token):
            ids[:, column] = self.features[f].ids(list(tokens))
        return ids

    def tag(self, sentences, docs=None):
        """Tag lists of tokens: list over sentences of (tag names, confidences)."""
        lengths = np.array([len(t) for t in sentences], dtype=np.int32)
        tokens = list(itertools.chain.from_iterable(sentences))
        if not tokens:
            return [([], np.zeros(0, self.dtype)) for _ in sentences]
        spellings = self.new_spellings()
        tags, conf = self.predict(self.sentence_windows(tokens, lengths, docs, spellings),
                                  lengths, spellings=spellings)
        out, at = [], 0
        for n in lengths:
            out.append((self.tagset.decode(tags[at:at + n]), conf[at:at + n]))
            at += n
        return out

    # -- configuration --------------------------------------------------------

    def config(self):
        return {"half_window": self.half_window, "hidden": self.hidden,
                "activation": self.activation, "loss": self.loss, "dropout": self.dropout,
                "entity_types": list(self.tagset.entity_types),
                "features": [f.config() for f in self.features]
                + ([self.chars.config()] if self.chars is not None else []),
                **({"first_stage": self.first_stage_file} if self.first_stage_file else {})}


def window_columns(windows_bkc):
    """Per-column contiguous (B, K) arrays of (B, K, columns) window ids."""
    return [np.ascontiguousarray(windows_bkc[:, :, f]) for f in range(windows_bkc.shape[2])]

"""Token features: the word itself (through a vocabulary) and small categorical
features of its surface form. Each feature maps a token to an id in its own
table; id 0 is the sentence-edge padding and id 1 "unknown" in every table.

A feature is described by a JSON-able config, saved in the model file, so a
loaded model extracts exactly the ids it was trained with.
"""
import os
import re

import numpy as np

from fastner.io import encode_strings

PAD, UNK = 0, 1
_DIGITS = re.compile(r"\d")


def normalize_word(token):
    """The vocabulary key of a token: lower-cased (GloVe 6B is uncased)."""
    return token.lower()


MEMO_LIMIT = 100_000       # entries per feature: ~10 MB at most


def _memo_ids(memo, tokens, compute):
    """int32 ids of tokens through a token → id memo (texts repeat their tokens).

    Bounded: a stream of novel tokens empties it rather than growing it forever."""
    if len(memo) > MEMO_LIMIT:
        memo.clear()
    get = memo.get
    ids = [get(t) for t in tokens]             # the common case: every token seen before
    if None in ids:
        for i, v in enumerate(ids):
            if v is None:
                t = tokens[i]
                ids[i] = memo[t] = compute(t)
    return np.array(ids, dtype=np.int32)


class Vocab:
    """Words ↔ rows of the word table. Rows 0 and 1 are padding and unknown."""

    def __init__(self, words):
        # a tuple: Python's cyclic collector stops tracking a tuple of strings, where it
        # walks a list's 400k items in every full collection (half of one's time
        # in a process holding the shipped model)
        self.words = ("<pad>", "<unk>") + tuple(w for w in words
                                                if w not in ("<pad>", "<unk>"))
        self.index = dict(zip(self.words, range(len(self.words))))
        self._memo = {}                  # token → id, for repeated tokens
        self._encoded = None
        if len(self.index) != len(self.words):
            raise ValueError("vocabulary words must be unique")

    def __len__(self):
        return len(self.words)

    def encoded(self):
        """The words as one UTF-8 array (fastner.io.encode_strings), made once: model
        files and every epoch's checkpoint store it."""
        if self._encoded is None:
            self._encoded = encode_strings(self.words)
        return self._encoded

    def id(self, token):
        """Row of a token: its lower-cased form, else that form with digits as 0, else UNK."""
        key = normalize_word(token)
        found = self.index.get(key)
        if found is None:
            found = self.index.get(_DIGITS.sub("0", key), UNK)
        return found

    def ids(self, tokens):
        return _memo_ids(self._memo, tokens, self.id)


class WordFeature:
    kind = "word"

    def __init__(self, vocab, dim):
        self.vocab, self.dim = vocab, dim
        self.name = "word"

    @property
    def size(self):
        return len(self.vocab)

    def ids(self, tokens, context=None):
        return self.vocab.ids(tokens)

    def config(self):
        return {"kind": self.kind, "dim": self.dim}


# Capitalisation classes (Collobert et al. 2011 use four; "no letters" is a fifth).
CAPS_CLASSES = ("<pad>", "<unk>", "lower", "upper", "title", "mixed", "noletter")


def caps_class(token):
    if not any(ch.isalpha() for ch in token):
        return 6
    if token.islower():
        return 2
    if token.isupper():
        return 3
    if token[0].isupper() and (token[1:].islower() or not any(c.isalpha() for c in token[1:])):
        return 4
    return 5


class CapsFeature:
    kind = "caps"

    def __init__(self, dim=5):
        self.dim = dim
        self.name = "caps"
        self.size = len(CAPS_CLASSES)
        self._memo = {}

    def ids(self, tokens, context=None):
        return _memo_ids(self._memo, tokens, caps_class)

    def config(self):
        return {"kind": self.kind, "dim": self.dim}


class AffixFeature:
    """The last (suffix) or first (prefix) n characters, lower-cased, from a list
    kept at training time; anything else is UNK."""

    def __init__(self, kind, n, dim, values):
        if kind not in ("suffix", "prefix"):
            raise ValueError(f"affix kind must be 'suffix' or 'prefix'; got {kind!r}")
        self.kind, self.n, self.dim = kind, n, dim
        self.name = f"{kind}{n}"
        self.values = list(values)
        self.index = {v: i + 2 for i, v in enumerate(self.values)}
        self._memo = {}

    @property
    def size(self):
        return len(self.values) + 2

    def key(self, token):
        low = token.lower()
        return low[-self.n:] if self.kind == "suffix" else low[:self.n]

    def ids(self, tokens, context=None):
        return _memo_ids(self._memo, tokens, lambda t: self.index.get(self.key(t), UNK))

    def config(self):
        return {"kind": self.kind, "n": self.n, "dim": self.dim, "values": self.values}


def _shape_key(token):
    """Word shape with runs collapsed: "McDonald's" → "XxXx'x", "1996-08" → "d-d"."""
    out = []
    for ch in token:
        c = "X" if ch.isupper() else "x" if ch.islower() else "d" if ch.isdigit() else ch
        if not out or out[-1] != c:
            out.append(c)
    return "".join(out)[:8]


class ShapeFeature:
    kind = "shape"

    def __init__(self, dim, values):
        self.dim = dim
        self.name = "shape"
        self.values = list(values)
        self.index = {v: i + 2 for i, v in enumerate(self.values)}
        self._memo = {}

    @property
    def size(self):
        return len(self.values) + 2

    def ids(self, tokens, context=None):
        return _memo_ids(self._memo, tokens, lambda t: self.index.get(_shape_key(t), UNK))

    def config(self):
        return {"kind": self.kind, "dim": self.dim, "values": self.values}


class DocumentContext:
    """How each word is cased elsewhere in its document.

    Counts, per lower-cased word, its capitalised occurrences inside sentences
    (not sentence-initial, not in an all-caps line) and its lower-case ones.
    A capitalised mid-sentence occurrence is good evidence of a name; a
    lower-case one of a common word — the cue a headline or a sentence-initial
    word lacks on its own.
    """

    def __init__(self, sentences):
        self.counts = {}
        for tokens in sentences:
            shouting = _all_caps(tokens)
            for i, tok in enumerate(tokens):
                c = self.counts.setdefault(tok.lower(), [0, 0])
                flags = self.flags(tok, i, shouting)
                c[0] += flags[0]
                c[1] += flags[1]

    @staticmethod
    def flags(token, position, shouting):
        titled = position > 0 and not shouting and token[:1].isupper()
        return int(titled), int(token.islower())

    def others(self, tokens):
        """(titled, lower) counts of each token's word elsewhere in the document."""
        shouting = _all_caps(tokens)
        out = []
        for i, tok in enumerate(tokens):
            titled, lower = self.counts.get(tok.lower(), (0, 0))
            own = self.flags(tok, i, shouting)
            out.append((titled - own[0], lower - own[1]))
        return out


class DocVoteFeature:
    """What a first pass said about the word elsewhere in its document: prediction
    aggregation (Ratinov & Roth 2009; Krishnan & Manning 2006; derivations §D1). Over
    the word's other occurrences in the document (lower-cased, the token's own left
    out), the label the first-pass tagger gave most of them (O or an entity type; a
    word inside a longer mention votes for that mention's type, so "Clinton" after
    "Bill Clinton" hears PER), and whether they all agree. Ids: no letters, not seen
    again, then (label, unanimous or split) pairs."""
    kind = "docvote"
    needs_context = True
    needs_first_pass = True
    per_token = False
    NOLETTER, UNSEEN = 2, 3

    def __init__(self, dim=5, n_labels=5):
        self.dim, self.n_labels, self.name = dim, int(n_labels), "docvote"
        self.size = 4 + 2 * self.n_labels

    def document_ids(self, lowered, labels, docs):
        """The ids of every token at once: ``lowered`` the tokens lower-cased, ``labels``
        the first pass's (int32, one per token: 0 for O, 1 + k for entity type k),
        ``docs`` each token's document number."""
        n = len(lowered)
        if n == 0:
            return np.zeros(0, np.int32)
        # each distinct word numbered once, then (document, word) pairs
        index = {}
        number = index.setdefault
        word_of = np.array([number(w, len(index)) for w in lowered], np.int64)
        words = list(index)
        docs = np.asarray(docs, np.int64)
        pairs, word = np.unique(docs * len(words) + word_of, return_inverse=True)
        labels = np.asarray(labels, np.int64)
        counts = np.zeros((len(pairs), self.n_labels), np.int32)
        np.add.at(counts, (word, labels), 1)
        others = counts[word]
        rows = np.arange(n)
        others[rows, labels] -= 1                        # the token's own vote left out
        total = others.sum(axis=1)
        label = others.argmax(axis=1)                    # ties: the first, the lower label
        out = (4 + 2 * label + (others[rows, label] != total)).astype(np.int32)
        out[total == 0] = self.UNSEEN
        lettered = np.fromiter(map(_has_letter, words), bool, len(words))
        out[~lettered[word_of]] = self.NOLETTER
        return out

    def ids(self, tokens, context=None):
        """A sentence on its own, without the first pass's votes: every word is "not
        seen again". WindowTagger fills in the votes over whole documents
        (document_ids)."""
        return np.array([self.UNSEEN if _has_letter(t) else self.NOLETTER for t in tokens],
                        dtype=np.int32)

    def config(self):
        return {"kind": self.kind, "dim": self.dim, "n_labels": self.n_labels}


def _has_letter(token):
    """Whether the token holds a cased letter (lower and upper case differ): what the
    docvote feature counts as a word."""
    return token.lower() != token.upper()


def _all_caps(tokens):
    letters = [t for t in tokens if any(ch.isalpha() for ch in t)]
    return bool(letters) and all(t.isupper() for t in letters if len(t) > 1)


class DocCaseFeature:
    """Class of a word's casing elsewhere in the document (see DocumentContext):
    no letters, only capitalised, both, only lower-case, or not seen again."""
    kind = "doccase"
    needs_context = True
    CLASSES = ("<pad>", "<unk>", "noletter", "titled", "mixed", "lower", "unseen")

    def __init__(self, dim=5):
        self.dim, self.name, self.size = dim, "doccase", len(self.CLASSES)

    def ids(self, tokens, context=None):
        others = context.others(tokens) if context is not None else [(0, 0)] * len(tokens)
        out = np.empty(len(tokens), dtype=np.int32)
        for i, (tok, (titled, lower)) in enumerate(zip(tokens, others)):
            if not any(ch.isalpha() for ch in tok):
                out[i] = 2
            elif titled and not lower:
                out[i] = 3
            elif titled:
                out[i] = 4
            elif lower:
                out[i] = 5
            else:
                out[i] = 6
        return out

    def config(self):
        return {"kind": self.kind, "dim": self.dim}


GAZETTEER_LISTS = ("loc", "misc", "first", "last")
GAZETTEER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gazetteers")


def read_gazetteer(name, folder=GAZETTEER_DIR):
    """Entries of one list built by fastner.gazetteers.build: tokens lower-cased and
    joined by single spaces."""
    path = os.path.join(folder, f"{name}.txt")
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


class GazetteerFeature:
    """Whether a token lies in a name from one list (derivations §F5): the list's
    longest match starting at each token, taken left to right without overlap, marks
    its tokens B(egin), I(nside), E(nd), or S(ingle) for a one-token match; other
    tokens are NONE. Matching is on lower-cased tokens, so lower-case text matches
    too; the caps feature beside it tells the network how the text was cased.

    A function of the sentence, not of the token alone (``per_token`` is False). The
    entries are saved in the model file (``strings``, beside the vocabulary), so a
    model matches exactly what it learned on.
    """
    kind = "gazetteer"
    per_token = False
    CLASSES = ("<pad>", "<unk>", "none", "B", "I", "E", "S")
    NONE, B, I, E, S = 2, 3, 4, 5, 6

    def __init__(self, list_name, dim, entries):
        self.list_name, self.dim = list_name, dim
        self.name = f"gaz_{list_name}"
        self.size = len(self.CLASSES)
        self.entries = frozenset(entries)
        # a trie over words, as sets of strings: ``prefixes`` holds every proper prefix
        # of an entry ("new", "new york" for "new york city"), ``starts`` every word an
        # entry starts with; a match grows word by word while it is still a prefix
        self.prefixes = set()
        for entry in self.entries:
            words = entry.split(" ")
            self.prefixes.update(" ".join(words[:k]) for k in range(1, len(words)))
        self.starts = {entry.split(" ", 1)[0] for entry in self.entries}

    def ids(self, tokens, context=None):
        return self.match([t.lower() for t in tokens], [len(tokens)] * len(tokens))

    def match(self, lowered, ends):
        """ids of sentences' tokens laid end to end: ``lowered`` the tokens lower-cased,
        ``ends[i]`` the index just past token i's sentence (no match crosses it). The
        model lower-cases once for all its gazetteer features."""
        out = np.full(len(lowered), self.NONE, dtype=np.int32)
        entries, prefixes, starts = self.entries, self.prefixes, self.starts
        end = 0                                     # matches do not overlap
        for i in [i for i, w in enumerate(lowered) if w in starts]:
            if i < end:
                continue
            key = lowered[i]
            length = 1 if key in entries else 0     # of the longest match so far
            j, stop = i + 1, ends[i]
            while j < stop and key in prefixes:
                key = key + " " + lowered[j]
                j += 1
                if key in entries:
                    length = j - i
            if length == 1:
                out[i] = self.S
            elif length:
                out[i], out[i + 1:i + length - 1], out[i + length - 1] = self.B, self.I, self.E
            end = i + length
        return out

    def config(self):
        return {"kind": self.kind, "list": self.list_name, "dim": self.dim}

    def strings(self):
        """The string lists this feature needs saved with the model, by name."""
        return {self.name: sorted(self.entries)}


class CharFeature:
    """Character features of a word (derivations §W1–W4): each token spelled as
    characters between begin and end marks, a width-3 convolution of ``dim`` filters
    over ``char_dim``-d character embeddings, and the maximum of each filter over the
    word. The vector is a function of the exact spelling (case included), computed
    from the parameters ``char.table``, ``char.W`` and ``char.b`` rather than looked
    up in a table; a ``Spellings`` numbers the spellings of the tokens at hand.

    Character ids: 0 the sentence-edge pad, 1 unknown, 2 begin, 3 end, then the
    ``alphabet`` (characters seen in training). Words longer than ``max_chars`` keep
    their first ``max_chars`` characters.
    """
    kind = "chars"
    per_token = False
    EDGE, UNKNOWN, BEGIN, END = 0, 1, 2, 3
    WIDTH = 3                              # characters under the filter

    def __init__(self, dim, char_dim=16, alphabet="", max_chars=20):
        if dim < 1 or char_dim < 1 or max_chars < 1:
            raise ValueError(f"chars: dim, char_dim and max_chars must be at least 1; got "
                             f"{dim}, {char_dim} and {max_chars}")
        self.dim, self.char_dim, self.max_chars = int(dim), int(char_dim), int(max_chars)
        self.name = "chars"
        self.alphabet = "".join(dict.fromkeys(alphabet))      # unique, in order
        self.index = {ch: i + 4 for i, ch in enumerate(self.alphabet)}

    @property
    def n_chars(self):
        return len(self.alphabet) + 4

    size = n_chars          # rows of its table, the character embeddings

    def char_ids(self, word):
        """int32 character ids of a word between its begin and end marks (``None``:
        the sentence-edge pad, one edge character)."""
        if word is None:
            inner = [self.EDGE]
        else:
            get = self.index.get
            inner = [get(ch, self.UNKNOWN) for ch in word[:self.max_chars]]
        return np.array([self.BEGIN, *inner, self.END], dtype=np.int32)

    def config(self):
        return {"kind": self.kind, "dim": self.dim, "char_dim": self.char_dim,
                "alphabet": self.alphabet, "max_chars": self.max_chars}


class Spellings:
    """The distinct spellings of the tokens at hand, numbered in order of first sight;
    row 0 is the sentence-edge pad. A tagger numbers each call's tokens afresh (memory
    bounded by the call); the trainer numbers a whole corpus and its re-cased copies
    once. ``positions`` gives the character windows char_cnn_forward reads."""

    def __init__(self, feature):
        self.feature = feature
        self.index = {}
        self.words = [None]
        self._chars = [feature.char_ids(None)]     # each row's character ids, with marks

    def __len__(self):
        return len(self.words)

    def ids(self, tokens):
        """int32 row of each token, adding the spellings not seen before."""
        index, words = self.index, self.words
        out = np.empty(len(tokens), dtype=np.int32)
        for i, tok in enumerate(tokens):
            row = index.get(tok)
            if row is None:
                row = index[tok] = len(words)
                words.append(tok)
                self._chars.append(self.feature.char_ids(tok))
            out[i] = row
        return out

    def positions(self, rows):
        """(chars_pk, lengths_n) for char_cnn_forward: int32 (P, 3) the characters under
        the filter at every position of the words ``rows`` laid end to end, and int32
        (n,) each word's positions (its characters, or 1 for the pad)."""
        seqs = [self._chars[r] for r in np.asarray(rows).tolist()]
        if not seqs:
            return np.zeros((0, CharFeature.WIDTH), np.int32), np.zeros(0, np.int32)
        lengths = np.array([len(s) - 2 for s in seqs], dtype=np.int32)
        flat = np.concatenate(seqs)
        # position p of word w reads flat[a + p : a + p + 3], a = w's first mark
        firsts = np.concatenate([[0], np.cumsum(lengths + 2)[:-1]])
        at = np.repeat(firsts, lengths) + (np.arange(int(lengths.sum()))
                                           - np.repeat(np.cumsum(lengths) - lengths, lengths))
        chars = flat[at[:, None] + np.arange(CharFeature.WIDTH)]
        return np.ascontiguousarray(chars, dtype=np.int32), lengths


def build_feature(config, vocab, strings):
    """The feature ``config`` describes; ``vocab`` is the model's vocabulary and
    ``strings`` the string lists saved with the model (name → list of strings)."""
    kind = config.get("kind")
    if kind == "word":
        return WordFeature(vocab, config["dim"])
    if kind == "caps":
        return CapsFeature(config["dim"])
    if kind in ("suffix", "prefix"):
        return AffixFeature(kind, config["n"], config["dim"], config["values"])
    if kind == "shape":
        return ShapeFeature(config["dim"], config["values"])
    if kind == "doccase":
        return DocCaseFeature(config["dim"])
    if kind == "docvote":
        return DocVoteFeature(config["dim"], config["n_labels"])
    if kind == "gazetteer":
        return GazetteerFeature(config["list"], config["dim"],
                                strings[f"gaz_{config['list']}"])
    if kind == "chars":
        return CharFeature(config["dim"], config["char_dim"], config["alphabet"],
                           config["max_chars"])
    raise ValueError(f"unknown feature kind {kind!r}")


def collect_values(sentences, key, min_count):
    """Values of ``key(token)`` seen at least ``min_count`` times, most frequent first."""
    counts = {}
    for sent in sentences:
        for tok in sent.tokens:
            k = key(tok)
            counts[k] = counts.get(k, 0) + 1
    kept = [k for k, c in counts.items() if c >= min_count]
    return sorted(kept, key=lambda k: (-counts[k], k))


CHAR_MIN_COUNT = 5          # rarer training characters share the unknown character


def make_features(spec, sentences, vocab, word_dim):
    """Feature objects from a spec like "caps:5,suffix3:10,shape:5" ("none": the word
    alone), fitted on ``sentences``."""
    features = [WordFeature(vocab, word_dim)]
    if spec.strip() == "none":                   # the word alone
        return features
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, dim = item.partition(":")
        dim = int(dim) if dim else 5
        if name == "caps":
            features.append(CapsFeature(dim))
        elif re.fullmatch(r"(suffix|prefix)\d", name):
            kind, n = name[:-1], int(name[-1])
            probe = AffixFeature(kind, n, dim, [])
            features.append(AffixFeature(kind, n, dim, collect_values(sentences, probe.key, 2)))
        elif name == "shape":
            features.append(ShapeFeature(dim, collect_values(sentences, _shape_key, 2)))
        elif name == "doccase":
            features.append(DocCaseFeature(dim))
        elif name == "docvote":
            types = {t.split("-", 1)[1] for sent in sentences for t in sent.tags if t != "O"}
            features.append(DocVoteFeature(dim, 1 + len(types)))
        elif name == "gazetteers" or (name.startswith("gaz_") and name[4:] in GAZETTEER_LISTS):
            lists = GAZETTEER_LISTS if name == "gazetteers" else [name[4:]]
            features += [GazetteerFeature(g, dim, read_gazetteer(g)) for g in lists]
        elif name == "chars":
            counts = {}
            for sent in sentences:
                for tok in sent.tokens:
                    for ch in tok:
                        counts[ch] = counts.get(ch, 0) + 1
            alphabet = sorted(ch for ch, n in counts.items() if n >= CHAR_MIN_COUNT)
            features.append(CharFeature(dim, alphabet=alphabet))
        else:
            raise ValueError(f"unknown feature {name!r} in {spec!r}; known: caps, suffixN, "
                             f"prefixN, shape (N = 1..9), doccase, gazetteers (every list) "
                             f"or gaz_LIST (LIST: {', '.join(GAZETTEER_LISTS)}), docvote, "
                             f"chars (character CNN filters), each as name:dim")
    return features

"""Token features: the word itself (through a vocabulary) and small categorical
features of its surface form. Each feature maps a token to an id in its own
table; id 0 is the sentence-edge padding and id 1 "unknown" in every table.

A feature is described by a JSON-able config, saved in the model file, so a
loaded model extracts exactly the ids it was trained with.
"""
import re

import numpy as np

PAD, UNK = 0, 1
_DIGITS = re.compile(r"\d")


def normalize_word(token):
    """The vocabulary key of a token: lower-cased (GloVe 6B is uncased)."""
    return token.lower()


class Vocab:
    """Words ↔ rows of the word table. Rows 0 and 1 are padding and unknown."""

    def __init__(self, words):
        self.words = ["<pad>", "<unk>"] + [w for w in words if w not in ("<pad>", "<unk>")]
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("vocabulary words must be unique")

    def __len__(self):
        return len(self.words)

    def id(self, token):
        """Row of a token: its lower-cased form, else that form with digits as 0, else UNK."""
        key = normalize_word(token)
        found = self.index.get(key)
        if found is None:
            found = self.index.get(_DIGITS.sub("0", key), UNK)
        return found

    def ids(self, tokens):
        get = self.id
        return np.fromiter((get(t) for t in tokens), dtype=np.int32, count=len(tokens))


class WordFeature:
    kind = "word"

    def __init__(self, vocab, dim):
        self.vocab, self.dim = vocab, dim
        self.name = "word"

    @property
    def size(self):
        return len(self.vocab)

    def ids(self, tokens):
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

    def ids(self, tokens):
        return np.fromiter((caps_class(t) for t in tokens), dtype=np.int32, count=len(tokens))

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

    @property
    def size(self):
        return len(self.values) + 2

    def key(self, token):
        low = token.lower()
        return low[-self.n:] if self.kind == "suffix" else low[:self.n]

    def ids(self, tokens):
        index, key = self.index, self.key
        return np.fromiter((index.get(key(t), UNK) for t in tokens), dtype=np.int32,
                           count=len(tokens))

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

    @property
    def size(self):
        return len(self.values) + 2

    def ids(self, tokens):
        index = self.index
        return np.fromiter((index.get(_shape_key(t), UNK) for t in tokens), dtype=np.int32,
                           count=len(tokens))

    def config(self):
        return {"kind": self.kind, "dim": self.dim, "values": self.values}


def build_feature(config, vocab):
    kind = config.get("kind")
    if kind == "word":
        return WordFeature(vocab, config["dim"])
    if kind == "caps":
        return CapsFeature(config["dim"])
    if kind in ("suffix", "prefix"):
        return AffixFeature(kind, config["n"], config["dim"], config["values"])
    if kind == "shape":
        return ShapeFeature(config["dim"], config["values"])
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


def make_features(spec, sentences, vocab, word_dim):
    """Feature objects from a spec like "caps:5,suffix3:10,shape:5", fitted on ``sentences``."""
    features = [WordFeature(vocab, word_dim)]
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
        else:
            raise ValueError(f"unknown feature {name!r} in {spec!r}; known: caps, suffixN, "
                             f"prefixN, shape (N = 1..9), each as name:dim")
    return features

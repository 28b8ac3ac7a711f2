"""The IOB2 tag set: names, ids, the allowed transitions, and entity spans.

Tag ids are positions in ``TagSet.names``: "O" is always 0, then B-X, I-X for
each entity type X in the order given. Spans follow the conlleval definition:
a chunk starts at B-X, or at I-X after anything but B-X/I-X; it continues
while I-X follows.
"""
import re

import numpy as np

from fastner import _kernels

CONLL2003_TYPES = ("PER", "LOC", "ORG", "MISC")
_TAG_RE = re.compile(r"^(?:O|[BI]-[^\s]+)$")


def is_valid_tag(tag):
    return bool(_TAG_RE.match(tag))


def spans(tags):
    """Entity spans of a tag sequence (IOB1 or IOB2), as (type, start, end) with end exclusive."""
    found = []
    kind, begin = None, 0
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, label = tag.partition("-")
        continues = prefix == "I" and label == kind
        if kind is not None and not continues:
            found.append((kind, begin, i))
            kind = None
        if prefix == "B" or (prefix == "I" and not continues):
            kind, begin = label, i
    return found


def to_iob2(tags):
    """Rewrite a tag sequence in IOB2 (every chunk opens with B-). Idempotent on IOB2."""
    out = ["O"] * len(tags)
    for kind, begin, end in spans(tags):
        out[begin] = f"B-{kind}"
        for i in range(begin + 1, end):
            out[i] = f"I-{kind}"
    return out


class TagSet:
    def __init__(self, entity_types=CONLL2003_TYPES):
        self.entity_types = tuple(entity_types)
        self.names = ["O"]
        for kind in self.entity_types:
            self.names += [f"B-{kind}", f"I-{kind}"]
        self.index = {name: i for i, name in enumerate(self.names)}

    def __len__(self):
        return len(self.names)

    def __eq__(self, other):
        return isinstance(other, TagSet) and self.names == other.names

    @classmethod
    def from_sequences(cls, tag_sequences):
        """The entity types seen in IOB2 data, CoNLL-2003's four first in their usual order."""
        seen = {tag[2:] for tags in tag_sequences for tag in tags if tag != "O"}
        ordered = [t for t in CONLL2003_TYPES if t in seen] + sorted(seen - set(CONLL2003_TYPES))
        return cls(ordered)

    def encode(self, tags):
        try:
            return np.array([self.index[t] for t in tags], dtype=np.int32)
        except KeyError as err:
            raise ValueError(f"tag {err.args[0]!r} is not in the tag set {self.names}") from None

    def decode(self, ids):
        return [self.names[i] for i in ids]

    def entity_runs(self, tags, confidence):
        """Entities of a valid IOB2 tag-id sequence: (start, end, type index into
        entity_types, lowest confidence over the span), each an array
        (fastner._kernels.entity_runs; its NumPy twin is fastner.reference.entity_runs).
        """
        return _kernels.entity_runs(np.ascontiguousarray(tags, dtype=np.int32),
                                    np.ascontiguousarray(confidence, dtype=np.float32),
                                    len(self.entity_types))

    def transition_mask(self):
        """Additive masks forbidding invalid IOB2 moves: (trans (T, T), start (T,)).

        0 where allowed, -inf where not: I-X may only follow B-X or I-X, and a
        sentence may not open with I-X (derivations §C6).
        """
        T = len(self.names)
        trans = np.zeros((T, T), dtype=np.float32)
        start = np.zeros(T, dtype=np.float32)
        for j, name in enumerate(self.names):
            if name.startswith("I-"):
                kind = name[2:]
                start[j] = -np.inf
                for i, prev in enumerate(self.names):
                    if prev not in (f"B-{kind}", f"I-{kind}"):
                        trans[i, j] = -np.inf
        return trans, start

"""The IOB2 tag set: names, ids, the allowed transitions, and entity spans.

Tag ids are positions in ``TagSet.names``: "O" is always 0, then B-X, I-X for
each entity type X in the order given. Spans follow the conlleval definition:
a chunk starts at B-X, or at I-X after anything but B-X/I-X; it continues
while I-X follows.
"""
import re

import numpy as np

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
        # per tag id: opens an entity, continues one, and which entity type (-1 for O)
        self._is_begin = np.array([n.startswith("B-") for n in self.names])
        self._is_inside = np.array([n.startswith("I-") for n in self.names])
        self._kind_of = np.array([-1] + [i // 2 for i in range(2 * len(self.entity_types))])

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
        """Entities of a valid IOB2 tag-id sequence, vectorized: (start, end, type
        index into entity_types, lowest confidence over the span), each an array.

        Valid IOB2 (as Viterbi under transition_mask produces) means an entity is a
        B-X followed by its run of I-X, and no run crosses a sentence boundary.
        """
        is_begin, is_inside = self._is_begin[tags], self._is_inside[tags]
        starts = np.flatnonzero(is_begin)
        # An entity starting at s ends at the first position after s that is not I-:
        # the sorted non-I positions (and N, for an entity that runs to the end) are the
        # candidates, and searchsorted finds, for every start at once, the first one
        # past it. The B at s itself is a non-I position; side="right" skips it.
        stops = np.append(np.flatnonzero(~is_inside), len(tags))
        ends = stops[np.searchsorted(stops, starts, side="right")]
        # The minimum over each [start, end): reduceat over the interleaved bounds
        # (start0, end0, start1, end1, ...) reduces every [start, end) at even slots
        # (odd slots are the gaps between entities, discarded). An end may equal N,
        # which reduceat cannot take as an index, hence one +inf of padding.
        bounds = np.empty(2 * len(starts), dtype=np.int64)
        bounds[0::2], bounds[1::2] = starts, ends
        padded = np.append(confidence, np.inf)
        lowest = np.minimum.reduceat(padded, bounds)[0::2] if len(starts) else padded[:0]
        return starts, ends, self._kind_of[tags[starts]], lowest

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

"""The gazetteer leakage check: how many distinct entity names of each type the lists
cover, per data split. A list built from the test data (or its source) would cover
test names much better than training names; fair lists cover them about equally.

    python benchmarks/gazetteer_coverage.py train.txt valid.txt test.txt

A LOC or MISC name is covered when the whole name is an entry of the loc or misc
list; a PER name when each of its tokens is a first name or a surname. ORG has no list.
Reads only the names and their types, never scores anything.
"""
import argparse
import os

from fastner.conll import read_conll
from fastner.features import read_gazetteer
from fastner.tags import spans

TYPES = ("PER", "LOC", "MISC")


def entity_names(sentences):
    """Distinct (type, lower-cased tokens) of the gold entities."""
    names = set()
    for sent in sentences:
        for etype, start, end in spans(sent.tags):
            names.add((etype, tuple(t.lower() for t in sent.tokens[start:end])))
    return names


def covered(etype, tokens, lists):
    if etype == "PER":
        return all(t in lists["first"] or t in lists["last"] for t in tokens)
    return " ".join(tokens) in lists[etype.lower()]


def coverage(paths):
    """{split name: {type: (covered, distinct names)}}."""
    lists = {name: set(read_gazetteer(name)) for name in ("loc", "misc", "first", "last")}
    out = {}
    for path in paths:
        names = entity_names(read_conll(path))
        row = {}
        for etype in TYPES:
            of_type = [tokens for t, tokens in names if t == etype]
            row[etype] = (sum(covered(etype, tokens, lists) for tokens in of_type),
                          len(of_type))
        out[os.path.basename(path)] = row
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("conll", nargs="+", help="CoNLL files (train, valid, test)")
    args = parser.parse_args(argv)
    print("| split | " + " | ".join(f"{t} covered" for t in TYPES) + " |")
    print("| --- |" + " ---: |" * len(TYPES))
    for split, row in coverage(args.conll).items():
        cells = [f"{100 * c / n:.1f}% of {n:,}" if n else "no names" for c, n in row.values()]
        print(f"| {split} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

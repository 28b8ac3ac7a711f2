"""Ensembles of independently seeded models on a CoNLL file, scored as they ship: the
members stacked into one network (fastner.ensemble.stack, derivations §E1) whose scores
are the members' average, decoded once by IOB2-constrained Viterbi (issue #27).

    python benchmarks/ensemble_valid.py --data ../shared/data/conll2003/valid.txt \\
        runs/ablation/shipped.s{0,1,2,3,4}.npz [--json]

Prints each model's entity F1, then for k = 2 ... n the mean ± sd of F1 over every
choice of k of the n models (one choice when k = n). Tune on valid; never on test.
"""
import argparse
import itertools
import json
import statistics
import sys

from fastner.conll import read_conll
from fastner.ensemble import stack
from fastner.tagger import Tagger
from fastner.train import EncodedSentences, evaluate


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    # through Tagger.load: a second stage comes with its first
    models = [Tagger.load(p, cache_mb=0).model for p in args.models]
    sentences = read_conll(args.data)

    def f1(chosen):
        model = models[chosen[0]] if len(chosen) == 1 else stack([models[i] for i in chosen])
        return evaluate(model, EncodedSentences(model, sentences))["f1"]

    n = len(models)
    rows = {"single": [f1((i,)) for i in range(n)]}
    for k in range(2, n + 1):
        rows[f"k={k}"] = [f1(c) for c in itertools.combinations(range(n), k)]
    if args.json:
        json.dump({"models": args.models, "data": args.data, "f1": rows}, sys.stdout, indent=1)
        print()
        return 0
    for name, values in rows.items():
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{name:8s} {statistics.mean(values):6.2f} ± {sd:4.2f}  ({len(values)} choices)",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Ensembles of independently seeded models on a CoNLL file: each model's emission scores
S and (CRF) transition, start and end scores averaged over the k models, decoded once
by IOB2-constrained Viterbi (issue #27, derivations §E1).

    python benchmarks/ensemble_valid.py --data ../shared/data/conll2003/valid.txt \\
        runs/ablation/shipped.s{0,1,2,3,4}.npz [--json]

Prints each model's entity F1, then for k = 2 ... n the mean ± sd of F1 over every
choice of k of the n models (all of them when k = n). Tune on valid; never on test.
"""
import argparse
import itertools
import json
import statistics
import sys

import numpy as np

from fastner.conll import read_conll
from fastner.inference import InferenceScorer
from fastner.modelfile import load_model
from fastner.train import EncodedSentences, _flat_entity_scores


def emissions_and_transitions(models, sentences):
    """Per model: (S (N, T) emission scores, (trans, start, end)); models must share the
    tag set (their vocabularies may differ: each encodes the sentences itself)."""
    tagsets = {tuple(m.tagset.tags) for m in models}
    if len(tagsets) != 1:
        raise SystemExit("ensemble: the models have different tag sets")
    out = []
    for model in models:
        data = EncodedSentences(model, sentences)
        S = InferenceScorer(model, budget_mb=0).scores(data.ids, data.spellings)
        out.append((S, model.transitions()))
    return out, data


def averaged(parts):
    """The average of ``parts``' emission scores and of their transition scores."""
    S = np.mean([p[0] for p in parts], axis=0, dtype=np.float64).astype(np.float32)
    trans = tuple(np.mean([p[1][i] for p in parts], axis=0, dtype=np.float64)
                  .astype(np.float32) for i in range(3))
    return S, trans


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    models = [load_model(p) for p in args.models]
    sentences = read_conll(args.data)
    parts, data = emissions_and_transitions(models, sentences)
    head = models[0]

    def f1(chosen):
        S, trans = averaged([parts[i] for i in chosen])
        tags, _ = head.decode(S, data.lengths, confidence=False, transitions=trans)
        return _flat_entity_scores(head.tagset, tags, data)["f1"]

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
        print(f"{name:8s} {statistics.mean(values):6.2f} ± {sd:4.2f}  ({len(values)} choices)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

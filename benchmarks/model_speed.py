"""The shipped models' speeds side by side, as a user runs them: raw text → entities
(Tagger.tag_texts, one text per CoNLL document, so document-level models see their
documents) and, for single-stage models, ids → tags (the inference cache's scorer and
Viterbi on pre-computed ids, as test_inference_bench.py times it). One process, the
models' rounds interleaved, one BLAS thread; run it pinned (taskset -c 0) for one core.

    OPENBLAS_NUM_THREADS=1 taskset -c 0 python benchmarks/model_speed.py fast accurate \\
        [--data ../shared/data/conll2003/valid.txt] [--rounds 7] [--json]

Prints per model the median tokens/s of each path and its ratio to the first model's.
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from inference_data import cached_ids_to_tags, encoded  # noqa: E402

from fastner.conll import read_conll  # noqa: E402
from fastner.tagger import Tagger  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VALID = os.path.join(ROOT, "..", "shared", "data", "conll2003", "valid.txt")


def documents(path):
    """One text per document: its sentences' tokens joined by spaces, one line each."""
    texts = {}
    for sent in read_conll(path):
        texts.setdefault(sent.doc, []).append(" ".join(sent.tokens))
    return ["\n".join(lines) for lines in texts.values()]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", help="model names or files")
    ap.add_argument("--data", default=VALID)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    texts = documents(args.data)
    runs = {}
    for spec in args.models:
        tagger = Tagger.load(spec)
        paths = {"text_to_entities": lambda t=tagger: t.tag_texts(texts)}
        if not tagger.model.uses_documents:
            _, ids, lengths, spellings = encoded(tagger, args.data)
            paths["ids_to_tags"] = (lambda t=tagger, i=ids, n=lengths, s=spellings:
                                    cached_ids_to_tags(t, i, n, s))
        tokens = sum(d.n_tokens for d in tagger.tag_texts(texts))      # and warm it
        runs[spec] = {"tagger": tagger, "paths": paths, "tokens": tokens,
                      "seconds": {name: [] for name in paths}}
    for _ in range(args.rounds):
        for run in runs.values():
            for name, work in run["paths"].items():
                started = time.perf_counter()
                work()
                run["seconds"][name].append(time.perf_counter() - started)
    report = {}
    for spec, run in runs.items():
        report[spec] = {name: round(run["tokens"] / statistics.median(times))
                        for name, times in run["seconds"].items()}
        report[spec]["tokens"] = run["tokens"]
        report[spec]["load_seconds"] = run["tagger"].load_seconds
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    first = report[args.models[0]]
    for spec, row in report.items():
        cells = [f"{name} {row[name]:,} tok/s ({row[name] / first[name]:.2f}x)"
                 if name in first else f"{name} {row[name]:,} tok/s"
                 for name in ("ids_to_tags", "text_to_entities") if name in row]
        print(f"{spec}: " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The portable build's speed as a ratio of the native build's, side by side.

    make test-portable        # builds build/portable/tree (the kernels a wheel carries)
    python benchmarks/portable_ratio.py [--tree build/portable/tree] [--rounds 7]

Alternates fresh processes of the two builds (the checkout's package, built with
-march=native, and the portable tree's), each timing the shipped model on the same
data: ids -> tags (the inference cache's scorer and Viterbi on pre-computed ids,
benchmarks/inference_data.py's, which test_inference_bench.py's cached row times) and
raw text -> entities (tag_texts). Pinned to one core and one BLAS thread where taskset
exists. Prints one JSON report: each build's median seconds, tokens/s, and
portable/native for both paths.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VALID = os.path.join(ROOT, "..", "shared", "data", "conll2003", "valid.txt")
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "tiny_dev.txt")

# Run in the child, from the build's directory (its fastner/ first on sys.path).
# benchmarks/ goes last on sys.path: the build's own fastner/ must come first.
CHILD = r"""
import json, sys, time
sys.path.append(sys.argv[2])
from inference_data import cached_ids_to_tags, encoded
from fastner import _kernels
from fastner.tagger import Tagger
nlp = Tagger.load()
sentences, ids, lengths, spellings = encoded(nlp, sys.argv[1])
texts = [" ".join(s.tokens) for s in sentences]
n = int(lengths.sum())
def ids_to_tags():
    return cached_ids_to_tags(nlp, ids, lengths, spellings)
def best_of(f, repeats=5):
    f()                                     # warm: caches, first-call work
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
    return min(times)
print(json.dumps({"tokens": n, "march_native": "-march" in _kernels.build_flags(),
                  "ids_to_tags": best_of(ids_to_tags),
                  "text_to_entities": best_of(lambda: nlp.tag_texts(texts))}))
"""


def run_child(cwd, data):
    env = {k: v for k, v in os.environ.items() if k not in ("FASTNER_MODEL", "PYTHONPATH")}
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    pin = ["taskset", "-c", os.environ.get("FASTNER_BENCH_CORE", "0")] \
        if shutil.which("taskset") else []
    done = subprocess.run([*pin, sys.executable, "-c", CHILD, data,
                           os.path.join(ROOT, "benchmarks")], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        sys.exit(f"portable_ratio: the run in {cwd} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tree", default=os.path.join(ROOT, "build", "portable", "tree"),
                    help="the portable tree make test-portable builds")
    ap.add_argument("--rounds", type=int, default=7, help="alternating runs of each build")
    ap.add_argument("--data", default=VALID if os.path.exists(VALID) else FIXTURE)
    args = ap.parse_args(argv)
    args.data = os.path.abspath(args.data)      # the children run in the builds' folders
    if not os.path.isdir(os.path.join(args.tree, "fastner")):
        sys.exit(f"portable_ratio: {args.tree} holds no fastner/: run make test-portable")
    runs = {"native": [], "portable": []}
    for _ in range(args.rounds):
        runs["native"].append(run_child(ROOT, args.data))
        runs["portable"].append(run_child(args.tree, args.data))
    if not runs["native"][0]["march_native"] or runs["portable"][0]["march_native"]:
        sys.exit("portable_ratio: the checkout must be the -march=native build and the "
                 "tree the portable one")
    report = {"data": os.path.relpath(args.data, ROOT), "rounds": args.rounds,
              "tokens": runs["native"][0]["tokens"]}
    for build, rows in runs.items():
        report[build] = {}
        for path in ("ids_to_tags", "text_to_entities"):
            seconds = statistics.median(r[path] for r in rows)
            report[build][path] = {"seconds": seconds,
                                   "tokens_per_s": round(report["tokens"] / seconds)}
    report["portable_over_native_speed"] = {
        path: round(report["native"][path]["seconds"] / report["portable"][path]["seconds"], 3)
        for path in ("ids_to_tags", "text_to_entities")}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

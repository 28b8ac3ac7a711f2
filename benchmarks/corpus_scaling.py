"""Scaling of `fastner tag-corpus` on a local Dask cluster: 1 worker vs N workers.

    python benchmarks/corpus_scaling.py [--docs 100000] [--model PATH] [--workers 1 2]

Generates a corpus (one document per line, ~30 tokens each, made-up news-like
sentences), tags it once per worker count into a fresh output directory, and
prints documents/s, tokens/s, scaling efficiency and per-worker peak memory as
JSON. Also checks that every run wrote the same output.
"""
import argparse
import glob
import json
import os
import random
import shutil
import tempfile
import time

FIRST = ["Maria", "Tom", "Ahmed", "Li", "Anna", "Peter", "Clara", "Yuki", "Omar", "Eva"]
LAST = ["Lopez", "Baker", "Khan", "Wei", "Berg", "Olsen", "Dubois", "Tanaka", "Haddad", "Novak"]
PLACES = ["Paris", "Berlin", "Nairobi", "Lima", "Oslo", "Cairo", "Toronto", "New York", "Seoul"]
ORGS = ["the United Nations", "Reuters", "Toyota", "the European Commission", "Deutsche Bank",
        "the World Bank", "Microsoft", "NATO", "the Red Cross"]
TEMPLATES = [
    "{P} told {O} in {L} on Monday that talks with {P2} would resume next week .",
    "Shares of {O} rose 3.5 percent in {L} after {P} said profits would beat forecasts .",
    "{P} , a spokesman for {O} , said the {L} office would close by the end of the year .",
    "Police in {L} said {P} was arrested after a protest outside the offices of {O} .",
]


def make_corpus(path, n_docs, seed=0):
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n_docs):
            doc = " ".join(rng.choice(TEMPLATES).format(
                P=f"{rng.choice(FIRST)} {rng.choice(LAST)}", P2=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                O=rng.choice(ORGS), L=rng.choice(PLACES)) for _ in range(2))
            f.write(doc + "\n")


def peak_worker_memory_mb(client):
    def peak():
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return sorted(round(v, 1) for v in client.run(peak).values())


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def measure(docs, model, workers, partition_size):
    """Tag a generated corpus of ``docs`` documents once per worker count; the report."""
    from distributed import Client, LocalCluster

    from fastner.corpus import tag_corpus
    tmp = tempfile.mkdtemp(prefix="fastner-corpus-")
    corpus = os.path.join(tmp, "corpus.txt")
    make_corpus(corpus, docs)
    report = {"docs": docs, "machine": f"{os.cpu_count()} cores", "runs": []}
    outputs = []
    for n in workers:
        out = os.path.join(tmp, f"out-{n}")
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                          dashboard_address=":0", env={"OPENBLAS_NUM_THREADS": "1"}) as cluster, \
                Client(cluster) as client:
            started = time.perf_counter()
            totals = tag_corpus(corpus, out, model, scheduler=cluster.scheduler_address,
                                partition_size=partition_size, progress=False,
                                log=lambda m: None)
            seconds = time.perf_counter() - started
            memory = peak_worker_memory_mb(client)
        report["runs"].append({"workers": n, "seconds": round(seconds, 2),
                               "docs_per_second": round(totals["documents"] / seconds),
                               "tokens_per_second": round(totals["tokens"] / seconds),
                               "worker_peak_rss_mb": memory})
        parts = sorted(glob.glob(os.path.join(out, "part-*.jsonl")))
        outputs.append([_read(p) for p in parts])
    base = report["runs"][0]
    for run in report["runs"]:
        run["speedup"] = round(run["docs_per_second"] / base["docs_per_second"], 2)
        run["efficiency"] = round(run["speedup"] * base["workers"] / run["workers"], 2)
    report["outputs_identical"] = all(o == outputs[0] for o in outputs)
    shutil.rmtree(tmp, ignore_errors=True)
    return report


def main(argv=None):
    from fastner.tagger import default_model_path
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--model", default=default_model_path())
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--partition-size", type=int, default=5_000)
    args = ap.parse_args(argv)
    print(json.dumps(measure(args.docs, args.model, args.workers, args.partition_size),
                     indent=2))


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# make bench: the whole suite single-threaded, pinned to one core where taskset
# exists; saves pytest-benchmark's JSON and prints the comparison table.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .benchmarks
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PIN=()
if command -v taskset >/dev/null 2>&1; then PIN=(taskset -c "${FASTNER_BENCH_CORE:-0}"); fi
"${PIN[@]}" .venv/bin/python -m pytest benchmarks -q -p no:cacheprovider \
    --benchmark-min-rounds=10 --benchmark-max-time=2 --benchmark-warmup=on \
    --benchmark-json=.benchmarks/latest.json "$@"
.venv/bin/python benchmarks/report.py .benchmarks/latest.json | tee .benchmarks/latest.txt

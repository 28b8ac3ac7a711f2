"""Print one comparison table from a pytest-benchmark JSON file: medians, and
ratios against the Cython implementation measured in the same run.

    python benchmarks/report.py .benchmarks/latest.json
"""
import json
import re
import sys


def impl_of(bench):
    params = bench.get("params") or {}
    return params.get("impl") or params.get("path") or bench["name"].split("[")[0]


def main(path):
    with open(path, encoding="utf-8") as f:
        run = json.load(f)
    info = run.get("machine_info", {})
    print(f"# {info.get('cpu', {}).get('brand_raw', '?')}, {info.get('cpu', {}).get('count', '?')} "
          f"cores, Python {info.get('python_version', '?')}; {run.get('datetime', '')}")
    for lib in info.get("blas", []):
        source = lib["filepath"].split("site-packages/")[-1] if lib.get("filepath") else "?"
        print(f"# BLAS: {lib['internal_api']} {lib['version']}, kernel {lib['architecture']}, "
              f"{lib['num_threads']} thread(s) ({source})")
    steering = info.get("blas_environment")
    print(f"# environment: {' '.join(f'{k}={v}' for k, v in steering.items()) or 'none'}"
          if steering is not None else "# environment: not recorded")
    if "fastner_build_flags" in info:       # how the kernels that ran were built
        output = info.get("fastner_output_layer")       # absent from older JSON files
        tanh = info.get("fastner_scorer_tanh")          # absent from older JSON files
        print(f"# kernels: built with {info['fastner_build_flags']}, half-precision cache "
              f"via {info['fastner_half_path']}"
              + (f", scorer's output layer via {output}" if output else "")
              + (f", scorer's tanh via {tanh}" if tanh else ""))
    elif "fastner_half_path" in info:        # older runs recorded only the environment
        print(f"# kernels: FASTNER_MARCH={steering.get('FASTNER_MARCH', '(portable)')}, "
              f"half-precision cache via {info['fastner_half_path']}")
    groups = {}
    for bench in run["benchmarks"]:
        groups.setdefault(bench["group"] or bench["name"], []).append(bench)
    peak = None
    for bench in groups.get("sgemm peak", []):
        peak = bench["extra_info"]["flop"] / bench["stats"]["median"] / 1e9
    if peak:
        print(f"sgemm peak (1024³, one core): {peak:.1f} GFLOP/s\n")
    print(f"{'group':28s} {'impl':9s} {'median':>11s} {'tokens/s':>12s} {'GFLOP/s':>8s} "
          f"{'% peak':>7s} {'vs cython':>10s}")
    for group in sorted(groups, key=lambda g: (re.sub(r"\d+", "", g), int((re.findall(r"\d+", g)
                                                                                 or [0])[0]))):
        if group == "sgemm peak":
            continue
        benches = groups[group]
        base = next((b for b in benches if impl_of(b) in ("cython", "cached")), benches[0])
        for bench in sorted(benches, key=lambda b: b["stats"]["median"]):
            median = bench["stats"]["median"]
            extra = bench.get("extra_info", {})
            tokens = f"{extra['tokens'] / median:,.0f}" if "tokens" in extra else ""
            gflops = extra["flop"] / median / 1e9 if "flop" in extra else None
            ratio = median / base["stats"]["median"]
            print(f"{group:28s} {impl_of(bench):9s} {median * 1e6:9.1f}µs {tokens:>12s} "
                  f"{'' if gflops is None else f'{gflops:8.1f}'} "
                  f"{'' if gflops is None or not peak else f'{100 * gflops / peak:6.0f}%'} "
                  f"{'' if bench is base else f'{ratio:9.2f}x'}")


if __name__ == "__main__":
    main(sys.argv[1])

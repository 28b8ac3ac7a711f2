"""make mutate-kernels: fixed mutations of the Cython kernels, each of which the kernel
tests must catch (mutmut cannot reach compiled code).

    python tests/mutation/kernel_mutants.py [--only NAME ...] [--list]

One copy of the package under build/kernel-mutants/ is built once; then, for each
mutation below, its source file is changed in the copy, the copy is rebuilt (only
the changed extension compiles), the kernel tests run against it from inside the copy
(whose fastner/ comes first on sys.path), and the file is restored. A mutant whose tests
all pass is a survivor; the script prints one line per mutant and exits 1 if any
survived or failed to build.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAGE = os.path.join(ROOT, "build", "kernel-mutants")
TESTS = ["tests/test_kernels.py", "tests/test_kernel_registry.py", "tests/test_model.py"]

# (name, file, the exact text, its mutant, tests beyond TESTS); each text occurs once
MUTATIONS = [
    ("softmax: no max shift", "fastner/_kernels.pyx",
     "        ej = exp(s[j] - m)\n", "        ej = exp(s[j])\n", []),
    ("softmax: max taken as min", "fastner/_kernels.pyx",
     "        if s[j] > m:\n            m = s[j]\n", "        if s[j] < m:\n            m = s[j]\n",
     []),
    ("softmax backward: gold sign", "fastner/_kernels.pyx",
     "        dS_bt[i, y_b[i]] -= inv_b\n", "        dS_bt[i, y_b[i]] += inv_b\n", []),
    ("lookup backward: overwrite, not accumulate", "fastner/_kernels.pyx",
     "            for j in range(e):\n                row[j] += src[j]\n",
     "            for j in range(e):\n                row[j] = src[j]\n", []),
    ("char CNN: max pooling keeps the first position", "fastner/_kernels.pyx",
     "                if Z_pj[p, j] > Z_pj[best, j]:\n", "                if False:\n", []),
    ("tanh backward: derivative sign", "fastner/_rows.pxd",
     "            dZ[j] = dH[j] * (one - h * h)", "            dZ[j] = dH[j] * (one + h * h)", []),
    ("CRF backward: gold emission sign", "fastner/_kernels.pyx",
     "        ds_t[y[t]] -= scale\n", "        ds_t[y[t]] += scale\n", []),
    ("CRF backward: gold transition dropped", "fastner/_kernels.pyx",
     "            dA[y[t - 1], y[t]] -= scale\n", "            pass\n", []),
    ("CRF backward: end marginal at the first token", "fastner/_kernels.pyx",
     "            if t == n - 1:\n                dend[j]", "            if t == 0:\n                dend[j]",
     []),
    ("Viterbi: ties to the last index (vector path)", "fastner/_crf.h",
     "            const fastner_vl better = cand > best;",
     "            const fastner_vl better = cand >= best;", []),
    ("Viterbi: back-pointer to the first tag (vector path)", "fastner/_crf.h",
     "            from = (((fastner_vl){0} + i) & better) | (from & ~better);",
     "            from = from & ~better;", []),
    ("Viterbi: ties to the last index (textbook path)", "fastner/_crf.h",
     "            if (cand > best) {\n                best = cand;\n                best_i = i;",
     "            if (cand >= best) {\n                best = cand;\n                best_i = i;",
     ["portable"]),
    ("Adam: second moment without the square", "fastner/_adam.h",
     "        vi = vi + (one_minus_beta2 * gi) * gi;", "        vi = vi + one_minus_beta2 * gi;",
     ["tests/test_train.py"]),
    ("Adam: first moment decayed by beta2", "fastner/_adam.h",
     "        float mi = m[i] * beta1;", "        float mi = m[i] * beta2;", ["tests/test_train.py"]),
    ("Adam: no epsilon", "fastner/_adam.h",
     "(sqrtf(vi) + eps)", "(sqrtf(vi))", ["tests/test_train.py"]),
    ("id bound: id == limit accepted", "fastner/_kernels.pyx",
     "            if v < 0 or v >= limits[j]:\n", "            if v < 0 or v > limits[j]:\n", []),
    ("id bound: vectorized check off by one", "fastner/_kernels.pyx",
     "            bad |= u[at + j] >= repeated[j]\n        at += span\n",
     "            bad |= u[at + j] > repeated[j]\n        at += span\n", []),
]


def run(cmd, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


def build(march):
    env = dict(os.environ, FASTNER_MARCH=march)
    done = run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=STAGE, env=env)
    return done.returncode == 0, done.stderr[-2000:]


def prepare():
    shutil.rmtree(STAGE, ignore_errors=True)
    os.makedirs(STAGE)
    for name in ("setup.py", "pyproject.toml"):
        shutil.copy2(os.path.join(ROOT, name), STAGE)
    shutil.copytree(os.path.join(ROOT, "fastner"), os.path.join(STAGE, "fastner"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    os.symlink(os.path.join(ROOT, "models"), os.path.join(STAGE, "models"))


def tests_pass(tests):
    env = {k: v for k, v in os.environ.items() if k not in ("FASTNER_MODEL", "PYTHONPATH")}
    env["OPENBLAS_NUM_THREADS"] = "1"
    done = run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                *[os.path.join(ROOT, t) for t in tests]], cwd=STAGE, env=env, timeout=1800)
    return done.returncode == 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", help="names of the mutations to run")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or m[0] in args.only]
    if args.list:
        print("\n".join(m[0] for m in MUTATIONS))
        return 0
    prepare()
    ok, err = build("native")
    if not ok:
        sys.exit(f"kernel_mutants: the unmutated copy does not build:\n{err}")
    if not tests_pass(TESTS):
        sys.exit("kernel_mutants: the kernel tests fail on the unmutated copy")
    survivors = 0
    for name, path, text, mutant, extra in chosen:
        source = os.path.join(STAGE, path)
        with open(source, encoding="utf-8") as f:
            original = f.read()
        if original.count(text) != 1:
            sys.exit(f"kernel_mutants: {name}: its text occurs {original.count(text)} times "
                     f"in {path}; update the mutation")
        portable = "portable" in extra
        tests = TESTS + [t for t in extra if t != "portable"]
        started = time.monotonic()
        try:
            with open(source, "w", encoding="utf-8") as f:
                f.write(original.replace(text, mutant))
            built, err = build("" if portable else "native")
            if not built:
                verdict = "BUILD FAILED"
                survivors += 1
                print(err, file=sys.stderr)
            else:
                verdict = "survived" if tests_pass(tests) else "killed"
                survivors += verdict == "survived"
        finally:
            with open(source, "w", encoding="utf-8") as f:
                f.write(original)
            if portable:
                build("native")
        print(f"{verdict:>8}  {name}  ({path}, {time.monotonic() - started:.0f} s)", flush=True)
    print(f"{len(chosen) - survivors} of {len(chosen)} kernel mutants killed")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())

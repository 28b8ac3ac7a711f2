"""The kernels a wheel carries: built without -march (x86-64 baseline), as `make wheel`
builds them. `make test-portable` (part of `make test`) builds them into
build/portable/tree, a copy of the package that differs only in its compiled
modules, runs the kernel tests there, and runs this file, which checks that the tree
is the portable build and that it tags as the native build does."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import FIXTURES, SHARED_DATA

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TREE = os.environ.get("FASTNER_PORTABLE_TREE")
pytestmark = pytest.mark.skipif(not TREE, reason="run by `make test-portable` (part of "
                                                 "`make test`), which builds the portable "
                                                 "kernels first")
VALID = os.path.join(SHARED_DATA, "valid.txt")
DATA = VALID if os.path.exists(VALID) else os.path.join(FIXTURES, "tiny_dev.txt")


def test_this_process_runs_the_portable_build():
    from fastner import _kernels, _text
    for module in (_kernels, _text):
        assert (os.path.realpath(os.path.dirname(module.__file__))
                == os.path.realpath(os.path.join(TREE, "fastner")))
    assert "-march" not in _kernels.build_flags()


def tag(cwd, args, stdin=None):
    """`fastner tag` run from ``cwd``: the checkout's package there, the native build;
    the portable tree's in the tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("FASTNER_MODEL", "PYTHONPATH")}
    done = subprocess.run([sys.executable, "-m", "fastner.cli", "tag", "--quiet", *args],
                          cwd=cwd, input=stdin, capture_output=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def test_portable_and_native_builds_give_the_same_tags_on_conll():
    native = tag(ROOT, ["--format", "conll", DATA])
    assert native.count(b"\n") > 100
    assert tag(TREE, ["--format", "conll", DATA]) == native


def test_portable_and_native_builds_give_the_same_entities_on_raw_text():
    from fastner.conll import read_conll
    text = "".join(" ".join(s.tokens) + "\n" for s in read_conll(DATA)).encode()

    def spans(out):
        docs = [json.loads(line) for line in out.splitlines()]
        return [[(e["start"], e["end"], e["label"]) for e in d["entities"]] for d in docs]

    native = spans(tag(ROOT, [], text))
    assert sum(map(len, native)) > 10
    assert spans(tag(TREE, [], text)) == native


def test_every_simd_path_gives_what_its_portable_twin_gives(tmp_path):
    # the native build's outputs from a subprocess run from the checkout, this
    # process's from the portable build, on inputs that reach every vector tail
    import build_pairs
    saved = tmp_path / "native.npz"
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "tests"))
    done = subprocess.run([sys.executable, "-c", "import sys, build_pairs; "
                           "build_pairs.save(sys.argv[1])", str(saved)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    native, portable = build_pairs.load(saved), build_pairs.outputs()
    cases = {case.name: case for case in build_pairs.cases()}
    assert native.keys() == portable.keys() == cases.keys()
    for name, case in cases.items():
        assert native[name].keys() == portable[name].keys(), name
        atol = case.atol
        if atol is None:        # the scorer: the tanh bound times Σ_h |U[t, h]|
            atol = (build_pairs.TANH_PAIR_ATOL + 2.0**-14) * float(
                np.abs(native[name]["U"]).sum(axis=1).max()) + 1e-5
        for key, expected in native[name].items():
            got = portable[name][key]
            assert got.dtype == expected.dtype and got.shape == expected.shape, (name, key)
            if case.rtol == 0 and case.atol == 0:
                assert np.array_equal(got, expected, equal_nan=True), (name, key)
            else:
                np.testing.assert_allclose(got, expected, rtol=case.rtol, atol=atol,
                                           err_msg=f"{name}: {key}")


def test_portable_ratio_compares_the_two_builds():
    script = os.path.join(ROOT, "benchmarks", "portable_ratio.py")
    fixture = os.path.join(FIXTURES, "tiny_dev.txt")
    done = subprocess.run([sys.executable, script, "--tree", TREE, "--rounds", "1",
                           "--data", fixture], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["tokens"] > 500
    for build in ("native", "portable"):
        for path in ("ids_to_tags", "text_to_entities"):
            assert report[build][path]["tokens_per_s"] > 0
    assert set(report["portable_over_native_speed"]) == {"ids_to_tags", "text_to_entities"}


def test_portable_ratio_refuses_a_tree_that_is_not_the_portable_build():
    script = os.path.join(ROOT, "benchmarks", "portable_ratio.py")
    done = subprocess.run([sys.executable, script, "--tree", ROOT, "--rounds", "1",
                           "--data", os.path.join(FIXTURES, "tiny_dev.txt")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1
    assert "the tree the portable one" in done.stderr

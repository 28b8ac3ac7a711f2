"""make bench's report names what ran above its table: the BLAS library, its version
and kernel, the variables that steer it, and how fastner's kernels were built."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))

import report  # noqa: E402

from fastner import _kernels  # noqa: E402


def run_json(tmp_path, **machine):
    info = {"cpu": {"brand_raw": "Some CPU", "count": 2}, "python_version": "3.11.7",
            "blas": [{"internal_api": "openblas", "version": "0.3.30",
                      "architecture": "Haswell", "num_threads": 1,
                      "filepath": "/v/lib/site-packages/scipy.libs/libscipy_openblas.so"}],
            "blas_environment": {"OPENBLAS_CORETYPE": "Haswell", "FASTNER_MARCH": "native"},
            "fastner_half_path": "f16c", **machine}
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"machine_info": info, "datetime": "2026-11-29T00:00:00",
                                "benchmarks": []}))
    return str(path)


def test_header_names_blas_environment_and_build(tmp_path, capsys):
    report.main(run_json(tmp_path, fastner_build_flags="-O3 -march=native",
                         fastner_output_layer="avx2-fma", fastner_scorer_tanh="avx512-rcp"))
    out = capsys.readouterr().out.splitlines()
    assert out[:4] == [
        "# Some CPU, 2 cores, Python 3.11.7; 2026-11-29T00:00:00",
        "# BLAS: openblas 0.3.30, kernel Haswell, 1 thread(s) "
        "(scipy.libs/libscipy_openblas.so)",
        "# environment: OPENBLAS_CORETYPE=Haswell FASTNER_MARCH=native",
        "# kernels: built with -O3 -march=native, half-precision cache via f16c, "
        "scorer's output layer via avx2-fma, scorer's tanh via avx512-rcp"]


def test_header_of_a_run_before_the_output_layer_was_recorded(tmp_path, capsys):
    report.main(run_json(tmp_path, fastner_build_flags="-O3"))
    assert ("# kernels: built with -O3, half-precision cache via f16c"
            in capsys.readouterr().out.splitlines())


def test_header_of_an_older_run_without_build_flags(tmp_path, capsys):
    report.main(run_json(tmp_path))
    assert ("# kernels: FASTNER_MARCH=native, half-precision cache via f16c"
            in capsys.readouterr().out.splitlines())


def test_build_flags_are_recorded():
    # the flags setup.py compiled the kernels with: -march=... only in a build for one
    # machine's instruction set (make's builds), none in a portable one
    flags = _kernels.build_flags().split()
    assert flags[:3] == ["-O3", "-fno-trapping-math", "-fno-math-errno"]
    assert all(flag.startswith("-march=") for flag in flags[3:]) and len(flags) <= 4


def test_fast_paths_are_named_by_the_build():
    # which code runs depends on the build and, in a native build, on the CPU it was
    # built for; a portable build (x86-64 baseline, what a wheel carries) has only the
    # portable paths. Checked from the build's own flags, not from this machine's CPU.
    portable = "-march" not in _kernels.build_flags()
    assert _kernels.scorer_output_layer() in (("blas",) if portable else ("blas", "avx2-fma"))
    assert _kernels.scorer_tanh() in (("fast_tanh",) if portable else
                                      ("fast_tanh", "avx512-rcp"))
    assert _kernels.half_path() in ("f16c", "portable")     # chosen at run time

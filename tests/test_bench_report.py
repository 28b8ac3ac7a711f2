"""make bench's report names what ran above its table: the BLAS library, its version
and kernel, the variables that steer it, and how fastner's kernels were built."""
import json
import os
import sys

import pytest

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


def test_output_layer_is_named_by_the_build():
    # a build for this machine's instruction set (make's) uses fastner/_output.h where
    # the CPU has AVX2 and FMA; a portable build (x86-64 baseline) the BLAS
    if not os.path.exists("/proc/cpuinfo"):
        pytest.skip("reads the CPU's flags from /proc/cpuinfo (Linux)")
    flags = _kernels.build_flags()
    with open("/proc/cpuinfo") as f:
        cpu = f.read().split()
    expected = ("avx2-fma" if "-march=native" in flags and "avx2" in cpu and "fma" in cpu
                else "blas")
    assert _kernels.scorer_output_layer() == expected


def test_scorers_tanh_is_named_by_the_build():
    # fastner/_tanh.h's AVX-512 tanh in a build for a CPU that has AVX-512 (and F16C), the
    # kernels' fast_tanh elsewhere (a portable build, or a CPU without them)
    if not os.path.exists("/proc/cpuinfo"):
        pytest.skip("reads the CPU's flags from /proc/cpuinfo (Linux)")
    with open("/proc/cpuinfo") as f:
        cpu = f.read().split()
    expected = ("avx512-rcp" if "-march=native" in _kernels.build_flags() and "avx512f" in cpu
                and "f16c" in cpu else "fast_tanh")
    assert _kernels.scorer_tanh() == expected

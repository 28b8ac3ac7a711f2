import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# What steers the BLAS kernels: ratios are only comparable under the same kernel.
BLAS_ENVIRONMENT = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "FASTNER_BLAS_THREADS", "FASTNER_MARCH")


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record in the benchmark JSON which BLAS ran (library, version, the kernel it chose
    for this CPU, threads), the variables that steer it, and how the kernels were built;
    benchmarks/report.py prints them above the table."""
    import numpy  # noqa: F401  (loads the BLAS libraries threadpoolctl inspects)
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_info

    from fastner import _kernels
    machine_info["blas"] = [
        {key: lib.get(key) for key in ("internal_api", "version", "architecture", "num_threads",
                                       "threading_layer", "filepath")}
        for lib in threadpool_info() if lib.get("user_api") == "blas"]
    machine_info["blas_environment"] = {k: os.environ[k] for k in BLAS_ENVIRONMENT
                                        if k in os.environ}
    machine_info["fastner_half_path"] = _kernels.half_path()
    machine_info["fastner_build_flags"] = _kernels.build_flags()
    machine_info["fastner_output_layer"] = _kernels.scorer_output_layer()
    machine_info["fastner_scorer_tanh"] = _kernels.scorer_tanh()

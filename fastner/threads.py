"""One BLAS thread per process by default.

Tagging multiplies small matrices, where BLAS threads cost more than they give
(2.3-3.1x slower tagging with OpenBLAS's default of one thread per core); the
parallelism comes from processes instead (gunicorn or Dask workers). Every entry
point — ``fastner.load()``/``Tagger.load``, the CLI, the service, Dask workers —
calls ``pin_blas_threads()`` before its first product; FASTNER_BLAS_THREADS
overrides (0: leave BLAS alone).
"""
from threadpoolctl import threadpool_limits

from fastner.settings import setting

_pinned = None        # the limiter applied in this process, once


def pin_blas_threads():
    """Limit the BLAS libraries NumPy/SciPy loaded to FASTNER_BLAS_THREADS threads."""
    global _pinned
    threads = setting("FASTNER_BLAS_THREADS")
    if _pinned is None and threads > 0:
        _pinned = threadpool_limits(limits=threads, user_api="blas")
    return threads

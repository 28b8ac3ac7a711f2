"""scipy's BLAS for the kernels without importing the whole of scipy.linalg.

The kernels take sgemm from ``scipy.linalg.cython_blas`` (fastner/_blas.pxd).
Imported the usual way, that module first runs ``scipy.linalg``'s ``__init__``, which
imports all of scipy.linalg: 150 ms of every fastner process's start on this
project's machine, against 30 ms for cython_blas itself, which needs nothing else of
it. So ``preload()`` loads that one extension from its file under its full name and
registers it in ``sys.modules``, where the kernels' import finds it: the same file,
the same BLAS library, the same results. ``import scipy.linalg`` later works as
usual and finds the same module; only the attribute ``scipy.linalg.cython_blas`` is
then unset (``from scipy.linalg import cython_blas`` still works). Where the file is
not where scipy keeps it, or loading it fails, nothing is registered and the usual
import runs.
"""
import importlib.machinery
import importlib.util
import os
import sys

NAME = "scipy.linalg.cython_blas"


def preload():
    """Register scipy.linalg.cython_blas in sys.modules, loaded from its file (see the
    module's docstring); True if it is there afterwards."""
    if NAME in sys.modules:
        return True
    scipy = importlib.util.find_spec("scipy")
    if scipy is None or scipy.origin is None:
        return False
    folder = os.path.join(os.path.dirname(scipy.origin), "linalg")
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(folder, "cython_blas" + suffix)
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location(NAME, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[NAME] = module
            try:
                spec.loader.exec_module(module)
            except Exception:
                del sys.modules[NAME]      # the usual import then runs, and reports
                return False
            return True
    return False

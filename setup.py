"""Build the Cython kernels. Metadata lives in pyproject.toml.

BLAS comes from scipy.linalg.cython_blas at import time, so there are no
link flags here.
"""
import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "fastner._kernels",
        ["fastner/_kernels.pyx"],
        include_dirs=[numpy.get_include()],
        # -O3 without -ffast-math: the kernels rely on IEEE -inf (forbidden transitions).
        extra_compile_args=["-O3"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)

"""Build the Cython kernels and the tokenizer's scan. Metadata lives in pyproject.toml.

BLAS comes from scipy.linalg.cython_blas at import time, so there are no
link flags here.
"""
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

# FASTNER_MARCH=native builds for this machine's instruction set (AVX2/AVX-512 where
# present); the default stays portable across x86-64 machines.
MARCH = [f"-march={os.environ['FASTNER_MARCH']}"] if os.environ.get("FASTNER_MARCH") else []
# -O3 without -ffast-math: the kernels rely on IEEE -inf (forbidden transitions)
# and need no reassociation. Not trapping on FP exceptions (we never read them)
# lets gcc if-convert clamps and vectorize the activation loops.
KERNEL_FLAGS = ["-O3", "-fno-trapping-math", "-fno-math-errno"] + MARCH

extensions = [
    Extension(
        "fastner._kernels",
        ["fastner/_kernels.pyx"],
        include_dirs=[numpy.get_include(), "fastner"],
        depends=["fastner/_half.h", "fastner/_adam.h", "fastner/_exp.h", "fastner/_crf.h",
                 "fastner/_tanh.h", "fastner/_output.h", "fastner/_blas.pxd",
                 "fastner/_rows.pxd"],
        extra_compile_args=KERNEL_FLAGS,
        # the flags, for benchmark reports (fastner._kernels.build_flags())
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                       ("FASTNER_BUILD_FLAGS", '"' + " ".join(KERNEL_FLAGS) + '"')],
    ),
    # the tokenizer's scan over white space (no NumPy, no BLAS)
    Extension("fastner._text", ["fastner/_text.pyx"], extra_compile_args=["-O2"]),
]

setup(
    ext_modules=cythonize(
        extensions,
        # the one place for the kernels' directives (they apply to the .pxd helpers too)
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)

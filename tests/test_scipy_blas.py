"""fastner.scipy_blas: the kernels get scipy's BLAS without importing all of
scipy.linalg, and fall back to the usual import where that cannot be done."""
import subprocess
import sys

import numpy as np

from fastner import _kernels


def run(code):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


def test_importing_fastner_leaves_scipy_linalg_unimported():
    before, after = run(
        "import sys, numpy as np, fastner; from fastner import _kernels as K\n"
        "print('scipy.linalg' in sys.modules)\n"
        "out = K.affine_act_forward(np.eye(2, dtype=np.float32), 2 * np.eye(2, dtype="
        "np.float32), np.zeros(2, np.float32), 'identity')\n"
        "import scipy.linalg\n"
        "from scipy.linalg import blas, cython_blas\n"
        "assert cython_blas is sys.modules['scipy.linalg.cython_blas']\n"
        "print(out.tolist() == [[2.0, 0.0], [0.0, 2.0]] and "
        "blas.sgemm(1.0, out, out).tolist() == [[4.0, 0.0], [0.0, 4.0]])")
    assert (before, after) == ("False", "True")


def test_the_usual_import_where_the_file_is_not_found():
    # the file not found: preload registers nothing, and the kernels' own import of
    # scipy.linalg.cython_blas (through scipy.linalg) runs as before
    imported, works = run(
        "import os, sys\n"
        "isfile = os.path.isfile\n"
        "os.path.isfile = lambda p: 'cython_blas' not in p and isfile(p)\n"
        "import numpy as np, fastner\n"
        "os.path.isfile = isfile\n"
        "print('scipy.linalg' in sys.modules)\n"
        "out = fastner._kernels.affine_act_forward(np.eye(2, dtype=np.float32), 2 * np.eye("
        "2, dtype=np.float32), np.zeros(2, np.float32), 'identity')\n"
        "print(out.tolist() == [[2.0, 0.0], [0.0, 2.0]])")
    assert (imported, works) == ("True", "True")


def test_the_kernels_use_scipys_blas():
    # the same library either way: a product through the kernels equals scipy's sgemm
    from scipy.linalg import blas
    rng = np.random.default_rng(0)
    X, W = rng.normal(size=(70, 30)).astype(np.float32), rng.normal(size=(20, 30)).astype(
        np.float32)
    np.testing.assert_array_equal(
        _kernels.affine_act_forward(X, W, np.zeros(20, np.float32), "identity"),
        blas.sgemm(1.0, W.T, X.T, trans_a=True).T)

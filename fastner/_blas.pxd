# Row-major wrappers over scipy.linalg.cython_blas (no link-time BLAS: scipy
# hands us its own BLAS's function pointers at import time).
#
# BLAS is column-major; a row-major matrix is its column-major transpose, so a
# row-major product C = op(A)·op(B) is computed as the column-major product
# Cᵀ = op(B)ᵀ·op(A)ᵀ, i.e. the same sgemm call with A and B swapped.
from scipy.linalg.cython_blas cimport sgemm


cdef inline void gemm_rm(bint trans_a, bint trans_b, int m, int n, int k,
                         float alpha, const float* a, int lda,
                         const float* b, int ldb,
                         float beta, float* c, int ldc) noexcept nogil:
    """C (m×n) = alpha · op(A) · op(B) + beta · C, all row-major.

    op(A) is m×k and op(B) is k×n; lda/ldb/ldc are row strides in elements.
    """
    cdef char ta = b'T' if trans_b else b'N'
    cdef char tb = b'T' if trans_a else b'N'
    if m == 0 or n == 0:
        return
    sgemm(&ta, &tb, &n, &m, &k, &alpha, <float*>b, &ldb, <float*>a, &lda,
          &beta, c, &ldc)

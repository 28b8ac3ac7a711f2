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


cdef inline void gemm_rm_column_blocks(bint trans_a, int m, int n, int k,
                                       const float* a, int lda, const float* b, int ldb,
                                       float beta, float* c, int ldc,
                                       int width) noexcept nogil:
    """gemm_rm(trans_a, False, m, n, k, 1.0, ...) as products of ``width`` columns of B
    and C at a time (0, or width >= n: one product). Each entry is the same sum of the
    same products, so where each product adds its k terms in order the blocks are bit
    for bit the one product (derivations §B6).

    Where beta is 0 a last block of fewer than ``width`` columns is widened to a
    multiple of 16 by starting it further left: the columns it shares with the block
    before are written twice, with the same values. (OpenBLAS's SkylakeX small kernel
    for trans_a False adds a remainder of 1 to 8 of its 16-wide rows in another order.)
    Where beta is not 0 nothing may be added twice: use it then only with trans_a True,
    whose small kernel keeps the order for any width.
    """
    cdef int at = 0, w
    if width <= 0 or width >= n:
        gemm_rm(trans_a, False, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc)
        return
    while at < n:
        w = n - at if n - at < width else width
        if w < width and beta == 0.0:
            w = (w + 15) // 16 * 16
            at = n - w
        gemm_rm(trans_a, False, m, w, k, 1.0, a, lda, b + at, ldb, beta, c + at, ldc)
        at += w

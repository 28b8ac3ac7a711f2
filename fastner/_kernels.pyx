"""Cython kernels of the window classifier (math and derivations: docs/derivations.md).

Layout: argument checking; then the kernels in the order of the network (1 lookup,
2 affine + activation, 3 softmax, 4 Viterbi and CRF, 5 the fused SGD step, 6 fused
inference, 7 Adam), 8 the convolution of character features, and 9 the fused
Adam + CRF training step. Row helpers shared
between kernels are inline functions in fastner/_rows.pxd, BLAS in fastner/_blas.pxd;
compiler directives are in setup.py.

Dimension letters, used in argument names (``ids_bk``, ``W_hd``, ...):
    B  windows in a batch (= tokens, one window per token)
    K  window width (e.g. 5: two words left, the centre word, two right)
    e  width of one feature table (word vectors, capitalisation, ...)
    E  per-position input width (the sum of the feature widths)
    D  = K·E, the width of a concatenated window
    H  hidden units;  T tags;  V rows of a table;  N sentences in a batch
    P  character-filter positions, J filters (character features: N is then words)

Each kernel is a pair: a ``def`` wrapper that checks dtype, ndim, layout,
shapes and id ranges and allocates outputs (raising ValueError/IndexError
with "kernel: argument must be ...; got ..."), and a ``nogil`` loop on raw
memory that never raises. ``fastner.reference`` holds the NumPy twin of each
kernel under the same name and signature.

Backward kernels *add* into parameter-gradient buffers (dW, db, dtable, ...);
the trainer zeroes them once per step. Gradients with respect to activations
(dX, dS) are written, not added.
"""
import numpy as np

from libc.math cimport exp, log, sqrt, INFINITY, NAN
from libc.stdint cimport uint16_t
from libc.stdlib cimport calloc, free, malloc
from libc.limits cimport INT_MAX
from libc.string cimport memcpy, memset

from fastner._blas cimport gemm_rm, gemm_rm_column_blocks
from fastner._rows cimport (act_backward_row, activate_row, add_column_sums,
                            bias_activate_row, fast_tanh, int_array, logsumexp_row,
                            pointer_array)

# Activation codes shared with fastner.reference.ACTIVATIONS.
ACTIVATIONS = {"identity": 0, "tanh": 1, "hardtanh": 2, "relu": 3}


cdef extern from "_tanh.h":
    const int fastner_tanh_has_rcp
    void fastner_tanh_row_rcp(float* row, int H) noexcept nogil
    void fastner_sum5_and_tanh(float* z, const float* base, const uint16_t** rows,
                               const float* last, float* prev, int H) noexcept nogil


cdef extern from "_output.h":
    const int fastner_has_output_layer
    void fastner_output_layer(const float* Z, int n, int H, const float* UT, const float* U,
                              int T, float* S) noexcept nogil


# --------------------------------------------------------------------------
# windows onto inline helpers, for their tests

def tanh(x):
    """The kernels' tanh on a float32 array (for tests): a new float32 array."""
    src = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(src)
    cdef const float[::1] a = src.reshape(-1)
    cdef float[::1] o = out.reshape(-1)
    cdef Py_ssize_t i
    with nogil:
        for i in range(a.shape[0]):
            o[i] = fast_tanh(a[i])
    return out


def tanh_for_the_cache(x):
    """The cached scorer's tanh (fastner/_tanh.h: a 7/6 rational through the reciprocal
    estimate where AVX-512 and F16C are built in, else fast_tanh itself) on a float32
    array, for tests: a new float32 array."""
    src = np.ascontiguousarray(x, dtype=np.float32)
    out = src.copy()
    cdef float[::1] o = out.reshape(-1)
    if o.shape[0] == 0:
        return out
    with nogil:
        _tanh_row_for_the_cache(&o[0], o.shape[0])
    return out


cdef inline void _tanh_row_for_the_cache(float* row, int H) noexcept nogil:
    if fastner_tanh_has_rcp:
        fastner_tanh_row_rcp(row, H)
    else:
        activate_row(row, H, 1)


# --------------------------------------------------------------------------
# argument checking (Python level, before any nogil work)

def _describe(x):
    if not isinstance(x, np.ndarray):
        return type(x).__name__
    layout = "" if x.flags.c_contiguous else " non-contiguous"
    return f"{x.dtype}{layout} {tuple(x.shape)}"


def _check_array(kernel, name, x, dtype, shape, writable=False):
    """Require a C-contiguous array of ``dtype`` whose shape matches ``shape``.

    ``shape`` is a tuple of (letter, size-or-None); None means "any size".
    Returns the array unchanged.
    """
    letters = ", ".join(letter for letter, _ in shape)
    if (not isinstance(x, np.ndarray) or x.dtype != dtype or x.ndim != len(shape)
            or not x.flags.c_contiguous):
        raise ValueError(f"{kernel}: {name} must be a C-contiguous {np.dtype(dtype).name} "
                         f"array of shape ({letters}); got {_describe(x)}")
    for axis, (letter, size) in enumerate(shape):
        if size is not None and x.shape[axis] != size:
            want = ", ".join(str(s) if s is not None else l for l, s in shape)
            raise ValueError(f"{kernel}: {name} must have shape ({letters}) = ({want}); "
                             f"got {tuple(x.shape)}")
    if writable and not x.flags.writeable:
        raise ValueError(f"{kernel}: {name} is an output and must be writable")
    return x


def _activation_code(kernel, activation):
    try:
        return ACTIVATIONS[activation]
    except (KeyError, TypeError):
        raise ValueError(f"{kernel}: activation must be one of {sorted(ACTIVATIONS)}; "
                         f"got {activation!r}") from None


cdef Py_ssize_t _first_out_of_range(const int* ids, Py_ssize_t n, const int* limits,
                                    Py_ssize_t columns) noexcept nogil:
    """Index of the first of n ids outside [0, limit), or -1. The ids are rows of
    ``columns`` values and column j's limit is limits[j] (one table per feature)."""
    cdef Py_ssize_t r, j, at = 0
    cdef int v
    for r in range(n // columns):
        for j in range(columns):
            v = ids[at]
            if v < 0 or v >= limits[j]:
                return at
            at += 1
    return -1


cdef bint _any_out_of_range(const int* ids, Py_ssize_t n, const int* limits,
                            Py_ssize_t columns) noexcept nogil:
    """Whether any of n ids (rows of ``columns``) lies outside [0, limit): one pass
    without an early exit, over 16 rows at a time against the limits repeated 16
    times, which the compiler vectorizes (a negative id is a large unsigned one).
    _first_out_of_range's scan, which stops at each id, took 0.4 ms for CoNLL-2003
    valid's 514k ids."""
    cdef unsigned int[16 * 16] repeated
    cdef unsigned int bad = 0
    cdef const unsigned int* u = <const unsigned int*>ids
    cdef Py_ssize_t at = 0, j, span = 16 * columns
    if columns > 16:
        return _first_out_of_range(ids, n, limits, columns) >= 0
    for j in range(span):
        repeated[j] = <unsigned int>limits[j % columns]
    while at + span <= n:
        for j in range(span):
            bad |= u[at + j] >= repeated[j]
        at += span
    for j in range(n - at):
        bad |= u[at + j] >= repeated[j]
    return bad != 0


cdef _check_ids(kernel, name, ids, const int* data, const int* limits, Py_ssize_t columns,
                what):
    """The one id-range check of every kernel: IndexError naming the first entry of the
    C-contiguous int32 array ``ids`` (``data``: its memory) outside [0, limit), with
    ``what`` (formatted with column, limit, last) saying which range that is."""
    cdef Py_ssize_t bad, n = ids.size
    if n == 0:
        return
    with nogil:
        bad = (_first_out_of_range(data, n, limits, columns)
               if _any_out_of_range(data, n, limits, columns) else -1)
    if bad >= 0:
        index = ", ".join(str(i) for i in np.unravel_index(bad, ids.shape))
        column = bad % columns
        raise IndexError(f"{kernel}: {name}[{index}] = {ids.reshape(-1)[bad]} is out of range "
                         f"for " + what.format(column=column, limit=limits[column],
                                               last=limits[column] - 1))


_TABLE_ROWS = "a table of {limit} rows (valid ids are 0..{last})"
_FEATURE_ROWS = "table {column} of {limit} rows"
_TAGS = "{limit} tags (valid tags are 0..{last})"


def _check_positive(kernel, **sizes):
    for letter, size in sizes.items():
        if size < 1:
            raise ValueError(f"{kernel}: {letter} must be at least 1; got {size}")


def _check_window_slice(kernel, D, K, e, offset):
    if K == 0 or D % K != 0:
        raise ValueError(f"{kernel}: window width D = {D} is not a multiple of K = {K}")
    E = D // K
    if offset < 0 or offset + e > E:
        raise ValueError(f"{kernel}: offset {offset} + table width {e} does not fit in "
                         f"the per-position width E = {E}")
    return E


# --------------------------------------------------------------------------
# 1. windowed embedding lookup (derivations §F1, §B5)

cdef void _lookup_forward(const int[:, ::1] ids_bk, const float[:, ::1] table_ve,
                          float[:, ::1] out_bd, int E, int offset) noexcept nogil:
    # out[b, k·E + offset : k·E + offset + e] = table[ids[b, k]]   (derivations §F1)
    cdef Py_ssize_t b, k
    cdef int e = table_ve.shape[1]
    for b in range(ids_bk.shape[0]):
        for k in range(ids_bk.shape[1]):
            memcpy(&out_bd[b, k * E + offset], &table_ve[ids_bk[b, k], 0], e * sizeof(float))


def lookup_forward(ids_bk, table_ve, out_bd=None, offset=0):
    """Copy table rows into the window matrix: X[b, k·E+offset : +e] = table[ids[b, k]].

    ids_bk: int32 (B, K); table_ve: float32 (V, e); out_bd: float32 (B, D) with
    D = K·E, allocated as (B, K·e) when None. Several feature tables share one
    X by writing at different ``offset`` within each position's E columns.
    Returns out_bd.
    """
    kernel = "lookup_forward"
    _check_array(kernel, "ids_bk", ids_bk, np.int32, (("B", None), ("K", None)))
    _check_array(kernel, "table_ve", table_ve, np.float32, (("V", None), ("e", None)))
    B, K = ids_bk.shape
    V, e = table_ve.shape
    if out_bd is None:
        out_bd = np.zeros((B, K * e), dtype=np.float32)
    _check_array(kernel, "out_bd", out_bd, np.float32, (("B", B), ("D", None)), writable=True)
    E = _check_window_slice(kernel, out_bd.shape[1], K, e, offset)
    cdef const int[:, ::1] ids = ids_bk
    cdef int V_ = V
    _check_ids(kernel, "ids_bk", ids_bk, &ids[0, 0], &V_, 1, _TABLE_ROWS)
    cdef const float[:, ::1] table = table_ve
    cdef float[:, ::1] out = out_bd
    cdef int E_ = E, offset_ = offset
    if B > 0 and e > 0:
        with nogil:
            _lookup_forward(ids, table, out, E_, offset_)
    return out_bd


cdef void _lookup_backward(const int[:, ::1] ids_bk, const float[:, ::1] dX_bd,
                           float[:, ::1] dtable_ve, int E, int offset) noexcept nogil:
    # dtable[v] += Σ_{(b,k): ids[b,k] = v} dX[b, k·E + offset : +e]   (derivations §B5)
    cdef Py_ssize_t b, k, j
    cdef int e = dtable_ve.shape[1]
    cdef float* row
    cdef const float* src
    for b in range(ids_bk.shape[0]):
        for k in range(ids_bk.shape[1]):
            row = &dtable_ve[ids_bk[b, k], 0]
            src = &dX_bd[b, k * E + offset]
            for j in range(e):
                row[j] += src[j]


def lookup_backward(ids_bk, dX_bd, dtable_ve, offset=0):
    """Scatter-add the window gradient into the touched rows of dtable (sparse).

    ids_bk: int32 (B, K); dX_bd: float32 (B, D); dtable_ve: float32 (V, e),
    added into. A row named twice in the batch receives both contributions.
    Returns dtable_ve.
    """
    kernel = "lookup_backward"
    _check_array(kernel, "ids_bk", ids_bk, np.int32, (("B", None), ("K", None)))
    B, K = ids_bk.shape
    _check_array(kernel, "dX_bd", dX_bd, np.float32, (("B", B), ("D", None)))
    _check_array(kernel, "dtable_ve", dtable_ve, np.float32, (("V", None), ("e", None)),
                 writable=True)
    V, e = dtable_ve.shape
    E = _check_window_slice(kernel, dX_bd.shape[1], K, e, offset)
    cdef const int[:, ::1] ids = ids_bk
    cdef int V_ = V
    _check_ids(kernel, "ids_bk", ids_bk, &ids[0, 0], &V_, 1, _TABLE_ROWS)
    cdef const float[:, ::1] dX = dX_bd
    cdef float[:, ::1] dtable = dtable_ve
    cdef int E_ = E, offset_ = offset
    if B > 0 and e > 0:
        with nogil:
            _lookup_backward(ids, dX, dtable, E_, offset_)
    return dtable_ve


# --------------------------------------------------------------------------
# 2. fused affine + activation (derivations §F2, §B3, §B4)

cdef enum:
    SMALL_BATCH_ROWS = 64   # batches up to this size take the first product as Zᵀ = W Xᵀ

# Whether OpenBLAS runs its small-product kernel here (set by blas_small_products())
cdef bint _small_products = False     # set once per process by blas_small_products()
cdef bint _small_products_known = False


cdef void _affine_act_rows(const float* X, int B, int D, const float* W, int H,
                           const float* b, int act, float* out, float* scratch) noexcept nogil:
    # out = f(X Wᵀ + b), (B, H) (NumPy: f(X @ W.T + b)). For a small batch OpenBLAS
    # spends as long packing W transposed as multiplying: Zᵀ = W Xᵀ takes two thirds of
    # the time at B = 32. Only OpenBLAS's small-product kernel (_small_products, below)
    # forms each entry of both from the same dot product, bit for bit
    # (test_small_batch_product_is_bit_identical); its other kernels (Haswell's, Zen's)
    # sum in another order, and the trained model would change with the batching.
    # ``scratch``: H·B floats for Zᵀ, or NULL.
    cdef Py_ssize_t i, j
    if B <= SMALL_BATCH_ROWS and scratch != NULL and _small_products:
        gemm_rm(False, True, H, B, D, 1.0, W, D, X, D, 0.0, scratch, B)
        for i in range(B):
            for j in range(H):
                out[i * H + j] = scratch[j * B + i]
    else:
        gemm_rm(False, True, B, H, D, 1.0, X, D, W, D, 0.0, out, H)
    # H = f(Z + b), row by row while the row is in cache
    for i in range(B):
        bias_activate_row(&out[i * H], b, H, act)


cdef void _affine_act_forward(const float[:, ::1] X_bd, const float[:, ::1] W_hd,
                              const float[::1] b_h, int act, float[:, ::1] out_bh) noexcept nogil:
    cdef int B = X_bd.shape[0], D = X_bd.shape[1], H = W_hd.shape[0]
    cdef float* scratch = NULL
    if B <= SMALL_BATCH_ROWS and _small_products:
        scratch = <float*>malloc(B * H * sizeof(float))     # NULL: the plain product
    _affine_act_rows(&X_bd[0, 0], B, D, &W_hd[0, 0], H, &b_h[0], act, &out_bh[0, 0], scratch)
    free(scratch)


def affine_act_forward(X_bd, W_hd, b_h, activation="tanh", out_bh=None):
    """H = f(X Wᵀ + b): one sgemm, then bias and activation in one pass.

    X_bd: float32 (B, D); W_hd: float32 (H, D); b_h: float32 (H,);
    activation: "identity", "tanh", "hardtanh" or "relu"; out_bh: float32 (B, H),
    allocated when None. Backward needs only the output (f′ is read from it).
    """
    kernel = "affine_act_forward"
    act = _activation_code(kernel, activation)
    _check_array(kernel, "X_bd", X_bd, np.float32, (("B", None), ("D", None)))
    B, D = X_bd.shape
    _check_array(kernel, "W_hd", W_hd, np.float32, (("H", None), ("D", D)))
    H = W_hd.shape[0]
    _check_array(kernel, "b_h", b_h, np.float32, (("H", H),))
    if out_bh is None:
        out_bh = np.empty((B, H), dtype=np.float32)
    _check_array(kernel, "out_bh", out_bh, np.float32, (("B", B), ("H", H)), writable=True)
    _check_positive(kernel, D=D, H=H)
    blas_small_products()
    if B == 0:
        return out_bh
    cdef const float[:, ::1] X = X_bd
    cdef const float[:, ::1] W = W_hd
    cdef const float[::1] b = b_h
    cdef float[:, ::1] out = out_bh
    cdef int act_ = act
    with nogil:
        _affine_act_forward(X, W, b, act_, out)
    return out_bh


cdef void _act_backward(const float[:, ::1] dH_bh, const float[:, ::1] H_bh, int act,
                        float[:, ::1] dZ_bh) noexcept nogil:
    # δ_Z = δ_H ⊙ f′(Z): the Jacobian of an elementwise f is diagonal, and f′ is
    # read from the stored output: tanh′ = 1 − H², hardtanh′ = [−1 < H < 1],
    # relu′ = [H > 0]   (derivations §B3)
    cdef Py_ssize_t i
    cdef int H = dH_bh.shape[1]
    for i in range(dH_bh.shape[0]):
        act_backward_row(&dH_bh[i, 0], &H_bh[i, 0], &dZ_bh[i, 0], H, act)


# The backward's two big products in blocks of columns (derivations §B6). OpenBLAS's
# SkylakeX kernel multiplies a product of at most SMALL_PRODUCT multiply-adds (m·n·k)
# without first packing its operands into panels (at a batch of 40 windows δ_X = δ_Z W
# took 87 µs as one product, 62 µs in blocks). Each block's entries are the same sums
# in the same order, so the blocks are bit for bit the one product: on that kernel only.
cdef enum:
    SMALL_PRODUCT = 1000000



def blas_small_products():
    """Whether the backward's products run in column blocks here: True where every BLAS
    library this process has loaded is OpenBLAS on its SkylakeX kernel (threadpoolctl
    reports them; OPENBLAS_CORETYPE can choose another). Decided on the first call."""
    global _small_products, _small_products_known
    if not _small_products_known:
        from threadpoolctl import threadpool_info
        blas = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
        _small_products = bool(blas) and all(
            lib.get("internal_api") == "openblas" and lib.get("architecture") == "SkylakeX"
            for lib in blas)
        _small_products_known = True
    return bool(_small_products)


cdef int _column_block(int rows, int k) noexcept nogil:
    # columns per block of a product with ``rows`` rows and inner size k, a multiple of
    # 16 with each block within SMALL_PRODUCT; 0 (one product) without the small kernels
    # or where even 16 columns are too many
    if not _small_products or rows <= 0 or k <= 0:
        return 0
    cdef long width = SMALL_PRODUCT // (<long>rows * k) // 16 * 16
    return <int>width if width >= 16 else 0


cdef void _affine_backward(const float* dZ, const float* X, const float* W, float* dW,
                           float* db, float* dX, int B, int H, int D) noexcept nogil:
    # dZ (B, H), X (B, D), W and dW (H, D), db (H,), dX (B, D) or NULL (not wanted)
    # ∂J/∂W += δ_Zᵀ X     (NumPy: dW += dZ.T @ X; outer products summed over the batch)
    gemm_rm_column_blocks(True, H, D, B, dZ, H, X, D, 1.0, dW, D, _column_block(H, B))
    if dX != NULL:
        # δ_X = δ_Z W       (NumPy: dX = dZ @ W)
        gemm_rm_column_blocks(False, B, D, H, dZ, H, W, D, 0.0, dX, D, _column_block(B, H))
    # ∂J/∂b += Σ_b δ_Z[b]
    add_column_sums(db, dZ, B, H, 1.0)


def affine_act_backward(dH_bh, H_bh, X_bd, W_hd, activation, dW_hd, db_h, dX_bd=None):
    """Backward of H = f(X Wᵀ + b) from the output gradient dH.

    dZ = dH ⊙ f′ (from the stored output H_bh); dW_hd += dZᵀ X and db_h += Σ_b dZ
    (added into); dX_bd = dZ W (written; skipped when dX_bd is None).
    Shapes: dH_bh, H_bh (B, H); X_bd (B, D); W_hd, dW_hd (H, D); db_h (H,); dX_bd (B, D).
    Returns dX_bd.
    """
    kernel = "affine_act_backward"
    act = _activation_code(kernel, activation)
    _check_array(kernel, "dH_bh", dH_bh, np.float32, (("B", None), ("H", None)))
    B, H = dH_bh.shape
    _check_array(kernel, "H_bh", H_bh, np.float32, (("B", B), ("H", H)))
    _check_array(kernel, "X_bd", X_bd, np.float32, (("B", B), ("D", None)))
    D = X_bd.shape[1]
    _check_array(kernel, "W_hd", W_hd, np.float32, (("H", H), ("D", D)))
    _check_array(kernel, "dW_hd", dW_hd, np.float32, (("H", H), ("D", D)), writable=True)
    _check_array(kernel, "db_h", db_h, np.float32, (("H", H),), writable=True)
    want_dX = dX_bd is not None
    if want_dX:
        _check_array(kernel, "dX_bd", dX_bd, np.float32, (("B", B), ("D", D)), writable=True)
    _check_positive(kernel, D=D, H=H)
    blas_small_products()
    if B == 0:
        return dX_bd
    dZ_bh = dH_bh if act == 0 else np.empty((B, H), dtype=np.float32)
    cdef const float[:, ::1] dH = dH_bh
    cdef const float[:, ::1] hidden = H_bh
    cdef float[:, ::1] dZ = dZ_bh
    cdef const float[:, ::1] X = X_bd
    cdef const float[:, ::1] W = W_hd
    cdef float[:, ::1] dW = dW_hd
    cdef float[::1] db = db_h
    cdef float[:, ::1] dX
    cdef float* dX_ptr = NULL
    if want_dX:
        dX = dX_bd
        dX_ptr = &dX[0, 0]
    cdef int act_ = act, B_ = B, H_ = H, D_ = D
    with nogil:
        if act_ != 0:
            _act_backward(dH, hidden, act_, dZ)
        _affine_backward(&dZ[0, 0], &X[0, 0], &W[0, 0], &dW[0, 0], &db[0], dX_ptr, B_, H_, D_)
    return dX_bd


# --------------------------------------------------------------------------
# 3. softmax cross-entropy (derivations §F4, §B1)

cdef double _softmax_row(const float* s, float* p, int T) noexcept nogil:
    """p = softmax(s) (stable: shift by the max); returns log Σ exp(s)."""
    cdef int j
    cdef double m = s[0], total = 0.0, ej
    for j in range(1, T):
        if s[j] > m:
            m = s[j]
    for j in range(T):
        ej = exp(s[j] - m)
        p[j] = <float>ej
        total += ej
    for j in range(T):
        p[j] = <float>(p[j] / total)
    return m + log(total)


cdef double _softmax_xent(const float[:, ::1] S_bt, const int[::1] y_b,
                          float[:, ::1] dS_bt) noexcept nogil:
    # J = −(1/B) Σ_b log P[b, y_b];  δ_S = (P − Y)/B   (derivations §F4, §B1)
    cdef Py_ssize_t i, j
    cdef int B = S_bt.shape[0], T = S_bt.shape[1]
    cdef double loss = 0.0, log_z
    cdef float inv_b = 1.0 / B
    for i in range(B):
        log_z = _softmax_row(&S_bt[i, 0], &dS_bt[i, 0], T)
        loss += log_z - S_bt[i, y_b[i]]
        for j in range(T):
            dS_bt[i, j] *= inv_b
        dS_bt[i, y_b[i]] -= inv_b
    return loss / B


def softmax_xent_forward_backward(S_bt, y_b, dS_bt=None):
    """Mean cross-entropy of softmax(S) against gold tags, and its gradient.

    S_bt: float32 (B, T) scores; y_b: int32 (B,) gold tag ids in [0, T);
    dS_bt: float32 (B, T), written with (P − Y)/B (allocated when None).
    Returns (loss, dS_bt); loss is a Python float, 0.0 for an empty batch.
    """
    kernel = "softmax_xent_forward_backward"
    _check_array(kernel, "S_bt", S_bt, np.float32, (("B", None), ("T", None)))
    B, T = S_bt.shape
    _check_array(kernel, "y_b", y_b, np.int32, (("B", B),))
    if dS_bt is None:
        dS_bt = np.empty((B, T), dtype=np.float32)
    _check_array(kernel, "dS_bt", dS_bt, np.float32, (("B", B), ("T", T)), writable=True)
    if B == 0:
        return 0.0, dS_bt
    if T == 0:
        raise ValueError(f"{kernel}: S_bt must have at least one tag column; got {S_bt.shape}")
    cdef const float[:, ::1] S = S_bt
    cdef const int[::1] y = y_b
    cdef float[:, ::1] dS = dS_bt
    cdef int T_ = T
    _check_ids(kernel, "y_b", y_b, &y[0], &T_, 1, _TAGS)
    cdef double loss
    with nogil:
        loss = _softmax_xent(S, y, dS)
    return loss, dS_bt


def softmax_forward(S_bt, out_bt=None):
    """P = softmax(S) row by row. S_bt, out_bt: float32 (B, T). Returns out_bt."""
    kernel = "softmax_forward"
    _check_array(kernel, "S_bt", S_bt, np.float32, (("B", None), ("T", None)))
    B, T = S_bt.shape
    if out_bt is None:
        out_bt = np.empty((B, T), dtype=np.float32)
    _check_array(kernel, "out_bt", out_bt, np.float32, (("B", B), ("T", T)), writable=True)
    cdef const float[:, ::1] S = S_bt
    cdef float[:, ::1] P = out_bt
    cdef Py_ssize_t i
    cdef int B_ = B, T_ = T
    if T_ > 0:
        with nogil:
            for i in range(B_):
                _softmax_row(&S[i, 0], &P[i, 0], T_)
    return out_bt


# --------------------------------------------------------------------------
# 4. Viterbi decoding and the linear-chain CRF (derivations §C1–§C6)

cdef tuple _length_stats(const int[::1] lengths):
    """(shortest, total, longest) of an int32 lengths array (shortest 0 when empty), in
    one C pass: three NumPy reductions cost more than a short sentence's Viterbi."""
    cdef long long total = 0
    cdef int shortest = 0, longest = 0, n_i
    cdef Py_ssize_t i
    for i in range(lengths.shape[0]):
        n_i = lengths[i]
        total += n_i
        shortest = n_i if i == 0 or n_i < shortest else shortest
        longest = n_i if n_i > longest else longest
    return shortest, total, longest


def _check_sentences(kernel, S_bt, lengths_n, trans_tt, start_t, end_t):
    """(B, T, the longest sentence's length) after checking the arguments every
    sentence kernel shares."""
    _check_array(kernel, "S_bt", S_bt, np.float32, (("B", None), ("T", None)))
    B, T = S_bt.shape
    _check_array(kernel, "lengths_n", lengths_n, np.int32, (("N", None),))
    _check_array(kernel, "trans_tt", trans_tt, np.float32, (("T", T), ("T", T)))
    _check_array(kernel, "start_t", start_t, np.float32, (("T", T),))
    _check_array(kernel, "end_t", end_t, np.float32, (("T", T),))
    shortest, total, longest = _length_stats(lengths_n)
    if shortest < 0:
        raise ValueError(f"{kernel}: lengths_n must be non-negative; got {shortest}")
    if total != B:
        raise ValueError(f"{kernel}: lengths_n must sum to the B = {B} rows of S_bt; "
                         f"got {total}")
    if B > 0 and T == 0:
        raise ValueError(f"{kernel}: S_bt must have at least one tag column")
    return B, T, longest


cdef extern from "_crf.h":
    int fastner_crf_stride(int T) noexcept nogil
    void fastner_viterbi_step(const double* prev, const double* A, int stride, const float* s,
                              int T, double* cur, int* back) noexcept nogil
    double fastner_crf_alpha_step(const double* prev, const double* expA, int stride,
                                  const double* exp_start, const double* e, int T,
                                  double* cur) noexcept nogil
    void fastner_crf_beta_step(const double* next, const double* e_next, const double* expAT,
                               int stride, const double* exp_end, int T,
                               double* cur) noexcept nogil


cdef void _viterbi(const float* s, int n, int T, const double* A, const float[::1] start,
                   const float[::1] end, double* score, int* back, int* path) noexcept nogil:
    # score[t, j] = s[t, j] + max_i (score[t−1, i] + A[i, j]); ties go to the lowest i,
    # as np.argmax does. -inf entries of A or start/end forbid a move. A: in double,
    # rows padded (_in_double), so the step (fastner/_crf.h, across j) converts
    # nothing; each A[i, j] is a float, exactly a double: the same sums.
    cdef int t, j, best_i, stride = fastner_crf_stride(T)
    cdef double best, cand
    cdef double* prev
    for j in range(T):
        score[j] = start[j] + s[j]
    for t in range(1, n):
        fastner_viterbi_step(&score[(t - 1) * T], A, stride, &s[t * T], T, &score[t * T],
                             &back[t * T])
    prev = score + (n - 1) * T
    best = prev[0] + end[0]
    best_i = 0
    for j in range(1, T):
        cand = prev[j] + end[j]
        if cand > best:
            best = cand
            best_i = j
    path[n - 1] = best_i
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t * T + path[t]]


cdef void _in_double(const float[:, ::1] A, double* out) noexcept nogil:
    # out[i, j] = A[i, j] for _viterbi: T × fastner_crf_stride(T), the padding 0
    cdef int T = A.shape[0], i, j, stride = fastner_crf_stride(T)
    for i in range(T):
        for j in range(stride):
            out[i * stride + j] = A[i, j] if j < T else 0.0


def viterbi_decode(S_bt, lengths_n, trans_tt, start_t, end_t):
    """Best tag path of each sentence under scores S plus transition scores.

    S_bt: float32 (B, T), the rows of N sentences one after another;
    lengths_n: int32 (N,), summing to B; trans_tt[i, j]: score of tag i followed
    by tag j; start_t / end_t: scores of the first / last tag. -inf forbids.
    Returns int32 (B,) tags.
    """
    return _decode_sentences("viterbi_decode", S_bt, lengths_n, trans_tt, start_t, end_t,
                             False)[0]


def entity_runs(tags_b, conf_b, n_types):
    """The entities in a tag-id array laid out as fastner.tags.TagSet lays out tags
    (O = 0, then B-X = 1 + 2x and I-X = 2 + 2x for entity type x < n_types): each B-X
    opens an entity that runs over the I- tags right after it (valid IOB2, as Viterbi
    under the transition masks produces, keeps them I-X; derivations §C6).

    tags_b: int32 (B,) in [0, 1 + 2·n_types); conf_b: float32 (B,), each token's
    confidence. Returns (starts, ends, kinds, lowest): int64 first token, int64 one
    past the last, int64 type x, float32 the lowest confidence over the span; one
    entry per entity, in order.
    """
    kernel = "entity_runs"
    _check_array(kernel, "tags_b", tags_b, np.int32, (("B", None),))
    B = tags_b.shape[0]
    _check_array(kernel, "conf_b", conf_b, np.float32, (("B", B),))
    _check_positive(kernel, n_types=n_types)
    cdef const int[::1] tags = tags_b
    cdef int n_tags = 1 + 2 * n_types
    _check_ids(kernel, "tags_b", tags_b, &tags[0] if B else NULL, &n_tags, 1, _TAGS)
    cdef const float[::1] conf = conf_b
    cdef Py_ssize_t i, j, r = 0, R = 0
    for i in range(tags.shape[0]):
        R += tags[i] % 2                   # B- tags are the odd ids
    starts_r = np.empty(R, dtype=np.int64)
    ends_r = np.empty(R, dtype=np.int64)
    kinds_r = np.empty(R, dtype=np.int64)
    lowest_r = np.empty(R, dtype=np.float32)
    cdef long long[::1] starts = starts_r
    cdef long long[::1] ends = ends_r
    cdef long long[::1] kinds = kinds_r
    cdef float[::1] lowest = lowest_r
    cdef float low
    cdef Py_ssize_t B_ = B
    with nogil:
        for i in range(B_):
            if tags[i] % 2 == 0:
                continue
            low = conf[i]
            j = i + 1
            while j < B_ and tags[j] > 0 and tags[j] % 2 == 0:
                if conf[j] < low:
                    low = conf[j]
                j += 1
            starts[r], ends[r], kinds[r], lowest[r] = i, j, (tags[i] - 1) // 2, low
            r += 1
    return starts_r, ends_r, kinds_r, lowest_r


cdef extern from "_exp.h":
    double fastner_exp_nonpositive(double x) noexcept nogil


def exp_nonpositive(x):
    """fastner_exp_nonpositive (tagging's marginals' exp, fastner/_exp.h) on a float64
    array of values at most 0 (for tests)."""
    src = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
    if np.any(~(src <= 0)):
        raise ValueError("exp_nonpositive: the values must be at most 0")
    out = np.empty(src.shape[0], dtype=np.float64)
    cdef const double[::1] a = src
    cdef double[::1] o = out
    cdef Py_ssize_t i
    with nogil:
        for i in range(a.shape[0]):
            o[i] = fastner_exp_nonpositive(a[i])
    return out.reshape(np.shape(x))


# The exps buffer of one transition matrix (written by _crf_exps, read by the
# recursions): expA (T × stride), exp_start (T), exp_end (T), then expA transposed
# (T × stride), stride = fastner_crf_stride(T). Where each part starts:
cdef enum:
    EXPS_START = 1
    EXPS_END = 2
    EXPS_AT = 3
    EXPS_SIZE = 4

cdef inline int _exps_at(int T, int part) noexcept nogil:
    cdef int block = T * fastner_crf_stride(T)         # expA's, and expAT's, values
    if part == EXPS_START:
        return block
    if part == EXPS_END:
        return block + T
    if part == EXPS_AT:
        return block + 2 * T
    return 2 * block + 2 * T                            # EXPS_SIZE: the whole buffer


cdef inline int _crf_exps_size(int T) noexcept nogil:
    return _exps_at(T, EXPS_SIZE)


cdef double _crf_scaled_recursions(const float* s, int n, int T, const double* exps,
                                   double* alpha, double* beta, double* e, double* c,
                                   bint vector_exp, int alpha_end,
                                   int beta_start) noexcept nogil:
    # The forward-backward recursions in probability space with each row rescaled to
    # sum 1 (derivations §C8): e_t = exp(s_t − max s_t); alpha_t and beta_t rows
    # normalised (c_t: alpha_t's sum before, the factor log Z needs); a marginal,
    # alpha_t ⊙ beta_t normalised, does not depend on their scale. T exps per token
    # where log space took 3·T² exp/log pairs. Returns Σ_t max s_t.
    # vector_exp: the sentence's exps in one loop of fastner_exp_nonpositive, which
    # vectorizes (tagging's marginals); else libm's exp one at a time (training, whose
    # results the shipped model was trained with, bit for bit).
    # alpha_t is computed for t < alpha_end and beta_t for t ≥ beta_start only (n and
    # 0: all of them; tagging needs them only around its entities).
    cdef int t, i, j, stride = fastner_crf_stride(T)
    cdef double m, maxima = 0.0
    cdef const double* expA = exps                 # laid out as _crf_exps lays them
    cdef const double* exp_start = &exps[_exps_at(T, EXPS_START)]
    cdef const double* exp_end = &exps[_exps_at(T, EXPS_END)]
    cdef const double* expAT = &exps[_exps_at(T, EXPS_AT)]
    cdef const float* s_t
    cdef double* e_t
    for t in range(n):
        s_t, e_t = &s[t * T], &e[t * T]      # row pointers: see _crf_sentence
        m = s_t[0]
        for j in range(1, T):
            if s_t[j] > m:
                m = s_t[j]
        maxima += m
        if vector_exp:
            for j in range(T):
                e_t[j] = s_t[j] - m        # exponentiated below
        else:
            for j in range(T):
                e_t[j] = exp(s_t[j] - m)
    if vector_exp:
        for i in range(n * T):
            e[i] = fastner_exp_nonpositive(e[i])
    # alpha runs forwards and beta backwards in one loop, a step of each per pass
    # (fastner/_crf.h): each step waits on the one before it, and two independent
    # chains keep the core busy where one left it idle. The same floats either way.
    for t in range(max(alpha_end, n - beta_start)):
        if t < alpha_end:
            c[t] = fastner_crf_alpha_step(&alpha[(t - 1) * T] if t > 0 else NULL, expA,
                                          stride, exp_start, &e[t * T], T, &alpha[t * T])
        if t < n - beta_start:
            i = n - 1 - t
            fastner_crf_beta_step(&beta[(i + 1) * T] if i < n - 1 else NULL,
                                  &e[(i + 1) * T] if i < n - 1 else NULL, expAT, stride,
                                  exp_end, T, &beta[i * T])
    return maxima


cdef double _crf_sentence(const float* s, const int* y, int n, int T, const float[:, ::1] A,
                          const float[::1] start, const float[::1] end, const double* exps,
                          float scale, double* work, float* ds, float[:, ::1] dA,
                          float[::1] dstart, float[::1] dend) noexcept nogil:
    # nll = log Z − score(gold); ∂/∂S = marginals − onehot(gold); ∂/∂A = expected minus
    # gold transition counts; likewise start/end; all scaled by `scale` (derivations
    # §C4), from the rescaled recursions (§C8).
    # work: 3·n·T + n doubles (alpha, beta, e, and the row sums c).
    cdef double* alpha = work
    cdef double* beta = alpha + n * T
    cdef double* e = beta + n * T
    cdef double* c = e + n * T
    cdef int t, i, j
    cdef double total = 0.0, log_z, gold, norm, w
    # log Z = Σ_t max s_t + Σ_t log c_t + log Σ_j alpha_{n−1}[j] · exp end[j]
    cdef int stride = fastner_crf_stride(T)
    cdef const double* expA = exps                   # laid out as _crf_exps lays them
    cdef const double* exp_end = &exps[_exps_at(T, EXPS_END)]
    log_z = _crf_scaled_recursions(s, n, T, exps, alpha, beta, e, c, False, n, 0)
    for j in range(T):
        total += alpha[(n - 1) * T + j] * exp_end[j]
    for t in range(n):
        log_z += log(c[t])
    log_z += log(total)
    gold = start[y[0]] + end[y[n - 1]]
    for t in range(n):
        gold += s[t * T + y[t]]
        if t > 0:
            gold += A[y[t - 1], y[t]]
    # rows through pointers (a_t[j], not alpha[t * T + j]): under -fwrapv (Python's
    # flags) gcc cannot prove int index arithmetic contiguous and gathered the rows
    cdef const double* a_t
    cdef const double* b_t
    cdef const double* a_prev
    cdef const double* e_t
    cdef const double* expA_i
    cdef float* ds_t
    cdef float* dA_i
    for t in range(n):
        a_t, b_t, ds_t = &alpha[t * T], &beta[t * T], &ds[t * T]
        # unary marginal μ_t ∝ alpha_t ⊙ beta_t (§C3)
        norm = 0.0
        for j in range(T):
            norm += a_t[j] * b_t[j]
        for j in range(T):
            w = a_t[j] * b_t[j] / norm
            ds_t[j] = <float>(scale * w)
            if t == 0:
                dstart[j] += <float>(scale * w)
            if t == n - 1:
                dend[j] += <float>(scale * w)
        ds_t[y[t]] -= scale
        if t > 0:
            # pairwise marginal ξ_t[i, j] ∝ alpha_{t−1}[i] · expA[i, j] · e_t[j] · beta_t[j];
            # the sum of these over i and j is c_t · Σ_j alpha_t[j] beta_t[j] (§C8)
            norm = c[t] * norm
            a_prev, e_t = &alpha[(t - 1) * T], &e[t * T]
            for i in range(T):
                expA_i, dA_i = &expA[i * stride], &dA[i, 0]
                for j in range(T):
                    dA_i[j] += <float>(scale * a_prev[i] * expA_i[j] * e_t[j] * b_t[j] / norm)
            dA[y[t - 1], y[t]] -= scale
    dstart[y[0]] -= scale
    dend[y[n - 1]] -= scale
    return log_z - gold


cdef void _crf_exps(const float[:, ::1] A, const float[::1] start, const float[::1] end,
                    double* out) noexcept nogil:
    # exp of the transition, start and end scores in double, in the exps layout
    # (_exps_at; expA transposed because the backward step reads its columns as rows),
    # the rows padded with 0 to fastner_crf_stride(T) (fastner/_crf.h); exp(−inf) = 0
    # forbids a move
    cdef int T = A.shape[0], i, j, stride = fastner_crf_stride(T)
    cdef double* expA = out
    cdef double* exp_start = &out[_exps_at(T, EXPS_START)]
    cdef double* exp_end = &out[_exps_at(T, EXPS_END)]
    cdef double* expAT = &out[_exps_at(T, EXPS_AT)]
    for i in range(T):
        for j in range(stride):
            expA[i * stride + j] = exp(A[i, j]) if j < T else 0.0
            expAT[i * stride + j] = exp(A[j, i]) if j < T else 0.0
        exp_start[i] = exp(start[i])
        exp_end[i] = exp(end[i])


def crf_forward_backward(S_bt, y_b, lengths_n, trans_tt, start_t, end_t,
                         dS_bt, dtrans_tt, dstart_t, dend_t):
    """Linear-chain CRF loss over sentences, mean per token, and its gradients.

    S_bt: float32 (B, T) window-network scores of N sentences one after another;
    y_b: int32 (B,) gold tags; lengths_n: int32 (N,) summing to B; trans_tt (T, T),
    start_t, end_t (T,): transition scores (-inf forbids a move; the gold path must
    not use one). dS_bt is written with (marginals − gold)/B; dtrans_tt, dstart_t,
    dend_t are added into. Returns the loss (Σ_sentences nll) / B.
    """
    kernel = "crf_forward_backward"
    B, T, longest = _check_sentences(kernel, S_bt, lengths_n, trans_tt, start_t, end_t)
    _check_array(kernel, "y_b", y_b, np.int32, (("B", B),))
    _check_array(kernel, "dS_bt", dS_bt, np.float32, (("B", B), ("T", T)), writable=True)
    _check_array(kernel, "dtrans_tt", dtrans_tt, np.float32, (("T", T), ("T", T)), writable=True)
    _check_array(kernel, "dstart_t", dstart_t, np.float32, (("T", T),), writable=True)
    _check_array(kernel, "dend_t", dend_t, np.float32, (("T", T),), writable=True)
    if B == 0:
        return 0.0
    cdef const int[::1] y = y_b
    cdef int T_tags = T
    _check_ids(kernel, "y_b", y_b, &y[0], &T_tags, 1, _TAGS)
    work_buf = np.empty((3 * T + 1) * longest + _crf_exps_size(T), dtype=np.float64)
    cdef const float[:, ::1] S = S_bt
    cdef const int[::1] lengths = lengths_n
    cdef const float[:, ::1] A = trans_tt
    cdef const float[::1] start = start_t
    cdef const float[::1] end = end_t
    cdef float[:, ::1] dS = dS_bt
    cdef float[:, ::1] dA = dtrans_tt
    cdef float[::1] dstart = dstart_t
    cdef float[::1] dend = dend_t
    cdef double[::1] work = work_buf
    cdef double* exps = &work[(3 * T + 1) * longest]
    cdef double total = 0.0
    cdef float scale = 1.0 / B
    cdef Py_ssize_t n, row = 0
    cdef int T_ = T
    with nogil:
        _crf_exps(A, start, end, exps)
        for n in range(lengths.shape[0]):
            if lengths[n] > 0:
                total += _crf_sentence(&S[row, 0], &y[row], lengths[n], T_, A, start, end,
                                       exps, scale, &work[0], &dS[row, 0], dA, dstart, dend)
            row += lengths[n]
    return total / B


cdef void _crf_marginals(const float* s, int n, int T, const double* exps, double* alpha,
                         double* beta, double* e, double* c, float* out) noexcept nogil:
    # each token's marginals, alpha_t ⊙ beta_t normalised (§C3, §C8)
    cdef int t, j
    cdef double total
    cdef const double* a_t
    cdef const double* b_t
    cdef float* out_t
    _crf_scaled_recursions(s, n, T, exps, alpha, beta, e, c, True, n, 0)
    for t in range(n):
        a_t, b_t, out_t = &alpha[t * T], &beta[t * T], &out[t * T]   # see _crf_sentence
        total = 0.0
        for j in range(T):
            total += a_t[j] * b_t[j]
        if total <= 0.0:
            total = 1.0
        for j in range(T):
            out_t[j] = <float>(a_t[j] * b_t[j] / total)


cdef void _crf_chosen_marginals(const float* s, int n, int T, const double* exps,
                                double* alpha, double* beta, double* e, double* c,
                                const int* tags, bint entities_only,
                                float* out) noexcept nogil:
    # _crf_marginals at each token's given tag only: out[t] = its marginal, the same
    # expression, so the same float, without the T − 1 other divisions. entities_only:
    # only at tokens whose tag is not 0 (O), NaN at the others; the recursions then
    # stop at the sentence's last such token (alpha) and its first (beta), and a
    # sentence without one costs nothing.
    cdef int t, j, first = 0, last = n - 1
    cdef double total
    if entities_only:
        while first < n and tags[first] == 0:
            first += 1
        if first == n:
            for t in range(n):
                out[t] = NAN
            return
        while tags[last] == 0:
            last -= 1
    _crf_scaled_recursions(s, n, T, exps, alpha, beta, e, c, True, last + 1, first)
    for t in range(n):
        if entities_only and tags[t] == 0:
            out[t] = NAN
            continue
        total = 0.0
        for j in range(T):
            total += alpha[t * T + j] * beta[t * T + j]
        if total <= 0.0:
            total = 1.0
        j = tags[t]
        out[t] = <float>(alpha[t * T + j] * beta[t * T + j] / total)


def crf_marginals(S_bt, lengths_n, trans_tt, start_t, end_t, out_bt=None):
    """Per-token tag marginals P(y_t = j | sentence) under the CRF, float32 (B, T)."""
    kernel = "crf_marginals"
    B, T, longest = _check_sentences(kernel, S_bt, lengths_n, trans_tt, start_t, end_t)
    if out_bt is None:
        out_bt = np.empty((B, T), dtype=np.float32)
    _check_array(kernel, "out_bt", out_bt, np.float32, (("B", B), ("T", T)), writable=True)
    if B == 0:
        return out_bt
    # exp of the transition scores once per call, in double; exp(-inf) = 0 forbids a
    # move. One buffer, filled in C: NumPy's astype and exp cost more than a sentence.
    exps = np.empty(_crf_exps_size(T), dtype=np.float64)
    work = np.empty((4, longest * T), dtype=np.float64)
    cdef const float[:, ::1] S = S_bt
    cdef const int[::1] lengths = lengths_n
    cdef const float[:, ::1] trans = trans_tt
    cdef const float[::1] start = start_t
    cdef const float[::1] end = end_t
    cdef double[::1] e = exps
    cdef double[:, ::1] w = work
    cdef float[:, ::1] out = out_bt
    cdef Py_ssize_t n, row = 0
    cdef int T_ = T
    with nogil:
        _crf_exps(trans, start, end, &e[0])
        for n in range(lengths.shape[0]):
            if lengths[n] > 0:
                _crf_marginals(&S[row, 0], lengths[n], T_, &e[0], &w[0, 0], &w[1, 0],
                               &w[2, 0], &w[3, 0], &out[row, 0])
            row += lengths[n]
    return out_bt


def crf_decode(S_bt, lengths_n, trans_tt, start_t, end_t, entities_only=False):
    """viterbi_decode and crf_marginals in one pass, for tagging: each sentence's best
    path and, per token, the CRF marginal of the tag on it (§C3, §C5).

    Arguments as in viterbi_decode. Returns (int32 (B,) tags, float32 (B,) each tag's
    marginal): one call's checks and buffers instead of two, and no (B, T) marginals
    array for the caller to gather from (a one-sentence request paid more for those
    than for the arithmetic). ``entities_only``: the marginals of tokens tagged 0 (O in
    fastner.tags.TagSet's layout) are not wanted and come back NaN; the others are
    the same floats, for less work (an entity's score needs only its own tokens').
    """
    return _decode_sentences("crf_decode", S_bt, lengths_n, trans_tt, start_t, end_t, True,
                             entities_only)


def _decode_sentences(kernel, S_bt, lengths_n, trans_tt, start_t, end_t,
                      bint confidences, bint entities_only=False):
    """viterbi_decode's (tags, None), or with ``confidences`` crf_decode's (tags, each
    tag's marginal)."""
    B, T, longest = _check_sentences(kernel, S_bt, lengths_n, trans_tt, start_t, end_t)
    tags_b = np.zeros(B, dtype=np.int32)
    conf_b = np.zeros(B, dtype=np.float32) if confidences else None
    if B == 0:
        return tags_b, conf_b
    cdef Py_ssize_t n, row = 0, L = longest * T
    cdef int T_ = T, n_i
    # Viterbi's scores, then (confidences) the recursions' four rows and the exps of
    # the transition scores; Viterbi's back-pointers
    work_buf = np.empty(5 * L + _crf_exps_size(T) if confidences else L, dtype=np.float64)
    back_buf = np.empty(L, dtype=np.int32)
    A_d_buf = np.empty(T * fastner_crf_stride(T), dtype=np.float64)
    cdef const float[:, ::1] S = S_bt
    cdef const int[::1] lengths = lengths_n
    cdef const float[:, ::1] A = trans_tt
    cdef const float[::1] start = start_t
    cdef const float[::1] end = end_t
    cdef double[::1] work = work_buf
    cdef int[::1] back = back_buf
    cdef double[::1] A_d = A_d_buf
    cdef int[::1] tags = tags_b
    cdef float[::1] conf
    cdef double* exps = NULL
    if confidences:
        conf = conf_b
        exps = &work[5 * L]
    with nogil:
        _in_double(A, &A_d[0])
        if confidences:
            _crf_exps(A, start, end, exps)
        for n in range(lengths.shape[0]):
            n_i = lengths[n]
            if n_i > 0:
                _viterbi(&S[row, 0], n_i, T_, &A_d[0], start, end, &work[0], &back[0],
                         &tags[row])
                if confidences:
                    _crf_chosen_marginals(&S[row, 0], n_i, T_, exps, &work[L], &work[2 * L],
                                          &work[3 * L], &work[4 * L], &tags[row],
                                          entities_only, &conf[row])
            row += n_i
    return tags_b, conf_b


# --------------------------------------------------------------------------
# 5. a whole plain-SGD training step, fused (softmax loss; derivations §U1)


cdef void _windows_and_hidden(const int[:, :, ::1] ids, int B, int K, int F, int E, int D,
                              int H, float** table_ptr, const int* table_dim,
                              const int* table_offset, const float* W, const float* b,
                              int act, float* X, float* hidden,
                              float* scratch) noexcept nogil:
    # the fused steps' first layer: X[i] = the window's feature vectors side by side
    # (derivations §F1), hidden = f(X Wᵀ + b) (§F2), as lookup_forward and
    # affine_act_forward compute them (scratch: B·H floats)
    cdef Py_ssize_t i, k, f
    cdef int e
    for i in range(B):
        for k in range(K):
            for f in range(F):
                e = table_dim[f]
                memcpy(&X[i * D + k * E + table_offset[f]], &table_ptr[f][ids[i, k, f] * e],
                       e * sizeof(float))
    _affine_act_rows(X, B, D, W, H, b, act, hidden, scratch)


cdef class SGDStep:
    """One plain-SGD step of the softmax window model in a single call.

    Forward, loss, backward and update run in one nogil pass, updating the
    parameters in place (derivations §F1–§F4, §B1–§B5, §U1): the per-call
    overhead that dominates small batches (online SGD, as Collobert & Weston
    trained) is paid once. Parameters are checked once, here; ``step`` checks only
    its ids and tags. Gradients that flow down (δ_H = δ_S U, δ_X = δ_Z W) are taken
    before U and W are updated, so the step equals the unfused computation.

    tables: float32 (V_f, e_f) per feature; W (H, D), b (H,), U (T, H), c (T,);
    offsets: each feature's column within a position's E = Σ e_f columns.
    """
    cdef object arrays                       # keeps the parameter arrays alive
    cdef float[:, ::1] W, U
    cdef float[::1] b, c
    cdef float** table_ptr
    cdef int* table_rows
    cdef int* table_dim
    cdef int* table_offset
    cdef int F, K, E, D, H, T, act
    cdef object work                         # workspace arrays, grown on demand
    cdef int capacity

    def __cinit__(self):
        self.table_ptr = NULL
        self.table_rows = NULL
        self.table_dim = NULL
        self.table_offset = NULL

    def __init__(self, tables, W_hd, b_h, U_th, c_t, activation, offsets, K):
        kernel = "SGDStep"
        blas_small_products()
        self.act = _activation_code(kernel, activation)
        _check_array(kernel, "W_hd", W_hd, np.float32, (("H", None), ("D", None)), writable=True)
        H, D = W_hd.shape
        _check_array(kernel, "b_h", b_h, np.float32, (("H", H),), writable=True)
        _check_array(kernel, "U_th", U_th, np.float32, (("T", None), ("H", H)), writable=True)
        T = U_th.shape[0]
        _check_array(kernel, "c_t", c_t, np.float32, (("T", T),), writable=True)
        _check_positive(kernel, D=D, H=H, T=T, K=K)
        if len(tables) != len(offsets) or not tables:
            raise ValueError(f"{kernel}: need one offset per table and at least one table; "
                             f"got {len(tables)} tables and {len(offsets)} offsets")
        self.F, self.K, self.D, self.H, self.T = len(tables), K, D, H, T
        self.E = _check_window_slice(kernel, D, K, 0, 0)
        cdef float[:, ::1] view
        for f, (table, offset) in enumerate(zip(tables, offsets)):
            _check_array(kernel, f"tables[{f}]", table, np.float32, (("V", None), ("e", None)),
                         writable=True)
            _check_window_slice(kernel, D, K, table.shape[1], offset)
        self.table_ptr = <float**>pointer_array(self.F)
        self.table_rows = int_array([t.shape[0] for t in tables])
        self.table_dim = int_array([t.shape[1] for t in tables])
        self.table_offset = int_array(offsets)
        for f, table in enumerate(tables):
            view = table
            self.table_ptr[f] = &view[0, 0]
        self.arrays = (list(tables), W_hd, b_h, U_th, c_t)
        self.W, self.b, self.U, self.c = W_hd, b_h, U_th, c_t
        self.capacity = 0

    def __dealloc__(self):
        free(self.table_ptr)
        free(self.table_rows)
        free(self.table_dim)
        free(self.table_offset)

    def step(self, ids_bkf, y_b, float lr):
        """Update the parameters with one SGD step on a batch; returns the mean loss.

        ids_bkf: int32 (B, K, F), each window's ids for every feature; y_b: int32 (B,).
        """
        kernel = "SGDStep.step"
        cdef const int[:, :, ::1] ids
        cdef const int[::1] y
        try:
            ids = ids_bkf
            y = y_b
        except (ValueError, TypeError):
            _check_array(kernel, "ids_bkf", ids_bkf, np.int32,
                         (("B", None), ("K", self.K), ("F", self.F)))
            _check_array(kernel, "y_b", y_b, np.int32, (("B", None),))
            raise
        cdef int B = ids.shape[0]
        if ids.shape[1] != self.K or ids.shape[2] != self.F or y.shape[0] != B:
            raise ValueError(f"{kernel}: ids_bkf must have shape (B, K, F) = (B, {self.K}, "
                             f"{self.F}) and y_b (B,); got {tuple(ids_bkf.shape)} and "
                             f"{tuple(y_b.shape)}")
        if B == 0:
            return 0.0
        _check_ids(kernel, "ids_bkf", ids_bkf, &ids[0, 0, 0], self.table_rows, self.F,
                   _FEATURE_ROWS)
        _check_ids(kernel, "y_b", y_b, &y[0], &self.T, 1, _TAGS)
        if B > self.capacity:
            self.capacity = max(B, 2 * self.capacity)
            self.work = np.empty(self.capacity * (2 * self.D + 3 * self.H + self.T),
                                 dtype=np.float32)
        cdef float[::1] work = self.work
        cdef double loss
        with nogil:
            loss = self._step(ids, y, B, lr, &work[0])
        return loss

    cdef double _step(self, const int[:, :, ::1] ids, const int[::1] y, int B, float lr,
                      float* work) noexcept nogil:
        cdef int K = self.K, E = self.E, D = self.D, H = self.H, T = self.T, F = self.F
        cdef float* X = work                       # (B, D)
        cdef float* dX = X + B * D                 # (B, D)
        cdef float* hidden = dX + B * D            # (B, H)
        cdef float* dH = hidden + B * H            # (B, H)
        cdef float* dZ = dH + B * H                # (B, H)
        cdef float* S = dZ + B * H                 # (B, T), then δ_S in place
        cdef Py_ssize_t i, j, k, f
        cdef int e
        cdef float inv_b = 1.0 / B
        cdef double loss = 0.0, log_z
        cdef float* row
        cdef const float* src
        # forward 1–3: windows of feature vectors, hidden = f(X Wᵀ + b), S = hidden Uᵀ + c
        _windows_and_hidden(ids, B, K, F, E, D, H, self.table_ptr, self.table_dim,
                            self.table_offset, &self.W[0, 0], &self.b[0], self.act, X, hidden,
                            dZ)     # dZ is free until the backward pass
        gemm_rm(False, True, B, T, H, 1.0, hidden, H, &self.U[0, 0], H, 0.0, S, T)
        # forward 4 and backward 1: loss, δ_S = (P − Y)/B (in place of S)
        for i in range(B):
            row = &S[i * T]
            for j in range(T):
                row[j] = row[j] + self.c[j]
            log_z = logsumexp_row(row, T)
            loss += log_z - row[y[i]]
            for j in range(T):
                row[j] = <float>(exp(row[j] - log_z) * inv_b)
            row[y[i]] -= inv_b
        # backward 2: δ_H = δ_S U (before U moves), then U -= lr δ_Sᵀ hidden, c -= lr Σ δ_S
        gemm_rm(False, False, B, H, T, 1.0, S, T, &self.U[0, 0], H, 0.0, dH, H)
        gemm_rm(True, False, T, H, B, -lr, S, T, hidden, H, 1.0, &self.U[0, 0], H)
        add_column_sums(&self.c[0], S, B, T, -lr)
        # backward 3: δ_Z = δ_H ⊙ f′ (from the stored output)
        for i in range(B):
            act_backward_row(&dH[i * H], &hidden[i * H], &dZ[i * H], H, self.act)
        # backward 4: δ_X = δ_Z W (before W moves), W -= lr δ_Zᵀ X, b -= lr Σ δ_Z
        gemm_rm_column_blocks(False, B, D, H, dZ, H, &self.W[0, 0], D, 0.0, dX, D,
                              _column_block(B, H))
        gemm_rm(True, False, H, D, B, -lr, dZ, H, X, D, 1.0, &self.W[0, 0], D)
        add_column_sums(&self.b[0], dZ, B, H, -lr)
        # backward 5: sparse update of the touched rows (repeats accumulate)
        for i in range(B):
            for k in range(K):
                for f in range(F):
                    e = self.table_dim[f]
                    row = &self.table_ptr[f][ids[i, k, f] * e]
                    src = &dX[i * D + k * E + self.table_offset[f]]
                    for j in range(e):
                        row[j] -= lr * src[j]
        return loss / B


# --------------------------------------------------------------------------
# 6. fused inference: ids → scores in one pass, block by block (derivations §I1–§I3)

cdef enum:
    SCORER_BLOCK = 256      # windows per block: the block's hidden layer stays in L2
    PREFETCH_AHEAD = 4      # windows ahead whose newest word's cached rows are prefetched
    PATTERN_KEYS = 65536    # most distinct patterns of the small features' ids a window
                            # can have for those features to be summed per pattern
    PATTERN_WINDOWS = 256   # fewest windows a call sums per pattern: below, few windows
                            # share one and numbering them cost a sentence 8 µs more
    SCORER_CHUNK = 4096     # windows whose cache misses are multiplied together: each
                            # window brings one new token, so about 4096 distinct missed
                            # rows, 4096·K·H floats of products (25 MB at K=5, H=300)


cdef extern from "_half.h":
    void fastner_half_init() noexcept nogil
    void fastner_sum_half_rows(float* z, const float* base, const uint16_t** rows, int n,
                               int H) noexcept nogil
    float fastner_half_to_float(uint16_t h) noexcept nogil
    long fastner_floats_to_halves(const float* src, uint16_t* out, long n) noexcept nogil
    void fastner_prefetch(const void* p, int n) noexcept nogil
    void fastner_prefetch_l2(const void* p, int n) noexcept nogil
    int fastner_use_f16c

fastner_half_init()


def half_path():
    """Which half → float conversion the inference cache uses: "f16c" or "portable"."""
    return "f16c" if fastner_use_f16c else "portable"


cdef extern from *:
    """
    #ifndef FASTNER_BUILD_FLAGS
    #define FASTNER_BUILD_FLAGS "(not recorded)"
    #endif
    """
    const char* FASTNER_BUILD_FLAGS


def build_flags():
    """The compiler flags setup.py built these kernels with, besides Python's own (for
    benchmark reports: -march=native or none, for a portable build)."""
    return FASTNER_BUILD_FLAGS.decode()


def scorer_output_layer():
    """Which code multiplies the cached scorer's hidden rows by Uᵀ: "avx2-fma"
    (fastner/_output.h, built where AVX2 and FMA are) or "blas" (a portable build)."""
    return "avx2-fma" if fastner_has_output_layer else "blas"


def scorer_tanh():
    """Which tanh the cached scorer applies: "avx512-rcp" (fastner/_tanh.h's 7/6 rational
    function through the reciprocal estimate, built where AVX-512 and F16C are) or "fast_tanh"
    (the kernels' 13/6 function with its division, as training uses)."""
    return "avx512-rcp" if fastner_tanh_has_rcp else "fast_tanh"


def _use_portable_half(bint portable):
    """Tests only: force the portable half conversion (or go back to the CPU's best)."""
    global fastner_use_f16c
    fastner_half_init()
    if portable:
        fastner_use_f16c = 0


def half_to_float(h):
    """The portable half → float conversion on a uint16 array (for tests)."""
    src = np.ascontiguousarray(h, dtype=np.uint16).reshape(-1)
    out = np.empty(src.shape[0], dtype=np.float32)
    cdef const uint16_t[::1] a = src
    cdef float[::1] o = out
    cdef Py_ssize_t i
    with nogil:
        for i in range(a.shape[0]):
            o[i] = fastner_half_to_float(a[i])
    return out.reshape(np.shape(h))


def float_to_half(x_rc, out_rc):
    """out_rc = x_rc rounded to half precision, to nearest with ties to even (as
    ``x_rc.astype(np.float16)``: beyond ±65504 by half an ulp or more → ±inf); F16C
    where the CPU has it, else fastner/_half.h's portable conversion, the same halves.
    Fills the inference cache. Returns how many of the halves are not finite.

    x_rc: float32 (R, C); out_rc: float16 (R, C), written.
    """
    kernel = "float_to_half"
    _check_array(kernel, "x_rc", x_rc, np.float32, (("R", None), ("C", None)))
    R, C = x_rc.shape
    _check_array(kernel, "out_rc", out_rc, np.float16, (("R", R), ("C", C)), writable=True)
    if x_rc.size == 0:
        return 0
    cdef const float[:, ::1] x = x_rc
    cdef uint16_t[:, ::1] out = out_rc.view(np.uint16)
    cdef long bad, n = x_rc.size
    with nogil:
        bad = fastner_floats_to_halves(&x[0, 0], &out[0, 0], n)
    return bad


def window_ids(ids_bf, lengths_n, K):
    """Every token's window ids under every feature, from the tokens' own ids: row b of
    the result holds, for k = 0..K−1, the ids of the token k − (K−1)/2 places from b in
    its sentence, PAD (0) past the sentence's edges (WindowTagger.windows for all
    features at once, in the (B, K, F) layout CachedScorer.scores takes).

    ids_bf: int32 (B, F), the tokens of N sentences one after another; lengths_n:
    int32 (N,), each ≥ 0, summing to B; K: odd window width. Returns int32 (B, K, F).
    """
    kernel = "window_ids"
    _check_array(kernel, "ids_bf", ids_bf, np.int32, (("B", None), ("F", None)))
    B, F = ids_bf.shape
    _check_array(kernel, "lengths_n", lengths_n, np.int32, (("N", None),))
    if K < 1 or K % 2 == 0:
        raise ValueError(f"{kernel}: K must be a positive odd window width; got {K}")
    shortest, total, _ = _length_stats(lengths_n)
    if shortest < 0 or total != B:
        raise ValueError(f"{kernel}: lengths_n must be at least 0 each and sum to B = {B}; "
                         f"got {lengths_n.tolist()[:10]} (sum {total})")
    out_bkf = np.zeros((B, K, F), dtype=np.int32)       # PAD = 0 where no neighbour
    if B == 0 or F == 0:
        return out_bkf
    cdef const int[:, ::1] ids = ids_bf
    cdef const int[::1] lengths = lengths_n
    cdef int[:, :, ::1] out = out_bkf
    cdef Py_ssize_t n, b, k, f, src, first = 0, last
    cdef int hw = (K - 1) // 2, K_ = K, F_ = F
    with nogil:
        for n in range(lengths.shape[0]):
            last = first + lengths[n]
            for b in range(first, last):
                for k in range(K_):
                    src = b + k - hw
                    if first <= src < last:
                        # F is a few ids: a loop, not memcpy's call (half the
                        # time for CoNLL-2003 valid's 52k tokens)
                        for f in range(F_):
                            out[b, k, f] = ids[src, f]
            first = last
    return out_bkf


cdef inline void _add_rows(float* z, const float** src, int n, int H) noexcept nogil:
    # z += Σ_r src[r] (NumPy: z += sum(src)), four rows per pass, so z is loaded
    # and stored ⌈n/4⌉ times rather than n (one row per pass was store-bound).
    cdef Py_ssize_t h
    cdef int r = 0
    cdef const float* p0
    cdef const float* p1
    cdef const float* p2
    cdef const float* p3
    while n - r >= 4:
        p0, p1, p2, p3 = src[r], src[r + 1], src[r + 2], src[r + 3]
        for h in range(H):
            z[h] += (p0[h] + p1[h]) + (p2[h] + p3[h])
        r += 4
    while r < n:
        p0 = src[r]
        for h in range(H):
            z[h] += p0[h]
        r += 1


def _next_clock(clock, stamp_arrays):
    """The clock of a new call of CachedScorer's stamped passes (_patterns,
    _renumber): clock + 1, or, where that would reach 2³¹ − 1, 1 after clearing the
    stamp row (row 0) of each array in ``stamp_arrays`` (None: not made yet), so an
    old stamp never equals a new clock."""
    clock += 1
    if clock == 2**31 - 1:
        for stamps in stamp_arrays:
            if stamps is not None:
                stamps[0] = 0
        clock = 1
    return clock


cdef class CachedScorer:
    """S = (f(Σ_f Σ_k P_f[ids[b, k, f], k] + b)) Uᵀ + c for a whole batch in one call,
    where P_f[v, k] = W_k · table_f[v] is the product of row v at window position k.

    The inference twin of lookup_forward + affine_act_forward (twice): the first
    layer becomes K·F vector additions per window, fewer where small tables are
    summed once per pattern of their ids (_patterns, §I5). P_f comes from the cache
    (precomputed rows, stored in half precision) or, for rows past the cache,
    from one sgemm per chunk of SCORER_CHUNK windows over the chunk's *distinct*
    missed rows (a rare word that recurs in a document is multiplied once). The
    additions, the activation and the output layer then run block by block
    (SCORER_BLOCK windows), so each block's hidden layer stays in cache. Arrays
    are checked once, here; ``scores`` checks its ids.

    caches: float16 (N_f, K, H) per feature; tables: float32 (V_f, e_f); WT_dh: W
    transposed (D, H); b_h (H,); U_th (T, H); c_t (T,); offsets as in lookup_forward.
    """
    cdef object arrays
    cdef list tables, row_products
    cdef object rows_f
    cdef list stamps                         # per feature: the last renumbering that met each row
    cdef int clock
    cdef readonly list pattern_features      # summed per pattern of their ids (_patterns)
    cdef object pattern_stamps               # per pattern key: the last call that met it
    cdef int pattern_clock
    cdef uint16_t** cache_ptr
    cdef int* cache_rows
    cdef int* table_rows
    cdef const float* b
    cdef const float* UT                     # U transposed, (H, T)
    cdef const float* U                      # U itself, (T, H)
    cdef const float* c
    cdef int F, K, H, T, act

    def __cinit__(self):
        self.cache_ptr = NULL
        self.cache_rows = self.table_rows = NULL

    def __init__(self, caches, tables, WT_dh, b_h, U_th, c_t, activation, offsets, K):
        kernel = "CachedScorer"
        self.act = _activation_code(kernel, activation)
        _check_array(kernel, "WT_dh", WT_dh, np.float32, (("D", None), ("H", None)))
        D, H = WT_dh.shape
        _check_array(kernel, "b_h", b_h, np.float32, (("H", H),))
        _check_array(kernel, "U_th", U_th, np.float32, (("T", None), ("H", H)))
        T = U_th.shape[0]
        _check_array(kernel, "c_t", c_t, np.float32, (("T", T),))
        _check_positive(kernel, D=D, H=H, T=T, K=K)
        if not (len(caches) == len(tables) == len(offsets) >= 1):
            raise ValueError(f"{kernel}: need one cache, table and offset per feature; got "
                             f"{len(caches)}, {len(tables)} and {len(offsets)}")
        self.F, self.K, self.H, self.T = len(tables), K, H, T
        E = _check_window_slice(kernel, D, K, 0, 0)
        for f, (cache, table, offset) in enumerate(zip(caches, tables, offsets)):
            _check_array(kernel, f"tables[{f}]", table, np.float32, (("V", None), ("e", None)))
            _check_array(kernel, f"caches[{f}]", cache, np.float16,
                         (("N", None), ("K", K), ("H", H)))
            if cache.shape[0] > table.shape[0]:
                raise ValueError(f"{kernel}: caches[{f}] has more rows than tables[{f}]")
            _check_window_slice(kernel, D, K, table.shape[1], offset)
        self.cache_ptr = <uint16_t**>pointer_array(self.F)
        self.cache_rows = int_array([c.shape[0] for c in caches])
        self.table_rows = int_array([t.shape[0] for t in tables])
        self.rows_f = np.array([t.shape[0] for t in tables], dtype=np.int32)   # id limits
        cdef const uint16_t[:, :, ::1] cview
        self.tables, self.row_products = [], []
        for f, (cache, table, offset) in enumerate(zip(caches, tables, offsets)):
            if cache.shape[0] > 0:
                cview = cache.view(np.uint16)
                self.cache_ptr[f] = <uint16_t*>&cview[0, 0, 0]
            self.tables.append(table)
            e = table.shape[1]
            # (e, K·H): row j holds Wᵀ's row for column j of this feature at every
            # position, so table[v] @ it = P_f[v] laid out like a cache row
            blocks = WT_dh.reshape(K, E, H)[:, offset:offset + e, :]
            self.row_products.append(np.ascontiguousarray(blocks.transpose(1, 0, 2))
                                     .reshape(e, K * H))
        # the output layer multiplies by Uᵀ stored as such: OpenBLAS's product with
        # T = 9 columns took 32 µs per block with U transposed on the fly, 23 µs so
        # (the same sums in the same order, bit for bit)
        UT_ht = np.ascontiguousarray(U_th.T)
        U_th = U_th.copy()                   # a snapshot, like Uᵀ (the tags left over
                                             # by _output.h's groups of 8 read U's rows)
        cdef const float[::1] bv = b_h
        cdef const float[:, ::1] UTv = UT_ht
        cdef const float[:, ::1] Uv = U_th
        cdef const float[::1] cv = c_t
        self.b, self.UT, self.U, self.c = &bv[0], &UTv[0, 0], &Uv[0, 0], &cv[0]
        self.arrays = (list(caches), b_h, UT_ht, U_th, c_t)
        self.stamps = [None] * self.F
        self.clock = 0
        # small tables held whole by their caches (capitalisation: 7 rows, 7⁵ patterns
        # at K = 5), as long as their patterns together stay within PATTERN_KEYS
        self.pattern_features, keys = [], 1
        for f, (cache, table) in enumerate(zip(caches, tables)):
            n = cache.shape[0]
            if 0 < n == table.shape[0] and keys * n ** K <= PATTERN_KEYS:
                self.pattern_features.append(f)
                keys *= n ** K
        self.pattern_stamps = None
        self.pattern_clock = 0

    def __dealloc__(self):
        free(self.cache_ptr)
        free(self.cache_rows)
        free(self.table_rows)

    def scores(self, ids_bkf, call_tables=None):
        """float32 (B, T) scores for int32 (B, K, F) window ids.

        call_tables: optional {feature: float32 (M, e) rows}: for this call only, the
        feature's ids past its cache, N_f .. N_f + M − 1, are these rows instead of
        its table's (character vectors of the spellings a call met that the cache
        does not hold, computed per call).
        """
        kernel = "CachedScorer.scores"
        _check_array(kernel, "ids_bkf", ids_bkf, np.int32, (("B", None), ("K", self.K),
                                                           ("F", self.F)))
        tables = [(table, 0) for table in self.tables]    # (rows, id of the first row)
        rows_f = self.rows_f if not call_tables else self.rows_f.copy()
        for f, table in (call_tables or {}).items():
            if not (isinstance(f, int) and 0 <= f < self.F):
                raise ValueError(f"{kernel}: call_tables keys must be features 0..{self.F - 1}"
                                 f"; got {f!r}")
            _check_array(kernel, f"call_tables[{f}]", table, np.float32,
                         (("M", None), ("e", self.row_products[f].shape[0])))
            tables[f] = (table, self.cache_rows[f])
            rows_f[f] = self.cache_rows[f] + table.shape[0]
        cdef const int[:, :, ::1] ids = ids_bkf
        cdef const int[::1] limits = rows_f
        cdef int B = ids.shape[0]
        _check_ids(kernel, "ids_bkf", ids_bkf, &ids[0, 0, 0], &limits[0], self.F,
                   _FEATURE_ROWS)
        out = np.empty((B, self.T), dtype=np.float32)
        # one C pass finds whether any id is past its cache: most requests have no
        # miss, and looking for them with NumPy cost more than scoring a sentence
        cdef bint any_miss = B > 0 and _first_out_of_range(&ids[0, 0, 0], ids_bkf.size,
                                                            self.cache_rows, self.F) >= 0
        patterns = [f for f in self.pattern_features if f not in (call_tables or {})]
        slots = pattern_rows = in_pattern = None
        if patterns and B >= PATTERN_WINDOWS:
            slots, pattern_rows = self._patterns(ids_bkf, patterns)
            in_pattern = np.zeros(self.F, dtype=np.int32)
            in_pattern[patterns] = 1
        missed = [None] * self.F
        for start in range(0, B, SCORER_CHUNK):
            chunk = ids_bkf[start:start + SCORER_CHUNK]
            if any_miss:
                chunk, missed = self._products_of_misses(chunk, tables)
            self._score_chunk(chunk, missed,
                              None if slots is None else slots[start:start + SCORER_CHUNK],
                              pattern_rows, in_pattern, out[start:start + SCORER_CHUNK])
        return out

    def _patterns(self, ids_bkf, patterns):
        """(slots, rows): per window, the slot of its pattern (the ids of the features
        ``patterns`` at every position) among the call's distinct patterns, and per
        pattern the float32 row b + Σ_k Σ_f P_f[ids[k, f], k] (derivations §I5).
        Windows that share a pattern (capitalisation shapes repeat: CoNLL-2003 valid's
        51k windows have 1,189) then start from one row instead of adding K
        per feature. Called with at least one pattern feature and one window (scores:
        PATTERN_WINDOWS or more). Runs holding the GIL: the stamps are shared, like
        _renumber's."""
        cdef const int[:, :, ::1] ids = ids_bkf
        cdef int B = ids.shape[0], K = self.K, H = self.H, P = len(patterns) * self.K
        cdef Py_ssize_t i, j, r
        cdef long long key, keys = 1
        cdef int n = 0, clock
        fk = np.empty((P, 2), dtype=np.int32)                # (feature, position) per term
        mult_arr = np.empty(P, dtype=np.int64)               # each term's place value
        for j, (f, k) in enumerate((f, k) for f in patterns for k in range(K)):
            fk[j] = f, k
            mult_arr[j] = keys
            keys *= self.cache_rows[f]
        stamps = self.pattern_stamps
        if stamps is None or stamps.shape[1] < keys:
            stamps = self.pattern_stamps = np.zeros((2, keys), dtype=np.int32)
        clock = self.pattern_clock = _next_clock(self.pattern_clock, (stamps,))
        slots_arr = np.empty(B, dtype=np.int32)
        first_arr = np.empty(B, dtype=np.int64)              # each pattern's first window
        cdef int[:, ::1] seen = stamps                       # row 0: stamp; row 1: slot
        cdef const int[:, ::1] terms = fk
        cdef const long long[::1] mult = mult_arr
        cdef int[::1] slots = slots_arr
        cdef long long[::1] first = first_arr
        for i in range(B):
            key = 0
            for j in range(P):
                key += ids[i, terms[j, 1], terms[j, 0]] * mult[j]
            if seen[0, key] != clock:
                seen[0, key] = clock
                seen[1, key] = n
                first[n] = i
                n += 1
            slots[i] = seen[1, key]
        rows_arr = np.empty((n, H), dtype=np.float32)
        cdef float[:, ::1] rows = rows_arr
        cdef const uint16_t** parts = <const uint16_t**>malloc(P * sizeof(void*))
        if parts == NULL:
            raise MemoryError("CachedScorer: no memory for the patterns")
        for r in range(n):
            i = first[r]
            for j in range(P):
                parts[j] = &self.cache_ptr[terms[j, 0]][(ids[i, terms[j, 1], terms[j, 0]] * K
                                                         + terms[j, 1]) * H]
            fastner_sum_half_rows(&rows[r, 0], self.b, parts, P, H)
        free(parts)
        return slots_arr, rows_arr

    def _products_of_misses(self, chunk, tables):
        """Ids past a cache are renumbered cache_rows + slot into the chunk's products
        of its distinct missed rows, float32 (n, K·H) per feature (None: no misses).
        The caller's array is never renumbered: a copy is."""
        missed = [None] * self.F
        chunk = chunk.copy()
        for f in range(self.F):
            table, first = tables[f]
            if self.cache_rows[f] == first + table.shape[0]:
                continue
            rows = self._renumber(f, chunk, first + table.shape[0])
            if rows.shape[0]:
                missed[f] = table[rows - first] @ self.row_products[f]
        return chunk, missed

    def _renumber(self, f, chunk, limit):
        """The distinct rows among feature f's ids past its cache in ``chunk`` (int32
        (B, K, F); all below ``limit``), in order of first sight, each such id replaced
        in place by cache_rows + its row's slot: np.unique's work without its sort, in
        one pass with no masks, which cost more than the scoring for a one-sentence
        request. Runs holding the GIL (a scorer may serve several threads; the stamps
        are shared)."""
        stamps = self.stamps[f]
        if stamps is None or stamps.shape[1] < limit:
            stamps = self.stamps[f] = np.zeros((2, max(limit, 1)), dtype=np.int32)
        self.clock = _next_clock(self.clock, self.stamps)   # every feature's: one clock
        cdef int[:, :, ::1] ids = chunk
        rows_r = np.empty(ids.shape[0] * ids.shape[1], dtype=np.int64)
        cdef int[:, ::1] seen = stamps            # row 0: stamp; row 1: slot
        cdef long long[::1] rows = rows_r
        cdef int clock = self.clock, base = self.cache_rows[f], v, n = 0, column = f
        cdef Py_ssize_t b, k
        for b in range(ids.shape[0]):
            for k in range(ids.shape[1]):
                v = ids[b, k, column]
                if v < base:
                    continue
                if seen[0, v] != clock:
                    seen[0, v] = clock
                    seen[1, v] = n
                    rows[n] = v
                    n += 1
                ids[b, k, column] = base + seen[1, v]
        return rows_r[:n]

    def _score_chunk(self, chunk, missed, slots_b, pattern_rows, in_pattern, out):
        """Scores of a chunk's windows into ``out``; with patterns (slots_b not None)
        each window starts from its pattern's row and skips the features in_pattern
        marks, else from b."""
        cdef const int[:, :, ::1] ids = chunk
        cdef float[:, ::1] S = out
        cdef const int[::1] slots_v
        cdef const float[:, ::1] rows_v
        cdef const int[::1] skip_v
        cdef const int* slots = NULL
        cdef const float* starts = NULL
        cdef const int* skip = NULL
        cdef int F = self.F, B = ids.shape[0], start = 0, n
        if B == 0:
            return
        if slots_b is not None:
            slots_v, rows_v, skip_v = slots_b, pattern_rows, in_pattern
            slots, starts, skip = &slots_v[0], &rows_v[0, 0], &skip_v[0]
        # the hidden rows of one block, sized to the chunk (a short request does not
        # allocate a whole block's 300 KB); per window, pointers to its cached (half)
        # and missed (float) rows; per feature, its missed products. malloc, not NumPy:
        # three small arrays cost a one-sentence request more than its arithmetic.
        cdef float* Z = <float*>malloc(min(B, SCORER_BLOCK) * self.H * sizeof(float))
        cdef void** rows = <void**>malloc((2 * self.K * F + F) * sizeof(void*))
        if Z == NULL or rows == NULL:
            free(Z)
            free(rows)
            raise MemoryError("CachedScorer: no memory for a block of windows")
        cdef const float** bases = <const float**>&rows[2 * self.K * F]
        cdef const float[:, ::1] mview
        try:
            for f in range(F):
                bases[f] = NULL
                if missed[f] is not None:
                    mview = missed[f]
                    bases[f] = &mview[0, 0]
            with nogil:
                while start < B:
                    n = B - start if B - start < SCORER_BLOCK else SCORER_BLOCK
                    self._block(ids, start, n, bases,
                                &slots[start] if slots != NULL else NULL, starts, skip,
                                Z, <const uint16_t**>rows,
                                <const float**>&rows[self.K * F], &S[start, 0])
                    start += n
        finally:
            free(Z)
            free(rows)

    cdef void _block(self, const int[:, :, ::1] ids, int start, int n,
                     const float** missed, const int* slots, const float* pattern_rows,
                     const int* in_pattern, float* Z, const uint16_t** hit_rows,
                     const float** miss_rows, float* S) noexcept nogil:
        # slots NULL: every window starts from b and adds every feature's rows
        cdef int H = self.H, T = self.T, K = self.K, F = self.F, T8
        cdef Py_ssize_t i, k, f, t
        cdef int v, cached, hits, misses
        cdef float* z
        cdef const float* base
        # with the cache's tanh, each window's tanh waits for the next window's sums and
        # runs in the same pass over the columns (fastner/_tanh.h, fastner_sum5_and_tanh)
        cdef bint fused = self.act == 1 and fastner_tanh_has_rcp and fastner_use_f16c
        cdef float* prev = NULL                 # the hidden row whose tanh is still to come
        for i in range(n):
            z = &Z[i * H]
            hits = misses = 0
            if i + PREFETCH_AHEAD < n:
                # the newest word of a window PREFETCH_AHEAD ahead: all K of its rows,
                # cached (half) or this chunk's product (float), are read by the next K
                # windows (not a pattern feature's: its rows are read once per pattern)
                for f in range(F):
                    if in_pattern != NULL and in_pattern[f]:
                        continue
                    v = ids[start + i + PREFETCH_AHEAD, K - 1, f]
                    if v < self.cache_rows[f]:
                        fastner_prefetch_l2(&self.cache_ptr[f][v * K * H], K * H * 2)
                    else:
                        fastner_prefetch_l2(&missed[f][(v - self.cache_rows[f]) * K * H],
                                            K * H * 4)
            for k in range(K):
                for f in range(F):
                    if in_pattern != NULL and in_pattern[f]:
                        continue                # in the window's pattern row
                    v = ids[start + i, k, f]
                    cached = self.cache_rows[f]
                    if v < cached:
                        hit_rows[hits] = &self.cache_ptr[f][(v * K + k) * H]
                        hits += 1
                    else:
                        miss_rows[misses] = &missed[f][((v - cached) * K + k) * H]
                        misses += 1
            # z = the window's pattern row (b included), or b, plus its cached rows
            base = &pattern_rows[slots[i] * H] if slots != NULL else self.b
            if fused and hits == 5 and misses == 0:
                fastner_sum5_and_tanh(z, base, hit_rows, NULL, prev, H)
            elif fused and hits == 4 and misses == 1:
                fastner_sum5_and_tanh(z, base, hit_rows, miss_rows[0], prev, H)
            else:
                fastner_sum_half_rows(z, base, hit_rows, hits, H)
                _add_rows(z, miss_rows, misses, H)
                if prev != NULL:
                    _tanh_row_for_the_cache(prev, H)
            if fused:
                prev = z                        # its tanh: in the next window's pass
            elif self.act == 1:
                _tanh_row_for_the_cache(z, H)
            else:
                activate_row(z, H, self.act)
        if prev != NULL:
            _tanh_row_for_the_cache(prev, H)
        # S = Z Uᵀ + c for the block (NumPy: S = Z @ U.T + c)
        for i in range(n):
            for t in range(T):
                S[i * T + t] = self.c[t]
        if fastner_has_output_layer:
            fastner_output_layer(Z, n, H, self.UT, self.U, T, S)
            return
        # the BLAS, the tags in two products: the first T8 (a multiple of 8), then the
        # rest. OpenBLAS's kernels multiply 8 columns of Uᵀ per pass; at T = 9 (CoNLL's
        # tags) the 9th took a whole second pass (SkylakeX kernel, a block of 256
        # windows: 22.5 µs for 9 columns, 13.1 for the first 8 and 4.7 for the 9th)
        T8 = T - T % 8
        gemm_rm(False, False, n, T8, H, 1.0, Z, H, self.UT, T, 1.0, S, T)
        gemm_rm(False, False, n, T - T8, H, 1.0, Z, H, &self.UT[T8], T, 1.0, &S[T8], T)


# --------------------------------------------------------------------------
# 7. the Adam update, dense and at the rows a batch touched (derivations §U2, §U3)

cdef extern from "_adam.h":
    void fastner_adam_row(float* p, float* g, float* m, float* v, long n, float scale,
                          float beta1, float one_minus_beta1, float beta2,
                          float one_minus_beta2, float step, float eps) noexcept nogil


def _check_adam_hyper(kernel, beta1, beta2, eps, grad_scale):
    if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
        raise ValueError(f"{kernel}: beta1 and beta2 must be in [0, 1); got {beta1}, {beta2}")
    if not eps > 0.0:
        raise ValueError(f"{kernel}: eps must be positive; got {eps}")
    if not grad_scale > 0.0:
        raise ValueError(f"{kernel}: grad_scale must be positive; got {grad_scale}")


def adam_update(param_n, grad_n, m_n, v_n, step, beta1=0.9, beta2=0.999, eps=1e-8,
                grad_scale=1.0):
    """One Adam step over a flat float32 parameter slice, in place, in one pass.

    g ← grad·grad_scale (gradient clipping); m ← β1·m + (1−β1)·g;
    v ← β2·v + (1−β2)·g²; param ← param − step·m/(√v + ε), where the caller folds
    the bias corrections into step = lr·√(1−β2ᵗ)/(1−β1ᵗ); all in float32, the
    scalars rounded to float32 first (fastner/_adam.h). grad is zeroed (consumed). The
    result equals fastner.reference.adam_update bit for bit. All four arrays: float32 (n,),
    C-contiguous, writable.
    """
    kernel = "adam_update"
    _check_array(kernel, "param_n", param_n, np.float32, (("n", None),), writable=True)
    n = param_n.shape[0]
    for name, x in (("grad_n", grad_n), ("m_n", m_n), ("v_n", v_n)):
        _check_array(kernel, name, x, np.float32, (("n", n),), writable=True)
    _check_adam_hyper(kernel, beta1, beta2, eps, grad_scale)
    if n == 0:
        return
    cdef float[::1] p = param_n
    cdef float[::1] g = grad_n
    cdef float[::1] m = m_n
    cdef float[::1] v = v_n
    # the (1 − β) factors are rounded to float32 from double, as NumPy rounds them
    cdef float b1 = beta1, c1 = 1.0 - beta1, b2 = beta2, c2 = 1.0 - beta2
    cdef float e = eps
    cdef float s = step, scale = grad_scale
    cdef long size = n
    with nogil:
        fastner_adam_row(&p[0], &g[0], &m[0], &v[0], size, scale, b1, c1, b2, c2, s, e)


def adam_update_rows(table_ve, grad_ve, m_ve, v_ve, rows_r, step, beta1=0.9, beta2=0.999,
                     eps=1e-8, grad_scale=1.0):
    """adam_update applied to the given rows of a table only ("lazy" sparse Adam:
    rows a batch did not touch, and their m and v, do not move). The rows' gradient
    is zeroed. table, grad, m, v: float32 (V, e); rows_r: int32, strictly
    increasing (as np.unique returns them), each in [0, V).
    """
    kernel = "adam_update_rows"
    _check_array(kernel, "table_ve", table_ve, np.float32, (("V", None), ("e", None)),
                 writable=True)
    V, e = table_ve.shape
    for name, x in (("grad_ve", grad_ve), ("m_ve", m_ve), ("v_ve", v_ve)):
        _check_array(kernel, name, x, np.float32, (("V", V), ("e", e)), writable=True)
    _check_array(kernel, "rows_r", rows_r, np.int32, (("r", None),))
    _check_adam_hyper(kernel, beta1, beta2, eps, grad_scale)
    cdef const int[::1] rows = rows_r
    cdef Py_ssize_t r, bad = -1, R = rows.shape[0]
    cdef long width = e
    cdef int V_ = V
    _check_ids(kernel, "rows_r", rows_r, &rows[0], &V_, 1, _TABLE_ROWS)
    with nogil:
        for r in range(1, R):
            if rows[r] <= rows[r - 1]:
                bad = r
                break
    if bad >= 0:
        raise ValueError(f"{kernel}: rows_r must be strictly increasing (unique rows); "
                         f"rows_r[{bad - 1}] = {rows_r[bad - 1]}, rows_r[{bad}] = {rows_r[bad]}")
    if R == 0 or e == 0:
        return
    cdef float[:, ::1] p = table_ve
    cdef float[:, ::1] g = grad_ve
    cdef float[:, ::1] m = m_ve
    cdef float[:, ::1] v = v_ve
    cdef float b1 = beta1, c1 = 1.0 - beta1, b2 = beta2, c2 = 1.0 - beta2
    cdef float eps_f = eps
    cdef float s = step, scale = grad_scale
    cdef int row
    with nogil:
        for r in range(R):
            row = rows[r]
            fastner_adam_row(&p[row, 0], &g[row, 0], &m[row, 0], &v[row, 0], width, scale,
                             b1, c1, b2, c2, s, eps_f)


# --------------------------------------------------------------------------
# 8. character features: a convolution over each word's characters and max-over-time
#    pooling (derivations §W1–W4)

cdef void _max_over_positions(const float[:, ::1] Z_pj, const int[::1] lengths_n,
                              const float[::1] bc_j, float[:, ::1] out_nj,
                              int[:, ::1] argmax_nj) noexcept nogil:
    # out[n, j] = max over word n's positions p of Z[p, j], + bc[j]; the first p that
    # attains it is remembered for the backward pass   (derivations §W2)
    cdef Py_ssize_t n, j, p, at = 0
    cdef int best
    for n in range(lengths_n.shape[0]):
        for j in range(Z_pj.shape[1]):
            best = <int>at
            for p in range(at + 1, at + lengths_n[n]):
                if Z_pj[p, j] > Z_pj[best, j]:
                    best = <int>p
            argmax_nj[n, j] = best
            out_nj[n, j] = Z_pj[best, j] + bc_j[j]
        at += lengths_n[n]


def _check_char_positions(kernel, chars_pk, table_ve):
    _check_array(kernel, "chars_pk", chars_pk, np.int32, (("P", None), ("K", None)))
    _check_array(kernel, "table_ve", table_ve, np.float32, (("V", None), ("e", None)))
    cdef const int[:, ::1] chars = chars_pk
    cdef int V = table_ve.shape[0]
    _check_ids(kernel, "chars_pk", chars_pk, &chars[0, 0] if chars_pk.size else NULL, &V, 1,
               _TABLE_ROWS)
    P, K = chars_pk.shape
    return P, K, table_ve.shape[1]


def char_cnn_forward(chars_pk, lengths_n, table_ve, Wc_jd, bc_j, out_nj=None, argmax_nj=None):
    """Character vectors of N words: a width-K convolution over each word's characters,
    max over its positions, plus a bias (derivations §W1, §W2).

    chars_pk: int32 (P, K), the character ids (rows of table_ve) under the K-wide
    filter at each of the P positions of all words laid end to end (a word of m
    characters between its begin and end marks has m positions); lengths_n: int32
    (N,), each word's positions, each ≥ 1, summing to P; table_ve: float32 (V, e)
    character embeddings; Wc_jd: float32 (J, D = K·e) filters; bc_j: float32 (J,).
    Returns (out_nj, argmax_nj): float32 (N, J) vectors and int32 (N, J) the position
    p each maximum came from (the first, on ties), both allocated when None.
    """
    kernel = "char_cnn_forward"
    P, K, e = _check_char_positions(kernel, chars_pk, table_ve)
    D = K * e
    _check_array(kernel, "lengths_n", lengths_n, np.int32, (("N", None),))
    N = lengths_n.shape[0]
    _check_array(kernel, "Wc_jd", Wc_jd, np.float32, (("J", None), ("D", D)))
    J = Wc_jd.shape[0]
    _check_array(kernel, "bc_j", bc_j, np.float32, (("J", J),))
    _check_positive(kernel, J=J, e=e, K=K)
    shortest, total, _ = _length_stats(lengths_n)
    if N and (shortest < 1 or total != P):
        raise ValueError(f"{kernel}: lengths_n must be at least 1 each and sum to P = {P}; "
                         f"got {lengths_n.tolist()[:10]} (sum {total})")
    if not N and P:
        raise ValueError(f"{kernel}: lengths_n is empty but chars_pk has {P} positions")
    if out_nj is None:
        out_nj = np.empty((N, J), dtype=np.float32)
    if argmax_nj is None:
        argmax_nj = np.empty((N, J), dtype=np.int32)
    _check_array(kernel, "out_nj", out_nj, np.float32, (("N", N), ("J", J)), writable=True)
    _check_array(kernel, "argmax_nj", argmax_nj, np.int32, (("N", N), ("J", J)),
                 writable=True)
    if P == 0:
        return out_nj, argmax_nj
    X_pd = np.empty((P, D), dtype=np.float32)
    Z_pj = np.empty((P, J), dtype=np.float32)
    cdef const int[:, ::1] chars = chars_pk
    cdef const float[:, ::1] table = table_ve
    cdef const float[:, ::1] Wc = Wc_jd
    cdef const float[::1] bc = bc_j
    cdef const int[::1] lengths = lengths_n
    cdef float[:, ::1] X = X_pd
    cdef float[:, ::1] Z = Z_pj
    cdef float[:, ::1] out = out_nj
    cdef int[:, ::1] argmax = argmax_nj
    cdef int P_ = P, J_ = J, D_ = D, e_ = e
    with nogil:
        _lookup_forward(chars, table, X, e_, 0)                 # X[p] = [C[c₀]; …; C[c_K−1]]
        gemm_rm(False, True, P_, J_, D_, 1.0, &X[0, 0], D_, &Wc[0, 0], D_, 0.0, &Z[0, 0], J_)
        _max_over_positions(Z, lengths, bc, out, argmax)        # Z = X Wcᵀ, then max
    return out_nj, argmax_nj


cdef void _char_cnn_backward(const float[:, ::1] dV_nj, const int[:, ::1] argmax_nj,
                             const int[:, ::1] chars_pk, const float[:, ::1] table_ve,
                             const float[:, ::1] Wc_jd, float[:, ::1] dtable_ve,
                             float[:, ::1] dWc_jd, float[::1] dbc_j) noexcept nogil:
    # Only the arg-max position p of each (word, filter) had an effect, so with
    # g = δ_V[n, j]: δbc[j] += g; δWc[j] += g·X[p]; δC[c_k] += g·Wc[j, k-th block]
    # for the K characters c_k under the filter at p   (derivations §W3, §W4)
    cdef Py_ssize_t n, j, k, i
    cdef int K = chars_pk.shape[1], e = table_ve.shape[1], p, c
    cdef float g
    for n in range(dV_nj.shape[0]):
        for j in range(dV_nj.shape[1]):
            g = dV_nj[n, j]
            p = argmax_nj[n, j]
            dbc_j[j] += g
            for k in range(K):
                c = chars_pk[p, k]
                for i in range(e):
                    dWc_jd[j, k * e + i] += g * table_ve[c, i]
                    dtable_ve[c, i] += g * Wc_jd[j, k * e + i]


def char_cnn_backward(dV_nj, argmax_nj, chars_pk, table_ve, Wc_jd, dtable_ve, dWc_jd, dbc_j):
    """Add the gradients of char_cnn_forward's output into dtable_ve, dWc_jd and dbc_j.

    dV_nj: float32 (N, J), δ of the character vectors; argmax_nj: int32 (N, J) as
    char_cnn_forward returned it (positions in [0, P)); chars_pk, table_ve, Wc_jd as
    given to it; dtable_ve (V, e), dWc_jd (J, D), dbc_j (J,): float32, added into.
    """
    kernel = "char_cnn_backward"
    P, K, e = _check_char_positions(kernel, chars_pk, table_ve)
    D = K * e
    _check_array(kernel, "dV_nj", dV_nj, np.float32, (("N", None), ("J", None)))
    N, J = dV_nj.shape
    _check_array(kernel, "argmax_nj", argmax_nj, np.int32, (("N", N), ("J", J)))
    _check_array(kernel, "Wc_jd", Wc_jd, np.float32, (("J", J), ("D", D)))
    _check_array(kernel, "dtable_ve", dtable_ve, np.float32,
                 (("V", table_ve.shape[0]), ("e", e)), writable=True)
    _check_array(kernel, "dWc_jd", dWc_jd, np.float32, (("J", J), ("D", D)), writable=True)
    _check_array(kernel, "dbc_j", dbc_j, np.float32, (("J", J),), writable=True)
    cdef const int[:, ::1] arg = argmax_nj
    cdef int P_ = P
    if argmax_nj.size:
        _check_ids(kernel, "argmax_nj", argmax_nj, &arg[0, 0], &P_, 1,
                   "the {limit} positions of chars_pk (valid positions are 0..{last})")
    if N == 0 or J == 0:
        return
    cdef const float[:, ::1] dV = dV_nj
    cdef const int[:, ::1] chars = chars_pk
    cdef const float[:, ::1] table = table_ve
    cdef const float[:, ::1] Wc = Wc_jd
    cdef float[:, ::1] dtable = dtable_ve
    cdef float[:, ::1] dWc = dWc_jd
    cdef float[::1] dbc = dbc_j
    with nogil:
        _char_cnn_backward(dV, arg, chars, table, Wc, dtable, dWc, dbc)


# --------------------------------------------------------------------------
# 9. a whole Adam training step of the CRF window model, fused (derivations §U5)

cdef double _sum_of_squares(const float* x, Py_ssize_t n) noexcept nogil:
    # Σ x² in double over eight running sums (a fixed order that the compiler can keep
    # in vector registers; one running sum waits on each addition in turn)
    cdef double acc[8]
    cdef Py_ssize_t i, k
    cdef double total = 0.0
    for k in range(8):
        acc[k] = 0.0
    for i in range(0, n - n % 8, 8):
        for k in range(8):
            acc[k] += <double>x[i + k] * x[i + k]
    for i in range(n - n % 8, n):
        total += <double>x[i] * x[i]
    for k in range(8):
        total += acc[k]
    return total


cdef class AdamCRFStep:
    """One training step of the shipped configuration in a single call: lookup, the
    hidden and output layers, the CRF's forward-backward, the backward through both
    layers into the tables' rows, the gradient-norm clip and the Adam update of the
    dense parameters and of the table rows the batch touched (derivations §F1–§F4,
    §C1–§C4, §B2–§B5, §U2, §U3, §U5).

    The same arithmetic as the unfused trainer (WindowTagger.loss_and_backward, then
    Optimizer.step) in the same order through the same C routines, so the parameters
    agree bit for bit whenever the clip does not bind; when it binds, the norm is
    summed here in double in another order than NumPy's float32 sums, and the scale
    differs in its last bits. The batch's ids arrive already assembled (word dropout
    and re-casing are one vectorised NumPy step before this call).

    flat, grad, m, v: float32 (n,) buffers laid out as ``layout`` ((name, shape), as
    WindowTagger.layout: W, b, U, c, trans, start, end first, the ``dense_size``
    dense values, then ``table.*``); grad must be zero between steps (each step
    consumes what it adds). mask_tt, mask_start_t: float32, 0 or -inf for the IOB2
    moves a CRF may not make. offsets: each table's column within a position.
    """
    cdef object arrays
    cdef float[::1] dense, dense_grad, dense_m, dense_v
    cdef float[:, ::1] W, U, dW, dU, trans, dtrans, mask, A
    cdef float[::1] b, c, db, dc, start, end, dstart, dend, mask_start, A_start
    cdef float** table_ptr
    cdef float** grad_ptr
    cdef float** m_ptr
    cdef float** v_ptr
    cdef int* table_rows
    cdef int* table_dim
    cdef int* table_offset
    cdef int* stamps                         # per table row: the last step that touched it
    cdef long* stamp_at                      # each table's first entry in stamps
    cdef int F, K, E, D, H, T, act, clock
    cdef double clip, emb_lr_scale
    cdef float beta1, one_minus_beta1, beta2, one_minus_beta2, eps
    cdef object work                         # workspace arrays, grown on demand
    cdef object one_step                     # step()'s bounds and step sizes for steps()
    cdef int capacity, longest

    def __cinit__(self):
        self.table_ptr = self.grad_ptr = self.m_ptr = self.v_ptr = NULL
        self.table_rows = self.table_dim = self.table_offset = self.stamps = NULL
        self.stamp_at = NULL

    def __init__(self, flat, grad, m, v, layout, dense_size, mask_tt, mask_start_t, activation,
                 offsets, K, clip, emb_lr_scale, beta1=0.9, beta2=0.999, eps=1e-8):
        kernel = "AdamCRFStep"
        blas_small_products()
        self.act = _activation_code(kernel, activation)
        _check_array(kernel, "flat", flat, np.float32, (("n", None),), writable=True)
        n = flat.shape[0]
        for name, x in (("grad", grad), ("m", m), ("v", v)):
            _check_array(kernel, name, x, np.float32, (("n", n),), writable=True)
        _check_adam_hyper(kernel, beta1, beta2, eps, 1.0)
        if not (clip >= 0.0 and emb_lr_scale >= 0.0):
            raise ValueError(f"{kernel}: clip and emb_lr_scale must be >= 0; got {clip} and "
                             f"{emb_lr_scale}")
        names = [name for name, _ in layout]
        sizes = [int(np.prod(shape)) for _, shape in layout]
        dense_names = ["W", "b", "U", "c", "trans", "start", "end"]
        if (names[:7] != dense_names or sum(sizes) != n or sum(sizes[:7]) != dense_size
                or not all(name.startswith("table.") for name in names[7:])
                or len(names) == 7):
            raise ValueError(f"{kernel}: layout must be W, b, U, c, trans, start, end, then "
                             f"tables (table.NAME), covering flat's {n} values with the "
                             f"first {dense_size} dense; got {names} ({sum(sizes)} values)")
        views = []
        for buf in (flat, grad, m, v):
            out, at = {}, 0
            for (name, shape), size in zip(layout, sizes):
                out[name] = buf[at:at + size].reshape(shape)
                at += size
            views.append(out)
        p, g, mv, vv = views
        H, D = p["W"].shape
        T = p["U"].shape[0]
        _check_positive(kernel, D=D, H=H, T=T, K=K)
        if p["U"].shape[1] != H or p["trans"].shape != (T, T):
            raise ValueError(f"{kernel}: layout shapes do not fit together: W {p['W'].shape}, "
                             f"U {p['U'].shape}, trans {p['trans'].shape}")
        _check_array(kernel, "mask_tt", mask_tt, np.float32, (("T", T), ("T", T)))
        _check_array(kernel, "mask_start_t", mask_start_t, np.float32, (("T", T),))
        tables = [p[name] for name in names[7:]]
        if len(offsets) != len(tables):
            raise ValueError(f"{kernel}: need one offset per table; got {len(offsets)} "
                             f"offsets for {len(tables)} tables")
        self.F, self.K, self.D, self.H, self.T = len(tables), K, D, H, T
        self.E = _check_window_slice(kernel, D, K, 0, 0)
        for f, (table, offset) in enumerate(zip(tables, offsets)):
            _check_window_slice(kernel, D, K, table.shape[1], offset)
        self.table_ptr = <float**>pointer_array(self.F)
        self.grad_ptr = <float**>pointer_array(self.F)
        self.m_ptr = <float**>pointer_array(self.F)
        self.v_ptr = <float**>pointer_array(self.F)
        self.table_rows = int_array([t.shape[0] for t in tables])
        self.table_dim = int_array([t.shape[1] for t in tables])
        self.table_offset = int_array(offsets)
        cdef float[:, ::1] view
        for f, name in enumerate(names[7:]):
            view = p[name]
            self.table_ptr[f] = &view[0, 0]
            view = g[name]
            self.grad_ptr[f] = &view[0, 0]
            view = mv[name]
            self.m_ptr[f] = &view[0, 0]
            view = vv[name]
            self.v_ptr[f] = &view[0, 0]
        self.stamps = <int*>calloc(max(1, sum(t.shape[0] for t in tables)), sizeof(int))
        self.stamp_at = <long*>calloc(self.F, sizeof(long))
        if self.stamps == NULL or self.stamp_at == NULL:
            raise MemoryError(kernel)
        for f in range(1, self.F):
            self.stamp_at[f] = self.stamp_at[f - 1] + tables[f - 1].shape[0]
        self.dense, self.dense_grad = flat[:dense_size], grad[:dense_size]
        self.dense_m, self.dense_v = m[:dense_size], v[:dense_size]
        self.W, self.b, self.U, self.c = p["W"], p["b"], p["U"], p["c"]
        self.trans, self.start, self.end = p["trans"], p["start"], p["end"]
        self.dW, self.db, self.dU, self.dc = g["W"], g["b"], g["U"], g["c"]
        self.dtrans, self.dstart, self.dend = g["trans"], g["start"], g["end"]
        self.mask, self.mask_start = mask_tt, mask_start_t
        self.A = np.empty((T, T), dtype=np.float32)
        self.A_start = np.empty(T, dtype=np.float32)
        self.clip, self.emb_lr_scale = clip, emb_lr_scale
        # the (1 − β) factors rounded to float32 from double, as adam_update rounds them
        self.beta1, self.one_minus_beta1 = beta1, 1.0 - beta1
        self.beta2, self.one_minus_beta2 = beta2, 1.0 - beta2
        self.eps = eps
        self.arrays = (flat, grad, m, v, mask_tt, mask_start_t)
        self.one_step = (np.zeros(1, np.int32), np.zeros(1, np.int32),
                         np.zeros(1, np.float32), np.zeros(1, np.float32))
        self.capacity = self.longest = self.clock = 0

    def __dealloc__(self):
        free(self.table_ptr)
        free(self.grad_ptr)
        free(self.m_ptr)
        free(self.v_ptr)
        free(self.table_rows)
        free(self.table_dim)
        free(self.table_offset)
        free(self.stamps)
        free(self.stamp_at)

    def step(self, ids_bkf, y_b, lengths_n, double step_dense, double step_tables):
        """One step on a batch of whole sentences; returns its mean loss per token.

        ids_bkf: int32 (B, K, F) each window's ids per table; y_b: int32 (B,) gold
        tags; lengths_n: int32 (N,) sentence lengths summing to B; step_dense and
        step_tables: Adam's step sizes for the dense parameters and the tables, the
        bias corrections folded in (lr·√(1−β2ᵗ)/(1−β1ᵗ), as Optimizer computes them;
        the update uses them rounded to float32). ``steps`` with one batch.
        """
        ends, sentence_ends, dense, tables = self.one_step
        ends[0], sentence_ends[0] = np.shape(y_b)[0], np.shape(lengths_n)[0]
        dense[0], tables[0] = step_dense, step_tables
        return float(self.steps(ids_bkf, y_b, lengths_n, ends, sentence_ends, dense,
                                tables)[0])

    def steps(self, ids_bkf, y_b, lengths_n, ends_s, sentence_ends_s, step_dense_s,
              step_tables_s):
        """S consecutive steps in one call (the trainer passes an epoch's batches a few
        hundred at a time); returns each step's mean loss per token, float64 (S,).

        ids_bkf, y_b, lengths_n: the batches' windows, gold tags and sentence lengths
        laid end to end, as ``step`` takes one batch's. Step s takes windows
        ends_s[s−1]:ends_s[s] (from 0 for s = 0) and sentences sentence_ends_s[s−1]:
        sentence_ends_s[s], whose lengths sum to its window count (int32 (S,) each;
        the last ends are B and N), with Adam's step sizes step_dense_s[s] and
        step_tables_s[s] (float32 (S,)). A step without windows changes nothing.
        """
        kernel = "AdamCRFStep.steps"
        _check_array(kernel, "ids_bkf", ids_bkf, np.int32, (("B", None), ("K", self.K),
                                                           ("F", self.F)))
        B = ids_bkf.shape[0]
        _check_array(kernel, "y_b", y_b, np.int32, (("B", B),))
        _check_array(kernel, "lengths_n", lengths_n, np.int32, (("N", None),))
        _check_array(kernel, "ends_s", ends_s, np.int32, (("S", None),))
        cdef int n_steps = ends_s.shape[0]
        _check_array(kernel, "sentence_ends_s", sentence_ends_s, np.int32, (("S", n_steps),))
        cdef const float[::1] sizes
        cdef int s
        for name, x in (("step_dense_s", step_dense_s), ("step_tables_s", step_tables_s)):
            _check_array(kernel, name, x, np.float32, (("S", n_steps),))
            sizes = x
            for s in range(n_steps):
                if not sizes[s] >= 0:            # NaN fails too
                    raise ValueError(f"{kernel}: step sizes must be >= 0; got {name} = "
                                     f"{x.tolist()[:10]}")
        cdef const int[::1] lengths = lengths_n
        cdef const int[::1] ends = ends_s
        cdef const int[::1] sentence_ends = sentence_ends_s
        cdef int at = 0, sentence_at = 0, widest = 0, longest = 0
        cdef long long total
        cdef Py_ssize_t n
        for s in range(n_steps):            # each step's sentences fill its windows
            total = -1
            if sentence_at <= sentence_ends[s] <= lengths.shape[0]:
                total = 0
                for n in range(sentence_at, sentence_ends[s]):
                    if lengths[n] < 0:
                        total = -1
                        break
                    total += lengths[n]
                    longest = max(longest, lengths[n])
            if not (at <= ends[s] <= B and total == ends[s] - at):
                raise ValueError(f"{kernel}: step {s} takes windows {at}:{ends[s]} and "
                                 f"sentences {sentence_at}:{sentence_ends[s]} (ends_s, "
                                 f"sentence_ends_s), whose lengths_n must be >= 0 and sum "
                                 f"to its {ends[s] - at} windows, within B = {B} and N = "
                                 f"{lengths.shape[0]}")
            widest = max(widest, ends[s] - at)
            at, sentence_at = ends[s], sentence_ends[s]
        if at != B or sentence_at != lengths.shape[0]:
            raise ValueError(f"{kernel}: the steps must take all B = {B} windows and N = "
                             f"{lengths.shape[0]} sentences of lengths_n (ends_s and "
                             f"sentence_ends_s end at {at} and {sentence_at})")
        losses = np.zeros(n_steps, dtype=np.float64)
        if B == 0:
            return losses
        cdef const int[:, :, ::1] ids = ids_bkf
        cdef const int[::1] y = y_b
        _check_ids(kernel, "ids_bkf", ids_bkf, &ids[0, 0, 0], self.table_rows, self.F,
                   _FEATURE_ROWS)
        _check_ids(kernel, "y_b", y_b, &y[0], &self.T, 1, _TAGS)
        if widest > self.capacity or longest > self.longest:
            self.capacity = max(widest, 2 * self.capacity)
            self.longest = max(longest, 2 * self.longest)
            self.work = (np.empty(self.capacity * (2 * self.D + 3 * self.H + 2 * self.T),
                                  dtype=np.float32),
                         np.empty((3 * self.T + 1) * self.longest
                                  + _crf_exps_size(self.T), dtype=np.float64),
                         np.empty(self.capacity * self.K * self.F, dtype=np.int32),
                         np.empty(self.F, dtype=np.int32))
        cdef float[::1] work = self.work[0]
        cdef double[::1] ab = self.work[1]
        cdef int[::1] touched = self.work[2]
        cdef int[::1] counts = self.work[3]
        cdef const float[::1] step_dense = step_dense_s
        cdef const float[::1] step_tables = step_tables_s
        cdef double[::1] loss = losses
        at = sentence_at = 0
        with nogil:
            for s in range(n_steps):
                if ends[s] > at:
                    self.clock += 1
                    if self.clock == INT_MAX:       # stamps would repeat: start afresh
                        memset(self.stamps, 0, self.stamp_at[self.F - 1] * sizeof(int)
                               + self.table_rows[self.F - 1] * sizeof(int))
                        self.clock = 1
                    if s + 1 < n_steps:
                        self._prefetch_rows(ids, ends[s], ends[s + 1])
                    loss[s] = self._step(ids[at:ends[s]], y[at:ends[s]],
                                         lengths[sentence_at:sentence_ends[s]], ends[s] - at,
                                         step_dense[s], step_tables[s], &work[0], &ab[0],
                                         &touched[0], &counts[0])
                at, sentence_at = ends[s], sentence_ends[s]
        return losses

    cdef void _prefetch_rows(self, const int[:, :, ::1] ids, int start,
                             int stop) noexcept nogil:
        # the next step's table rows, with their gradient and moment rows, start on
        # their way to the cache while this step runs: rare words' rows come from
        # memory (every token is the middle of one window: that column names every
        # row but padding's, which stays cached)
        cdef Py_ssize_t i, f
        cdef long at
        cdef int n
        for i in range(start, stop):
            for f in range(self.F):
                at = <long>ids[i, self.K // 2, f] * self.table_dim[f]
                n = self.table_dim[f] * sizeof(float)
                fastner_prefetch(&self.table_ptr[f][at], n)
                fastner_prefetch(&self.grad_ptr[f][at], n)
                fastner_prefetch(&self.m_ptr[f][at], n)
                fastner_prefetch(&self.v_ptr[f][at], n)

    cdef double _step(self, const int[:, :, ::1] ids, const int[::1] y,
                      const int[::1] lengths, int B, double step_dense, double step_tables,
                      float* work, double* alpha, int* touched,
                      int* counts) noexcept nogil:
        cdef int K = self.K, E = self.E, D = self.D, H = self.H, T = self.T, F = self.F
        cdef float* X = work                       # (B, D)
        cdef float* dX = X + B * D                 # (B, D)
        cdef float* hidden = dX + B * D            # (B, H)
        cdef float* dH = hidden + B * H            # (B, H)
        cdef float* dZ = dH + B * H                # (B, H)
        cdef float* S = dZ + B * H                 # (B, T)
        cdef float* dS = S + B * T                 # (B, T)
        cdef double* exps = alpha + (3 * T + 1) * self.longest
        cdef Py_ssize_t i, j, k, f, r, n, row_at
        cdef int e, v, count, clock = self.clock
        cdef int* rows
        cdef double loss = 0.0, sq = 0.0, scale = 1.0, norm
        cdef float* row
        cdef const float* src
        cdef int* stamps
        # forward: windows of feature vectors, hidden = f(X Wᵀ + b), S = hidden Uᵀ + c
        _windows_and_hidden(ids, B, K, F, E, D, H, self.table_ptr, self.table_dim,
                            self.table_offset, &self.W[0, 0], &self.b[0], self.act, X, hidden,
                            dZ)     # dZ is free until the backward pass
        gemm_rm(False, True, B, T, H, 1.0, hidden, H, &self.U[0, 0], H, 0.0, S, T)
        for i in range(B):
            bias_activate_row(&S[i * T], &self.c[0], T, 0)
        # the CRF: transitions with the forbidden IOB2 moves at -inf, then per sentence
        # loss, δ_S = (marginals − gold)/B and the transition gradients (§C2–§C4, §C8)
        for i in range(T):
            for j in range(T):
                self.A[i, j] = self.trans[i, j] + self.mask[i, j]
            self.A_start[i] = self.start[i] + self.mask_start[i]
        _crf_exps(self.A, self.A_start, self.end, exps)
        row_at = 0
        for n in range(lengths.shape[0]):
            if lengths[n] > 0:
                loss += _crf_sentence(&S[row_at * T], &y[row_at], lengths[n], T, self.A,
                                      self.A_start, self.end, exps, <float>(1.0 / B), alpha,
                                      &dS[row_at * T], self.dtrans, self.dstart, self.dend)
            row_at += lengths[n]
        # backward: output layer (identity), then the hidden layer (§B2–§B4)
        _affine_backward(dS, hidden, &self.U[0, 0], &self.dU[0, 0], &self.dc[0], dH, B, T, H)
        for i in range(B):
            act_backward_row(&dH[i * H], &hidden[i * H], &dZ[i * H], H, self.act)
        _affine_backward(dZ, X, &self.W[0, 0], &self.dW[0, 0], &self.db[0], dX, B, H, D)
        # the clip's norm (§U3): the dense gradient, then each table's touched rows
        sq = _sum_of_squares(&self.dense_grad[0], self.dense_grad.shape[0])
        for f in range(F):
            e = self.table_dim[f]
            stamps = &self.stamps[self.stamp_at[f]]
            rows = &touched[f * B * K]          # this table's rows, in order of first use
            count = 0
            # scatter δ_X into the rows (§B5), noting each row the first time it is met
            for i in range(B):
                for k in range(K):
                    v = ids[i, k, f]
                    if stamps[v] != clock:
                        stamps[v] = clock
                        rows[count] = v
                        count += 1
                    row = &self.grad_ptr[f][v * e]
                    src = &dX[i * D + k * E + self.table_offset[f]]
                    for j in range(e):
                        row[j] += src[j]
            counts[f] = count
            for r in range(count):
                row = &self.grad_ptr[f][rows[r] * e]
                for j in range(e):
                    sq += <double>row[j] * row[j]
        norm = sqrt(sq)
        if self.clip > 0 and norm > self.clip:
            scale = self.clip / norm
        # Adam (§U2): the dense slice, then each table at its touched rows (lazy: the
        # rows a batch did not touch, and their moments, stay)
        fastner_adam_row(&self.dense[0], &self.dense_grad[0], &self.dense_m[0],
                         &self.dense_v[0], self.dense.shape[0], scale, self.beta1,
                         self.one_minus_beta1, self.beta2, self.one_minus_beta2, step_dense,
                         self.eps)
        for f in range(F):
            e = self.table_dim[f]
            rows = &touched[f * B * K]
            for r in range(counts[f]):
                v = rows[r] * e
                if self.emb_lr_scale > 0:
                    fastner_adam_row(&self.table_ptr[f][v], &self.grad_ptr[f][v],
                                     &self.m_ptr[f][v], &self.v_ptr[f][v], e, scale,
                                     self.beta1, self.one_minus_beta1, self.beta2,
                                     self.one_minus_beta2, step_tables, self.eps)
                else:
                    memset(&self.grad_ptr[f][v], 0, e * sizeof(float))
        return loss / B

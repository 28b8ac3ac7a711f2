# Row helpers shared by the kernels in fastner/_kernels.pyx: inline, nogil loops over
# one row of a batch (the pattern fastner/_blas.pxd follows), and the per-feature
# pointer arrays that SGDStep and CachedScorer keep. Compiler directives: setup.py.
from libc.math cimport exp, log
from libc.stdlib cimport malloc

# Activation codes (fastner._kernels.ACTIVATIONS): 0 identity, 1 tanh, 2 hardtanh, 3 relu.


# tanh as a rational function (the 13/6 minimax form used by Eigen; derivations §I4):
# branch-free, so gcc vectorizes the activation loop; |error| ≤ 3.5e-7 against float64
# tanh (libm's tanhf is exact to 6e-8 but ~10x slower and blocks vectorization).
cdef inline float fast_tanh(float x) noexcept nogil:
    # float (not double) constants throughout, or the loop cannot be vectorized
    cdef float x2, p, q
    cdef float lo = -7.90531110763549805, hi = 7.90531110763549805
    x = lo if x < lo else x
    x = hi if x > hi else x
    x2 = x * x
    p = x2 * <float>-2.76076847742355e-16 + <float>2.00018790482477e-13
    p = p * x2 + <float>-8.60467152213735e-11
    p = p * x2 + <float>5.12229709037114e-08
    p = p * x2 + <float>1.48572235717979e-05
    p = p * x2 + <float>6.37261928875436e-04
    p = p * x2 + <float>4.89352455891786e-03
    p = p * x
    q = x2 * <float>1.19825839466702e-06 + <float>1.18534705686654e-04
    q = q * x2 + <float>2.26843463243900e-03
    q = q * x2 + <float>4.89352518554385e-03
    return p / q


cdef inline void activate_row(float* row, int H, int act) noexcept nogil:
    # one branch per row, so each loop is a plain vectorizable loop
    cdef Py_ssize_t j
    cdef float z, one = 1.0, minus_one = -1.0, zero = 0.0
    if act == 1:
        for j in range(H):
            row[j] = fast_tanh(row[j])
    elif act == 2:
        for j in range(H):
            z = row[j]
            z = minus_one if z < minus_one else z
            row[j] = one if z > one else z
    elif act == 3:
        for j in range(H):
            z = row[j]
            row[j] = zero if z < zero else z


cdef inline void bias_activate_row(float* row, const float* bias, int H,
                                   int act) noexcept nogil:
    # row = f(row + b)   (derivations §F2, after the product)
    cdef Py_ssize_t j
    for j in range(H):
        row[j] = row[j] + bias[j]
    activate_row(row, H, act)


cdef inline void act_backward_row(const float* dH, const float* hidden, float* dZ, int H,
                                  int act) noexcept nogil:
    # δ_Z = δ_H ⊙ f′ with f′ read from the stored output H (derivations §B3); one
    # branch per row, so each loop vectorizes. act 3 (relu) is the last case.
    cdef Py_ssize_t j
    cdef float h, one = 1.0, minus_one = -1.0, zero = 0.0
    if act == 1:
        for j in range(H):
            h = hidden[j]
            dZ[j] = dH[j] * (one - h * h)
    elif act == 2:
        for j in range(H):
            h = hidden[j]
            dZ[j] = dH[j] if (h > minus_one and h < one) else zero
    else:
        for j in range(H):
            dZ[j] = dH[j] if hidden[j] > zero else zero


cdef inline void add_column_sums(float* out, const float* M, int rows, int cols,
                                 float alpha) noexcept nogil:
    # out += Σ_i alpha·M[i]   (NumPy: out += alpha * M.sum(axis=0)): a bias gradient,
    # or an SGD step on a bias with alpha = −lr
    cdef Py_ssize_t i, j
    cdef const float* m
    for i in range(rows):
        m = &M[i * cols]
        for j in range(cols):
            out[j] += alpha * m[j]


cdef inline double logsumexp_row(const float* s, int T) noexcept nogil:
    # log Σ_j exp(s[j]), the maximum subtracted first so that no exponent overflows
    cdef int j
    cdef double m = s[0], total = 0.0
    for j in range(1, T):
        if s[j] > m:
            m = s[j]
    for j in range(T):
        total += exp(s[j] - m)
    return m + log(total)


cdef inline int* int_array(values) except NULL:
    """A malloc'd copy of a sequence of ints (free it in __dealloc__)."""
    cdef Py_ssize_t i, n = len(values)
    cdef int* out = <int*>malloc(max(n, 1) * sizeof(int))
    if out == NULL:
        raise MemoryError()
    for i in range(n):
        out[i] = values[i]
    return out


cdef inline void** pointer_array(Py_ssize_t n) except NULL:
    """A malloc'd array of n pointers, all NULL (free it in __dealloc__)."""
    cdef Py_ssize_t i
    cdef void** out = <void**>malloc(max(n, 1) * sizeof(void*))
    if out == NULL:
        raise MemoryError()
    for i in range(n):
        out[i] = NULL
    return out

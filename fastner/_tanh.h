/* tanh over a row for the inference cache's scorer (fastner/_kernels.pyx,
 * CachedScorer; derivations §I4): its own 7/6 rational function, x·P(x²)/Q(x²),
 * the minimax fit on [0, 7.905] (|error| ≤ 2.3e-6; the fit is rerun by
 * tests/test_kernels.py::test_the_caches_tanh_coefficients_are_the_minimax_fit),
 * with 1/Q from AVX-512's reciprocal estimate (relative error below 2⁻¹⁴) and no
 * Newton step: |error| ≤ 2⁻¹⁴·|tanh x| + 2.4e-6 ≤ 6.4e-5, about an eighth of the
 * relative error of each half-precision cached product (§I3). The scorer was
 * bound by its FMA pipe here: the 13/6 function with a Newton step took 15
 * multiplies per 16 values, this one 10, and the scorer on CoNLL-2003 valid takes
 * 7% less time with it (150 alternating calls in one process, Haswell BLAS kernel).
 * Valid's tags are unchanged. The training step and the float path keep fast_tanh
 * (fastner/_rows.pxd); the trainer's dev scoring runs through this scorer. Built
 * only where AVX-512 and F16C are (FASTNER_MARCH=native on such a CPU: every AVX-512
 * processor has F16C); elsewhere the scorer calls fast_tanh. Below it, the pass that
 * sums a window's half rows beside the previous window's tanh (fastner_sum5_and_tanh).
 */
#ifndef FASTNER_TANH_H
#define FASTNER_TANH_H

#if defined(__AVX512F__) && defined(__F16C__)
#include <immintrin.h>
#include "_half.h"                 /* fastner_load8_half: the cache's half → float load */
#define FASTNER_TANH_RCP 1

#define FASTNER_SPLAT(c) _mm512_set1_ps(c)

static inline __m512 fastner_tanh16_rcp(__m512 x)
{
    __m512 x2, p, q;
    x = _mm512_min_ps(FASTNER_SPLAT(7.905f),                       /* NaN stays NaN */
                      _mm512_max_ps(FASTNER_SPLAT(-7.905f), x));
    x2 = _mm512_mul_ps(x, x);
    p = _mm512_fmadd_ps(x2, FASTNER_SPLAT(3.4560603e-06f), FASTNER_SPLAT(2.1708253e-03f));
    p = _mm512_fmadd_ps(p, x2, FASTNER_SPLAT(1.2179758e-01f));
    p = _mm512_fmadd_ps(p, x2, FASTNER_SPLAT(9.9998949e-01f));
    p = _mm512_mul_ps(p, x);
    q = _mm512_fmadd_ps(x2, FASTNER_SPLAT(1.3110284e-04f), FASTNER_SPLAT(2.0568127e-02f));
    q = _mm512_fmadd_ps(q, x2, FASTNER_SPLAT(4.5509773e-01f));
    q = _mm512_fmadd_ps(q, x2, FASTNER_SPLAT(1.0f));
    return _mm512_mul_ps(p, _mm512_rcp14_ps(q));               /* 1/q within 2⁻¹⁴ */
}

/* row[j:H] = tanh(row[j:H]) for the fewer than 16 values a row's 16-wide passes left */
static inline void fastner_tanh_tail_rcp(float *row, int j, int H)
{
    if (j < H) {
        const __mmask16 m = (__mmask16)((1u << (H - j)) - 1);
        _mm512_mask_storeu_ps(row + j, m, fastner_tanh16_rcp(_mm512_maskz_loadu_ps(m, row + j)));
    }
}

static inline void fastner_tanh_row_rcp(float *row, int H)
{
    int j = 0;
    for (; j + 16 <= H; j += 16)
        _mm512_storeu_ps(row + j, fastner_tanh16_rcp(_mm512_loadu_ps(row + j)));
    fastner_tanh_tail_rcp(row, j, H);
}

/* One pass over the columns doing two windows' work: z = base + ((r0 + r1) + (r2 + r3))
 * + r4 for a window's five rows, and prev = tanh(prev) for the window before it (prev
 * NULL: sums only). The rows are five half rows, or four and then ``last``, a float
 * row (a missed word's product): fastner/_half.h's F16C sums and _add_rows after them,
 * the same sums in the same order, bit for bit. The conversions and additions run on
 * the add pipes and the tanh on the multiply pipes; one after the other, each window
 * waited for the other half of the processor. Five rows: a window of the shipped
 * configuration (K = 5, the word table cached, capitalisation in the pattern row)
 * with at most one missed word. On CoNLL-2003 valid the pass saves the scorer about
 * 5% against separate passes (150 alternating calls in one process, Haswell BLAS
 * kernel), with the same scores. */
static inline __m256 fastner_sum5_8(const float *base, const uint16_t *const *p,
                                    const float *last, int h)
{
    __m256 a = _mm256_add_ps(fastner_load8_half(p[0] + h), fastner_load8_half(p[1] + h));
    __m256 b = _mm256_add_ps(fastner_load8_half(p[2] + h), fastner_load8_half(p[3] + h));
    __m256 e = last ? _mm256_loadu_ps(last + h) : fastner_load8_half(p[4] + h);
    return _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(base + h), _mm256_add_ps(a, b)), e);
}

static inline void fastner_sum5_and_tanh(float *z, const float *base,
                                         const uint16_t *const *rows, const float *last,
                                         float *prev, int H)
{
    /* with ``last``, rows holds four: p[4] is then never read, and not taken from rows */
    const uint16_t *p[5] = {rows[0], rows[1], rows[2], rows[3], last ? rows[0] : rows[4]};
    int h = 0;
    for (; h + 16 <= H; h += 16) {
        _mm256_storeu_ps(z + h, fastner_sum5_8(base, p, last, h));
        _mm256_storeu_ps(z + h + 8, fastner_sum5_8(base, p, last, h + 8));
        if (prev)
            _mm512_storeu_ps(prev + h, fastner_tanh16_rcp(_mm512_loadu_ps(prev + h)));
    }
    if (prev)
        fastner_tanh_tail_rcp(prev, h, H);
    for (; h + 8 <= H; h += 8)
        _mm256_storeu_ps(z + h, fastner_sum5_8(base, p, last, h));
    for (; h < H; h++)
        z[h] = (base[h] + ((_cvtsh_ss(p[0][h]) + _cvtsh_ss(p[1][h]))
                           + (_cvtsh_ss(p[2][h]) + _cvtsh_ss(p[3][h]))))
               + (last ? last[h] : _cvtsh_ss(p[4][h]));
}
#else
#define FASTNER_TANH_RCP 0
static inline void fastner_tanh_row_rcp(float *row, int H) { (void)row; (void)H; }
static inline void fastner_sum5_and_tanh(float *z, const float *base,
                                         const uint16_t *const *rows, const float *last,
                                         float *prev, int H)
{ (void)z; (void)base; (void)rows; (void)last; (void)prev; (void)H; }
#endif

/* 1 where fastner_tanh_row_rcp is built in (else the caller uses fast_tanh) */
static const int fastner_tanh_has_rcp = FASTNER_TANH_RCP;

#endif

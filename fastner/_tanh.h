/* tanh over a row for the inference cache's scorer (fastner/_kernels.pyx,
 * CachedScorer; derivations §I4): fast_tanh's rational function (fastner/_rows.pxd)
 * with its division p / q done as p · (1/q), 1/q from AVX-512's reciprocal estimate
 * (relative error below 2⁻¹⁴) refined by one Newton step. The 16-wide division
 * stalled the scorer (a quarter of its block's samples sat on the instruction after
 * it); the scorer on CoNLL-2003 valid went 23.4 → 22.3 ms (medians of six
 * alternating runs). Within 4 float ulp of fast_tanh. The training step and the
 * float path keep the division; the trainer's dev scoring runs through this scorer
 * (a full `fastner train --seed 0` still wrote the shipped model bit for bit). Built
 * only where AVX-512 is (FASTNER_MARCH=native on such a CPU); elsewhere the scorer
 * calls fast_tanh.
 */
#ifndef FASTNER_TANH_H
#define FASTNER_TANH_H

#if defined(__AVX512F__)
#include <immintrin.h>
#define FASTNER_TANH_RCP 1

/* fast_tanh's coefficients (fastner/_rows.pxd), copied: the test comparing the two
 * tanh (test_the_caches_tanh_is_within_4_ulp) fails if they part */
#define FASTNER_SPLAT(c) _mm512_set1_ps(c)

static inline __m512 fastner_tanh16_rcp(__m512 x)
{
    __m512 x2, p, q, r;
    x = _mm512_min_ps(FASTNER_SPLAT(7.90531110763549805f),            /* NaN stays NaN */
                      _mm512_max_ps(FASTNER_SPLAT(-7.90531110763549805f), x));
    x2 = _mm512_mul_ps(x, x);
    p = _mm512_fmadd_ps(x2, FASTNER_SPLAT(-2.76076847742355e-16f),
                        FASTNER_SPLAT(2.00018790482477e-13f));
    p = _mm512_fmadd_ps(p, x2, FASTNER_SPLAT(-8.60467152213735e-11f));
    p = _mm512_fmadd_ps(p, x2, FASTNER_SPLAT(5.12229709037114e-08f));
    p = _mm512_fmadd_ps(p, x2, FASTNER_SPLAT(1.48572235717979e-05f));
    p = _mm512_fmadd_ps(p, x2, FASTNER_SPLAT(6.37261928875436e-04f));
    p = _mm512_fmadd_ps(p, x2, FASTNER_SPLAT(4.89352455891786e-03f));
    p = _mm512_mul_ps(p, x);
    q = _mm512_fmadd_ps(x2, FASTNER_SPLAT(1.19825839466702e-06f),
                        FASTNER_SPLAT(1.18534705686654e-04f));
    q = _mm512_fmadd_ps(q, x2, FASTNER_SPLAT(2.26843463243900e-03f));
    q = _mm512_fmadd_ps(q, x2, FASTNER_SPLAT(4.89352518554385e-03f));
    r = _mm512_rcp14_ps(q);                                  /* 1/q within 2⁻¹⁴ */
    r = _mm512_mul_ps(r, _mm512_fnmadd_ps(q, r, FASTNER_SPLAT(2.0f)));   /* r (2 − q r) */
    return _mm512_mul_ps(p, r);
}

static inline void fastner_tanh_row_rcp(float *row, int H)
{
    int j = 0;
    for (; j + 16 <= H; j += 16)
        _mm512_storeu_ps(row + j, fastner_tanh16_rcp(_mm512_loadu_ps(row + j)));
    if (j < H) {
        const __mmask16 m = (__mmask16)((1u << (H - j)) - 1);
        _mm512_mask_storeu_ps(row + j, m, fastner_tanh16_rcp(_mm512_maskz_loadu_ps(m, row + j)));
    }
}
#else
#define FASTNER_TANH_RCP 0
static inline void fastner_tanh_row_rcp(float *row, int H) { (void)row; (void)H; }
#endif

/* 1 where fastner_tanh_row_rcp is built in (else the caller uses fast_tanh) */
static const int fastner_tanh_has_rcp = FASTNER_TANH_RCP;

#endif

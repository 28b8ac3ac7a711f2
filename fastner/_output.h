/* The cached scorer's output layer, S += Z Uᵀ for a block of hidden rows
 * (fastner/_kernels.pyx, CachedScorer._block; derivations §I6).
 *
 * OpenBLAS multiplies a block (256 windows × 300 hidden × 9 tags) in 15 µs with
 * its SkylakeX kernel's small-matrix path, but its Haswell kernel (the one it
 * picks on AVX2 processors, or under OPENBLAS_CORETYPE=Haswell) packs the block's
 * 300 KB of hidden rows first: 30 µs, a quarter of the scorer's time. With T = 9
 * the product is too narrow for a packed kernel to pay. Here, per group of 8 tags
 * (one 256-bit register), 8 windows at a time: each window's accumulator gathers
 * z[h] · Uᵀ[h, tags] over h in order, with FMAs (the BLAS's order for these tags);
 * the tags left over (T mod 8) are dot products over h, 8 lanes at a time, summed
 * across lanes at the end (another order: within a few float ulp of the BLAS).
 * C harness, one block: 15.7 µs under either BLAS kernel, so the scorer on
 * CoNLL-2003 valid takes 15% less time under the Haswell kernel, the same under SkylakeX.
 *
 * Built where AVX2 and FMA are (FASTNER_MARCH=native on such a CPU); elsewhere the
 * scorer keeps the BLAS product.
 */
#ifndef FASTNER_OUTPUT_H
#define FASTNER_OUTPUT_H

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FASTNER_OUTPUT_LAYER 1

/* S[i, t0:t0+8] += Σ_h Z[i, h] UT[h, t0:t0+8] for w ≤ 8 windows, 8 at a time: with
 * fewer than 8 (a block's last), the spare accumulators run over the last window's
 * row again and are not stored (a loop over single windows chains each one's 300
 * FMAs one after another, about 1,200 cycles a window). The accumulators are eight
 * named variables, not an array: with an array gcc stored all eight to the stack on
 * every h (twice the time, in the scorer). */
static inline void fastner_out_group8(const float* Z, int w, int H, const float* UT,
                                      int T, float* S)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0,
           a6 = a0, a7 = a0, u;
#define FASTNER_OUT_ROW(i) (&Z[(long)((i) < w ? (i) : w - 1) * H])
    const float *z0 = FASTNER_OUT_ROW(0), *z1 = FASTNER_OUT_ROW(1), *z2 = FASTNER_OUT_ROW(2),
                *z3 = FASTNER_OUT_ROW(3), *z4 = FASTNER_OUT_ROW(4), *z5 = FASTNER_OUT_ROW(5),
                *z6 = FASTNER_OUT_ROW(6), *z7 = FASTNER_OUT_ROW(7);
#undef FASTNER_OUT_ROW
    int h;
    for (h = 0; h < H; h++) {
        u = _mm256_loadu_ps(&UT[(long)h * T]);
        a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(&z0[h]), u, a0);
        a1 = _mm256_fmadd_ps(_mm256_broadcast_ss(&z1[h]), u, a1);
        a2 = _mm256_fmadd_ps(_mm256_broadcast_ss(&z2[h]), u, a2);
        a3 = _mm256_fmadd_ps(_mm256_broadcast_ss(&z3[h]), u, a3);
        a4 = _mm256_fmadd_ps(_mm256_broadcast_ss(&z4[h]), u, a4);
        a5 = _mm256_fmadd_ps(_mm256_broadcast_ss(&z5[h]), u, a5);
        a6 = _mm256_fmadd_ps(_mm256_broadcast_ss(&z6[h]), u, a6);
        a7 = _mm256_fmadd_ps(_mm256_broadcast_ss(&z7[h]), u, a7);
    }
#define FASTNER_OUT_STORE(i, a) \
    if ((i) < w) \
        _mm256_storeu_ps(&S[(long)(i) * T], _mm256_add_ps(_mm256_loadu_ps(&S[(long)(i) * T]), a))
    FASTNER_OUT_STORE(0, a0); FASTNER_OUT_STORE(1, a1); FASTNER_OUT_STORE(2, a2);
    FASTNER_OUT_STORE(3, a3); FASTNER_OUT_STORE(4, a4); FASTNER_OUT_STORE(5, a5);
    FASTNER_OUT_STORE(6, a6); FASTNER_OUT_STORE(7, a7);
#undef FASTNER_OUT_STORE
}

/* Σ_h z[h] u[h], 8 lanes at a time in two accumulators, then across lanes */
static inline float fastner_out_dot(const float* z, const float* u, int H)
{
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    __m128 s;
    float tail = 0.0f;
    int h = 0;
    for (; h + 16 <= H; h += 16) {
        a = _mm256_fmadd_ps(_mm256_loadu_ps(&z[h]), _mm256_loadu_ps(&u[h]), a);
        b = _mm256_fmadd_ps(_mm256_loadu_ps(&z[h + 8]), _mm256_loadu_ps(&u[h + 8]), b);
    }
    if (h + 8 <= H) {
        a = _mm256_fmadd_ps(_mm256_loadu_ps(&z[h]), _mm256_loadu_ps(&u[h]), a);
        h += 8;
    }
    for (; h < H; h++)
        tail += z[h] * u[h];
    a = _mm256_add_ps(a, b);
    s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s) + tail;
}

/* S (n, T) += Z (n, H) Uᵀ, where UT is Uᵀ (H, T) and U (T, H): the groups of 8 tags
 * read UT's rows, the leftover tags U's */
static void fastner_output_layer(const float* Z, int n, int H, const float* UT,
                                 const float* U, int T, float* S)
{
    int i, t, T8 = T - T % 8;
    for (t = 0; t < T8; t += 8)
        for (i = 0; i < n; i += 8)
            fastner_out_group8(&Z[(long)i * H], n - i < 8 ? n - i : 8, H, &UT[t], T,
                               &S[(long)i * T + t]);
    if (T8 < T)
        for (i = 0; i < n; i++)
            for (t = T8; t < T; t++)
                S[(long)i * T + t] += fastner_out_dot(&Z[(long)i * H], &U[(long)t * H], H);
}

#else
#define FASTNER_OUTPUT_LAYER 0
static void fastner_output_layer(const float* Z, int n, int H, const float* UT,
                                 const float* U, int T, float* S)
{
    (void)Z; (void)n; (void)H; (void)UT; (void)U; (void)T; (void)S;   /* not called */
}
#endif

static const int fastner_has_output_layer = FASTNER_OUTPUT_LAYER;

#endif

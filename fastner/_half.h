/* Sums of half-precision (IEEE binary16) rows into float32, for the inference
 * cache (fastner/_kernels.pyx, CachedScorer), and the conversion that fills the
 * cache. Stored as half, the cache holds twice the rows in the same memory and
 * reads half the bytes per token.
 *
 * x86-64 CPUs since 2012 convert 8 halves per instruction (F16C). The F16C
 * version is compiled with a target attribute, so a portable build (no -march)
 * still has it, and is chosen at run time; elsewhere a portable scalar
 * conversion is used (exact: every half is a float).
 */
#ifndef FASTNER_HALF_H
#define FASTNER_HALF_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FASTNER_HAVE_F16C_PATH 1
#include <immintrin.h>
#else
#define FASTNER_HAVE_F16C_PATH 0
#endif

/* half → float, exactly (IEEE 754 binary16 → binary32) */
static inline float fastner_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu, bits;
    float out;
    if (exponent == 0x1f) {                 /* inf, nan */
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else if (exponent != 0) {             /* normal: rebias 15 → 127 */
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {             /* ±0 */
        bits = sign;
    } else {                                /* subnormal: normalise the mantissa */
        exponent = 113;
        while (!(mantissa & 0x400u)) {
            mantissa <<= 1;
            exponent--;
        }
        bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
    }
    memcpy(&out, &bits, sizeof out);
    return out;
}

/* z = base + Σ_r rows[r], summed as the F16C version sums: four rows at a time,
 * (rows[0] + rows[1]) + (rows[2] + rows[3]), then one at a time */
static void fastner_sum_half_rows_portable(float *z, const float *base,
                                           const uint16_t *const *rows, int n, int H)
{
    int r = 0;
    if (z != base)
        memcpy(z, base, (size_t)H * sizeof(float));
    for (; n - r >= 4; r += 4)
        for (int h = 0; h < H; h++)
            z[h] += (fastner_half_to_float(rows[r][h]) + fastner_half_to_float(rows[r + 1][h]))
                    + (fastner_half_to_float(rows[r + 2][h])
                       + fastner_half_to_float(rows[r + 3][h]));
    for (; r < n; r++)
        for (int h = 0; h < H; h++)
            z[h] += fastner_half_to_float(rows[r][h]);
}

#if FASTNER_HAVE_F16C_PATH
__attribute__((target("avx,f16c")))
static inline __m256 fastner_load8_half(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* four rows per pass over z, so z is loaded and stored ⌈n/4⌉ times, not n; the
 * first pass reads base instead of z (no separate copy of base into z) */
__attribute__((target("avx,f16c")))
static void fastner_sum_half_rows_f16c(float *z, const float *base,
                                       const uint16_t *const *rows, int n, int H)
{
    int r = 0, h;
    const float *from = base;
    for (; n - r >= 4; r += 4) {
        const uint16_t *p0 = rows[r], *p1 = rows[r + 1], *p2 = rows[r + 2], *p3 = rows[r + 3];
        for (h = 0; h + 8 <= H; h += 8) {
            __m256 a = _mm256_add_ps(fastner_load8_half(p0 + h), fastner_load8_half(p1 + h));
            __m256 b = _mm256_add_ps(fastner_load8_half(p2 + h), fastner_load8_half(p3 + h));
            _mm256_storeu_ps(z + h, _mm256_add_ps(_mm256_loadu_ps(from + h), _mm256_add_ps(a, b)));
        }
        for (; h < H; h++)
            z[h] = from[h] + ((_cvtsh_ss(p0[h]) + _cvtsh_ss(p1[h]))
                              + (_cvtsh_ss(p2[h]) + _cvtsh_ss(p3[h])));
        from = z;
    }
    if (from == base && z != base)     /* fewer than four rows */
        memcpy(z, base, (size_t)H * sizeof(float));
    for (; r < n; r++) {
        const uint16_t *p0 = rows[r];
        for (h = 0; h + 8 <= H; h += 8)
            _mm256_storeu_ps(z + h, _mm256_add_ps(_mm256_loadu_ps(z + h), fastner_load8_half(p0 + h)));
        for (; h < H; h++)
            z[h] += _cvtsh_ss(p0[h]);
    }
}
#endif

/* float → half, rounded to nearest (ties to even) as IEEE 754 and NumPy's
 * astype(np.float16) round it: beyond the largest half (65504) by half an ulp or more
 * → ±inf, below the smallest normal half (2⁻¹⁴) → a subnormal half or ±0 */
static inline uint16_t fastner_float_to_half(float f)
{
    uint32_t x, sign, absx, q, rem, halfway;
    int shift;
    memcpy(&x, &f, sizeof x);
    sign = (x >> 16) & 0x8000u;
    absx = x & 0x7fffffffu;
    if (absx > 0x7f800000u)                           /* NaN: quiet, top payload bits */
        return (uint16_t)(sign | 0x7e00u | ((absx >> 13) & 0x3ffu));
    if (absx >= 0x477ff000u)                          /* ≥ 65520 (and inf) → inf */
        return (uint16_t)(sign | 0x7c00u);
    if (absx >= 0x38800000u) {                        /* normal: rebias 127 → 15 */
        q = (absx - 0x38000000u) >> 13;
        rem = absx & 0x1fffu;
        halfway = 0x1000u;
    } else {                                          /* a subnormal half, or 0 */
        shift = 126 - (int)(absx >> 23);              /* value = (2²³ + m)·2^(e−150) */
        if (shift > 24)                               /* below 2⁻²⁵: rounds to 0 */
            return (uint16_t)sign;
        absx = (absx & 0x7fffffu) | 0x800000u;        /* (subnormal floats: shift > 24) */
        q = absx >> shift;
        rem = absx & ((1u << shift) - 1);
        halfway = 1u << (shift - 1);
    }
    if (rem > halfway || (rem == halfway && (q & 1u)))
        q++;                                          /* may carry into the exponent */
    return (uint16_t)(sign | q);
}

/* how many of n halves are not finite (±inf, NaN: every exponent bit set) */
static inline long fastner_nonfinite_halves(const uint16_t *h, long n)
{
    long bad = 0;
    for (long i = 0; i < n; i++)
        bad += (h[i] & 0x7c00u) == 0x7c00u;
    return bad;
}

/* out[i] = the half nearest src[i] (fastner_float_to_half) for i < n; returns how many
 * of them are not finite */
static long fastner_floats_to_halves_portable(const float *src, uint16_t *out, long n)
{
    for (long i = 0; i < n; i++)
        out[i] = fastner_float_to_half(src[i]);
    return fastner_nonfinite_halves(out, n);
}

#if FASTNER_HAVE_F16C_PATH
__attribute__((target("avx,f16c")))
static long fastner_floats_to_halves_f16c(const float *src, uint16_t *out, long n)
{
    long i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(out + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++)
        out[i] = fastner_float_to_half(src[i]);
    return fastner_nonfinite_halves(out, n);
}
#endif

/* Ask for bytes [p, p + n) to be brought into cache ahead of use: into L1
 * (prefetcht0; the training step's embedding rows) or into L2 only (prefetcht1; the
 * inference cache's rows). Into L1, the inference rows pushed out the rows and hidden
 * units the current windows were using: CachedScorer on CoNLL-2003 valid took
 * 27.4-27.8 ms so, 24.4-24.9 ms into L2 (prefetchnta: no gain). The training step
 * keeps L1: into L2 its epoch took 1.699 s against 1.685 (medians of six runs). */
static inline void fastner_prefetch(const void *p, int n)
{
#if defined(__GNUC__)
    for (int at = 0; at < n; at += 64)
        __builtin_prefetch((const char *)p + at, 0, 3);
#endif
}

static inline void fastner_prefetch_l2(const void *p, int n)
{
#if defined(__GNUC__)
    for (int at = 0; at < n; at += 64)
        __builtin_prefetch((const char *)p + at, 0, 2);   /* locality 2: prefetcht1 */
#endif
}

/* 1 when this CPU runs the F16C path (decided once, at module import) */
static int fastner_use_f16c = 0;

static void fastner_half_init(void)
{
#if FASTNER_HAVE_F16C_PATH
    __builtin_cpu_init();
    fastner_use_f16c = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
#endif
}

/* out[0:n] = src[0:n] rounded to half (nearest, ties to even); returns how many are
 * not finite */
static inline long fastner_floats_to_halves(const float *src, uint16_t *out, long n)
{
#if FASTNER_HAVE_F16C_PATH
    if (fastner_use_f16c)
        return fastner_floats_to_halves_f16c(src, out, n);
#endif
    return fastner_floats_to_halves_portable(src, out, n);
}

/* z[0:H] = base[0:H] + Σ_r rows[r][0:H] over n half-precision rows (z and base
 * may be the same row) */
static inline void fastner_sum_half_rows(float *z, const float *base,
                                         const uint16_t *const *rows, int n, int H)
{
#if FASTNER_HAVE_F16C_PATH
    if (fastner_use_f16c) {
        fastner_sum_half_rows_f16c(z, base, rows, n, H);
        return;
    }
#endif
    fastner_sum_half_rows_portable(z, base, rows, n, H);
}

#endif

/* exp(x) for x ≤ 0, written so that gcc vectorizes a loop of it (fastner/_kernels.pyx:
 * the CRF's marginals at tagging time, derivations §C8), where libm's exp is one call
 * per element, 9 per token.
 *
 * x = k·ln 2 + r with k the nearest integer to x/ln 2 and |r| ≤ ln 2 / 2 (ln 2 in two
 * parts, so r is exact to double precision), then exp(x) = 2^k · p(r) with p the
 * degree-12 Taylor polynomial of exp, whose truncation error on that range is below
 * 2·10⁻¹⁶ (the next term, r¹³/13!, is 1.7·10⁻¹⁶ at |r| = ln 2 / 2); measured against
 * NumPy's exp, within 3.4·10⁻¹⁶ relative. 2^k is built from its bits. Below −708 the
 * result is exp(−708) ≈ 3·10⁻³⁰⁸ instead of a subnormal: as good as 0 in a marginal,
 * which is rounded to float32.
 */
#ifndef FASTNER_EXP_H
#define FASTNER_EXP_H

#include <stdint.h>
#include <string.h>

static inline double fastner_exp_nonpositive(double x)
{
    const double shifter = 6755399441055744.0;   /* 1.5 · 2^52: x + it rounds x to an integer */
    const uint64_t shifter_bits = 0x4338000000000000ULL;
    const double log2e = 1.4426950408889634, ln2_hi = 0.693147180369123816490,
                 ln2_lo = 1.90821492927058770002e-10;
    double kd, r, p;
    uint64_t bits, scale_bits;
    x = x < -708.0 ? -708.0 : x;
    kd = x * log2e + shifter;                    /* k in the low bits of its mantissa */
    memcpy(&bits, &kd, sizeof bits);
    kd -= shifter;                               /* k as a double */
    r = (x - kd * ln2_hi) - kd * ln2_lo;
    p = 1.0 / 479001600.0;                       /* 1/12! */
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    scale_bits = (bits - shifter_bits + 1023) << 52;   /* 2^k, k in [−1022, 0] */
    memcpy(&kd, &scale_bits, sizeof kd);
    return p * kd;
}

#endif

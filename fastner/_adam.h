/* The Adam update in one pass over a row of parameters (fastner/_kernels.pyx:
 * adam_update, adam_update_rows), float32.
 *
 * It rounds exactly as the NumPy version (fastner.reference.adam_update) does,
 * operation by operation, so the trainer's results do not depend on which one
 * ran: contraction of a·b + c into one fused multiply-add (gcc's default where
 * the CPU has FMA) is switched off for this function only.
 */
#ifndef FASTNER_ADAM_H
#define FASTNER_ADAM_H

#include <math.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

/* g ← g·scale;  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g·g;
 * p ← p − step·m / (√v + ε);  then g ← 0 (the gradient is consumed).
 * m, v and √v + ε are float32; g·scale, step·m, the quotient and the
 * subtraction are formed in double and rounded to float32 once, as NumPy does
 * with float64 scalars (the trainer's step and clipping scale are). */
static void fastner_adam_row(float *p, float *g, float *m, float *v, long n, double scale,
                             float beta1, float one_minus_beta1, float beta2,
                             float one_minus_beta2, double step, float eps)
{
    for (long i = 0; i < n; i++) {
        float gi = (float)((double)g[i] * scale);
        float mi = m[i] * beta1;
        float vi = v[i] * beta2;
        mi = mi + one_minus_beta1 * gi;
        vi = vi + (one_minus_beta2 * gi) * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = (float)((double)p[i] - (step * (double)mi) / (double)(sqrtf(vi) + eps));
        g[i] = 0.0f;
    }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

#endif

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
 * Everything in float32, one rounding per operation in the order written, as
 * NumPy computes it on float32 arrays with float32 scalars; sixteen lanes of
 * AVX-512 where the CPU has them (the dense parameters are updated every step). */
static void fastner_adam_row(float *p, float *g, float *m, float *v, long n, float scale,
                             float beta1, float one_minus_beta1, float beta2,
                             float one_minus_beta2, float step, float eps)
{
    for (long i = 0; i < n; i++) {
        float gi = g[i] * scale;
        float mi = m[i] * beta1;
        float vi = v[i] * beta2;
        mi = mi + one_minus_beta1 * gi;
        vi = vi + (one_minus_beta2 * gi) * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] - (step * mi) / (sqrtf(vi) + eps);
        g[i] = 0.0f;
    }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

#endif

/* One token's step of Viterbi and of the CRF's scaled forward-backward recursions
 * (fastner/_kernels.pyx; derivations §C5, §C8).
 *
 * Written the textbook way (a loop over the row's tags, each summing over the
 * previous row's tags), each sum is a chain of T dependent scalar additions. Built
 * with AVX (FASTNER_MARCH=native on any x86-64 CPU since 2011), the steps instead
 * run across the row's tags, FASTNER_CRF_LANES at a time in one vector of GCC's
 * vector extensions kept in registers, each sum adding one term per pass: the same
 * products added in the same order, so the same floats as the textbook loops, which
 * portable builds keep (in SSE2's two lanes the vector steps were slower: Viterbi on
 * CoNLL-2003 valid 2.94 ms against 2.18).
 *
 * The same floats only without fused multiply-adds, which round once where a product
 * and a sum round twice: the steps are compiled with gcc's contraction off (clang
 * contracts only within one expression, and each product is its own statement).
 *
 * The matrices are stored with each row padded to a multiple of 8
 * (fastner_crf_stride), so a last, partial group of lanes reads its row's padding,
 * never past the row; only its first T − jb lanes are stored.
 */
#ifndef FASTNER_CRF_H
#define FASTNER_CRF_H

#include <stddef.h>

#if defined(__GNUC__) && !defined(__clang__)
#define FASTNER_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define FASTNER_NO_CONTRACT
#endif

static inline int fastner_crf_stride(int T)
{
    return (T + 7) / 8 * 8;
}

/* rows[j] /= total, unless total is 0 (every tag forbidden: the row stays 0) */
static inline void fastner_crf_normalize(double *restrict row, int T, double total)
{
    if (total > 0.0)
        for (int j = 0; j < T; j++)
            row[j] /= total;
}

/* sum of row[0..T) from the left, in order (no vectorized reduction: the same float) */
static inline double fastner_crf_row_sum(const double *restrict row, int T)
{
    double total = 0.0;
    for (int j = 0; j < T; j++)
        total += row[j];
    return total;
}

#if defined(__GNUC__) && defined(__AVX__)

/* four lanes (one AVX register) even where AVX-512 has eight: at CoNLL's T = 9 tags,
 * three groups of four do 12 lanes' work where two of eight do 16; on this project's
 * Zen 4, eight lanes ran Viterbi on CoNLL-2003 valid in 1.33-1.49 ms against four's
 * 1.23-1.26, and crf_decode's entity confidences in 3.84-4.07 ms against 3.73-3.84 */
#define FASTNER_CRF_LANES 4
typedef double fastner_vd __attribute__((vector_size(FASTNER_CRF_LANES * 8), aligned(8)));
typedef long long fastner_vl __attribute__((vector_size(FASTNER_CRF_LANES * 8), aligned(8)));

static inline fastner_vd fastner_vd_load(const double *p)
{
    return *(const fastner_vd *)p;
}

static inline fastner_vd fastner_vd_splat(double x)
{
    return (fastner_vd){0} + x;
}

typedef float fastner_vf __attribute__((vector_size(FASTNER_CRF_LANES * 4), aligned(4)));
typedef int fastner_vi __attribute__((vector_size(FASTNER_CRF_LANES * 4), aligned(4)));

/* the first n ≤ FASTNER_CRF_LANES lanes of v into out: one vector store for a whole
 * group (a loop over its lanes was compiled to a copy through the stack with rep
 * movs, which took as long as the group's sums) */
static inline void fastner_vd_store_first(double *out, fastner_vd v, int n)
{
    if (n == FASTNER_CRF_LANES) {
        *(fastner_vd *)out = v;
        return;
    }
    for (int l = 0; l < n; l++)
        out[l] = v[l];
}

/* cur[j] = s[j] + max_i (prev[i] + A[i, j]) and back[j] = the lowest i reaching it (as
 * np.argmax breaks ties); A (T × stride) in double, row i holding the moves from tag
 * i. A NaN candidate never wins, as in the textbook loop's `if cand > best`. */
static inline void fastner_viterbi_step(const double *restrict prev, const double *restrict A,
                                        int stride, const float *restrict s, int T,
                                        double *restrict cur, int *restrict back)
{
    for (int jb = 0; jb < T; jb += FASTNER_CRF_LANES) {
        const int width = T - jb < FASTNER_CRF_LANES ? T - jb : FASTNER_CRF_LANES;
        fastner_vd best = fastner_vd_splat(prev[0]) + fastner_vd_load(A + jb);
        fastner_vl from = {0};                 /* the best i so far */
        for (int i = 1; i < T; i++) {
            const fastner_vd cand = fastner_vd_splat(prev[i])
                                     + fastner_vd_load(A + (long)i * stride + jb);
            const fastner_vl better = cand > best;       /* all ones where it is */
            best = (fastner_vd)(((fastner_vl)cand & better) | ((fastner_vl)best & ~better));
            from = (((fastner_vl){0} + i) & better) | (from & ~better);
        }
        double *restrict cur_jb = cur + jb;   /* not cur[jb + l]: under -fwrapv (Python's */
        int *restrict back_jb = back + jb;    /* flags) gcc stored those with scatters */
        const float *restrict s_jb = s + jb;
        if (width == FASTNER_CRF_LANES) {
            *(fastner_vd *)cur_jb = best + __builtin_convertvector(*(const fastner_vf *)s_jb,
                                                                  fastner_vd);
            *(fastner_vi *)back_jb = __builtin_convertvector(from, fastner_vi);
        } else {
            for (int l = 0; l < width; l++) {
                cur_jb[l] = best[l] + s_jb[l];
                back_jb[l] = (int)from[l];
            }
        }
    }
}

/* cur[j] = (Σ_i prev[i] expA[i, j]) e[j], expA (T × stride): alpha_t before it is
 * normalised (fastner_crf_alpha_step) */
FASTNER_NO_CONTRACT
static inline void fastner_crf_alpha_sums(const double *restrict prev,
                                          const double *restrict expA, int stride,
                                          const double *restrict e, int T,
                                          double *restrict cur)
{
    for (int jb = 0; jb < T; jb += FASTNER_CRF_LANES) {
        const int width = T - jb < FASTNER_CRF_LANES ? T - jb : FASTNER_CRF_LANES;
        fastner_vd acc = fastner_vd_splat(0.0);
        for (int i = 0; i < T; i++) {
            const fastner_vd term = fastner_vd_splat(prev[i])
                                     * fastner_vd_load(expA + (long)i * stride + jb);
            acc += term;
        }
        double *restrict cur_jb = cur + jb;     /* see fastner_viterbi_step */
        const double *restrict e_jb = e + jb;
        if (width == FASTNER_CRF_LANES)
            *(fastner_vd *)cur_jb = acc * fastner_vd_load(e_jb);
        else
            for (int l = 0; l < width; l++)
                cur_jb[l] = acc[l] * e_jb[l];
    }
}

/* cur[i] = Σ_j expA[i, j] e_next[j] next[j] (in that order of products), expAT: expA
 * transposed (T × stride), so the sum over j reads rows: beta_t before it is
 * normalised (fastner_crf_beta_step) */
FASTNER_NO_CONTRACT
static inline void fastner_crf_beta_sums(const double *restrict next,
                                         const double *restrict e_next,
                                         const double *restrict expAT, int stride, int T,
                                         double *restrict cur)
{
    for (int ib = 0; ib < T; ib += FASTNER_CRF_LANES) {
        const int width = T - ib < FASTNER_CRF_LANES ? T - ib : FASTNER_CRF_LANES;
        fastner_vd acc = fastner_vd_splat(0.0);
        for (int j = 0; j < T; j++) {
            fastner_vd term = fastner_vd_load(expAT + (long)j * stride + ib)
                               * fastner_vd_splat(e_next[j]);
            term = term * fastner_vd_splat(next[j]);
            acc += term;
        }
        fastner_vd_store_first(cur + ib, acc, width);
    }
}

#else      /* the textbook loops */

static inline void fastner_viterbi_step(const double *restrict prev, const double *restrict A,
                                        int stride, const float *restrict s, int T,
                                        double *restrict cur, int *restrict back)
{
    for (int j = 0; j < T; j++) {
        double best = prev[0] + A[j];
        int best_i = 0;
        for (int i = 1; i < T; i++) {
            const double cand = prev[i] + A[(long)i * stride + j];
            if (cand > best) {
                best = cand;
                best_i = i;
            }
        }
        cur[j] = best + s[j];
        back[j] = best_i;
    }
}

FASTNER_NO_CONTRACT
static inline void fastner_crf_alpha_sums(const double *restrict prev,
                                          const double *restrict expA, int stride,
                                          const double *restrict e, int T,
                                          double *restrict cur)
{
    for (int j = 0; j < T; j++) {
        double acc = 0.0;
        for (int i = 0; i < T; i++) {
            const double term = prev[i] * expA[(long)i * stride + j];
            acc += term;
        }
        cur[j] = acc * e[j];
    }
}

FASTNER_NO_CONTRACT
static inline void fastner_crf_beta_sums(const double *restrict next,
                                         const double *restrict e_next,
                                         const double *restrict expAT, int stride, int T,
                                         double *restrict cur)
{
    for (int i = 0; i < T; i++) {
        double acc = 0.0;
        for (int j = 0; j < T; j++) {
            double term = expAT[(long)j * stride + i] * e_next[j];
            term = term * next[j];
            acc += term;
        }
        cur[i] = acc;
    }
}

#endif

/* alpha_t[j] = (Σ_i alpha_{t−1}[i] expA[i, j]) e_t[j], or exp_start[j] e_0[j] when prev
 * is NULL (t = 0); then normalised to sum 1. expA: (T × stride). Returns the row's
 * sum before (c_t). */
FASTNER_NO_CONTRACT
static double fastner_crf_alpha_step(const double *restrict prev, const double *restrict expA,
                                     int stride, const double *restrict exp_start,
                                     const double *restrict e, int T, double *restrict cur)
{
    double total;
    if (prev == NULL)
        for (int j = 0; j < T; j++)
            cur[j] = exp_start[j] * e[j];
    else
        fastner_crf_alpha_sums(prev, expA, stride, e, T, cur);
    total = fastner_crf_row_sum(cur, T);
    fastner_crf_normalize(cur, T, total);
    return total;
}

/* beta_t[i] = Σ_j expA[i, j] e_{t+1}[j] beta_{t+1}[j], or exp_end[i] when next is NULL
 * (t = n − 1); then normalised to sum 1 */
FASTNER_NO_CONTRACT
static void fastner_crf_beta_step(const double *restrict next, const double *restrict e_next,
                                  const double *restrict expAT, int stride,
                                  const double *restrict exp_end, int T, double *restrict cur)
{
    if (next == NULL)
        for (int i = 0; i < T; i++)
            cur[i] = exp_end[i];
    else
        fastner_crf_beta_sums(next, e_next, expAT, stride, T, cur);
    fastner_crf_normalize(cur, T, fastner_crf_row_sum(cur, T));
}

#endif

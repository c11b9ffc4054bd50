// One group of IBNorm on fp32, in L1-sized scratch: the per-element compression and its
// derivatives, the reductions, and the forward/backward passes of one group.
// ibnorm_llm/norms/ibnorm.py holds the formula these loops compute; docs/norms.md derives the
// backward. The loops take the variant as a compile-time constant (always_inline + a switch in
// the caller), so the per-element switch folds away and the loops vectorize.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fast_math.h"

typedef struct {
    int variant;        /* 0 S, 1 L, 2 T, 3 identity (no compression) */
    int std_deviation;  /* deviations in units of the group std */
    int meanvar;        /* standardize: 1 meanvar, 0 rms */
    /* L, T: f = g(lam r) / lam with this lam, the rate: lambda itself under the rate role, 1 / lambda
       under the scale role (lambda g(r / lambda) is the rate reading at 1 / lambda); inv_lam = 1 / lam */
    float lam, inv_lam, eps;
    /* S: f = r up to the knee, then slope tail (inv_tail = 1 / tail). Rate role: knee 1 / lambda,
       tail 1 / lambda; scale role: knee lambda, tail 1/2. Not the rate reading at 1 / lambda. */
    float knee, tail, inv_tail;
    /* df/dlambda, for the user's lambda in either role. S, beyond the knee:
       s_dlam0 - (1 + r) s_dlam1 (rate: 2 / lambda^3 - (1 + r) / lambda^2; scale: 1/2). L, T:
       (r f' - f) dlam_coef (rate: dlam_coef = 1 / lambda; scale: -1 / lambda, as lambda g(r / lambda)
       gives (f - r f') / lambda). */
    float s_dlam0, s_dlam1, dlam_coef;
} params_t;

/* The parameters of one call: lambda is the user's, in the role scale_role says (0 rate, 1 scale). */
static inline params_t make_params(int variant, int std_deviation, int meanvar, float lambda, int scale_role, float eps) {
    params_t p;
    float inv = 1.0f / lambda;
    p.variant = variant;
    p.std_deviation = std_deviation;
    p.meanvar = meanvar;
    p.eps = eps;
    if (scale_role) {
        p.lam = inv; p.inv_lam = lambda;
        p.knee = lambda; p.tail = 0.5f; p.inv_tail = 2.0f;
        p.s_dlam0 = 0.5f; p.s_dlam1 = 0.0f; p.dlam_coef = -inv;
    } else {
        p.lam = lambda; p.inv_lam = inv;
        p.knee = inv; p.tail = inv; p.inv_tail = lambda;
        p.s_dlam0 = 2.0f * inv * inv * inv; p.s_dlam1 = inv * inv; p.dlam_coef = inv;
    }
    return p;
}

/* c = sign(u) f(|u|) */
#define INLINE static inline __attribute__((always_inline))

INLINE float compress_one(float u, const params_t *p, const int variant) {
    float r = fabsf(u), f;
    switch (variant) {
    case 0: f = r <= p->knee ? r : p->knee + (r - p->knee) * p->tail; break;
    case 1: f = fast_log1p_scaled(r, p->lam, p->inv_lam); break;
    case 2: f = fast_tanh(p->lam * r) * p->inv_lam; break;
    default: f = r;
    }
    return as_float(as_int(f) | (as_int(u) & (int32_t)0x80000000));  /* copysign(f, u) in one operation: f >= 0 */
}

/* f'(|u|) */
INLINE float slope_one(float u, float c, const params_t *p, const int variant) {
    switch (variant) {
    case 0: return fabsf(u) <= p->knee ? 1.0f : p->tail;
    case 1: return 1.0f / (1.0f + p->lam * fabsf(u));
    case 2: { float lc = p->lam * c; return 1.0f - lc * lc; }
    default: return 1.0f;
    }
}

/* The backward from a saved c = sign(u) f(|u|) instead of the input: f' and (when need_u) u,
   by inverting f. S: piecewise linear. L: f' = 1 / (1 + lam r) = exp(-lam |c|), one exp in place
   of the log and division the input would cost; r = expm1(lam |c|) / lam. T: f' = 1 - (lam c)^2,
   free (its u = atanh(lam c) / lam is lost where tanh saturates, so T saves the input whenever
   u is needed: std units or a learnable lambda). */
INLINE void recover_from_c(float c, const params_t *p, const int variant, const int need_u, float *u, float *slope) {
    float rc = fabsf(c), inv = p->inv_lam, knee = p->knee;
    switch (variant) {
    case 0:
        *slope = rc <= knee ? 1.0f : p->tail;
        if (need_u) *u = copysignf(rc <= knee ? rc : knee + (rc - knee) * p->inv_tail, c);
        break;
    case 1:
        if (need_u) {
            float em1 = fast_expm1_neg(-p->lam * rc);  /* exp(-lam |c|) - 1, accurate near c = 0 */
            *slope = 1.0f + em1;
            *u = copysignf(-em1 * inv / *slope, c);
        } else {
            *slope = fast_exp2_neg(rc * (-1.4426950408889634f * p->lam));  /* exp(-lam |c|) */
        }
        break;
    default:
        { float lc = p->lam * c; *slope = 1.0f - lc * lc; }
        *u = 0.0f;  /* not recoverable; never asked for (see above) */
    }
}

/* sign(u) df(|u|)/dlambda, for the user's lambda (params_t says how in each role) */
INLINE float dlam_one(float u, float c, float slope, const params_t *p, const int variant) {
    float r = fabsf(u);
    switch (variant) {
    case 0: { float d = r > p->knee ? p->s_dlam0 - (1.0f + r) * p->s_dlam1 : 0.0f; return u < 0.0f ? -d : d; }
    case 1: case 2: return (u * slope - c) * p->dlam_coef;
    default: return 0.0f;
    }
}

/* Reductions keep LANES running sums (several vectors' worth): a single running sum chains
   every vector add on the previous one and runs at the add latency, not at load speed. */
#define LANES 32

/* Pairwise, so the final sum is a handful of dependent adds rather than LANES of them. */
static float lanes_total(float *acc, float tail) {
    for (int half = LANES / 2; half >= 1; half /= 2) {
        #pragma omp simd
        for (int j = 0; j < half; j++) acc[j] += acc[j + half];
    }
    return acc[0] + tail;
}

static float mean_of(const float *a, int n) {
    float acc[LANES] = {0.0f}, tail = 0.0f;
    int i = 0;
    for (; i + LANES <= n; i += LANES) {
        #pragma omp simd
        for (int j = 0; j < LANES; j++) acc[j] += a[i + j];
    }
    for (; i < n; i++) tail += a[i];
    return lanes_total(acc, tail) / (float)n;
}

static float mean_sq_dev(const float *a, float m, int n) {
    float acc[LANES] = {0.0f}, tail = 0.0f;
    int i = 0;
    for (; i + LANES <= n; i += LANES) {
        #pragma omp simd
        for (int j = 0; j < LANES; j++) { float d = a[i + j] - m; acc[j] += d * d; }
    }
    for (; i < n; i++) { float d = a[i] - m; tail += d * d; }
    return lanes_total(acc, tail) / (float)n;
}

static float mean_prod(const float *a, const float *b, int n) {
    float acc[LANES] = {0.0f}, tail = 0.0f;
    int i = 0;
    for (; i + LANES <= n; i += LANES) {
        #pragma omp simd
        for (int j = 0; j < LANES; j++) acc[j] += a[i + j] * b[i + j];
    }
    for (; i < n; i++) tail += a[i] * b[i];
    return lanes_total(acc, tail) / (float)n;
}

/* The loops below take the variant as a compile-time constant (always_inline + a switch
   in the caller), so the per-element switch folds away and the loops vectorize. */
#define FOR_VARIANT(variant, call_with) \
    switch (variant) { \
    case 0: call_with(0); break; \
    case 1: call_with(1); break; \
    case 2: call_with(2); break; \
    default: call_with(3); \
    }

/* The same for call_with(variant, flag) with a 0/1 flag; nested once more for two flags. */
#define FOR_VARIANT_FLAG(variant, flag, call_with) \
    switch ((variant) * 2 + ((flag) != 0)) { \
    case 0: call_with(0, 0); break; case 1: call_with(0, 1); break; \
    case 2: call_with(1, 0); break; case 3: call_with(1, 1); break; \
    case 4: call_with(2, 0); break; case 5: call_with(2, 1); break; \
    case 6: call_with(3, 0); break; default: call_with(3, 1); \
    }

INLINE void compress_values(const float *v, float *s, int n, float mu, float a, const params_t *p, const int variant) {
    #pragma omp simd
    for (int i = 0; i < n; i++) s[i] = mu + compress_one((v[i] - mu) * a, p, variant);
}

/* s = mu + sign(u) f(|u|) with u = (v - mu) * a. */
static void compress_forward(const float *v, float *s, int n, const params_t *p, float *mu_out, float *a_out) {
    float mu = mean_of(v, n);
    float a = p->std_deviation ? 1.0f / sqrtf(mean_sq_dev(v, mu, n) + p->eps) : 1.0f;
#define CALL(V) compress_values(v, s, n, mu, a, p, V)
    FOR_VARIANT(p->variant, CALL)
#undef CALL
    *mu_out = mu;
    *a_out = a;
}

INLINE void recompute_values(const float *v, float *u, float *c, int n, float mu, float a, const params_t *p, const int variant) {
    #pragma omp simd
    for (int i = 0; i < n; i++) {
        u[i] = (v[i] - mu) * a;
        c[i] = compress_one(u[i], p, variant);
    }
}

/* u and c from v and the saved statistics. */
static void compress_recompute(const float *v, float *u, float *c, int n, float mu, float a, const params_t *p) {
#define CALL(V) recompute_values(v, u, c, n, mu, a, p, V)
    FOR_VARIANT(p->variant, CALL)
#undef CALL
}

static void standardize_forward(const float *s, float *out, int n, const params_t *p, float *m_out, float *rstd_out) {
    float m = 0.0f, rstd;
    if (p->meanvar) {
        m = mean_of(s, n);
        rstd = 1.0f / sqrtf(mean_sq_dev(s, m, n) + p->eps);
    } else {
        rstd = 1.0f / sqrtf(mean_prod(s, s, n) + p->eps);
    }
    #pragma omp simd
    for (int i = 0; i < n; i++) out[i] = (s[i] - m) * rstd;
    *m_out = m;
    *rstd_out = rstd;
}

/* LayerNorm (meanvar) or RMSNorm (rms) input gradient without affine. */
static void standardize_backward(const float *g, const float *shat, float *gs, int n, float rstd, int meanvar) {
    float mean_g = meanvar ? mean_of(g, n) : 0.0f;
    float mean_gs = mean_prod(g, shat, n);
    #pragma omp simd
    for (int i = 0; i < n; i++) gs[i] = rstd * (g[i] - mean_g - shat[i] * mean_gs);
}

/* gv = dL/ds * f'(|u|); returns the sums of gs, gu, gu*u and gs*dc/dlam. */
INLINE void slope_sums(const float *gs, const float *u, const float *c, float *gv, int n, const params_t *p,
                       float sums[4], const int variant) {
    float sum_gs = 0.0f, sum_gu = 0.0f, sum_guu = 0.0f, sum_lam = 0.0f;
    #pragma omp simd reduction(+:sum_gs, sum_gu, sum_guu, sum_lam)
    for (int i = 0; i < n; i++) {
        float slope = slope_one(u[i], c[i], p, variant);
        float gu = gs[i] * slope;
        sum_gs += gs[i];
        sum_gu += gu;
        sum_guu += gu * u[i];
        sum_lam += gs[i] * dlam_one(u[i], c[i], slope, p, variant);
        gv[i] = gu;
    }
    sums[0] = sum_gs; sums[1] = sum_gu; sums[2] = sum_guu; sums[3] = sum_lam;
}

/* dL/dv for s = mu + sign(u) f(|u|); adds sum(gs * dc/dlam) to *glam. gv may alias gs. */
static void compress_backward(const float *gs, const float *u, const float *c, float *gv, int n, float a,
                              const params_t *p, double *glam) {
    float sums[4];
#define CALL(V) slope_sums(gs, u, c, gv, n, p, sums, V)
    FOR_VARIANT(p->variant, CALL)
#undef CALL
    float inv_n = 1.0f / (float)n;
    float mean_gs = sums[0] * inv_n, mean_gu = sums[1] * inv_n;
    float mean_guu = p->std_deviation ? sums[2] * inv_n : 0.0f;
    #pragma omp simd
    for (int i = 0; i < n; i++) gv[i] = (gv[i] - mean_gu - u[i] * mean_guu) * a + mean_gs;
    *glam += sums[3];
}

/* Rows are contiguous, so the next group starts where this one ends. Asking for it before a
   compute-bound pass lets its load from memory overlap that pass instead of stalling the next
   group's first pass. The last group of a block passes NULL: past it lies another block's rows
   (or the end of the tensor). */
static inline void prefetch_group(const float *next, int n) {
    if (!next) return;
    for (int i = 0; i < n; i += 16) __builtin_prefetch(next + i, 0, 3);
}

/* What the standardization of a compress_first group centres and scales, per element: c under
   meanvar (s - mean(s) = c - mean(c): mu cancels, and c is not rounded by adding mu); s = mu + c
   under rms; v itself for the identity (RMSNorm through this kernel, exactly as stock). The
   backward recomputes shat from the same value. As c + shift with shift = value_shift(...),
   once per group: a test per element would keep the loops from vectorizing. */
static inline float value_shift(float mu, int meanvar) {
    return meanvar ? 0.0f : mu;
}

INLINE float standardized_value(float v, float c, float shift, const int variant) {
    return variant == 3 ? v : c + shift;
}

/* (t - m) rstd. As t rstd - m rstd (one multiply-add: m rstd is taken once per group) where t is
   centred (c, and 0 = m under rms); the identity's uncentred v would cancel, so it subtracts
   first. */
INLINE float standardize_one(float t, float m, float rstd, const int variant) {
    return variant == 3 ? (t - m) * rstd : t * rstd - m * rstd;
}

/* compress_first forward of one group in three passes, as LayerNorm's: the mean; the
   compressed values with the sum and sum of squares of what is standardized (a one-pass
   variance is safe here: c is centred, and rms subtracts no mean); the
   standardized output with the affine. The middle pass keeps its values (in tmp, n floats of
   scratch, or in c_out) only where the last pass could not recompute them cheaply (L, T) or c
   is wanted; c_out (NULL: not wanted) receives c for a backward from c. w and b are never NULL
   (ones and zeros stand in). stats: mu, a, the mean of the standardized values (subtracted
   under meanvar only) and rstd. */
INLINE void forward_compress_first_group(const float *v, const float *next_v, float *out, const float *w,
                                         const float *b, float *tmp, float *c_out, int n, const params_t *p,
                                         float stats[4], const int variant, const int std_deviation) {
    /* a local copy: *p could alias the outputs as far as the compiler knows, so it would reload
       lam and redo the per-loop constants folded from it in every iteration (measured 13 % of L's
       compression loop) */
    const params_t local = *p;
    p = &local;
    /* RMSNorm needs no mean: the identity leaves v as it is */
    float mu = variant == 3 && !std_deviation ? 0.0f : mean_of(v, n);
    float a = std_deviation ? 1.0f / sqrtf(mean_sq_dev(v, mu, n) + p->eps) : 1.0f;
    prefetch_group(next_v, n);
    const int keep = variant == 1 || variant == 2 || c_out;
    const float shift = value_shift(mu, p->meanvar);
    float sum_t = 0.0f, sum_tt = 0.0f;
    if (keep && (p->meanvar || !c_out)) {  /* separate loops: a test inside would keep them from vectorizing */
        /* Under meanvar the values are c itself: written straight into c_out when it is wanted
           (it is in cache for the passes below, and no copy is needed). */
        if (c_out) tmp = c_out;
        #pragma omp simd reduction(+:sum_t, sum_tt)
        for (int i = 0; i < n; i++) {
            float t = standardized_value(v[i], compress_one((v[i] - mu) * a, p, variant), shift, variant);
            tmp[i] = t;
            sum_t += t; sum_tt += t * t;
        }
    } else if (keep) {
        #pragma omp simd reduction(+:sum_t, sum_tt)
        for (int i = 0; i < n; i++) {
            c_out[i] = compress_one((v[i] - mu) * a, p, variant);
            float t = standardized_value(v[i], c_out[i], shift, variant);
            tmp[i] = t;
            sum_t += t; sum_tt += t * t;
        }
    } else {
        #pragma omp simd reduction(+:sum_t, sum_tt)
        for (int i = 0; i < n; i++) {
            float t = standardized_value(v[i], compress_one((v[i] - mu) * a, p, variant), shift, variant);
            sum_t += t; sum_tt += t * t;
        }
    }
    float inv_n = 1.0f / (float)n;
    float mean_t = sum_t * inv_n, m = p->meanvar ? mean_t : 0.0f;
    /* m = 0: the mean square (rms). The identity under meanvar (not a norm we offer, but the
       kernel's own LayerNorm) standardizes uncentred v: two passes, as a one-pass variance of
       values far from 0 would cancel. */
    float var = variant == 3 && p->meanvar ? mean_sq_dev(v, m, n) : fmaxf(sum_tt * inv_n - m * m, 0.0f);
    float rstd = 1.0f / sqrtf(var + p->eps);
    if (keep) {
        #pragma omp simd
        for (int i = 0; i < n; i++) out[i] = standardize_one(tmp[i], m, rstd, variant) * w[i] + b[i];
    } else {
        #pragma omp simd
        for (int i = 0; i < n; i++) {
            float t = standardized_value(v[i], compress_one((v[i] - mu) * a, p, variant), shift, variant);
            out[i] = standardize_one(t, m, rstd, variant) * w[i] + b[i];
        }
    }
    stats[0] = mu; stats[1] = a; stats[2] = mean_t; stats[3] = rstd;
}

/* Per element of a compress_first group: u (when need_u), c, the slope f'(|u|) and shat, from
   the input v or (from_c) from the saved c; shift as in standardized_value. */
INLINE void element_terms(const float *v, int i, float mu, float a, float m, float rstd, const params_t *p,
                          float shift, float *u, float *c, float *slope, float *shat, const int variant,
                          const int std_deviation, const int need_u, const int from_c) {
    if (from_c) {
        *c = v[i];
        recover_from_c(*c, p, variant, need_u, u, slope);
    } else {
        *u = std_deviation ? (v[i] - mu) * a : v[i] - mu;
        *c = compress_one(*u, p, variant);
        *slope = slope_one(*u, *c, p, variant);
    }
    *shat = standardize_one(standardized_value(v[i], *c, shift, variant), m, rstd, variant);
}

/* compress_first backward of one group in two passes, as LayerNorm's own backward: pass 1
   computes c, the slope f' and shat per element and takes every sum the gradient needs; pass
   2 writes dL/dv. The sums over dL/ds = rstd (g - mean_g - shat mean_gsh) (g = dL/dshat) that
   the compression backward needs, sum(dL/ds * t) for t = 1, f', f' u and dc/dlam, expand to
   rstd (sum(g t) - mean_g sum(t) - mean_gsh sum(shat t)), three sums pass 1 can take before
   mean_g and mean_gsh are known, so neither dL/ds nor dL/du is ever stored. The passes are
   bound by loads and stores (in cache), so pass 2 recomputes the per-element terms where they
   are cheap and reads them from scratch (shat_keep, slope_keep, u_keep) only where they cost
   a transcendental (L; T from the input). gw/gb accumulate gy * shat and gy (scratch when not
   wanted). from_c: v holds the c the forward saved instead of the input. */
INLINE void backward_compress_first_group(const float *v, const float *gy, const float *next_v, const float *next_gy,
                                          const float *w, float *gx, float *gw, float *gb, float *shat_keep,
                                          float *slope_keep, float *u_keep, int n, float mu, float a, float mean_t,
                                          float rstd, const params_t *p, double *glam, const int variant,
                                          const int std_deviation, const int need_lam, const int from_c) {
    /* a local copy: *p could alias the outputs as far as the compiler knows, so it would reload
       lam and redo the per-loop constants folded from it in every iteration (measured 13 % of L's
       compression loop) */
    const params_t local = *p;
    p = &local;
    /* What pass 2 reads back rather than recomputes: the slope where it costs an exp, log or tanh
       (L; T from the input); shat where it needs c from the input; u where it needs an exp. */
    const int keep_slope = variant == 1 || (variant == 2 && !from_c);
    const int keep_shat = keep_slope && !from_c;
    const int keep_u = std_deviation && keep_slope && from_c;
    const float shift = value_shift(mu, p->meanvar);
    const float m = p->meanvar ? mean_t : 0.0f;  /* what the forward subtracted */
    prefetch_group(next_v, n);
    prefetch_group(next_gy, n);
    /* sum(shat) from the forward's mean: 0 under meanvar, n mean_t rstd under rms */
    const float sum_sh = (mean_t - m) * rstd * (float)n;
    float sum_g = 0.0f, sum_gsh = 0.0f;                    /* t = 1 */
    float sum_gt = 0.0f, sum_t = 0.0f, sum_sht = 0.0f;     /* t = f' */
    float sum_gtu = 0.0f, sum_tu = 0.0f, sum_shtu = 0.0f;  /* t = f' u (std units only) */
    float sum_gl = 0.0f, sum_l = 0.0f, sum_shl = 0.0f;     /* t = dc/dlam (learnable lambda only) */
    #pragma omp simd reduction(+:sum_g, sum_gsh, sum_gt, sum_t, sum_sht, sum_gtu, sum_tu, sum_shtu, \
                               sum_gl, sum_l, sum_shl)
    for (int i = 0; i < n; i++) {
        float u, c, slope, shat;
        element_terms(v, i, mu, a, m, rstd, p, shift, &u, &c, &slope, &shat, variant, std_deviation,
                      std_deviation || need_lam, from_c);
        float g = gy[i] * w[i];
        sum_g += g; sum_gsh += g * shat;
        sum_gt += g * slope; sum_t += slope; sum_sht += shat * slope;
        if (std_deviation) {
            float tu = slope * u;
            sum_gtu += g * tu; sum_tu += tu; sum_shtu += shat * tu;
        }
        if (need_lam) {
            float l = dlam_one(u, c, slope, p, variant);
            sum_gl += g * l; sum_l += l; sum_shl += shat * l;
        }
        gw[i] += gy[i] * shat;
        gb[i] += gy[i];
        if (keep_slope) slope_keep[i] = slope;
        if (keep_shat) shat_keep[i] = shat;
        if (keep_u) u_keep[i] = u;
    }
    float inv_n = 1.0f / (float)n;
    float mean_g = p->meanvar ? sum_g * inv_n : 0.0f, mean_gsh = sum_gsh * inv_n;
#define SUM_GS_TIMES(sum_gt_, sum_t_, sum_sht_) (rstd * ((sum_gt_) - mean_g * (sum_t_) - mean_gsh * (sum_sht_)))
    float mean_gs = SUM_GS_TIMES(sum_g, (float)n, sum_sh) * inv_n;
    float mean_gu = SUM_GS_TIMES(sum_gt, sum_t, sum_sht) * inv_n;
    float mean_guu = std_deviation ? SUM_GS_TIMES(sum_gtu, sum_tu, sum_shtu) * inv_n : 0.0f;
    if (need_lam) *glam += SUM_GS_TIMES(sum_gl, sum_l, sum_shl);
#undef SUM_GS_TIMES
    #pragma omp simd
    for (int i = 0; i < n; i++) {
        float u = 0.0f, c, slope, shat;
        if (keep_slope) {
            slope = slope_keep[i];
            /* not kept: v is c (from_c is never the identity) */
            shat = keep_shat ? shat_keep[i] : standardize_one(standardized_value(0.0f, v[i], shift, variant), m, rstd, variant);
            if (std_deviation) u = keep_u ? u_keep[i] : (v[i] - mu) * a;  /* not kept: v is the input */
        } else {
            element_terms(v, i, mu, a, m, rstd, p, shift, &u, &c, &slope, &shat, variant, std_deviation, std_deviation,
                          from_c);
        }
        float g = gy[i] * w[i];
        /* the products of loop invariants are taken once, outside the loop */
        float gu = (g * rstd - mean_g * rstd - shat * (mean_gsh * rstd)) * slope;
        gx[i] = std_deviation ? (gu - mean_gu - u * mean_guu) * a + mean_gs : gu + (mean_gs - mean_gu);
    }
}

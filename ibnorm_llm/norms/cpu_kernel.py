"""A compiled CPU kernel for IBNorm (and RMSNorm) on fp32: one group at a time, in cache.

Why C: on CPU, ATen's vectorized ``log1p``/``tanh`` alone cost about as much as LayerNorm's
whole forward+backward, and eager PyTorch walks the data a dozen times. This kernel
handles one group at a time in L1-sized scratch buffers, with branch-free polynomial
``log1p``/``tanh``/``expm1``/``exp2`` (a few ulp) that the compiler vectorizes. The math is the fused
function's (``fused_ibnorm.py`` derives the backward); the loops are arranged as LayerNorm's:
three passes forward (mean; compressed values with their sum and sum of squares; output),
two backward (every sum the gradient needs; the gradient). For L and T the forward also
writes the compressed deviations ``c`` and the backward starts from them instead of the
input (same memory, one transcendental fewer: see ``saves_compressed``).

The C source below is compiled on first use with the system C compiler (``cc``/``gcc``,
``-O3 -march=native``) into a per-user cache and loaded with ctypes; nothing is linked
against torch. The build takes about 7 s here (the loops are compiled once per variant and
option) and is reused from the cache afterwards. Rows are split into one block per torch
thread. Where torch runs on GNU OpenMP (its Linux wheels) the kernel is built with
``-fopenmp`` and runs the blocks on torch's own OpenMP threads; elsewhere the blocks run on
Python threads (ctypes releases the GIL). ``available()`` says whether the kernel could be
built here; callers fall back to the PyTorch implementation otherwise.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

VARIANT_CODES = {"S": 0, "L": 1, "T": 2, "identity": 3}

_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int variant;        /* 0 S, 1 L, 2 T, 3 identity (no compression) */
    int std_deviation;  /* deviations in units of the group std */
    int meanvar;        /* standardize: 1 meanvar, 0 rms */
    float lam, inv_lam, eps;
} params_t;

static inline float as_float(int32_t i) { float f; memcpy(&f, &i, 4); return f; }
static inline int32_t as_int(float f) { int32_t i; memcpy(&i, &f, 4); return i; }

/* log1p(lam r) / lam for r >= 0, given lam and inv_lam = 1 / lam (1 and 1: log1p itself).
   1 + z = 2^k m (z = lam r) with m in [sqrt(1/2), sqrt(2)) (subtracting the bits of sqrt(1/2)
   before taking the exponent does the reduction in one step); f = m - 1 is taken from z, not from
   the rounded 1 + z: f = z 2^-k + (2^-k - 1), exact for k = 0 (f = z) and rounded once otherwise,
   so small z keep their relative accuracy with no correction term. Then log(m) = 2 atanh(s) with
   s = f / (m + 1), |s| < 0.1716, as 2 s + s^3 q(s^2), q of degree 2 (our least-squares fit,
   reweighted toward equal ripple: relative error 1.3e-9, one multiply-add fewer than the Taylor
   series). The scale 1 / lam is folded into the coefficients (taken once per loop, not per
   element). This function dominates variant L's forward, whose loop is bound by the latency of
   one element's chain of operations (the out-of-order window holds only a few elements' worth),
   so the arrangement shortens that chain: 1 + lam r as one multiply-add, m + 1 from 1 + z beside
   f rather than after it, and 2 s / lam + k ln 2 / lam formed while q is evaluated (measured: the
   loop 15 % faster than in the plain order). */
static inline float fast_log1p_scaled(float r, float lam, float inv_lam) {
    float z = r * lam;
    float w = fmaf(r, lam, 1.0f);
    int32_t k_bits = (as_int(w) - 0x3f3504f3) & (int32_t)0xff800000;  /* k << 23, k >= 0 */
    float k_ln2 = (float)(k_bits >> 23) * (0.6931471805599453f * inv_lam);
    float scale = as_float(0x3f800000 - k_bits);                       /* 2^-k */
    float f = z * scale + (scale - 1.0f);
    float s = f / fmaf(w, scale, 1.0f), s2 = s * s;                   /* w 2^-k + 1 = m + 1 */
    float q = 0.29961180831850465f * inv_lam;
    q = q * s2 + 0.3997360662830866f * inv_lam;
    q = q * s2 + 0.6666681667629399f * inv_lam;
    return fmaf(s * s2, q, fmaf(s, 2.0f * inv_lam, k_ln2));
}

/* expm1(x) for x in [-87, 0] (clamped below: exp(-87) is near the smallest normal float):
   x = k ln 2 + r, |r| <= ln 2 / 2, expm1(r) by its Taylor series to r^7 (next term below 2e-8
   relative), then 2^k (1 + p) - 1 = 2^k p + (2^k - 1), exact for k = 0 and without
   cancellation below. */
static inline float fast_expm1_neg(float x) {
    x = x > -87.0f ? x : -87.0f;
    float k = rintf(x * 1.44269504088896341f);
    float r = x - k * 0.693359375f + k * 2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r * r + r;
    float scale = as_float(((int32_t)k + 127) << 23);
    return scale * p + (scale - 1.0f);
}

/* 2^y for y in [-125, 0] (clamped below: the result would leave the normal range), where
   only relative accuracy matters: y = k + r with integer k and |r| <= 1/2 (exact), 2^r by a
   degree-5 polynomial (our fit, as for log: relative error 7.5e-8), and 2^k added to its
   exponent bits (no multiply). In base 2 the reduction needs no split constant: exp(-x) as
   2^(-x log2(e)) inherits only the rounding of x log2(e), relative error |x| 6e-8, the same as
   the rounding of x itself (the lam |c| it is called with) already costs. */
static inline float fast_exp2_neg(float y) {
    y = y > -125.0f ? y : -125.0f;
    float k = rintf(y);
    float r = y - k;
    float p = 0.0013276471992530153f;
    p = p * r + 0.009675540958553225f;
    p = p * r + 0.05550713134773868f;
    p = p * r + 0.24022119767233716f;
    p = p * r + 0.6931469671630299f;
    p = p * r + 1.0000000748326245f;
    return as_float(as_int(p) + ((int32_t)k << 23));
}

/* tanh(z) for z >= 0 as z P(z^2) / Q(z^2), degrees 6 and 3 in z^2, on [0, 9] (tanh is 1 in
   fp32 beyond): relative error below 1e-8 in exact arithmetic and at most 2.7e-7 (2.2 fp32
   epsilons) as evaluated here (tested against float64). A third fewer operations than tanh through
   expm1 (measured 1.2 against 1.8 cycles per element). The coefficients are ours: a rational
   least-squares fit of the relative error, reweighted toward equal ripple (Loeb's method). */
static inline float fast_tanh(float z) {
    float x = z < 9.0f ? z : 9.0f, x2 = x * x;
    float p = -8.570135025904799e-14f;
    p = p * x2 + 5.3138406869157606e-11f;
    p = p * x2 - 2.030894741267275e-08f;
    p = p * x2 + 1.1176995940331835e-05f;
    p = p * x2 + 0.003106256714090705f;
    p = p * x2 + 0.13086113333702087f;
    p = p * x2 + 1.0f;
    float q = 0.00025494149303995073f;
    q = q * x2 + 0.02450447343289852f;
    q = q * x2 + 0.4641944169998169f;
    q = q * x2 + 1.0f;
    return x * p / q;
}

/* c = sign(u) f(|u|) */
#define INLINE static inline __attribute__((always_inline))

INLINE float compress_one(float u, const params_t *p, const int variant) {
    float r = fabsf(u), f;
    switch (variant) {
    case 0: f = r <= p->inv_lam ? r : p->inv_lam + (r - p->inv_lam) * p->inv_lam; break;
    case 1: f = fast_log1p_scaled(r, p->lam, p->inv_lam); break;
    case 2: f = fast_tanh(p->lam * r) * p->inv_lam; break;
    default: f = r;
    }
    return as_float(as_int(f) | (as_int(u) & (int32_t)0x80000000));  /* copysign(f, u) in one operation: f >= 0 */
}

/* f'(|u|) */
INLINE float slope_one(float u, float c, const params_t *p, const int variant) {
    switch (variant) {
    case 0: return fabsf(u) <= p->inv_lam ? 1.0f : p->inv_lam;
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
    float rc = fabsf(c), inv = p->inv_lam;
    switch (variant) {
    case 0:
        *slope = rc <= inv ? 1.0f : inv;
        if (need_u) *u = copysignf(rc <= inv ? rc : inv + (rc - inv) * p->lam, c);
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

/* sign(u) df(|u|)/dlam */
INLINE float dlam_one(float u, float c, float slope, const params_t *p, const int variant) {
    float inv = p->inv_lam, r = fabsf(u);
    switch (variant) {
    case 0: { float d = r > inv ? 2.0f * inv * inv * inv - (1.0f + r) * inv * inv : 0.0f; return u < 0.0f ? -d : d; }
    case 1: case 2: return (u * slope - c) * inv;
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

/* Forward over rows [row_begin, row_end) of a (rows, G*n) matrix; stats is (4, rows, G):
   mu, a, a mean (compress_first: of the standardized values, subtracted under meanvar only;
   standardize_first: the one subtracted, 0 under rms), rstd. c_saved (compress_first only;
   NULL: not wanted) receives c, shaped as x. */
static int forward_rows(const float *x, const float *w, const float *b, float *y, float *stats, float *c_saved,
                        int64_t row_begin, int64_t row_end, int64_t rows, int G, int n,
                        int variant, int std_deviation, int meanvar, int compress_first, float lam, float eps) {
    params_t p = {variant, std_deviation, meanvar, lam, 1.0f / lam, eps};
    /* scratch, then ones and zeros standing in for a missing weight or bias: tests of the
       pointers inside the loops would keep them from vectorizing */
    float *tmp = (float *)malloc(sizeof(float) * 3 * (size_t)n);
    if (!tmp) return 1;
    float *ones = tmp + n, *zeros = tmp + 2 * n;
    for (int i = 0; i < n; i++) { ones[i] = 1.0f; zeros[i] = 0.0f; }
    int64_t width = (int64_t)G * n, plane = rows * G;
    for (int64_t r = row_begin; r < row_end; r++) {
        for (int g = 0; g < G; g++) {
            const float *v = x + r * width + (int64_t)g * n;
            float *out = y + r * width + (int64_t)g * n;
            const float *wg = w ? w + (int64_t)g * n : NULL, *bg = b ? b + (int64_t)g * n : NULL;
            float mu, a, m, rstd;
            if (compress_first) {
                float st[4];
                const float *next_v = r + 1 < row_end || g + 1 < G ? v + n : NULL;
                float *c_out = c_saved ? c_saved + r * width + (int64_t)g * n : NULL;
#define CALL(V, STD) forward_compress_first_group(v, next_v, out, wg ? wg : ones, bg ? bg : zeros, tmp, c_out, n, \
                                                     &p, st, V, STD)
                FOR_VARIANT_FLAG(p.variant, std_deviation, CALL)
#undef CALL
                mu = st[0]; a = st[1]; m = st[2]; rstd = st[3];
            } else {
                /* standardize_first (the order ablation): stage by stage. */
                standardize_forward(v, tmp, n, &p, &m, &rstd);
                compress_forward(tmp, out, n, &p, &mu, &a);
                if (wg) {
                    #pragma omp simd
                    for (int i = 0; i < n; i++) out[i] *= wg[i];
                }
                if (bg) {
                    #pragma omp simd
                    for (int i = 0; i < n; i++) out[i] += bg[i];
                }
            }
            int64_t k = r * G + g;
            stats[k] = mu;
            stats[plane + k] = a;
            stats[2 * plane + k] = m;
            stats[3 * plane + k] = rstd;
        }
    }
    free(tmp);
    return 0;
}

#define SCRATCH_SKEW 40  /* floats: 160 bytes, a multiple of the 32-byte vector */

/* Backward over rows [row_begin, row_end). gw_part/gb_part (width floats, may be NULL) and
   *glam are accumulated into. from_c: x holds the forward's c_saved instead of the input. */
static int backward_rows(const float *x, const float *w, const float *gy, const float *stats, float *gx,
                         float *gw_part, float *gb_part, double *glam,
                         int64_t row_begin, int64_t row_end, int64_t rows, int G, int n,
                         int variant, int std_deviation, int meanvar, int compress_first, float lam, int need_lam,
                         int from_c) {
    params_t p = {variant, std_deviation, meanvar, lam, 1.0f / lam, 0.0f};
    /* Eight scratch rows, each SCRATCH_SKEW floats more than a row apart: rows a power-of-two
       size apart would share their low address bits with each other (and with x, gy, gx) and
       the CPU would stall loads on stores to unrelated addresses (4K aliasing). */
    int64_t stride = n + SCRATCH_SKEW;
    float *buf = (float *)calloc((size_t)stride * 8, sizeof(float));
    if (!buf) return 1;
    float *gshat = buf, *u = buf + stride, *c = buf + 2 * stride, *shat = buf + 3 * stride, *z = buf + 4 * stride;
    float *gw_sink = buf + 5 * stride, *gb_sink = buf + 6 * stride;  /* stand-ins for unwanted gw/gb */
    /* compress_first reuses the same rows for what its second pass reads back */
    float *shat_keep = shat, *slope_keep = u, *u_keep = c;
    /* Without a weight the compress_first loops multiply by ones: a test of the pointer inside
       them kept the second pass from vectorizing (measured: IBNorm-T's backward 2.3 -> 1.4 cycles
       per element, S's 2.5 -> 1.75, L's 2.55 -> 2.2). */
    float *ones = buf + 7 * stride;
    for (int i = 0; i < n; i++) ones[i] = 1.0f;
    int64_t width = (int64_t)G * n, plane = rows * G;
    for (int64_t r = row_begin; r < row_end; r++) {
        for (int g = 0; g < G; g++) {
            int64_t off = r * width + (int64_t)g * n, k = r * G + g;
            const float *v = x + off, *gyg = gy + off;
            float *gxg = gx + off;
            float mu = stats[k], a = stats[plane + k], m = stats[2 * plane + k], rstd = stats[3 * plane + k];
            const float *wg = w ? w + (int64_t)g * n : NULL;
            float *gwg = gw_part ? gw_part + (int64_t)g * n : NULL;
            float *gbg = gb_part ? gb_part + (int64_t)g * n : NULL;
            if (compress_first) {
                int last = r + 1 == row_end && g + 1 == G;
                const float *next_v = last ? NULL : v + n, *next_gy = last ? NULL : gyg + n;
#define CALL_LAM(V, STD, LAM, FROM_C) backward_compress_first_group(v, gyg, next_v, next_gy, wg ? wg : ones, gxg, \
                                                        gwg ? gwg : gw_sink, gbg ? gbg : gb_sink, shat_keep, \
                                                        slope_keep, u_keep, n, mu, a, m, rstd, &p, glam, \
                                                        V, STD, LAM, FROM_C)
#define CALL_C(V, STD, FROM_C) if (need_lam) CALL_LAM(V, STD, 1, FROM_C); else CALL_LAM(V, STD, 0, FROM_C)
#define CALL(V, STD) if (from_c) { CALL_C(V, STD, 1); } else { CALL_C(V, STD, 0); }
                FOR_VARIANT_FLAG(p.variant, std_deviation, CALL)
#undef CALL
#undef CALL_C
#undef CALL_LAM
                continue;
            }
            /* standardize_first (the order ablation): stage by stage. */
            if (wg) {
                #pragma omp simd
                for (int i = 0; i < n; i++) gshat[i] = gyg[i] * wg[i];
            } else {
                memcpy(gshat, gyg, sizeof(float) * (size_t)n);
            }
            #pragma omp simd
            for (int i = 0; i < n; i++) z[i] = (v[i] - m) * rstd;
            compress_recompute(z, u, c, n, mu, a, &p);
            #pragma omp simd
            for (int i = 0; i < n; i++) shat[i] = mu + c[i];
            compress_backward(gshat, u, c, gshat, n, a, &p, glam);  /* gshat := dL/dz */
            standardize_backward(gshat, z, gxg, n, rstd, meanvar);
            if (gwg) {
                #pragma omp simd
                for (int i = 0; i < n; i++) gwg[i] += gyg[i] * shat[i];
            }
            if (gbg) {
                #pragma omp simd
                for (int i = 0; i < n; i++) gbg[i] += gyg[i];
            }
        }
    }
    free(buf);
    return 0;
}

/* The elementwise approximations on their own, for their accuracy tests: y = f(x) with f
   0 log1p (x >= 0), 1 tanh (x >= 0), 2 expm1 (x <= 0), 3 exp2 (x <= 0). */
void ibn_elementwise(int fn, const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        switch (fn) {
        case 0: y[i] = fast_log1p_scaled(x[i], 1.0f, 1.0f); break;
        case 1: y[i] = fast_tanh(x[i]); break;
        case 2: y[i] = fast_expm1_neg(x[i]); break;
        default: y[i] = fast_exp2_neg(x[i]);
        }
    }
}

/* The entry points run row blocks [bounds[i], bounds[i + 1]), i < nblocks, in parallel. Built
   with -fopenmp against the OpenMP runtime torch has loaded, they run on torch's own worker
   threads, which spin for a while after each torch op: threads of our own would compete with
   them for the cores. Built without OpenMP they run the blocks in turn (Python then passes one
   block per call, on its own threads). Block i accumulates into gw_parts/gb_parts row i and
   glams[i]. Nonzero: a scratch buffer could not be allocated. */
int ibn_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int ibn_forward(const float *x, const float *w, const float *b, float *y, float *stats, float *c_saved,
                const int64_t *bounds, int nblocks, int64_t rows, int G, int n,
                int variant, int std_deviation, int meanvar, int compress_first, float lam, float eps) {
    int status = 0;
    #pragma omp parallel for num_threads(nblocks) schedule(static, 1) reduction(|:status)
    for (int i = 0; i < nblocks; i++)
        status |= forward_rows(x, w, b, y, stats, c_saved, bounds[i], bounds[i + 1], rows, G, n, variant, std_deviation,
                               meanvar, compress_first, lam, eps);
    return status;
}

int ibn_backward(const float *x, const float *w, const float *gy, const float *stats, float *gx,
                 float *gw_parts, float *gb_parts, double *glams, const int64_t *bounds, int nblocks,
                 int64_t rows, int G, int n, int variant, int std_deviation, int meanvar, int compress_first,
                 float lam, int need_lam, int from_c) {
    int status = 0;
    int64_t width = (int64_t)G * n;
    #pragma omp parallel for num_threads(nblocks) schedule(static, 1) reduction(|:status)
    for (int i = 0; i < nblocks; i++)
        status |= backward_rows(x, w, gy, stats, gx, gw_parts ? gw_parts + i * width : NULL,
                                gb_parts ? gb_parts + i * width : NULL, glams + i, bounds[i], bounds[i + 1], rows,
                                G, n, variant, std_deviation, meanvar, compress_first, lam, need_lam, from_c);
    return status;
}
"""

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_build_error: str | None = None
_openmp = False  # whether the library runs its row blocks in parallel itself
_pool: ThreadPoolExecutor | None = None

_I64, _INT, _FLOAT, _PTR = ctypes.c_int64, ctypes.c_int, ctypes.c_float, ctypes.c_void_p


def _forget_pool_after_fork() -> None:
    # A forked child has none of the parent's pool threads; a fresh pool is made on demand.
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _cache_dir() -> Path:
    root = os.environ.get("IBNORM_LLM_CACHE") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "ibnorm_llm" / "cpu_kernel"


def _cpu_signature() -> str:
    """-march=native code is only valid on this CPU model: key the cache by its flags."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return platform.machine() + flags


def _libgomp_runtimes() -> set[str]:
    """The paths of the GNU OpenMP runtimes loaded in this process (empty where unreadable)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return set()
    return {line.split()[-1] for line in maps.splitlines() if "libgomp" in line}


def _torch_runs_on_libgomp() -> bool:
    """Whether torch's OpenMP runtime is GNU's, loaded as ``libgomp.so.1`` (or its versioned file).

    A kernel built with ``-fopenmp`` asks for ``libgomp.so.1``; the loader hands it the copy
    torch already loaded (matched by that soname), so the kernel shares torch's worker threads.
    Any other runtime (or none, or a renamed copy such as ``libgomp-<hash>.so.1``) would make a
    second pool of threads competing for the cores.
    """
    runtimes = _libgomp_runtimes()
    return len(runtimes) == 1 and Path(runtimes.pop()).name.startswith("libgomp.so.1")


def _compile(target: Path, openmp: bool) -> None:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc/gcc) on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / "ibnorm_kernel.c"
        src.write_text(_SOURCE)
        out = Path(tmp) / target.name
        # -fopenmp-simd: the simd pragmas (vectorized reductions) without an OpenMP runtime.
        # -fno-trapping-math lets the compiler evaluate both sides of a select (vectorizing the
        # compression loops). No -ffast-math: it would reassociate the exact reductions (fast_log1p_scaled's
        # f, the exp's r) and the order of the sums.
        cmd = [compiler, "-O3", "-march=native", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math", "-fPIC", "-shared",
               *(["-fopenmp"] if openmp else []), str(src), "-o", str(out), "-lm"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        os.replace(out, target)  # atomic: a concurrent build never sees a half-written library


def _build_and_open() -> ctypes.CDLL:
    """The kernel library, built on first use: with OpenMP where torch runs on libgomp (falling
    back to a build without it if that fails), else without."""
    error: Exception | None = None
    for openmp in (True, False) if _torch_runs_on_libgomp() else (False,):
        key = hashlib.sha256((_SOURCE + _cpu_signature() + ("openmp" if openmp else "")).encode()).hexdigest()[:16]
        target = _cache_dir() / f"ibnorm_kernel_{key}.so"
        try:
            if not target.exists():
                _compile(target, openmp)
            return ctypes.CDLL(str(target))
        except (OSError, RuntimeError, subprocess.SubprocessError) as err:
            error = err
    raise RuntimeError(str(error))


def _load() -> ctypes.CDLL | None:
    global _library, _build_error, _openmp
    if _library is not None or _build_error is not None:  # built (or failed) already: no lock
        return _library
    with _lock:
        if _library is not None or _build_error is not None:
            return _library
        if sys.platform == "win32":
            _build_error = "the CPU kernel is built for POSIX systems only"
            return None
        try:
            lib = _build_and_open()
        except RuntimeError as err:
            _build_error = str(err)
            warnings.warn(
                f"IBNorm/RMSNorm CPU kernel unavailable, using the slower PyTorch path: {_build_error}. "
                "Fix: install a C compiler (cc/gcc) or point IBNORM_LLM_CACHE at a writable folder; "
                "IBNORM_LLM_NO_CPU_KERNEL=1 chooses the PyTorch path without this warning.",
                RuntimeWarning, stacklevel=3,
            )
            return None
        lib.ibn_forward.argtypes = [_PTR] * 7 + [_INT, _I64, _INT, _INT] + [_INT] * 4 + [_FLOAT] * 2
        lib.ibn_forward.restype = _INT
        lib.ibn_backward.argtypes = [_PTR] * 9 + [_INT, _I64, _INT, _INT] + [_INT] * 4 + [_FLOAT, _INT, _INT]
        lib.ibn_backward.restype = _INT
        lib.ibn_elementwise.argtypes = [_INT, _PTR, _PTR, _I64]
        lib.ibn_elementwise.restype = None
        _openmp = bool(lib.ibn_openmp())
        _library = lib
        return lib


def available() -> bool:
    """Whether the kernel is built (building it on first call) and loadable on this machine."""
    return os.environ.get("IBNORM_LLM_NO_CPU_KERNEL") != "1" and _load() is not None


def build_error() -> str | None:
    """Why the kernel is unavailable, or None."""
    _load()
    return _build_error


# Below this many elements per thread, handing work to the pool costs more than it saves.
MIN_ELEMENTS_PER_THREAD = 1 << 15


def _row_bounds(rows: int, width: int) -> torch.Tensor:
    """Starts of the row blocks (one per torch thread, each at least MIN_ELEMENTS_PER_THREAD
    elements), then ``rows``: (blocks + 1,) int64 (just ``[0]`` for no rows)."""
    parts = max(1, min(torch.get_num_threads(), rows, rows * width // MIN_ELEMENTS_PER_THREAD))
    step = max(1, -(-rows // parts))
    return torch.tensor([*range(0, rows, step), rows], dtype=torch.int64)


def _run_blocks(call, blocks: int) -> None:
    """``call(first, count)`` runs ``count`` row blocks from ``first`` (ctypes releases the GIL).

    The OpenMP build takes all blocks in one call; otherwise each block runs on a thread of
    our pool. Fails on a nonzero status.
    """
    global _pool
    if blocks == 0:
        return
    if blocks == 1 or _openmp:
        statuses = [call(0, blocks)]
    else:
        with _lock:
            if _pool is None or _pool._max_workers < blocks:
                _pool = ThreadPoolExecutor(max_workers=blocks, thread_name_prefix="ibnorm_cpu")
        statuses = list(_pool.map(lambda i: call(i, 1), range(blocks)))
    if any(statuses):
        raise MemoryError("the IBNorm CPU kernel could not allocate its scratch buffers")


ELEMENTWISE = {"log1p": 0, "tanh": 1, "expm1": 2, "exp2": 3}


def elementwise(fn: str, x: torch.Tensor) -> torch.Tensor:
    """The kernel's own ``log1p`` (x >= 0), ``tanh`` (x >= 0), ``expm1`` or ``exp2`` (x <= 0) of
    contiguous fp32 ``x``: the approximations the kernel is built on, exposed for their tests."""
    lib = _load()
    y = torch.empty_like(x)
    lib.ibn_elementwise(ELEMENTWISE[fn], _ptr(x), _ptr(y), x.numel())
    return y


def saves_compressed(variant: str, *, std_deviation: bool, compress_first: bool, learnable_lam: bool) -> bool:
    """Whether the backward runs from the compressed deviations ``c`` instead of the input.

    Both cost one activation of memory. From ``c`` the backward of T needs no tanh (its slope is
    ``1 - (lam c)^2``) and L's needs one exp instead of a log and a division; that outweighs
    the forward's extra store of ``c`` (measured forward+backward per element: T 28-30 % and L
    18-21 % less time). S gains nothing (measured equal) and keeps the input. T's deviations
    cannot be recovered where tanh saturates, so T keeps the input when it needs them (std
    units, learnable lambda).
    """
    if not compress_first or variant not in ("L", "T"):
        return False
    return variant == "L" or not (std_deviation or learnable_lam)


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def forward(x2: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, *, num_groups: int,
            variant: str, std_deviation: bool, meanvar: bool, compress_first: bool, lam: float, eps: float,
            save_c: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(y, stats, c)`` for contiguous fp32 ``x2`` of shape (rows, width); stats is (4, rows, G).

    ``c`` (the compressed deviations ``sign(u) f(|u|)``, shaped as ``x2``) is returned when
    ``save_c`` (compress_first only): see ``saves_compressed`` for when a backward from it is exact.
    """
    lib = _load()
    rows, width = x2.shape
    y = torch.empty_like(x2)
    stats = torch.empty((4, rows, num_groups), dtype=torch.float32)
    c = torch.empty_like(x2) if save_c else None
    bounds = _row_bounds(rows, width)
    n = width // num_groups
    code = VARIANT_CODES[variant]

    def call(first: int, count: int) -> int:
        return lib.ibn_forward(_ptr(x2), _ptr(weight), _ptr(bias), _ptr(y), _ptr(stats), _ptr(c), _ptr(bounds[first:]),
                               count, rows, num_groups, n, code, int(std_deviation), int(meanvar), int(compress_first),
                               lam, eps)

    _run_blocks(call, len(bounds) - 1)
    return y, stats, c


def backward(x2: torch.Tensor, weight: torch.Tensor | None, gy2: torch.Tensor, stats: torch.Tensor, *,
             num_groups: int, variant: str, std_deviation: bool, meanvar: bool, compress_first: bool, lam: float,
             need_weight: bool, need_bias: bool, need_lam: bool, from_c: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, float]:
    """``(gx, gw, gb, glam)`` for contiguous fp32 inputs; gw/gb are None when not needed.

    ``from_c``: ``x2`` is the ``c`` that ``forward(save_c=True)`` returned, not the input.
    """
    lib = _load()
    rows, width = x2.shape
    bounds = _row_bounds(rows, width)
    blocks = len(bounds) - 1
    gx = torch.empty_like(x2)
    # one partial sum per row block, added up below: (blocks, width) and (blocks,)
    gw_parts = torch.zeros((blocks, width), dtype=torch.float32) if need_weight else None
    gb_parts = torch.zeros((blocks, width), dtype=torch.float32) if need_bias else None
    glams = torch.zeros(blocks, dtype=torch.float64)
    n = width // num_groups
    code = VARIANT_CODES[variant]

    def call(first: int, count: int) -> int:
        return lib.ibn_backward(
            _ptr(x2), _ptr(weight), _ptr(gy2), _ptr(stats), _ptr(gx),
            None if gw_parts is None else _ptr(gw_parts[first]), None if gb_parts is None else _ptr(gb_parts[first]),
            _ptr(glams[first:]), _ptr(bounds[first:]), count, rows, num_groups, n, code, int(std_deviation),
            int(meanvar), int(compress_first), lam, int(need_lam), int(from_c))

    _run_blocks(call, blocks)
    gw = gw_parts.sum(0) if gw_parts is not None else None
    gb = gb_parts.sum(0) if gb_parts is not None else None
    return gx, gw, gb, float(glams.sum())

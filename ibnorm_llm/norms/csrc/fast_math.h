// Branch-free float approximations of log1p, expm1, exp2 and tanh that the compiler vectorizes
// (ATen's vectorized log1p/tanh alone cost about as much as LayerNorm's whole forward+backward).
// Each is tested against float64 by tests/norms/test_ibnorm_ops.py through ibnorm_elementwise.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

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

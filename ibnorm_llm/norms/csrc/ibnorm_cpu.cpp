// IBNorm (and RMSNorm) on fp32 CPU tensors as torch operators: one group at a time, in cache.
//
// The loops are arranged as LayerNorm's: three passes forward (mean; compressed values with their
// sum and sum of squares; output), two backward (every sum the gradient needs; the gradient). For
// L and T the forward can also return the compressed deviations c, and the backward then starts
// from them instead of the input (same memory, one transcendental fewer; the Python side decides
// when, see ibnorm_llm/norms/cpu_ops.py). Rows are split over torch's own intra-op threads with
// at::parallel_for. The operator schemas below are the one signature table: Python calls them as
// torch.ops.ibnorm_llm.*, and registers their fake (shape) functions and autograd there.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <string_view>
#include <vector>

#include "group_passes.h"

/* Forward over rows [row_begin, row_end) of a (rows, G*n) matrix; stats is (4, rows, G):
   mu, a, a mean (compress_first: of the standardized values, subtracted under meanvar only;
   standardize_first: the one subtracted, 0 under rms), rstd. c_saved (compress_first only;
   NULL: not wanted) receives c, shaped as x. lam is the user's lambda, in the role scale_role says
   (make_params turns it into the constants the loops use). */
static void forward_rows(const float *x, const float *w, const float *b, float *y, float *stats, float *c_saved,
                        int64_t row_begin, int64_t row_end, int64_t rows, int G, int n,
                        int variant, int std_deviation, int meanvar, int compress_first, float lam, int scale_role,
                        float eps) {
    params_t p = make_params(variant, std_deviation, meanvar, lam, scale_role, eps);
    /* scratch, then ones and zeros standing in for a missing weight or bias: tests of the
       pointers inside the loops would keep them from vectorizing */
    std::vector<float> scratch(3 * (size_t)n);
    float *tmp = scratch.data();
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
}

#define SCRATCH_SKEW 40  /* floats: 160 bytes, a multiple of the 32-byte vector */

/* Backward over rows [row_begin, row_end). gw_part/gb_part (width floats, may be NULL) and
   *glam are accumulated into. from_c: x holds the forward's c_saved instead of the input. */
static void backward_rows(const float *x, const float *w, const float *gy, const float *stats, float *gx,
                         float *gw_part, float *gb_part, double *glam,
                         int64_t row_begin, int64_t row_end, int64_t rows, int G, int n,
                         int variant, int std_deviation, int meanvar, int compress_first, float lam, int scale_role,
                         int need_lam, int from_c) {
    params_t p = make_params(variant, std_deviation, meanvar, lam, scale_role, 0.0f);
    /* Eight scratch rows, each SCRATCH_SKEW floats more than a row apart: rows a power-of-two
       size apart would share their low address bits with each other (and with x, gy, gx) and
       the CPU would stall loads on stores to unrelated addresses (4K aliasing). */
    int64_t stride = n + SCRATCH_SKEW;
    std::vector<float> scratch((size_t)stride * 8, 0.0f);
    float *buf = scratch.data();
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
}
namespace {

// Below this many elements per thread, handing rows to another thread costs more than it saves.
constexpr int64_t kMinElementsPerThread = 1 << 15;

struct Options {
    int variant, std_deviation, meanvar, compress_first, scale_role, num_groups, n;
    int64_t rows, width;
};

int variant_code(std::string_view variant) {
    if (variant == "S") return 0;
    if (variant == "L") return 1;
    if (variant == "T") return 2;
    TORCH_CHECK(variant == "identity", "ibnorm: variant must be S, L, T or identity, got ", variant);
    return 3;
}

Options parse_options(const at::Tensor &x, std::string_view variant, std::string_view deviation,
                      std::string_view standardize, std::string_view order, int64_t num_groups,
                      std::string_view lam_role) {
    TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat, "ibnorm CPU kernel: x must be a float32 CPU tensor");
    TORCH_CHECK(x.dim() >= 1 && num_groups >= 1 && x.size(-1) % num_groups == 0,
                "ibnorm CPU kernel: num_groups must divide the last dimension");
    TORCH_CHECK(deviation == "raw" || deviation == "std", "ibnorm: deviation must be raw or std");
    TORCH_CHECK(standardize == "meanvar" || standardize == "rms", "ibnorm: standardize must be meanvar or rms");
    TORCH_CHECK(order == "compress_first" || order == "standardize_first",
                "ibnorm: order must be compress_first or standardize_first");
    TORCH_CHECK(lam_role == "rate" || lam_role == "scale", "ibnorm: lam_role must be rate or scale");
    Options o;
    o.variant = variant_code(variant);
    o.std_deviation = deviation == "std";
    o.meanvar = standardize == "meanvar";
    o.compress_first = order == "compress_first";
    o.scale_role = lam_role == "scale";
    o.width = x.size(-1);
    o.rows = o.width == 0 ? 0 : x.numel() / o.width;
    o.num_groups = (int)num_groups;
    o.n = (int)(o.width / num_groups);
    return o;
}

const float *optional_data(const std::optional<at::Tensor> &t, int64_t width, const char *name) {
    if (!t.has_value()) return nullptr;
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kFloat && t->is_contiguous() && t->numel() == width,
                "ibnorm CPU kernel: ", name, " must be a contiguous float32 CPU tensor of the last dimension's size");
    return t->data_ptr<float>();
}

float lam_value(const at::Tensor &lam) {
    TORCH_CHECK(lam.numel() == 1, "ibnorm CPU kernel: lam must hold one value");
    return lam.item<float>();
}

int64_t grain_rows(int64_t width) { return std::max<int64_t>(1, kMinElementsPerThread / std::max<int64_t>(width, 1)); }

std::tuple<at::Tensor, at::Tensor, at::Tensor> ibnorm_forward(
        const at::Tensor &x_in, const std::optional<at::Tensor> &weight, const std::optional<at::Tensor> &bias,
        const at::Tensor &lam, std::string_view variant, std::string_view deviation, std::string_view standardize,
        std::string_view order, int64_t num_groups, double eps, bool save_c, std::string_view lam_role) {
    const Options o = parse_options(x_in, variant, deviation, standardize, order, num_groups, lam_role);
    TORCH_CHECK(!save_c || o.compress_first, "ibnorm CPU kernel: save_c needs order=compress_first");
    const at::Tensor x = x_in.contiguous();
    at::Tensor y = at::empty_like(x);
    at::Tensor stats = at::empty({4, o.rows, o.num_groups}, x.options());
    at::Tensor c = save_c ? at::empty_like(x) : at::empty({0}, x.options());
    const float *w = optional_data(weight, o.width, "weight"), *b = optional_data(bias, o.width, "bias");
    const float l = lam_value(lam);
    at::parallel_for(0, o.rows, grain_rows(o.width), [&](int64_t begin, int64_t end) {
        forward_rows(x.data_ptr<float>(), w, b, y.data_ptr<float>(), stats.data_ptr<float>(),
                     save_c ? c.data_ptr<float>() : nullptr, begin, end, o.rows, o.num_groups, o.n, o.variant,
                     o.std_deviation, o.meanvar, o.compress_first, l, o.scale_role, (float)eps);
    });
    return {y, stats, c};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> ibnorm_backward(
        const at::Tensor &grad_y, const at::Tensor &saved_in, const std::optional<at::Tensor> &weight,
        const at::Tensor &stats_in, const at::Tensor &lam, std::string_view variant, std::string_view deviation,
        std::string_view standardize, std::string_view order, int64_t num_groups, bool from_c, bool need_weight,
        bool need_bias, bool need_lam, std::string_view lam_role) {
    const Options o = parse_options(saved_in, variant, deviation, standardize, order, num_groups, lam_role);
    TORCH_CHECK(grad_y.sizes() == saved_in.sizes() && grad_y.scalar_type() == at::kFloat,
                "ibnorm CPU kernel: grad_y must be float32 and shaped as the saved activation");
    const at::Tensor saved = saved_in.contiguous(), gy = grad_y.contiguous(), stats = stats_in.contiguous();
    const float *w = optional_data(weight, o.width, "weight");
    const float l = lam_value(lam);
    // One partial sum of the weight/bias/lambda gradients per thread, added up below.
    const int64_t parts = std::max(at::get_num_threads(), 1);
    at::Tensor gx = at::empty_like(saved);
    at::Tensor gw_parts = at::zeros({need_weight ? parts : 0, o.width}, saved.options());
    at::Tensor gb_parts = at::zeros({need_bias ? parts : 0, o.width}, saved.options());
    std::vector<double> glams(parts, 0.0);
    at::parallel_for(0, o.rows, grain_rows(o.width), [&](int64_t begin, int64_t end) {
        const int64_t part = at::get_thread_num();
        TORCH_CHECK(part < parts, "ibnorm CPU kernel: more threads than when the backward started");
        backward_rows(saved.data_ptr<float>(), w, gy.data_ptr<float>(), stats.data_ptr<float>(), gx.data_ptr<float>(),
                      need_weight ? gw_parts.data_ptr<float>() + part * o.width : nullptr,
                      need_bias ? gb_parts.data_ptr<float>() + part * o.width : nullptr, &glams[part], begin, end,
                      o.rows, o.num_groups, o.n, o.variant, o.std_deviation, o.meanvar, o.compress_first, l,
                      o.scale_role, need_lam, from_c);
    });
    double glam = 0.0;
    for (double g : glams) glam += g;
    at::Tensor gw = need_weight ? gw_parts.sum(0) : at::empty({0}, saved.options());
    at::Tensor gb = need_bias ? gb_parts.sum(0) : at::empty({0}, saved.options());
    return {gx, gw, gb, at::full({}, glam, saved.options())};
}

// The approximations of fast_math.h on their own, for their accuracy tests.
at::Tensor ibnorm_elementwise(std::string_view fn, const at::Tensor &x_in) {
    TORCH_CHECK(x_in.device().is_cpu() && x_in.scalar_type() == at::kFloat, "ibnorm_elementwise: x must be float32 CPU");
    const at::Tensor x = x_in.contiguous();
    at::Tensor y = at::empty_like(x);
    const float *src = x.data_ptr<float>();
    float *dst = y.data_ptr<float>();
    const int64_t count = x.numel();
    if (fn == "log1p") {
        for (int64_t i = 0; i < count; i++) dst[i] = fast_log1p_scaled(src[i], 1.0f, 1.0f);
    } else if (fn == "tanh") {
        for (int64_t i = 0; i < count; i++) dst[i] = fast_tanh(src[i]);
    } else if (fn == "expm1") {
        for (int64_t i = 0; i < count; i++) dst[i] = fast_expm1_neg(src[i]);
    } else {
        TORCH_CHECK(fn == "exp2", "ibnorm_elementwise: fn must be log1p, tanh, expm1 or exp2");
        for (int64_t i = 0; i < count; i++) dst[i] = fast_exp2_neg(src[i]);
    }
    return y;
}

}  // namespace

// lam_role comes last and defaults to rate, the reading before the option existed: a checkpoint's
// copy of an older cpu_ops.py calls these operators without it and keeps its meaning.
TORCH_LIBRARY_FRAGMENT(ibnorm_llm, m) {
    m.def("ibnorm_forward(Tensor x, Tensor? weight, Tensor? bias, Tensor lam, str variant, str deviation, "
          "str standardize, str order, int num_groups, float eps, bool save_c, str lam_role=\"rate\") "
          "-> (Tensor, Tensor, Tensor)");
    m.def("ibnorm_backward(Tensor grad_y, Tensor saved, Tensor? weight, Tensor stats, Tensor lam, str variant, "
          "str deviation, str standardize, str order, int num_groups, bool from_c, bool need_weight, "
          "bool need_bias, bool need_lam, str lam_role=\"rate\") -> (Tensor, Tensor, Tensor, Tensor)");
    m.def("ibnorm_elementwise(str fn, Tensor x) -> Tensor");
}

TORCH_LIBRARY_IMPL(ibnorm_llm, CPU, m) {
    m.impl("ibnorm_forward", &ibnorm_forward);
    m.impl("ibnorm_backward", &ibnorm_backward);
    m.impl("ibnorm_elementwise", &ibnorm_elementwise);
}

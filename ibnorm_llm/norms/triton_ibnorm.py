"""IBNorm forward and backward as Triton kernels (the CUDA fast path), registered as torch operators.

Same definition and signature as ``ibnorm_reference`` (docs/norms.md derives the backward):
the forward saves ``x`` and four per-group statistics, the backward recomputes the elementwise
terms in registers. One program normalizes a whole row, seen as
a ``(G, n)`` tile (``G`` groups of ``n`` features), so every group reduction is a row sum of
the tile. The backward gives each program a block of rows and writes per-program partial
sums of the weight, bias and lambda gradients, which torch then adds up. Both are
``torch.library.triton_op`` operators (``torch.ops.ibnorm_llm.ibnorm_triton_forward`` and
``..._backward``) with the backward registered as the forward's autograd, so torch.compile
sees the kernels themselves instead of breaking the graph.

Import this module only where Triton is wanted: it imports ``triton`` at load time. On a
CPU machine, set ``TRITON_INTERPRET=1`` before importing triton to run the kernels in
Triton's interpreter (slow; for tests). Written for triton >= 3.0 (checked with 3.6 and 3.9).
"""

from __future__ import annotations

from typing import Any

import torch

try:
    import triton
    import triton.language as tl
except ImportError as err:  # also keeps transformers' remote-code import check from demanding triton
    raise ImportError("ibnorm_llm.norms.triton_ibnorm needs triton (pip install triton); use impl='fused' without it") from err

from torch.library import triton_op, wrap_triton

_VARIANT_CODES = {"S": 0, "L": 1, "T": 2}
# A row's tile lives in registers; beyond this width it would spill.
MAX_WIDTH = 65536


@triton.jit
def _rate(lam, SCALE_ROLE: tl.constexpr):
    """L and T's rate k in g(k r) / k: lam (rate role), or 1 / lam (scale role: lam g(r / lam))."""
    if SCALE_ROLE:
        k = 1.0 / lam
    else:
        k = lam
    return k


@triton.jit
def _compress(u, lam, VARIANT: tl.constexpr, SCALE_ROLE: tl.constexpr):
    """sign(u) * f_lam(|u|)."""
    r = tl.abs(u)
    if VARIANT == 0:
        if SCALE_ROLE:  # knee at lam, slope 1/2 beyond (not the rate reading at 1 / lam)
            f = tl.where(r <= lam, r, lam + (r - lam) * 0.5)
        else:
            knee = 1.0 / lam
            f = tl.where(r <= knee, r, knee + (r - knee) / lam)
    elif VARIANT == 1:
        k = _rate(lam, SCALE_ROLE)
        z = k * r
        w = 1.0 + z
        rounded = w - 1.0
        # log1p(z) = log(w) * z / (w - 1) keeps full precision when 1 + z rounds (Goldberg);
        # where w rounds to 1, log1p(z) = z to fp32 precision.
        f = tl.where(rounded == 0.0, z, tl.log(w) * (z / tl.where(rounded == 0.0, 1.0, rounded))) / k
    else:
        # tanh(z) for z >= 0 as (1 - e^-2z) / (1 + e^-2z): no overflow for large z.
        k = _rate(lam, SCALE_ROLE)
        e = tl.exp(-2.0 * k * r)
        f = (1.0 - e) / (1.0 + e) / k
    return tl.where(u < 0, -f, f)


@triton.jit
def _slope(u, c, lam, VARIANT: tl.constexpr, SCALE_ROLE: tl.constexpr):
    """f'(|u|) in (0, 1]."""
    if VARIANT == 0:
        if SCALE_ROLE:
            slope = tl.where(tl.abs(u) <= lam, 1.0, 0.5)
        else:
            slope = tl.where(tl.abs(u) <= 1.0 / lam, 1.0, 1.0 / lam)
    elif VARIANT == 1:
        slope = 1.0 / (1.0 + _rate(lam, SCALE_ROLE) * tl.abs(u))
    else:
        lc = _rate(lam, SCALE_ROLE) * c
        slope = 1.0 - lc * lc
    return slope


@triton.jit
def _dcompress_dlam(u, c, slope, lam, VARIANT: tl.constexpr, SCALE_ROLE: tl.constexpr):
    """sign(u) * d f_lam(|u|) / d lam, for lam itself in either role."""
    if VARIANT == 0:
        r = tl.abs(u)
        if SCALE_ROLE:  # lam + (r - lam) / 2 beyond the knee
            dfdl = tl.where(r > lam, 0.5, 0.0)
        else:
            inv = 1.0 / lam
            dfdl = tl.where(r > inv, 2.0 * inv * inv * inv - (1.0 + r) * inv * inv, 0.0)
        out = tl.where(u < 0, -dfdl, dfdl)
    elif SCALE_ROLE:
        out = (c - u * slope) / lam  # lam g(r / lam): (f - r f') / lam
    else:
        out = (u * slope - c) / lam  # g(lam r) / lam: (r f' - f) / lam
    return out


@triton.jit
def _group_mean(t, n):
    return tl.sum(t, axis=1)[:, None] / n  # (BLOCK_G, 1)


@triton.jit
def _compress_stats(v, mask, n, eps, STD_DEVIATION: tl.constexpr):
    mu = _group_mean(tl.where(mask, v, 0.0), n)
    if STD_DEVIATION:
        d = tl.where(mask, v - mu, 0.0)
        scale = 1.0 / tl.sqrt(_group_mean(d * d, n) + eps)
    else:
        scale = mu * 0.0 + 1.0  # raw deviations: unit scale
    return mu, scale


@triton.jit
def _standardize_stats(s, mask, n, eps, MEANVAR: tl.constexpr):
    if MEANVAR:
        mean = _group_mean(tl.where(mask, s, 0.0), n)
        e = tl.where(mask, s - mean, 0.0)
        rstd = 1.0 / tl.sqrt(_group_mean(e * e, n) + eps)
    else:
        s0 = tl.where(mask, s, 0.0)
        rstd = 1.0 / tl.sqrt(_group_mean(s0 * s0, n) + eps)
        mean = rstd * 0.0  # rms does not center
    return mean, rstd


@triton.jit
def _standardize_backward(gshat, shat, rstd, mask, n, MEANVAR: tl.constexpr):
    g = gshat - shat * _group_mean(tl.where(mask, gshat * shat, 0.0), n)
    if MEANVAR:
        g = g - _group_mean(tl.where(mask, gshat, 0.0), n)
    return tl.where(mask, g * rstd, 0.0)


@triton.jit
def _compress_backward(gs, u, c, scale, lam, mask, n, VARIANT: tl.constexpr, SCALE_ROLE: tl.constexpr,
                       STD_DEVIATION: tl.constexpr):
    """(dL/dv, per-element dL/dlam terms) for s = mu + sign(u) f(|u|)."""
    slope = _slope(u, c, lam, VARIANT, SCALE_ROLE)
    glam = tl.where(mask, gs * _dcompress_dlam(u, c, slope, lam, VARIANT, SCALE_ROLE), 0.0)
    gu = tl.where(mask, gs * slope, 0.0)
    gv = gu - _group_mean(gu, n)
    if STD_DEVIATION:
        gv = (gv - u * _group_mean(tl.where(mask, gu * u, 0.0), n)) * scale
    return gv + _group_mean(tl.where(mask, gs, 0.0), n), glam


@triton.jit
def _ibnorm_fwd_kernel(
    x_ptr, w_ptr, b_ptr, lam_ptr, y_ptr, stats_ptr,
    n_rows, n, eps,
    G: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr,
    VARIANT: tl.constexpr, SCALE_ROLE: tl.constexpr, STD_DEVIATION: tl.constexpr, MEANVAR: tl.constexpr,
    COMPRESS_FIRST: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    groups = tl.arange(0, BLOCK_G)[:, None]
    cols = tl.arange(0, BLOCK_N)[None, :]
    mask = (groups < G) & (cols < n)
    offs = groups * n + cols  # (BLOCK_G, BLOCK_N) offsets within the row
    width = G * n
    lam = tl.load(lam_ptr).to(tl.float32)
    v = tl.load(x_ptr + row * width + offs, mask=mask, other=0.0).to(tl.float32)

    if COMPRESS_FIRST:
        mu, scale = _compress_stats(v, mask, n, eps, STD_DEVIATION)
        s = mu + _compress((v - mu) * scale, lam, VARIANT, SCALE_ROLE)
        mean, rstd = _standardize_stats(s, mask, n, eps, MEANVAR)
        shat = (s - mean) * rstd
    else:
        mean, rstd = _standardize_stats(v, mask, n, eps, MEANVAR)
        z = (v - mean) * rstd
        mu, scale = _compress_stats(z, mask, n, eps, STD_DEVIATION)
        shat = mu + _compress((z - mu) * scale, lam, VARIANT, SCALE_ROLE)

    y = shat
    if HAS_W:
        y = y * tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_B:
        y = y + tl.load(b_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + row * width + offs, y.to(y_ptr.dtype.element_ty), mask=mask)

    # stats: (4, n_rows, G) = mu, scale, mean, rstd per group.
    gmask = groups < G
    stat_offs = row * G + groups
    plane = n_rows * G
    tl.store(stats_ptr + stat_offs, mu, mask=gmask)
    tl.store(stats_ptr + plane + stat_offs, scale, mask=gmask)
    tl.store(stats_ptr + 2 * plane + stat_offs, mean, mask=gmask)
    tl.store(stats_ptr + 3 * plane + stat_offs, rstd, mask=gmask)


@triton.jit
def _ibnorm_bwd_kernel(
    x_ptr, w_ptr, lam_ptr, gy_ptr, stats_ptr, gx_ptr, gw_part_ptr, gb_part_ptr, glam_part_ptr,
    n_rows, n, rows_per_program,
    G: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr,
    VARIANT: tl.constexpr, SCALE_ROLE: tl.constexpr, STD_DEVIATION: tl.constexpr, MEANVAR: tl.constexpr,
    COMPRESS_FIRST: tl.constexpr, HAS_W: tl.constexpr,
):
    pid = tl.program_id(0)
    groups = tl.arange(0, BLOCK_G)[:, None]
    cols = tl.arange(0, BLOCK_N)[None, :]
    tile_mask = (groups < G) & (cols < n)
    offs = groups * n + cols
    width = G * n
    plane = n_rows * G
    lam = tl.load(lam_ptr).to(tl.float32)
    if HAS_W:
        w = tl.load(w_ptr + offs, mask=tile_mask, other=0.0).to(tl.float32)
    gw_acc = tl.zeros((BLOCK_G, BLOCK_N), tl.float32)
    gb_acc = tl.zeros((BLOCK_G, BLOCK_N), tl.float32)
    glam_acc = tl.zeros((BLOCK_G, BLOCK_N), tl.float32)

    for i in range(0, rows_per_program):
        row = (pid * rows_per_program + i).to(tl.int64)
        # Compare a broadcast row index, not the scalar: Triton's interpreter rejects a
        # mask made of a block & a scalar bool.
        mask = tile_mask & ((offs * 0 + row) < n_rows)
        gmask = (groups < G) & ((groups * 0 + row) < n_rows)
        stat_offs = row * G + groups
        mu = tl.load(stats_ptr + stat_offs, mask=gmask, other=0.0)
        scale = tl.load(stats_ptr + plane + stat_offs, mask=gmask, other=1.0)
        mean = tl.load(stats_ptr + 2 * plane + stat_offs, mask=gmask, other=0.0)
        rstd = tl.load(stats_ptr + 3 * plane + stat_offs, mask=gmask, other=1.0)
        v = tl.load(x_ptr + row * width + offs, mask=mask, other=0.0).to(tl.float32)
        gy = tl.load(gy_ptr + row * width + offs, mask=mask, other=0.0).to(tl.float32)
        gshat = gy
        if HAS_W:
            gshat = gy * w

        if COMPRESS_FIRST:
            u = tl.where(mask, (v - mu) * scale, 0.0)
            c = _compress(u, lam, VARIANT, SCALE_ROLE)
            shat = tl.where(mask, (mu + c - mean) * rstd, 0.0)
            gs = _standardize_backward(gshat, shat, rstd, mask, n, MEANVAR)
            gv, glam = _compress_backward(gs, u, c, scale, lam, mask, n, VARIANT, SCALE_ROLE, STD_DEVIATION)
        else:
            z = tl.where(mask, (v - mean) * rstd, 0.0)
            u = tl.where(mask, (z - mu) * scale, 0.0)
            c = _compress(u, lam, VARIANT, SCALE_ROLE)
            shat = tl.where(mask, mu + c, 0.0)
            gz, glam = _compress_backward(gshat, u, c, scale, lam, mask, n, VARIANT, SCALE_ROLE, STD_DEVIATION)
            gv = _standardize_backward(gz, z, rstd, mask, n, MEANVAR)

        tl.store(gx_ptr + row * width + offs, gv.to(gx_ptr.dtype.element_ty), mask=mask)
        gw_acc += gy * shat
        gb_acc += gy
        glam_acc += glam

    tl.store(gw_part_ptr + pid * width + offs, gw_acc, mask=tile_mask)
    tl.store(gb_part_ptr + pid * width + offs, gb_acc, mask=tile_mask)
    tl.store(glam_part_ptr + pid, tl.sum(tl.sum(glam_acc, axis=1), axis=0))


def _scale_role(lam_role: str) -> bool:
    if lam_role not in ("rate", "scale"):
        raise ValueError(f"lam_role={lam_role!r}: must be one of rate, scale")
    return lam_role == "scale"


def _launch_config(width: int, num_groups: int, variant: str, deviation: str, standardize: str, order: str,
                   lam_role: str) -> dict:
    if width > MAX_WIDTH:
        raise ValueError(f"Triton IBNorm supports widths up to {MAX_WIDTH}, got {width}; use impl='fused'")
    n = width // num_groups
    block_g = triton.next_power_of_2(num_groups)
    block_n = triton.next_power_of_2(n)
    return dict(
        G=num_groups, BLOCK_G=block_g, BLOCK_N=block_n,
        VARIANT=_VARIANT_CODES[variant], SCALE_ROLE=_scale_role(lam_role), STD_DEVIATION=deviation == "std",
        MEANVAR=standardize == "meanvar", COMPRESS_FIRST=order == "compress_first",
        num_warps=min(16, max(1, block_g * block_n // 256)),
    )


def _backward_programs(x: torch.Tensor, n_rows: int) -> int:
    if x.is_cuda:
        return max(1, min(n_rows, 4 * torch.cuda.get_device_properties(x.device).multi_processor_count))
    return max(1, min(n_rows, 4))  # interpreter: the program count does not matter for speed


def _forward(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, lam: torch.Tensor,
             variant: str, deviation: str, standardize: str, order: str, num_groups: int, eps: float,
             lam_role: str = "rate") -> tuple[torch.Tensor, torch.Tensor]:
    width = x.shape[-1]
    config = _launch_config(width, num_groups, variant, deviation, standardize, order, lam_role)
    x2 = x.reshape(-1, width).contiguous()  # (rows, width)
    n_rows = x2.shape[0]
    y = torch.empty_like(x2)
    stats = torch.empty((4, n_rows, num_groups), device=x.device, dtype=torch.float32)
    dummy = stats  # never read when HAS_W/HAS_B are False
    if n_rows > 0:
        wrap_triton(_ibnorm_fwd_kernel)[(n_rows,)](
            x2, weight if weight is not None else dummy, bias if bias is not None else dummy, lam, y, stats,
            n_rows, width // num_groups, eps,
            HAS_W=weight is not None, HAS_B=bias is not None, **config,
        )
    return y.reshape(x.shape), stats


def _backward(grad_y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | None, lam: torch.Tensor,
              stats: torch.Tensor, variant: str, deviation: str, standardize: str, order: str, num_groups: int,
              lam_role: str = "rate") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    width = x.shape[-1]
    config = _launch_config(width, num_groups, variant, deviation, standardize, order, lam_role)
    x2 = x.reshape(-1, width).contiguous()
    n_rows = x2.shape[0]
    gy2 = grad_y.reshape(-1, width).contiguous()
    gx = torch.empty_like(x2)
    programs = _backward_programs(x2, n_rows)
    rows_per_program = triton.cdiv(n_rows, programs) if n_rows else 0
    gw_part = torch.zeros((programs, width), device=x2.device, dtype=torch.float32)
    gb_part = torch.zeros((programs, width), device=x2.device, dtype=torch.float32)
    glam_part = torch.zeros((programs,), device=x2.device, dtype=torch.float32)
    if n_rows > 0:
        wrap_triton(_ibnorm_bwd_kernel)[(programs,)](
            x2, weight if weight is not None else stats, lam, gy2, stats, gx, gw_part, gb_part, glam_part,
            n_rows, width // num_groups, rows_per_program,
            HAS_W=weight is not None, **config,
        )
    return gx.reshape(x.shape), gw_part.sum(0), gb_part.sum(0), glam_part.sum()


def _setup_context(ctx, inputs, output) -> None:
    # inputs has the defaults filled in: lam_role is there even when the caller left it out
    x, weight, bias, lam, variant, deviation, standardize, order, num_groups, _eps, lam_role = inputs
    ctx.save_for_backward(x, weight, lam, output[1])
    ctx.mark_non_differentiable(output[1])  # the statistics only serve the backward
    ctx.set_materialize_grads(False)
    ctx.options = (variant, deviation, standardize, order, num_groups, lam_role)
    ctx.dtypes = tuple(None if t is None else t.dtype for t in (weight, bias, lam))


def _autograd_backward(ctx, grad_y, _grad_stats):
    x, weight, lam, stats = ctx.saved_tensors
    gx, gw, gb, glam = torch.ops.ibnorm_llm.ibnorm_triton_backward(grad_y, x, weight, lam, stats, *ctx.options)
    needs = ctx.needs_input_grad[:4]
    grads = [g.to(dtype) if need else None for g, need, dtype in zip((gw, gb, glam), needs[1:], ctx.dtypes, strict=True)]
    return (gx if needs[0] else None, *grads, *[None] * 7)


# Defined once per process: a checkpoint's copy of this module finds them defined by ibnorm_llm's.
# lam_role comes last and defaults to rate, the reading before the option existed, so an older
# copy's calls without it keep their meaning.
if not hasattr(torch.ops.ibnorm_llm, "ibnorm_triton_forward"):
    triton_op("ibnorm_llm::ibnorm_triton_backward", mutates_args=())(_backward)
    triton_op("ibnorm_llm::ibnorm_triton_forward", mutates_args=())(_forward).register_autograd(
        _autograd_backward, setup_context=_setup_context
    )


def ibnorm_triton(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, *,
                  lam: float | torch.Tensor, **options: Any) -> torch.Tensor:
    """IBNorm as Triton kernels; ``options`` as ``ibnorm_reference`` takes them.

    Runs on CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1``. Statistics in
    fp32; output in ``x.dtype``.
    """
    lam_t = lam.float().reshape(()) if torch.is_tensor(lam) else torch.tensor(float(lam), device=x.device)
    y, _ = torch.ops.ibnorm_llm.ibnorm_triton_forward(x, weight, bias, lam_t, **options)
    return y

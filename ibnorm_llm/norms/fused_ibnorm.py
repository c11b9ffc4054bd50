"""IBNorm as one autograd Function with a hand-derived backward (the CPU fast path).

Same definition and signature as ``ibnorm_reference`` (see ``ibnorm.py``); the difference
is what autograd keeps. The reference records every intermediate of the formula; this
Function saves one activation-sized tensor (the input, or for L and T in the CPU kernel the
compressed deviations ``c``, from which the backward is cheaper) and per-group statistics
(means and reciprocal standard deviations), and recomputes the elementwise terms in the
backward. fp32 CPU tensors run the compiled loops of ``cpu_kernel.py`` (one group at a time,
in cache); everything else (bf16,
fp64 for gradcheck, CUDA without Triton, a CPU without a C compiler) runs the functions
below as PyTorch ops, a chunk of rows at a time. Both compute the same formulas.

Notation, per group of ``n`` values (``mean`` is over the group):

- compression ``C(v)``: ``mu = mean(v)``, ``d = v - mu``, ``u = d`` (``raw``) or ``u = d * a``
  with ``a = rsqrt(mean(d^2) + eps)`` (``std``); ``c = sign(u) f(|u|)``; ``s = mu + c``.
- standardization ``P(s)``: ``meanvar``: ``(s - mean s) * rstd``; ``rms``: ``s * rstd``.
- ``compress_first``: ``y = affine(P(C(x)))``; ``standardize_first``: ``y = affine(C(P(x)))``.

Backward of ``C`` given ``gs = dL/ds`` (``f'`` is the variant's slope, in ``(0, 1]``):
``gu = gs * f'(|u|)``; ``gv = gu - mean(gu) + mean(gs)`` (raw) or
``gv = a * (gu - mean(gu) - u * mean(gu * u)) + mean(gs)`` (std), and
``dL/dlam = sum(gs * sign(u) * df/dlam(|u|))``. Backward of ``P`` is LayerNorm's (meanvar) or
RMSNorm's (rms) backward without affine.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .cpu_kernel import available as cpu_kernel_available
from .cpu_kernel import backward as cpu_kernel_backward
from .cpu_kernel import forward as cpu_kernel_forward
from .cpu_kernel import saves_compressed
from .precision import stats_dtype

Lam = float | torch.Tensor


class IBNormOptions(NamedTuple):
    """The non-tensor settings of one IBNorm call (hashable, so kernels can be cached on it)."""

    variant: str
    deviation: str
    standardize: str
    order: str
    num_groups: int
    eps: float


# ---- the compression f_lam and its derivatives, elementwise on signed deviations u ----


def _compress_values(u: torch.Tensor, variant: str, lam: Lam) -> torch.Tensor:
    """``sign(u) * f_lam(|u|)``."""
    r = u.abs()
    if variant == "S":
        knee = 1.0 / lam
        # f(r) = r below the knee, slope 1/lam above it: r - (1 - 1/lam) * relu(r - knee).
        f = r - (1.0 - knee) * torch.clamp_min(r - knee, 0.0)
    elif variant == "L":
        f = torch.log1p(r * lam).div_(lam)
    else:
        f = torch.tanh(r * lam).div_(lam)
    return f.copysign_(u)


def _slope(u: torch.Tensor, c: torch.Tensor, variant: str, lam: Lam) -> torch.Tensor:
    """``f'(|u|)``, from ``u`` and ``c = sign(u) f(|u|)`` (whichever is cheaper per variant)."""
    if variant == "S":
        # 1 up to the knee (inclusive, as the reference's where), 1/lam beyond it.
        return torch.where(u.abs() <= 1.0 / lam, 1.0, 1.0 / lam).to(u.dtype)
    if variant == "L":
        return torch.reciprocal(u.abs().mul_(lam).add_(1.0))
    # tanh: f' = 1 - tanh(lam r)^2 = 1 - (lam c)^2.
    lc = c * lam
    return lc.mul_(lc).neg_().add_(1.0)


def _dcompress_dlam(u: torch.Tensor, c: torch.Tensor, slope: torch.Tensor, variant: str, lam: Lam) -> torch.Tensor:
    """``sign(u) * d f_lam(|u|) / d lam``."""
    if variant == "S":
        # Above the knee f = 1/lam + (r - 1/lam)/lam, whose lam-derivative is 2/lam^3 - (1 + r)/lam^2.
        r = u.abs()
        above = r > 1.0 / lam
        inv = 1.0 / lam
        dfdl = (2.0 * inv * inv * inv) - (1.0 + r) * (inv * inv)
        return torch.where(above, dfdl, 0.0).mul_(torch.sign(u))
    # L and T are f(r) = h(lam r) / lam, so df/dlam = (r f'(r) - f(r)) / lam; times sign(u):
    return (u * slope - c) / lam


# ---- the two per-group stages: forward with statistics, recompute, backward ----


class _CompressStats(NamedTuple):
    mu: torch.Tensor
    scale: torch.Tensor | None  # rsqrt(var + eps) for deviation=std, None for raw


def _compress_stats(v: torch.Tensor, deviation: str, eps: float) -> _CompressStats:
    mu = v.mean(-1, keepdim=True)
    if deviation == "raw":
        return _CompressStats(mu, None)
    var = (v - mu).pow_(2).mean(-1, keepdim=True)
    return _CompressStats(mu, torch.rsqrt(var.add_(eps)))


def _deviations(v: torch.Tensor, stats: _CompressStats) -> torch.Tensor:
    u = v - stats.mu
    return u if stats.scale is None else u.mul_(stats.scale)


def _compress_backward(
    gs: torch.Tensor, u: torch.Tensor, c: torch.Tensor, stats: _CompressStats, variant: str, lam: Lam, need_lam: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(dL/dv, dL/dlam)`` for ``s = mu + sign(u) f(|u|)``, given ``gs = dL/ds``."""
    slope = _slope(u, c, variant, lam)
    glam = (gs * _dcompress_dlam(u, c, slope, variant, lam)).sum() if need_lam else None
    gu = slope.mul_(gs)
    gv = gu - gu.mean(-1, keepdim=True)
    if stats.scale is not None:
        gv.sub_(u * (gu * u).mean(-1, keepdim=True)).mul_(stats.scale)
    # s = mu + c: the mean itself passes mean(gs) to every input of the group.
    return gv.add_(gs.mean(-1, keepdim=True)), glam


class _StandardizeStats(NamedTuple):
    mean: torch.Tensor | None  # None for rms
    rstd: torch.Tensor


def _standardize_forward(s: torch.Tensor, how: str, eps: float) -> tuple[torch.Tensor, _StandardizeStats]:
    if how == "meanvar":
        n = s.shape[-1]
        # ATen's layer_norm is one fast pass and returns its per-group mean and rstd.
        shat, mean, rstd = torch.native_layer_norm(s, (n,), None, None, eps)
        return shat, _StandardizeStats(mean, rstd)
    rstd = torch.rsqrt(s.pow(2).mean(-1, keepdim=True).add_(eps))
    return s * rstd, _StandardizeStats(None, rstd)


def _standardize_recompute(s: torch.Tensor, stats: _StandardizeStats) -> torch.Tensor:
    if stats.mean is None:
        return s * stats.rstd
    return (s - stats.mean).mul_(stats.rstd)


def _standardize_backward(gshat: torch.Tensor, shat: torch.Tensor, stats: _StandardizeStats) -> torch.Tensor:
    """LayerNorm's (meanvar) or RMSNorm's (rms) input gradient, without affine."""
    g = gshat - shat * (gshat * shat).mean(-1, keepdim=True)
    if stats.mean is not None:
        g.sub_(gshat.mean(-1, keepdim=True))
    return g.mul_(stats.rstd)


# ---- the whole norm ----


class _Forward(NamedTuple):
    shat: torch.Tensor  # normalized groups before the affine, (rows, G, n)
    compress: _CompressStats
    standardize: _StandardizeStats


def _normalize(v: torch.Tensor, opts: IBNormOptions, lam: Lam) -> _Forward:
    """IBNorm without the affine on groups ``v`` of shape (rows, G, n), computing the statistics."""
    if opts.order == "compress_first":
        cstats = _compress_stats(v, opts.deviation, opts.eps)
        s = _compress_values(_deviations(v, cstats), opts.variant, lam).add_(cstats.mu)
        shat, pstats = _standardize_forward(s, opts.standardize, opts.eps)
        return _Forward(shat, cstats, pstats)
    z, pstats = _standardize_forward(v, opts.standardize, opts.eps)
    cstats = _compress_stats(z, opts.deviation, opts.eps)
    shat = _compress_values(_deviations(z, cstats), opts.variant, lam).add_(cstats.mu)
    return _Forward(shat, cstats, pstats)


def _normalize_backward(
    gshat: torch.Tensor, v: torch.Tensor, fwd: _Forward, opts: IBNormOptions, lam: Lam, need_lam: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Recompute the elementwise terms from ``v`` and the saved statistics, then backpropagate.

    Returns ``(dL/dv, shat, dL/dlam)``; ``shat`` is returned for the affine's weight gradient.
    """
    if opts.order == "compress_first":
        u = _deviations(v, fwd.compress)
        c = _compress_values(u, opts.variant, lam)
        shat = _standardize_recompute(c + fwd.compress.mu, fwd.standardize)
        gs = _standardize_backward(gshat, shat, fwd.standardize)
        gv, glam = _compress_backward(gs, u, c, fwd.compress, opts.variant, lam, need_lam)
        return gv, shat, glam
    z = _standardize_recompute(v, fwd.standardize)
    u = _deviations(z, fwd.compress)
    c = _compress_values(u, opts.variant, lam)
    gz, glam = _compress_backward(gshat, u, c, fwd.compress, opts.variant, lam, need_lam)
    gv = _standardize_backward(gz, z, fwd.standardize)
    return gv, c.add_(fwd.compress.mu), glam


# Rows are processed in chunks of about this many elements: the temporaries of one chunk stay
# in cache and are reused by the allocator, instead of a dozen full-size buffers per call.
CHUNK_ELEMENTS = 1 << 18


def _row_chunks(rows: int, width: int) -> list[slice]:
    step = max(1, CHUNK_ELEMENTS // max(width, 1))
    # An empty input still makes one (empty) chunk, so the statistics keep their shapes.
    return [slice(start, min(start + step, rows)) for start in range(0, max(rows, 1), step)]


def _affine_into(out: torch.Tensor, shat: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> None:
    """``out = shat * weight + bias`` (each optional), in ``out``'s dtype."""
    if weight is not None and bias is not None:
        shat = torch.addcmul(bias, shat, weight)
    elif weight is not None:
        shat = shat.mul_(weight)
    elif bias is not None:
        shat = shat.add_(bias)
    out.copy_(shat)


def _kernel_applies(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> bool:
    """The compiled CPU kernel handles fp32 CPU tensors; everything else takes the PyTorch path."""
    tensors = [t for t in (x, weight, bias) if t is not None]
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors) and cpu_kernel_available()


def _kernel_options(opts: IBNormOptions) -> dict:
    return dict(num_groups=opts.num_groups, variant=opts.variant, std_deviation=opts.deviation == "std",
                meanvar=opts.standardize == "meanvar", compress_first=opts.order == "compress_first")


class FusedIBNorm(torch.autograd.Function):
    """IBNorm with a hand-derived backward; saves one activation (``x`` or ``c``) and per-group statistics.

    fp32 on CPU runs the compiled kernel of ``cpu_kernel.py`` when it builds here; other
    dtypes and devices (and CPUs without a C compiler) run the same math as PyTorch ops,
    a chunk of rows at a time.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, lam, opts: IBNormOptions, backward_follows: bool):
        ctx.opts = opts
        ctx.bias_dtype = bias.dtype if bias is not None else None
        ctx.lam = None if torch.is_tensor(lam) else lam
        lam_tensor = lam if torch.is_tensor(lam) else None
        ctx.use_kernel = _kernel_applies(x, weight, bias)
        if ctx.use_kernel:
            x2 = x.reshape(-1, x.shape[-1]).contiguous()  # (rows, width)
            kernel_opts = _kernel_options(opts)
            # The backward runs from the input or, cheaper, from the compressed deviations c: one
            # activation either way. Without a backward (no_grad: evaluation, generation) c would
            # be a whole extra tensor written for nothing, and the input costs only a reference.
            ctx.from_c = backward_follows and saves_compressed(
                opts.variant, std_deviation=kernel_opts["std_deviation"],
                compress_first=kernel_opts["compress_first"],
                learnable_lam=lam_tensor is not None and lam_tensor.requires_grad,
            )
            y, stats, c = cpu_kernel_forward(
                x2, _contiguous(weight), _contiguous(bias), lam=float(lam), eps=opts.eps, save_c=ctx.from_c,
                **kernel_opts,
            )
            ctx.save_for_backward(c if ctx.from_c else x2, weight, lam_tensor, stats)
            return y.reshape(x.shape)
        y, compress, standardize = _torch_forward(x, weight, bias, lam, opts)
        ctx.has_stats = (compress.scale is not None, standardize.mean is not None)
        present = [t for t in (compress.mu, compress.scale, standardize.mean, standardize.rstd) if t is not None]
        ctx.save_for_backward(x, weight, lam_tensor, *present)
        return y

    @staticmethod
    def backward(ctx, gy):
        need_x, need_w, need_b, need_lam = ctx.needs_input_grad[:4]
        if ctx.use_kernel:
            x_or_c, weight, lam_tensor, stats = ctx.saved_tensors
            lam = float(lam_tensor) if lam_tensor is not None else ctx.lam
            gx, gw, gb, glam = cpu_kernel_backward(
                x_or_c, _contiguous(weight), gy.reshape(x_or_c.shape).contiguous().float(), stats, lam=lam,
                need_weight=need_w, need_bias=need_b, need_lam=need_lam, from_c=ctx.from_c,
                **_kernel_options(ctx.opts),
            )
            gx = gx.reshape(gy.shape).to(gy.dtype) if need_x else None
            glam = torch.tensor(glam, dtype=lam_tensor.dtype) if need_lam else None
        else:
            x, weight, lam_tensor, *present = ctx.saved_tensors
            gx, gw, gb, glam = _torch_backward(gy, x, weight, lam_tensor, ctx, present)
        return (
            gx,
            gw.to(weight.dtype) if need_w else None,
            gb.to(ctx.bias_dtype) if need_b else None,
            glam.to(lam_tensor.dtype) if need_lam else None,
            None,
            None,
        )


def _contiguous(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().contiguous()


def _torch_forward(x, weight, bias, lam, opts: IBNormOptions) -> tuple[torch.Tensor, _CompressStats, _StandardizeStats]:
    width = x.shape[-1]
    groups = x.reshape(-1, opts.num_groups, width // opts.num_groups)  # (rows, G, n)
    compute_dtype = stats_dtype(x.dtype)
    lam_value = lam.detach().to(compute_dtype) if torch.is_tensor(lam) else lam
    w = weight.detach().to(compute_dtype).reshape(groups.shape[1:]) if weight is not None else None
    b = bias.detach().to(compute_dtype).reshape(groups.shape[1:]) if bias is not None else None
    y = torch.empty(groups.shape, dtype=x.dtype, device=x.device)
    chunk_stats = []
    for rows in _row_chunks(groups.shape[0], width):
        fwd = _normalize(groups[rows].to(compute_dtype), opts, lam_value)
        _affine_into(y[rows], fwd.shat, w, b)
        chunk_stats.append((fwd.compress, fwd.standardize))
    compress = _CompressStats(*_cat_stats([c for c, _ in chunk_stats]))
    standardize = _StandardizeStats(*_cat_stats([p for _, p in chunk_stats]))
    return y.reshape(x.shape), compress, standardize


def _torch_backward(gy, x, weight, lam_tensor, ctx, present: list[torch.Tensor]):
    opts: IBNormOptions = ctx.opts
    need_x, need_w, need_b, need_lam = ctx.needs_input_grad[:4]
    has_scale, has_mean = ctx.has_stats
    mu = present.pop(0)
    scale = present.pop(0) if has_scale else None
    mean = present.pop(0) if has_mean else None
    rstd = present.pop(0)

    width = x.shape[-1]
    groups = x.reshape(-1, opts.num_groups, width // opts.num_groups)  # (rows, G, n)
    grads_out = gy.reshape(groups.shape)
    compute_dtype = stats_dtype(x.dtype)
    lam = lam_tensor.detach().to(compute_dtype) if lam_tensor is not None else ctx.lam
    w = weight.detach().to(compute_dtype).reshape(groups.shape[1:]) if weight is not None else None

    gx = torch.empty(groups.shape, dtype=x.dtype, device=x.device) if need_x else None
    gw = torch.zeros(groups.shape[1:], dtype=compute_dtype, device=x.device) if need_w else None
    gb = torch.zeros(groups.shape[1:], dtype=compute_dtype, device=x.device) if need_b else None
    glam = torch.zeros((), dtype=compute_dtype, device=x.device) if need_lam else None
    for rows in _row_chunks(groups.shape[0], width):
        fwd = _Forward(
            None,
            _CompressStats(mu[rows], None if scale is None else scale[rows]),
            _StandardizeStats(None if mean is None else mean[rows], rstd[rows]),
        )
        gyc = grads_out[rows].to(compute_dtype)
        gshat = gyc if w is None else gyc * w
        gv, shat, glam_chunk = _normalize_backward(gshat, groups[rows].to(compute_dtype), fwd, opts, lam, need_lam)
        if gx is not None:
            gx[rows] = gv
        if gw is not None:
            gw += shat.mul_(gyc).sum(0)
        if gb is not None:
            gb += gyc.sum(0)
        if glam is not None:
            glam += glam_chunk
    return (
        gx.reshape(x.shape) if gx is not None else None,
        gw.reshape(width) if gw is not None else None,
        gb.reshape(width) if gb is not None else None,
        glam,
    )


def _cat_stats(per_chunk: list[tuple]) -> list[torch.Tensor | None]:
    """Concatenate per-chunk statistics field by field (a field is None in every chunk or in none)."""
    return [None if fields[0] is None else torch.cat(fields) for fields in zip(*per_chunk, strict=True)]


def ibnorm_fused(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    *,
    variant: str,
    lam: Lam,
    deviation: str,
    standardize: str,
    order: str,
    num_groups: int,
    eps: float,
) -> torch.Tensor:
    """IBNorm with the signature and numerics of ``ibnorm_reference``, via ``FusedIBNorm``.

    Saves one activation (``x``, or the compressed deviations) and per-group statistics for the
    backward. ``lam`` is a float, or a 0-d tensor that receives a gradient (learnable lambda).
    """
    opts = IBNormOptions(variant, deviation, standardize, order, num_groups, float(eps))
    return _apply(x, weight, bias, lam, opts)


# torch.compile runs this as an opaque call: its kernel is already fused, and dynamo cannot
# trace through the ctypes calls (it would break the graph inside the Function, with warnings).
@torch.compiler.disable
def _apply(x, weight, bias, lam, opts: IBNormOptions) -> torch.Tensor:
    # Inside forward, autograd's own flags cannot tell whether a backward will follow (grad
    # mode is off there and needs_input_grad ignores no_grad), so it is decided here.
    backward_follows = torch.is_grad_enabled() and any(
        torch.is_tensor(t) and t.requires_grad for t in (x, weight, bias, lam)
    )
    return FusedIBNorm.apply(x, weight, bias, lam, opts, backward_follows)

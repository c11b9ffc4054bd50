"""RMSNorm's fp32 CPU fast path: the IBNorm CPU kernel with compression switched off.

``y = weight * x / sqrt(mean(x^2) + eps)``, as HF ``LlamaRMSNorm`` up to float rounding
(about 1e-7 relative: the kernel sums the squares in a different order). The forward saves
``x`` and one reciprocal RMS per row, where autograd through the eager formula keeps three
full-size tensors; the backward is one pass per row.
"""

from __future__ import annotations

import torch

from .cpu_kernel import available as cpu_kernel_available
from .cpu_kernel import backward as cpu_kernel_backward
from .cpu_kernel import forward as cpu_kernel_forward


def rmsnorm_kernel_applies(x: torch.Tensor, weight: torch.Tensor | None) -> bool:
    """fp32 CPU tensors, and the kernel builds on this machine."""
    tensors = [t for t in (x, weight) if t is not None]
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors) and cpu_kernel_available()


_RMS = dict(num_groups=1, variant="identity", std_deviation=False, meanvar=False, compress_first=True)


class FusedRMSNorm(torch.autograd.Function):
    """RMSNorm over the last dim with the CPU kernel's forward and hand-derived backward."""

    @staticmethod
    def forward(ctx, x, weight, eps: float):
        x2 = x.reshape(-1, x.shape[-1]).contiguous()  # (rows, width)
        w = None if weight is None else weight.detach().contiguous()
        y, stats, _ = cpu_kernel_forward(x2, w, None, lam=1.0, eps=eps, **_RMS)
        ctx.save_for_backward(x2, weight, stats)
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, gy):
        x2, weight, stats = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad[:2]
        w = None if weight is None else weight.detach().contiguous()
        gx, gw, _, _ = cpu_kernel_backward(
            x2, w, gy.reshape(x2.shape).contiguous(), stats, lam=1.0,
            need_weight=need_w, need_bias=False, need_lam=False, **_RMS,
        )
        return gx.reshape(gy.shape) if need_x else None, gw, None


@torch.compiler.disable  # an opaque call under torch.compile: dynamo cannot trace the ctypes kernel
def rmsnorm_fused(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """RMSNorm of fp32 CPU ``x`` (see ``rmsnorm_kernel_applies``) with optional gain ``weight``."""
    return FusedRMSNorm.apply(x, weight, float(eps))

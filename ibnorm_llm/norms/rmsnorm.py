"""RMSNorm with the registry's constructor contract (options: :class:`.options.RMSNormOptions`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .affine import make_affine, reset_affine
from .cpu_ops import load as load_cpu_kernel
from .cpu_ops import rmsnorm_cpu
from .options import RMSNormOptions
from .precision import upcast
from .spec import resolve_options


class RMSNorm(nn.Module):
    """Root-mean-square normalization (Zhang & Sennrich, 2019), as HF ``LlamaRMSNorm``.

    ``y = weight * (x / sqrt(mean(x^2) + eps))`` over the last dimension. Same operation
    order as LlamaRMSNorm (normalize in fp32, cast back to the input dtype, then scale), so
    bf16 outputs match it bit for bit; unlike LlamaRMSNorm the output is always in the input's
    dtype, even when the weight is fp32 and the input bf16. fp32 CPU inputs take the CPU kernel
    operator where it builds (``cpu_ops.py``: IBNorm's kernel without compression, equal to
    about 1e-7, the squares summed in another order; it saves ``x`` and one statistic per row
    where autograd through the formula keeps three full-size tensors).
    """

    Options = RMSNormOptions

    def __init__(self, dim: int, **options: Any) -> None:
        """``options``: :class:`RMSNormOptions` (eps 1e-6, affine)."""
        super().__init__()
        o = resolve_options(self.Options.kind, options, dim)
        self.dim, self.eps, self.affine = dim, o.eps, o.affine
        self.weight, _ = make_affine(dim, o.affine, False)  # no bias, as LlamaRMSNorm
        self._cpu_kernel = load_cpu_kernel() is None  # same results either way: no warning when it is missing
        self.reset_parameters()

    def reset_parameters(self) -> None:
        reset_affine(self.weight, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._cpu_kernel and _fp32_on_cpu(x, self.weight):
            return rmsnorm_cpu(x, self.weight, self.eps)
        xf = upcast(x)
        normed = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)
        if self.weight is None:
            return normed
        return (self.weight * normed).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, affine={self.affine}"


def _fp32_on_cpu(*tensors: torch.Tensor | None) -> bool:
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors if t is not None)

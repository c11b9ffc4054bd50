"""SeeDNorm: RMSNorm whose gain depends on the input."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .affine import make_affine, reset_affine
from .options import SeeDNormOptions
from .precision import upcast
from .spec import resolve_options


class SeeDNorm(nn.Module):
    """Self-rescaled dynamic normalization (Cai et al., 2025, arXiv 2510.22777).

    ``y = (tanh(x . beta) * alpha + weight) * x / sqrt(mean(x^2) + eps)`` over the last
    dimension: ``x . beta`` is one scalar per token (the dot product with the learnable vector
    ``beta``), so each token's gain is the static RMSNorm gain ``weight`` (the paper's gamma)
    moved along the learnable vector ``alpha`` by an amount the input decides. ``beta`` starts
    at 0 and ``alpha`` at 1, so a fresh SeeDNorm equals RMSNorm and the dynamic part is
    learned. ``affine=False`` fixes ``weight`` at 1 (no static gain); ``alpha`` and ``beta``
    are the method and always learned. Statistics in fp32; output in the input's dtype.
    """

    Options = SeeDNormOptions

    def __init__(self, dim: int, **options: Any) -> None:
        """``options``: :class:`.options.SeeDNormOptions` (eps 1e-6, affine)."""
        super().__init__()
        o = resolve_options(self.Options.kind, options, dim)
        self.dim, self.eps, affine = dim, o.eps, o.affine
        self.weight, _ = make_affine(dim, affine, False)  # no bias, as RMSNorm
        self.alpha = nn.Parameter(torch.empty(dim))
        self.beta = nn.Parameter(torch.empty(dim))
        self.affine = affine
        self.reset_parameters()

    def reset_parameters(self) -> None:
        reset_affine(self.weight, None)
        nn.init.ones_(self.alpha)
        nn.init.zeros_(self.beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = upcast(x)
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        dynamic = torch.tanh(xf @ self.beta.to(xf.dtype)).unsqueeze(-1) * self.alpha.to(xf.dtype)  # (..., dim)
        gain = dynamic + (1.0 if self.weight is None else self.weight.to(xf.dtype))
        return (gain * normed).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, affine={self.affine}"

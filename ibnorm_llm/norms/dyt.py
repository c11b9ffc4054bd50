"""Dynamic Tanh: a statistics-free replacement for normalization layers."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .affine import apply_affine, make_affine, reset_affine
from .options import DyTOptions
from .precision import upcast
from .spec import resolve_options


class DyT(nn.Module):
    """Dynamic Tanh (Zhu et al., 2025, "Transformers without Normalization").

    ``y = weight * tanh(alpha * x) + bias`` with one learnable scalar ``alpha``
    (initialized to ``alpha_init``). No statistics, hence no ``eps``. Computed in fp32;
    output in the input's dtype.
    """

    Options = DyTOptions

    def __init__(self, dim: int, **options: Any) -> None:
        """``options``: :class:`.options.DyTOptions` (alpha_init 0.5, affine, bias)."""
        super().__init__()
        o = resolve_options(self.Options.kind, options, dim)
        self.dim, self.alpha_init = dim, o.alpha_init
        self.alpha = nn.Parameter(torch.empty(()))
        self.weight, self.bias = make_affine(dim, o.affine, o.bias)
        self.affine, self.use_bias = o.affine, o.bias
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.alpha, self.alpha_init)
        reset_affine(self.weight, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = upcast(x)
        return apply_affine(torch.tanh(self.alpha.to(xf.dtype) * xf), self.weight, self.bias).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}, alpha_init={self.alpha_init}, affine={self.affine}, bias={self.use_bias}"

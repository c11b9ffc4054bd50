"""Dynamic erf: a statistics-free replacement for normalization layers."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .affine import apply_affine, make_affine, reset_affine
from .options import DerfOptions
from .precision import upcast
from .spec import resolve_options


class Derf(nn.Module):
    """Dynamic erf (Chen et al., 2025, "Stronger Normalization-Free Transformers", arXiv 2512.10938).

    ``y = weight * erf(alpha * x + shift) + bias`` with a learnable scalar slope ``alpha``
    (initialized to ``alpha_init``, 0.5 as in the paper's code) and a learnable scalar shift
    (initialized to ``shift_init``, 0). No statistics, hence no ``eps``. Computed in fp32;
    output in the input's dtype.
    """

    Options = DerfOptions

    def __init__(self, dim: int, **options: Any) -> None:
        """``options``: :class:`.options.DerfOptions` (alpha_init 0.5, shift_init 0, affine, bias)."""
        super().__init__()
        o = resolve_options(self.Options.kind, options, dim)
        self.dim, self.alpha_init, self.shift_init = dim, o.alpha_init, o.shift_init
        self.alpha = nn.Parameter(torch.empty(()))
        self.shift = nn.Parameter(torch.empty(()))
        self.weight, self.bias = make_affine(dim, o.affine, o.bias)
        self.affine, self.use_bias = o.affine, o.bias
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.alpha, self.alpha_init)
        nn.init.constant_(self.shift, self.shift_init)
        reset_affine(self.weight, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = upcast(x)
        pre = self.alpha.to(xf.dtype) * xf + self.shift.to(xf.dtype)
        return apply_affine(torch.erf(pre), self.weight, self.bias).to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"{self.dim}, alpha_init={self.alpha_init}, shift_init={self.shift_init}, "
            f"affine={self.affine}, bias={self.use_bias}"
        )

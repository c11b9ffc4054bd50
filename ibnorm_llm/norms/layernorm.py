"""LayerNorm with the registry's constructor contract."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .affine import AffineNorm
from .options import LayerNormOptions
from .precision import upcast
from .spec import resolve_options


class LayerNorm(AffineNorm):
    """Layer normalization (Ba et al., 2016), numerically ``F.layer_norm``.

    ``y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias`` over the last dimension,
    with the biased variance. Statistics in fp32; output in the input's dtype.
    """

    Options = LayerNormOptions

    def __init__(self, dim: int, **options: Any) -> None:
        """``options``: :class:`.options.LayerNormOptions` (eps 1e-5, affine, bias)."""
        o = resolve_options(self.Options.kind, options, dim)
        super().__init__(dim, o.affine, o.bias)
        self.eps = o.eps
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = upcast(x)
        weight = None if self.weight is None else self.weight.to(xf.dtype)
        bias = None if self.bias is None else self.bias.to(xf.dtype)
        return F.layer_norm(xf, (self.dim,), weight, bias, self.eps).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, affine={self.affine}, bias={self.use_bias}"

"""LayerNorm with the registry's constructor contract."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .affine import AffineNorm
from .precision import upcast
from .validation import check_positive


class LayerNorm(AffineNorm):
    """Layer normalization (Ba et al., 2016), numerically ``F.layer_norm``.

    ``y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias`` over the last dimension,
    with the biased variance. Statistics in fp32; output in the input's dtype.
    """

    def __init__(self, dim: int, *, eps: float = 1e-5, affine: bool = True, bias: bool = True) -> None:
        super().__init__(dim, affine, bias)
        self.eps = check_positive("eps", eps)
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = upcast(x)
        weight = None if self.weight is None else self.weight.to(xf.dtype)
        bias = None if self.bias is None else self.bias.to(xf.dtype)
        return F.layer_norm(xf, (self.dim,), weight, bias, self.eps).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, affine={self.affine}, bias={self.use_bias}"

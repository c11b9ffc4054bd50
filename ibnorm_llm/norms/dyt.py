"""Dynamic Tanh: a statistics-free replacement for normalization layers."""

from __future__ import annotations

import torch
from torch import nn

from .affine import apply_affine, make_affine, reset_affine
from .precision import upcast
from .validation import check_dim, check_positive


class DyT(nn.Module):
    """Dynamic Tanh (Zhu et al., 2025, "Transformers without Normalization").

    ``y = weight * tanh(alpha * x) + bias`` with one learnable scalar ``alpha``
    (initialized to ``alpha_init``). No statistics, hence no ``eps``. Computed in fp32;
    output in the input's dtype.
    """

    def __init__(self, dim: int, *, alpha_init: float = 0.5, affine: bool = True, bias: bool = True) -> None:
        super().__init__()
        self.dim = check_dim(dim)
        self.alpha_init = check_positive("alpha_init", alpha_init)
        self.alpha = nn.Parameter(torch.empty(()))
        self.weight, self.bias = make_affine(dim, affine, bias)  # validates both flags
        self.affine, self.use_bias = affine, bias
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.alpha, self.alpha_init)
        reset_affine(self.weight, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = upcast(x)
        return apply_affine(torch.tanh(self.alpha.to(xf.dtype) * xf), self.weight, self.bias).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}, alpha_init={self.alpha_init}, affine={self.affine}, bias={self.use_bias}"

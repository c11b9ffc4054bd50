"""Dynamic erf: a statistics-free replacement for normalization layers."""

from __future__ import annotations

import math

import torch
from torch import nn

from .affine import apply_affine, make_affine, reset_affine
from .precision import upcast
from .validation import NormOptionError, check_dim, check_positive


def _check_finite(option: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise NormOptionError(option, value, "must be a finite number")
    return float(value)


class Derf(nn.Module):
    """Dynamic erf (Chen et al., 2025, "Stronger Normalization-Free Transformers", arXiv 2512.10938).

    ``y = weight * erf(alpha * x + shift) + bias`` with a learnable scalar slope ``alpha``
    (initialized to ``alpha_init``, 0.5 as in the paper's code) and a learnable scalar shift
    (initialized to ``shift_init``, 0). No statistics, hence no ``eps``. Computed in fp32;
    output in the input's dtype.
    """

    def __init__(
        self, dim: int, *, alpha_init: float = 0.5, shift_init: float = 0.0, affine: bool = True, bias: bool = True
    ) -> None:
        super().__init__()
        self.dim = check_dim(dim)
        self.alpha_init = check_positive("alpha_init", alpha_init)
        self.shift_init = _check_finite("shift_init", shift_init)
        self.alpha = nn.Parameter(torch.empty(()))
        self.shift = nn.Parameter(torch.empty(()))
        self.weight, self.bias = make_affine(dim, affine, bias)  # validates both flags
        self.affine, self.use_bias = affine, bias
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

"""The affine recovery every norm ends with: a learnable gain (init 1) and bias (init 0)."""

from __future__ import annotations

import torch
from torch import nn


def make_affine(dim: int, affine: bool, bias: bool) -> tuple[nn.Parameter | None, nn.Parameter | None]:
    """``(weight, bias)`` parameters of width ``dim``, uninitialized (see :func:`reset_affine`).

    ``affine=False`` removes both, whatever ``bias`` says (the paper's no-affine ablation). The flags
    arrive checked (the norm's options class, :mod:`.options`).
    """
    weight = nn.Parameter(torch.empty(dim)) if affine else None
    shift = nn.Parameter(torch.empty(dim)) if affine and bias else None
    return weight, shift


def reset_affine(weight: torch.Tensor | None, bias: torch.Tensor | None) -> None:
    """Identity affine: gain 1, bias 0."""
    if weight is not None:
        nn.init.ones_(weight)
    if bias is not None:
        nn.init.zeros_(bias)


def apply_affine(y: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
    """``y * weight + bias`` in ``y``'s (compute) dtype; a missing part is skipped."""
    if weight is not None:
        y = y * weight.to(y.dtype)
    if bias is not None:
        y = y + bias.to(y.dtype)
    return y


class AffineNorm(nn.Module):
    """Base of the norms over a last dimension of width ``dim`` that end in the affine recovery."""

    def __init__(self, dim: int, affine: bool, bias: bool) -> None:
        """``dim`` and the flags as the norm's options class checked them."""
        super().__init__()
        self.dim = dim
        self.weight, self.bias = make_affine(dim, affine, bias)
        self.affine, self.use_bias = affine, bias

    def reset_parameters(self) -> None:
        reset_affine(self.weight, self.bias)

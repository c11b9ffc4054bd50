"""SeeDNorm: RMSNorm whose gain depends on the input."""

from __future__ import annotations

import torch
from torch import nn

from .affine import make_affine, reset_affine
from .precision import upcast
from .validation import check_dim, check_positive


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

    def __init__(self, dim: int, *, eps: float = 1e-6, affine: bool = True) -> None:
        super().__init__()
        self.dim = check_dim(dim)
        self.eps = check_positive("eps", eps)
        self.weight, _ = make_affine(dim, affine, False)  # validates the flag; no bias, as RMSNorm
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

"""NormalNorm (Eftekhari & Papyan, ICML 2025): make each group closer to Gaussian.

This is our reading of the paper: standardize the group, apply a Yeo-Johnson power
transform whose power is estimated per group by Newton steps on the Gaussian negative
log-likelihood, standardize again, add Gaussian noise while training, then the affine.
"""

from __future__ import annotations

from typing import Any

import torch

from .affine import AffineNorm, apply_affine
from .options import NormalNormOptions
from .precision import upcast
from .spec import resolve_options
from .standardize import standardize as standardize_groups

# The power stays inside (0, 2), away from the log branches of Yeo-Johnson at 0 and 2.
POWER_MIN, POWER_MAX = 0.1, 1.9
NEWTON_STEPS = 2
# Central-difference step for the NLL's derivatives in the power.
POWER_STEP = 1e-2


def yeo_johnson(z: torch.Tensor, power: torch.Tensor) -> torch.Tensor:
    """Yeo-Johnson transform for a power strictly inside (0, 2) (broadcast against ``z``)."""
    pos = ((z.clamp(min=0) + 1).pow(power) - 1) / power
    neg = -((1 - z.clamp(max=0)).pow(2 - power) - 1) / (2 - power)
    return torch.where(z >= 0, pos, neg)


def _yeo_johnson_nll(z: torch.Tensor, power: torch.Tensor, log_term: torch.Tensor) -> torch.Tensor:
    """Per-group Gaussian NLL of the transformed values, per element, up to constants."""
    t = yeo_johnson(z, power)
    return 0.5 * torch.log(t.var(-1, unbiased=False, keepdim=True)) - (power - 1) * log_term


@torch.no_grad()
def estimate_power(z: torch.Tensor) -> torch.Tensor:
    """Newton steps from power 1 on each group's NLL (last dim); returns shape ``(..., 1)``."""
    log_term = (torch.sign(z) * torch.log1p(z.abs())).mean(-1, keepdim=True)
    power = torch.ones_like(z[..., :1])
    h = POWER_STEP
    for _ in range(NEWTON_STEPS):
        f_minus = _yeo_johnson_nll(z, power - h, log_term)
        f_zero = _yeo_johnson_nll(z, power, log_term)
        f_plus = _yeo_johnson_nll(z, power + h, log_term)
        slope = (f_plus - f_minus) / (2 * h)
        curvature = (f_plus - 2 * f_zero + f_minus) / (h * h)
        # Only step where the NLL is locally convex; elsewhere keep the current power.
        step = torch.where(curvature > 0, -slope / curvature.clamp(min=1e-12), torch.zeros_like(slope))
        power = (power + step).clamp(POWER_MIN, POWER_MAX)
    return power


class NormalNorm(AffineNorm):
    """NormalNorm: ``y = gamma * (psi(YJ_p(psi(x))) + noise) + beta`` per group.

    ``psi`` standardizes (mean 0, variance 1, with ``eps``); ``YJ_p`` is the Yeo-Johnson
    transform with power ``p`` estimated per group by two Newton steps on the Gaussian
    NLL, starting at 1, clamped to [0.1, 1.9] and detached. In training only,
    ``noise = noise_std * std(psi(...)) * N(0, 1)`` per group. Our reading of Eftekhari &
    Papyan (ICML 2025); computed in fp32, output in the input's dtype.
    """

    Options = NormalNormOptions

    def __init__(self, dim: int, **options: Any) -> None:
        """``options``: :class:`.options.NormalNormOptions` (num_groups 1, eps 1e-5, noise_std 0.4, affine, bias)."""
        o = resolve_options(self.Options.kind, options, dim)
        super().__init__(dim, o.affine, o.bias)
        self.num_groups, self.eps, self.noise_std = o.num_groups, o.eps, o.noise_std
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = upcast(x)
        g = xf.reshape(*x.shape[:-1], self.num_groups, self.dim // self.num_groups)  # (..., G, dim/G)
        z = standardize_groups(g, "meanvar", self.eps)
        y = standardize_groups(yeo_johnson(z, estimate_power(z.detach())), "meanvar", self.eps)
        if self.training and self.noise_std > 0:
            scale = self.noise_std * y.detach().std(-1, unbiased=False, keepdim=True)
            y = y + scale * torch.randn_like(y)
        y = y.reshape(x.shape)  # (..., dim)
        return apply_affine(y, self.weight, self.bias).to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"{self.dim}, num_groups={self.num_groups}, eps={self.eps}, noise_std={self.noise_std}, "
            f"affine={self.affine}, bias={self.use_bias}"
        )

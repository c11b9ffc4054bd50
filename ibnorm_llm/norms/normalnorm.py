"""NormalNorm (Eftekhari & Papyan, ICML 2025): make each group closer to Gaussian.

By default this is the official ``LayerNormalNorm`` (DanielEftekhari/normality-normalization,
``layers.py``): standardize each token, estimate the Yeo-Johnson power lambda by one Newton step
from 1 on the Gaussian negative log-likelihood (closed-form derivatives, unclamped, the gradient
flowing through lambda), apply the transform, add Gaussian noise scaled by the mean absolute
deviation times ``noise_train`` while training, then the affine. The options
``lmbda_estimate: clamped_finite_difference``, ``second_standardize: true`` and ``noise_scale: std``
are our earlier reading (docs/baselines.md).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .affine import AffineNorm, apply_affine
from .options import NormalNormOptions
from .precision import upcast
from .spec import resolve_options
from .standardize import standardize as standardize_groups

# lmbda_estimate: clamped_finite_difference (our earlier reading). The power stays inside (0, 2), away
# from the log branches of Yeo-Johnson at 0 and 2, so the exact transform needs no guard there.
POWER_MIN, POWER_MAX = 0.1, 1.9
NEWTON_STEPS = 2
# Central-difference step for the NLL's derivatives in the power.
POWER_STEP = 1e-2


def yeo_johnson(z: torch.Tensor, power: torch.Tensor) -> torch.Tensor:
    """Yeo-Johnson transform for a power strictly inside (0, 2) (broadcast against ``z``)."""
    pos = ((z.clamp(min=0) + 1).pow(power) - 1) / power
    neg = -((1 - z.clamp(max=0)).pow(2 - power) - 1) / (2 - power)
    return torch.where(z >= 0, pos, neg)


def _sign(z: torch.Tensor) -> torch.Tensor:
    """+1 for z >= 0, -1 below: Yeo-Johnson's two branches (the official code maps sign(0) to +1)."""
    return torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def newton_lmbda(z: torch.Tensor, eps: float) -> torch.Tensor:
    """The official power estimate (``LayerNormalNorm._estimate`` with ``_compute_grads``, order 2),
    per group (last dim) of standardized ``z``; shape ``(..., 1)``, differentiable in ``z``.

    One Newton step from lambda = 1 on L(lambda) = 0.5 log var(psi_lambda(z)) - (lambda - 1) mean(sign(z) log1p|z|),
    the Gaussian NLL of the transformed values up to constants. Its derivatives at lambda = 1 are in closed
    form, using mean(z) = 0 and var(z) = 1: with d = (1 + |z|) log1p|z| - |z| (d psi / d lambda at 1),
    L' = mean(z d) - mean(sign(z) log1p|z|) and L'' = mean(z sign(z) ((1 + |z|) log1p(|z|)^2 - 2d))
    + mean((d - mean d)^2) - 2 mean(z d)^2. lambda = 1 - L' / (L'' + sqrt(eps)), neither clamped nor
    detached.
    """
    sign, magnitude = _sign(z), z.abs()
    log_magnitude = torch.log1p(magnitude)
    d = (1 + magnitude) * log_magnitude - magnitude
    dvar = 2 * (z * d).mean(-1, keepdim=True)
    slope = 0.5 * dvar - (sign * log_magnitude).mean(-1, keepdim=True)
    d2 = sign * ((1 + magnitude) * log_magnitude.square() - 2 * d)
    d2var = 2 * (z * d2 + (d - d.mean(-1, keepdim=True)).square()).mean(-1, keepdim=True)
    curvature = 0.5 * d2var - 0.5 * dvar.square()
    return 1 - slope / (curvature + math.sqrt(eps))


def guarded_yeo_johnson(z: torch.Tensor, lmbda: torch.Tensor, eps: float) -> torch.Tensor:
    """The official transform (``LayerNormalNorm._transform``) for any lambda (broadcast against ``z``).

    With eta = lambda for z >= 0 and 2 - lambda below, Yeo-Johnson is sign(z) ((1 + |z|)^eta - 1) / eta.
    The official code shifts eta by sqrt(eps) away from 0 (in the exponent and the divisor), and where
    |eta| <= sqrt(eps) uses the limit sign(z) log1p|z|; the branch choice and the shift's sign carry no
    gradient. It multiplies the branches by 0/1 masks; ``torch.where`` gives the same values and gradients
    wherever both branches are finite.
    """
    sign, magnitude = _sign(z), z.abs()
    eta = 1 + sign * (lmbda - 1)
    shifted = eta + _sign(eta).detach() * math.sqrt(eps)
    power_branch = sign / shifted * ((1 + magnitude).pow(shifted) - 1)
    log_branch = sign * torch.log1p(magnitude)
    return torch.where(eta.detach().abs() <= math.sqrt(eps), log_branch, power_branch)


def _yeo_johnson_nll(z: torch.Tensor, power: torch.Tensor, log_term: torch.Tensor) -> torch.Tensor:
    """Per-group Gaussian NLL of the transformed values, per element, up to constants."""
    t = yeo_johnson(z, power)
    return 0.5 * torch.log(t.var(-1, unbiased=False, keepdim=True)) - (power - 1) * log_term


@torch.no_grad()
def finite_difference_lmbda(z: torch.Tensor) -> torch.Tensor:
    """``lmbda_estimate: clamped_finite_difference``, our earlier reading: two Newton steps from power 1 on
    each group's NLL (last dim) with central differences, stepping only where the NLL is locally convex,
    clamped to [POWER_MIN, POWER_MAX] after each step and detached; returns shape ``(..., 1)``."""
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
    """NormalNorm: ``y = gamma * (YJ_lambda(psi(x)) + noise) + beta`` per group.

    ``psi`` standardizes (mean 0, variance 1, with ``eps``); ``YJ_lambda`` is the Yeo-Johnson transform
    with lambda estimated per group (:func:`newton_lmbda`, the official estimate, or
    :func:`finite_difference_lmbda` under ``lmbda_estimate: clamped_finite_difference``, which also uses the
    exact transform without the sqrt(eps) guard); ``second_standardize`` applies ``psi`` again after it. In
    training only, ``noise = noise_train * scale * N(0, 1)``, ``scale`` per group and detached: the mean
    absolute deviation of the transformed values (``noise_scale: mad``, official) or their standard
    deviation (``std``). Computed in fp32 (the official code in the input's dtype), output in the input's
    dtype.
    """

    Options = NormalNormOptions

    def __init__(self, dim: int, **options: Any) -> None:
        """``options``: :class:`.options.NormalNormOptions` (defaults: the official LayerNormalNorm)."""
        o = resolve_options(self.Options.kind, options, dim)
        super().__init__(dim, o.affine, o.bias)
        self.num_groups, self.eps = o.num_groups, o.eps
        self.noise_train, self.noise_scale = o.noise_train, o.noise_scale
        self.lmbda_estimate, self.second_standardize = o.lmbda_estimate, o.second_standardize
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = upcast(x)
        g = xf.reshape(*x.shape[:-1], self.num_groups, self.dim // self.num_groups)  # (..., G, dim/G)
        z = standardize_groups(g, "meanvar", self.eps)
        if self.lmbda_estimate == "newton":
            y = guarded_yeo_johnson(z, newton_lmbda(z, self.eps), self.eps)
        else:
            y = yeo_johnson(z, finite_difference_lmbda(z.detach()))
        if self.second_standardize:
            y = standardize_groups(y, "meanvar", self.eps)
        if self.training and self.noise_train > 0:
            with torch.no_grad():
                centered = y - y.mean(-1, keepdim=True)
                scale = centered.abs().mean(-1, keepdim=True) if self.noise_scale == "mad" else \
                    centered.square().mean(-1, keepdim=True).sqrt()
            y = y + torch.randn_like(y) * scale * self.noise_train
        y = y.reshape(x.shape)  # (..., dim)
        return apply_affine(y, self.weight, self.bias).to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"{self.dim}, num_groups={self.num_groups}, eps={self.eps}, noise_train={self.noise_train}, "
            f"noise_scale={self.noise_scale}, lmbda_estimate={self.lmbda_estimate}, "
            f"second_standardize={self.second_standardize}, affine={self.affine}, bias={self.use_bias}"
        )

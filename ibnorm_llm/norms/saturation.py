"""How much of a bounded norm's input sits past its knee: the one definition of "saturated".

An element is **saturated** when the slope of the norm's elementwise map, relative to its slope
at the origin, is below ``KNEE_SLOPE`` (0.1): there, a change of the input barely changes the
output, and a layer whose elements are mostly saturated passes on little more than their signs.

- IBNorm: the compression's slope ``f'(r)`` at each element's deviation ``r`` from its group
  mean, in the units the norm compresses (raw or std, after standardizing for
  ``order: standardize_first``). ``f'(0) = 1``, so the relative slope is ``f'`` itself.
  (IBNorm-T, rate role: ``lam * r > 1.82``; IBNorm-L: ``lam * r > 9``; IBNorm-S past its knee only
  when its slope there is below 0.1.)
- DyT: ``1 - tanh(alpha x)^2 < 0.1``, i.e. ``|alpha x| > 1.82``.
- Derf: ``exp(-(alpha x + shift)^2) < 0.1``, i.e. ``|alpha x + shift| > 1.52``.

Norms without a bounded map (LayerNorm, RMSNorm, NormalNorm, SeeDNorm) have no saturated range:
``saturated_share`` returns None for them. The study report, the analysis and the training-time
warning all read this function.
"""

from __future__ import annotations

import torch
from torch import nn

from .derf import Derf
from .dyt import DyT
from .ibnorm import IBNorm, compression_slope, group_deviations
from .precision import upcast
from .standardize import standardize as standardize_groups

KNEE_SLOPE = 0.1
"""An element is saturated where the map's slope, relative to its slope at 0, is below this."""
BINARIZING_SHARE = 0.9
"""A layer with more than this share of its elements saturated effectively outputs their signs."""


def _ibnorm_deviations(norm: IBNorm, x: torch.Tensor) -> torch.Tensor:
    """The deviations from the group mean that ``norm`` compresses, in its units, shape (..., G, width/G)."""
    g = upcast(x).reshape(*x.shape[:-1], norm.num_groups, x.shape[-1] // norm.num_groups)
    if norm.order == "standardize_first":
        g = standardize_groups(g, norm.standardize, norm.eps)
    return group_deviations(g, norm.deviation, norm.eps)[1]


def has_saturated_range(norm: nn.Module) -> bool:
    return isinstance(norm, (IBNorm, DyT, Derf))


def relative_slope(norm: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The slope of ``norm``'s elementwise map at every element of its input ``x``, relative to the
    slope at the origin; None for norms without a bounded map."""
    with torch.no_grad():
        if isinstance(norm, IBNorm):
            lam = norm.lam_value
            lam = float(lam) if torch.is_tensor(lam) else lam
            return compression_slope(_ibnorm_deviations(norm, x), norm.variant, lam, norm.lam_role)
        if isinstance(norm, DyT):
            return 1.0 - torch.tanh(norm.alpha.float() * upcast(x)).pow(2)
        if isinstance(norm, Derf):
            return torch.exp(-(norm.alpha.float() * upcast(x) + norm.shift.float()).pow(2))
    return None


def saturated_share(norm: nn.Module, x: torch.Tensor) -> float | None:
    """Share of the elements of ``x`` (the norm's input) past the norm's knee (relative slope < KNEE_SLOPE)."""
    slope = relative_slope(norm, x)
    if slope is None:
        return None
    return float((slope < KNEE_SLOPE).double().mean())

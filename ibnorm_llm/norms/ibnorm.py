"""IBNorm (arXiv 2510.25262): compress each group toward its mean, then standardize.

``IBNorm(x; lam) = eta(psi(s_lam(zeta(x))))``: grouping zeta, compression s_lam,
standardization psi, affine recovery eta. The paper does not publish its compression
functions; the ones below are OUR readings, not the paper's. For a deviation ``r >= 0`` from
the group mean, each has ``f(0) = 0``, ``f'(0) = 1`` and ``0 < f' <= 1``. ``lam_role`` says what
lambda is:

``rate`` (knee at 1/lam, stronger as lam grows; our first reading):

- ``S``: ``r`` if ``r <= 1/lam`` else ``1/lam + (r - 1/lam)/lam``  (lam >= 1; lam = 1 is the identity)
- ``L``: ``log1p(lam * r) / lam``  (lam > 0)
- ``T``: ``tanh(lam * r) / lam``   (lam > 0; saturates at 1/lam)

``scale`` (``lam * g(r / lam)``: knee at lam, in the units of r; the identity as lam -> inf):

- ``S``: ``r`` if ``r <= lam`` else ``lam + (r - lam)/2``  (lam > 0; slope 1/2 past the knee,
  the slope L has at its knee, so S stays the mildest and ``f' <= 1`` for every lam)
- ``L``: ``lam * log1p(r / lam)``  (lam > 0)
- ``T``: ``lam * tanh(r / lam)``   (lam > 0; saturates at lam)

For L and T, ``scale`` at lam is ``rate`` at 1/lam; for S it is not (the slopes differ).
"""

from __future__ import annotations

import importlib.util
import math
import os
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .affine import apply_affine, make_affine, reset_affine
from .cpu_ops import ibnorm_cpu
from .cpu_ops import load as load_cpu_kernel
from .cpu_ops import unavailable_fix as cpu_kernel_fix
from .options import (  # noqa: F401 (DEFAULT_*, check_lam: re-exported, the names the kernels and tests use)
    DEFAULT_DEVIATION,
    DEFAULT_LAM_ROLE,
    LAM_ROLES,
    VARIANTS,
    IBNormOptions,
    check_lam,
)
from .precision import upcast
from .spec import resolve_options
from .standardize import standardize as standardize_groups
from .validation import NormOptionError, check_choice

Lam = float | torch.Tensor


def _check_variant_and_role(variant: str, lam_role: str) -> None:
    check_choice("variant", variant, VARIANTS)
    check_choice("lam_role", lam_role, LAM_ROLES)


def compress(d: torch.Tensor, variant: str, lam: Lam, lam_role: str = "rate") -> torch.Tensor:
    """Signed compression ``sign(d) * f_lam(|d|)`` of deviations ``d`` from a group mean."""
    _check_variant_and_role(variant, lam_role)
    # sign * f(sign * d) instead of sign(d) * f(|d|): same values, but the gradient at
    # d = 0 is f'(0) = 1 rather than the 0 that sign(0) and abs'(0) would give.
    sign = torch.where(d >= 0, 1.0, -1.0).to(d.dtype)
    r = sign * d
    if lam_role == "rate":
        if variant == "S":
            knee = 1.0 / lam
            f = torch.where(r <= knee, r, knee + (r - knee) / lam)
        elif variant == "L":
            f = torch.log1p(lam * r) / lam
        else:
            f = torch.tanh(lam * r) / lam
    elif variant == "S":
        f = torch.where(r <= lam, r, lam + (r - lam) / 2)
    elif variant == "L":
        f = lam * torch.log1p(r / lam)
    else:
        f = lam * torch.tanh(r / lam)
    return sign * f


def compression_slope(d: torch.Tensor, variant: str, lam: Lam, lam_role: str = "rate") -> torch.Tensor:
    """The slope ``f_lam'(|d|)`` of the compression at each element of ``d``: in (0, 1] (T's rounds to 0
    where tanh saturates in floating point).

    ``d`` in the units :func:`compress` takes (raw deviations, or std units under
    ``deviation="std"``). The elements beyond the knee are where the slope is small (e.g. < 0.1).
    """
    _check_variant_and_role(variant, lam_role)
    r = d.abs()
    one = torch.ones_like(r)
    if lam_role == "rate":
        if variant == "S":
            slope = torch.where(r <= 1.0 / lam, one, one / lam)
        elif variant == "L":
            slope = 1.0 / (1.0 + lam * r)
        else:
            slope = 1.0 - torch.tanh(lam * r).square()
    elif variant == "S":
        slope = torch.where(r <= lam, one, one / 2)
    elif variant == "L":
        slope = 1.0 / (1.0 + r / lam)
    else:
        slope = 1.0 - torch.tanh(r / lam).square()
    return slope


def group_deviations(g: torch.Tensor, deviation: str, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, d)`` per group (last dim): the mean and the deviations compression acts on, raw or in std units."""
    mu = g.mean(-1, keepdim=True)
    d = g - mu
    if deviation == "std":
        # In std units lam means the same at every activation scale.
        d = d * torch.rsqrt(d.pow(2).mean(-1, keepdim=True) + eps)
    return mu, d


def _compress_group(g: torch.Tensor, variant: str, lam: Lam, lam_role: str, deviation: str, eps: float) -> torch.Tensor:
    """``s = mu + sign(d) f(r)`` per group (last dim); gradients flow through the mean."""
    mu, d = group_deviations(g, deviation, eps)
    return mu + compress(d, variant, lam, lam_role)


def ibnorm_reference(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    *,
    variant: str,
    lam: Lam,
    deviation: str,
    standardize: str,
    order: str,
    num_groups: int,
    eps: float,
    lam_role: str = "rate",
) -> torch.Tensor:
    """The readable IBNorm formula over the last dim of ``x``; the fused kernels are tested against it.

    Statistics in fp32 (fp64 input stays fp64); output in ``x.dtype``. ``lam`` is a float
    or a 0-d tensor (learnable lambda). ``weight``/``bias`` of shape ``(width,)`` or None.
    ``lam_role`` as :func:`compress` takes it ("rate" when not given).
    """
    xf = upcast(x)
    width = x.shape[-1]
    g = xf.reshape(*x.shape[:-1], num_groups, width // num_groups)  # (..., G, width/G)
    if torch.is_tensor(lam):
        lam = lam.to(xf.dtype)
    if order == "compress_first":
        y = standardize_groups(_compress_group(g, variant, lam, lam_role, deviation, eps), standardize, eps)
    else:
        # Ablation: compress the standardized values, no second standardization.
        y = _compress_group(standardize_groups(g, standardize, eps), variant, lam, lam_role, deviation, eps)
    y = y.reshape(x.shape)  # (..., width)
    return apply_affine(y, weight, bias).to(x.dtype)


def _triton_missing() -> str | None:
    """None if triton is installed, else the fix."""
    return None if importlib.util.find_spec("triton") is not None else "triton is not installed (pip install triton)"


def ibnorm_fused(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, **options) -> torch.Tensor:
    """``impl="fused"``: the CPU kernel operator (``cpu_ops.py``), for CPU tensors of up to fp32 precision."""
    if x.device.type != "cpu" or x.dtype == torch.float64:
        raise RuntimeError(
            f"IBNorm impl='fused' is the CPU kernel (float32 compute); the input is {x.dtype} on {x.device.type}: "
            "use impl='triton' on CUDA, impl='reference' for float64, or impl='auto'"
        )
    return ibnorm_cpu(x, weight, bias, **options)


def ibnorm_triton(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, **options) -> torch.Tensor:
    """``impl="triton"``: the Triton operators (``triton_ibnorm.py``), for CUDA tensors."""
    if not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            f"IBNorm impl='triton' cannot run: the input is on {x.device.type}, not CUDA "
            "(set TRITON_INTERPRET=1 before start-up to run Triton on CPU); use impl='fused' or impl='auto'"
        )
    from .triton_ibnorm import ibnorm_triton as triton_kernels

    return triton_kernels(x, weight, bias, **options)


IMPLEMENTATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "reference": ibnorm_reference,
    "fused": ibnorm_fused,
    "triton": ibnorm_triton,
}


def prepare_impl(impl: str) -> tuple[bool, bool]:
    """Make ``impl`` ready when the module is built: ``(cpu kernel usable, triton usable)``.

    ``fused`` and ``triton`` fail here when they cannot run at all. ``auto`` uses what is
    there and warns when the CPU kernel is not (the reference formula, slower, takes its place).
    """
    cpu_error = load_cpu_kernel() if impl in ("auto", "fused") else "not asked for"
    if impl == "fused" and cpu_error is not None:
        raise NormOptionError("impl", impl, f"the CPU kernel is unavailable here ({cpu_error}); use impl='reference'")
    triton_error = _triton_missing() if impl == "triton" or (impl == "auto" and torch.cuda.is_available()) else "not asked for"
    if impl == "triton" and triton_error is not None:
        raise NormOptionError("impl", impl, f"{triton_error}; use impl='fused' or impl='auto'")
    if triton_error is None:
        # Defines the Triton operators now, not inside a forward that torch.compile is tracing.
        from .triton_ibnorm import ibnorm_triton as _defines_the_operators  # noqa: F401
    if impl == "auto" and cpu_error is not None:
        warnings.warn(
            f"IBNorm impl='auto': the CPU kernel is unavailable ({cpu_error}); CPU inputs take the reference formula "
            f"(same results, slower). Fix: {cpu_kernel_fix()}; impl: reference chooses the formula without this "
            "warning.",
            RuntimeWarning, stacklevel=3,
        )
    return cpu_error is None, triton_error is None


def auto_impl(x: torch.Tensor, cpu_kernel: bool, triton: bool) -> str:
    """What ``impl="auto"`` runs on ``x``: Triton on CUDA, the CPU kernel on CPU (up to fp32), else the formula."""
    if x.is_cuda and triton:
        return "triton"
    if x.device.type == "cpu" and x.dtype != torch.float64 and cpu_kernel:
        return "fused"
    return "reference"


def _inverse_softplus(value: float) -> float:
    # log(expm1(v)) overflows for large v; v + log(-expm1(-v)) is the same and stable.
    return value + math.log(-math.expm1(-value))


class IBNorm(nn.Module):
    """IBNorm: ``y = gamma * psi(mu + sign(d) f_lam(r)) + beta`` per group, ``d = x - mu``.

    ``r = |d|`` (``deviation="raw"``) or ``|d| / sqrt(var + eps)`` (``"std"``); ``psi`` is
    ``(s - mean s) / sqrt(var s + eps)`` (``standardize="meanvar"``) or
    ``s / sqrt(mean s^2 + eps)`` (``"rms"``). ``order="standardize_first"`` applies psi
    before compressing and skips the second standardization. ``num_groups`` splits the last
    dim into equal groups. ``lam_role`` is the role of lambda in ``f_lam`` (module docstring):
    ``rate`` (``g(lam r) / lam``) or ``scale`` (``lam g(r / lam)``). With ``learnable_lam`` lambda
    is ``1 + softplus(lam_raw)`` for S under ``rate`` and ``softplus(lam_raw)`` otherwise, so it
    stays in the reading's valid range.
    ``affine=False`` removes both gain and bias (the paper's ablation).

    ``impl`` picks the implementation once, here: ``reference`` (the formula above, autograd),
    ``fused`` (the CPU kernel operator), ``triton`` (the Triton operators, CUDA) or ``auto``
    (per input: Triton on CUDA, the CPU kernel on CPU up to fp32, the formula otherwise). All
    are torch operators or plain torch code, so ``torch.compile(fullgraph=True)`` traces them.
    """

    Options = IBNormOptions

    def __init__(self, dim: int, **options: Any) -> None:
        """``options``: :class:`.options.IBNormOptions` (variant L, lam 4, the default reading, ...)."""
        super().__init__()
        o = resolve_options(self.Options.kind, options, dim)
        self.dim, self.variant, self.lam, self.lam_role = dim, o.variant, o.lam, o.lam_role
        self.deviation, self.standardize, self.order, self.num_groups = o.deviation, o.standardize, o.order, o.num_groups
        self.weight, self.bias = make_affine(dim, o.affine, o.bias)
        self.affine, self.use_bias = o.affine, o.bias
        self.eps, self.learnable_lam, self.impl = o.eps, o.learnable_lam, o.impl
        self.lam_raw = nn.Parameter(torch.empty(())) if o.learnable_lam else None
        self._cpu_kernel, self._triton = prepare_impl(self.impl)
        self.reset_parameters()

    @property
    def _lam_floor(self) -> float:
        """The least lambda of the reading: 1 for S under the rate role (S's identity), else 0."""
        return 1.0 if (self.variant, self.lam_role) == ("S", "rate") else 0.0

    @property
    def lam_value(self) -> Lam:
        """The current lambda: a 0-d tensor (with grad) when learnable, else the float."""
        if self.lam_raw is None:
            return self.lam
        return self._lam_floor + F.softplus(self.lam_raw)

    def reset_parameters(self) -> None:
        reset_affine(self.weight, self.bias)
        if self.lam_raw is not None:
            nn.init.constant_(self.lam_raw, _inverse_softplus(self.lam - self._lam_floor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        impl = auto_impl(x, self._cpu_kernel, self._triton) if self.impl == "auto" else self.impl
        return IMPLEMENTATIONS[impl](
            x,
            self.weight,
            self.bias,
            variant=self.variant,
            lam=self.lam_value,
            lam_role=self.lam_role,
            deviation=self.deviation,
            standardize=self.standardize,
            order=self.order,
            num_groups=self.num_groups,
            eps=self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.dim}, variant={self.variant}, lam={self.lam}, lam_role={self.lam_role}, deviation={self.deviation}, "
            f"standardize={self.standardize}, order={self.order}, num_groups={self.num_groups}, "
            f"affine={self.affine}, bias={self.use_bias}, eps={self.eps}, "
            f"learnable_lam={self.learnable_lam}, impl={self.impl}"
        )


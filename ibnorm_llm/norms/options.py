"""Every norm's options as data, without torch: the one description of what a norm takes.

Each norm class (``IBNorm``, ``RMSNorm``, ...) names its options class as ``Options`` and builds
itself from a checked instance; the config loader checks a YAML ``model.norm`` against the same
class before torch is imported, so a bad option is reported in a fraction of a second. Adding an
option means adding a field here (with its default and its check) and reading it in the norm.

    options = IBNormOptions(variant="T", lam=2.0).checked(dim=512)   # NormOptionError naming the option
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from .validation import (
    NormOptionError,
    check_bool,
    check_choice,
    check_dim,
    check_group_count,
    check_groups,
    check_non_negative,
    check_positive,
)

VARIANTS = ("S", "L", "T")
DEVIATIONS = ("raw", "std")
LAM_ROLES = ("rate", "scale")
STANDARDIZATIONS = ("meanvar", "rms")
ORDERS = ("compress_first", "standardize_first")
IMPLS = ("auto", "reference", "fused", "triton")
# NormalNorm: the official estimate of the power, then our earlier one; the official noise scale, then ours.
LMBDA_ESTIMATES = ("newton", "clamped_finite_difference")
NOISE_SCALES = ("mad", "std")

# IBNorm's defaults for the reading (deviation units and the role of lambda): the one place to
# change them. The functions in ibnorm.py (compress, ibnorm_reference, the kernels) take
# lam_role="rate" when it is not given, the reading they computed before the option existed.
DEFAULT_DEVIATION = "std"
DEFAULT_LAM_ROLE = "rate"


def check_lam(variant: str, lam: float, lam_role: str = "rate") -> float:
    """lam must be finite and > 0; and >= 1 for S under the rate role (where lam = 1 is the identity)."""
    if variant == "S" and lam_role == "rate":
        try:
            return check_positive("lam", lam, minimum=1.0, inclusive=True)
        except NormOptionError as err:
            raise NormOptionError(
                "lam", lam, f"{err.reason} for variant S with lam_role rate (L and T, and S with lam_role scale, "
                "take any lam > 0)"
            ) from None
    return check_positive("lam", lam)


def check_finite(option: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise NormOptionError(option, value, "must be a finite number")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class NormOptions:
    """Base of the per-norm option classes: ``checked(dim)`` validates every value (and, given the
    feature width, what depends on it) and returns the options with numbers as floats."""

    kind: ClassVar[str]

    def follows_family_eps(self) -> bool:
        """Whether a model preset's eps (1e-6 LLaMA, 1e-5 GPT-2) replaces this norm's default eps."""
        return True

    def _checks(self) -> dict[str, Any]:
        """Option -> its checked value; every subclass checks each of its fields."""
        raise NotImplementedError

    def checked(self, dim: int | None = None) -> NormOptions:
        """The options, checked; ``dim`` (the feature width) also checks what depends on it (num_groups)."""
        values = self._checks()
        if dim is not None:
            check_dim(dim)
            if "num_groups" in values:
                check_groups(dim, values["num_groups"])
        return dataclasses.replace(self, **values)


def _affine(options: Any, with_bias: bool = True) -> dict[str, Any]:
    checked = {"affine": check_bool("affine", options.affine)}
    if with_bias:
        checked["bias"] = check_bool("bias", options.bias)
    return checked


@dataclass(frozen=True, kw_only=True)
class RMSNormOptions(NormOptions):
    kind: ClassVar[str] = "rmsnorm"
    eps: float = 1e-6
    affine: bool = True

    def _checks(self) -> dict[str, Any]:
        return {"eps": check_positive("eps", self.eps), **_affine(self, with_bias=False)}


@dataclass(frozen=True, kw_only=True)
class LayerNormOptions(NormOptions):
    kind: ClassVar[str] = "layernorm"
    eps: float = 1e-5
    affine: bool = True
    bias: bool = True

    def _checks(self) -> dict[str, Any]:
        return {"eps": check_positive("eps", self.eps), **_affine(self)}


@dataclass(frozen=True, kw_only=True)
class IBNormOptions(NormOptions):
    """IBNorm (docs/norms.md): compression of each group's deviations, then standardization, then affine."""

    kind: ClassVar[str] = "ibnorm"
    variant: str = "L"
    lam: float = 4.0
    lam_role: str = DEFAULT_LAM_ROLE
    deviation: str = DEFAULT_DEVIATION
    standardize: str = "meanvar"
    order: str = "compress_first"
    num_groups: int = 1
    affine: bool = True
    bias: bool = True
    eps: float = 1e-5
    learnable_lam: bool = False
    impl: str = "auto"

    def _checks(self) -> dict[str, Any]:
        variant = check_choice("variant", self.variant, VARIANTS)
        lam_role = check_choice("lam_role", self.lam_role, LAM_ROLES)
        lam = check_lam(variant, self.lam, lam_role)
        learnable = check_bool("learnable_lam", self.learnable_lam)
        if learnable and (variant, lam_role) == ("S", "rate") and lam == 1.0:
            raise NormOptionError(
                "lam", self.lam, "must be > 1 for variant S with lam_role rate and learnable_lam (1 + softplus never reaches 1)"
            )
        return {
            "variant": variant, "lam": lam, "lam_role": lam_role,
            "deviation": check_choice("deviation", self.deviation, DEVIATIONS),
            "standardize": check_choice("standardize", self.standardize, STANDARDIZATIONS),
            "order": check_choice("order", self.order, ORDERS),
            "num_groups": check_group_count(self.num_groups), **_affine(self),
            "eps": check_positive("eps", self.eps), "learnable_lam": learnable,
            "impl": check_choice("impl", self.impl, IMPLS),
        }


@dataclass(frozen=True, kw_only=True)
class DyTOptions(NormOptions):
    kind: ClassVar[str] = "dyt"
    alpha_init: float = 0.5
    affine: bool = True
    bias: bool = True

    def _checks(self) -> dict[str, Any]:
        return {"alpha_init": check_positive("alpha_init", self.alpha_init), **_affine(self)}


@dataclass(frozen=True, kw_only=True)
class NormalNormOptions(NormOptions):
    """NormalNorm (docs/baselines.md). The defaults are the official ``LayerNormalNorm``
    (DanielEftekhari/normality-normalization, ``layers.py``): one Newton step for the power from 1
    with the gradient through it, no second standardization, noise of scale ``noise_train`` times the
    mean absolute deviation, eps 1e-5. ``lmbda_estimate: clamped_finite_difference``,
    ``second_standardize: true``, ``noise_scale: std`` and ``noise_train: 0.4`` together are our
    earlier reading (``LEGACY_OPTIONS`` in spec.py). ``num_groups`` and ``bias`` are ours: the
    official layer normalizes each token as one group and always has a bias."""

    kind: ClassVar[str] = "normalnorm"
    num_groups: int = 1
    eps: float = 1e-5
    noise_train: float = 1.0
    noise_scale: str = "mad"
    lmbda_estimate: str = "newton"
    second_standardize: bool = False
    affine: bool = True
    bias: bool = True

    def _checks(self) -> dict[str, Any]:
        return {"num_groups": check_group_count(self.num_groups), "eps": check_positive("eps", self.eps),
                "noise_train": check_non_negative("noise_train", self.noise_train),
                "noise_scale": check_choice("noise_scale", self.noise_scale, NOISE_SCALES),
                "lmbda_estimate": check_choice("lmbda_estimate", self.lmbda_estimate, LMBDA_ESTIMATES),
                "second_standardize": check_bool("second_standardize", self.second_standardize), **_affine(self)}

    def follows_family_eps(self) -> bool:
        """Under the official estimate sqrt(eps) also guards the power step and the transform, so eps is the
        method's own (1e-5). Our earlier reading used eps only to standardize, and took the family's like
        LayerNorm; it still does, so a checkpoint saved then is rebuilt as it was."""
        return self.lmbda_estimate == "clamped_finite_difference"


@dataclass(frozen=True, kw_only=True)
class DerfOptions(NormOptions):
    kind: ClassVar[str] = "derf"
    alpha_init: float = 0.5
    shift_init: float = 0.0
    affine: bool = True
    bias: bool = True

    def _checks(self) -> dict[str, Any]:
        return {"alpha_init": check_positive("alpha_init", self.alpha_init),
                "shift_init": check_finite("shift_init", self.shift_init), **_affine(self)}


@dataclass(frozen=True, kw_only=True)
class SeeDNormOptions(NormOptions):
    kind: ClassVar[str] = "seednorm"
    eps: float = 1e-6
    affine: bool = True

    def _checks(self) -> dict[str, Any]:
        return {"eps": check_positive("eps", self.eps), **_affine(self, with_bias=False)}


NORM_OPTIONS: dict[str, type[NormOptions]] = {
    cls.kind: cls for cls in (LayerNormOptions, RMSNormOptions, IBNormOptions, DyTOptions, NormalNormOptions,
                              DerfOptions, SeeDNormOptions)
}
"""Every norm kind, in registry order, and its options."""

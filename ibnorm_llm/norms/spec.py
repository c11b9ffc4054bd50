"""A norm as data, ``{kind, **options}``, checked against :mod:`options` without importing torch.

    spec = NormSpec("ibnorm", variant="L", lam=4.0)
    check_norm_spec(spec)              # NormOptionError / ValueError naming the option
    options = spec.resolve(512)        # IBNormOptions with every default filled in, checked at width 512
    norm = build_norm(spec.kind, 512, **spec.options())
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any

from .options import NORM_OPTIONS, NormOptions
from .validation import NormOptionError

RECORDED_OPTIONS: dict[str, tuple[str, ...]] = {
    "ibnorm": ("deviation", "lam_role"),
    "normalnorm": ("lmbda_estimate", "second_standardize", "noise_scale", "noise_train"),
}
"""Options every spec of a kind carries explicitly, defaults included, so a saved config or checkpoint
means the same after a default changes. IBNorm's reading of its unpublished compression (deviation
units, the role of lambda) changed its default once, and NormalNorm's default changed from our reading
to the official code's; specs written before then lack the option of ``LEGACY_MARKERS`` and are read
with :data:`LEGACY_OPTIONS` (see :func:`with_legacy_options`)."""
LEGACY_OPTIONS: dict[str, dict[str, object]] = {
    "ibnorm": {"deviation": "raw", "lam_role": "rate"},
    "normalnorm": {"lmbda_estimate": "clamped_finite_difference", "second_standardize": True, "noise_scale": "std",
                   "noise_train": 0.4},
}
"""The reading a saved spec of each kind had when it was written before its ``LEGACY_MARKERS`` option existed."""
LEGACY_MARKERS: dict[str, str] = {"ibnorm": "lam_role", "normalnorm": "lmbda_estimate"}
"""The option whose absence marks a spec of the kind as written before its default changed."""
RENAMED_OPTIONS: dict[str, tuple[str, str]] = {
    "noise_std": ("noise_train", "NormalNorm's noise factor takes the official code's name, noise_train (default 1.0, "
                  "times the mean absolute deviation); noise_scale: std with noise_train: 0.4 is the old noise_std: 0.4"),
}
"""Old option name -> (its new name, why): saved files are renamed on reading, new configs are told."""


def renamed_option_message(name: str) -> str | None:
    """The hint for an option that was renamed, or None."""
    if name not in RENAMED_OPTIONS:
        return None
    new, why = RENAMED_OPTIONS[name]
    return f"option {name!r} is now {new!r}: {why}"


def _unknown_kind_message(kind: Any) -> str:
    hint = difflib.get_close_matches(str(kind), NORM_OPTIONS, n=1)
    did_you_mean = f"did you mean {hint[0]!r}? " if hint else ""
    return f"unknown norm; {did_you_mean}valid: {', '.join(NORM_OPTIONS)}"


def options_class(kind: str) -> type[NormOptions]:
    if kind not in NORM_OPTIONS:
        raise ValueError(f"kind={kind!r}: {_unknown_kind_message(kind)}")
    return NORM_OPTIONS[kind]


def accepted_options(kind: str) -> tuple[str, ...]:
    """The options ``kind`` takes, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(options_class(kind)))


def option_defaults(kind: str) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(options_class(kind))}


def option_types(kind: str) -> dict[str, Any]:
    """``{option: annotation}`` of ``kind``'s options."""
    hints = typing.get_type_hints(options_class(kind))
    return {name: hints[name] for name in accepted_options(kind)}


def option_names() -> tuple[str, ...]:
    """Every option any registered norm takes, in registry order."""
    return tuple(dict.fromkeys(name for kind in NORM_OPTIONS for name in accepted_options(kind)))


def check_option_names(kind: str, options: dict[str, Any]) -> None:
    accepted = accepted_options(kind)
    for name in options:
        if name not in accepted:
            renamed = renamed_option_message(name)
            reason = renamed or f"kind {kind!r} does not take option {name!r} (it takes: {', '.join(accepted)})"
            raise NormOptionError(name, options[name], reason)


def resolve_options(kind: str, options: dict[str, Any], dim: int | None = None) -> NormOptions:
    """``kind``'s options class filled from ``options`` and the defaults, checked (at width ``dim`` if given)."""
    cls = options_class(kind)
    check_option_names(kind, options)
    return cls(**options).checked(dim)


def with_legacy_options(spec: dict[str, Any]) -> dict[str, Any]:
    """A norm spec mapping read from a saved file, with the reading it had when it was written:

    - renamed options (``RENAMED_OPTIONS``) take their new name, for every kind (saved config.yaml
      files list every option of every norm, unset ones as null);
    - a spec of a kind in ``LEGACY_OPTIONS`` without its ``LEGACY_MARKERS`` option was written before
      that kind's default changed and gets the old reading for each option it does not set: IBNorm
      ``deviation: raw``, ``lam_role: rate``; NormalNorm ``lmbda_estimate: clamped_finite_difference``,
      ``second_standardize: true``, ``noise_scale: std``, ``noise_train: 0.4`` (the old ``noise_std``).

    A spec that names its marker, and one with nothing to rename, is returned unchanged (the same object).
    """
    renamed = {old: new for old, (new, _) in RENAMED_OPTIONS.items() if old in spec}
    if renamed:
        spec = {renamed.get(k, k): v for k, v in spec.items() if not (k in renamed and v is None)}
    legacy = LEGACY_OPTIONS.get(spec.get("kind"))
    if legacy is None or spec.get(LEGACY_MARKERS[spec["kind"]]) is not None:
        return spec
    return {**spec, **{k: v for k, v in legacy.items() if spec.get(k) is None}}


def _recorded_defaults(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    names = RECORDED_OPTIONS.get(kind, ())
    if not names or kind not in NORM_OPTIONS:
        return options
    defaults = option_defaults(kind)
    return {**options, **{name: defaults[name] for name in names if name not in options}}


def check_norm_spec(spec: NormSpec) -> None:
    """Check ``spec``: a known kind (ValueError), options it takes and values they accept
    (NormOptionError naming the option). Whether ``num_groups`` divides the real width is checked
    when the width is known (:meth:`NormSpec.resolve`, building the model)."""
    spec.resolve()


class NormSpec:
    """One norm as data: a registry name plus the options set for it, ``{kind, **options}``.

    Options left unset (or ``None``) take the norm's own default; the options of ``RECORDED_OPTIONS``
    (IBNorm's and NormalNorm's reading) are written out with that default, so they are always explicit. Immutable and hashable, so
    equal specs share one resolved norm. An option is readable as an attribute
    (``spec.lam``: ``None`` when unset) when some registered norm takes it.
    """

    __slots__ = ("kind", "_options")
    kind: str

    def __init__(self, kind: str = "rmsnorm", **options: Any) -> None:
        object.__setattr__(self, "kind", kind)
        options = _recorded_defaults(kind, {k: v for k, v in options.items() if v is not None})
        object.__setattr__(self, "_options", tuple(options.items()))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NormSpec:
        return cls(**data)

    def options(self) -> dict[str, Any]:
        """The options that were set, as keyword arguments for ``build_norm``."""
        return dict(self._options)

    def resolve(self, dim: int | None = None) -> NormOptions:
        """Every option of the norm (defaults filled in), checked; at width ``dim`` when given."""
        return resolve_options(self.kind, self.options(), dim)

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": ..., **options}``: the YAML form."""
        return {"kind": self.kind, **self.options()}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in option_names():
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}; norm options: {', '.join(option_names())}")
        return self.options().get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; build a new one")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NormSpec):
            return NotImplemented
        return (self.kind, dict(self._options)) == (other.kind, dict(other._options))

    def __hash__(self) -> int:
        return hash((self.kind, frozenset(self._options)))

    def __reduce__(self):
        return (type(self).from_dict, (self.to_dict(),))

    def __repr__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self._options)
        return f"{type(self).__name__}({self.kind!r}{options})"

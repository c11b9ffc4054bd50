"""Normalization layers behind one registry.

``NORMS`` maps a config name to a class; every class takes ``(dim, *, **options)`` with
keyword-only, annotated options, computes statistics in fp32 and returns the input's dtype.
The constructor's signature is the one description of a norm's options: a config's
``model.norm`` is a :class:`NormSpec` (``{kind, **options}``) checked against it when the config
loads, so adding a norm means adding its module and its line in ``NORMS``, nothing else.

    norm = build_norm("ibnorm", 512, variant="L", lam=4.0)
    spec = NormSpec("ibnorm", variant="L", lam=4.0)
    check_norm_spec(spec)                  # NormOptionError / ValueError naming the option
    norm = build_norm(spec.kind, 512, **spec.options())
"""

from __future__ import annotations

import difflib
import inspect
import typing
from typing import Any

from torch import nn

from .derf import Derf
from .dyt import DyT
from .ibnorm import IBNorm, compress, compression_slope, ibnorm_reference
from .layernorm import LayerNorm
from .normalnorm import NormalNorm
from .rmsnorm import RMSNorm
from .seednorm import SeeDNorm
from .validation import NormOptionError

NORMS: dict[str, type[nn.Module]] = {
    "layernorm": LayerNorm,
    "rmsnorm": RMSNorm,
    "ibnorm": IBNorm,
    "dyt": DyT,
    "normalnorm": NormalNorm,
    "derf": Derf,
    "seednorm": SeeDNorm,
}

RECORDED_OPTIONS: dict[str, tuple[str, ...]] = {"ibnorm": ("deviation", "lam_role")}
"""Options every spec of a kind carries explicitly, defaults included, so a saved config or checkpoint
means the same after a default changes. IBNorm's reading of its unpublished compression (deviation
units, the role of lambda) changed its default once; specs written before then lack ``lam_role`` and
are read with :data:`LEGACY_OPTIONS` (see :func:`with_legacy_options`)."""
LEGACY_OPTIONS: dict[str, dict[str, object]] = {"ibnorm": {"deviation": "raw", "lam_role": "rate"}}
"""The reading a saved IBNorm spec had when it was written before ``lam_role`` existed."""

__all__ = [
    "LEGACY_OPTIONS", "NORMS", "RECORDED_OPTIONS", "DyT", "IBNorm", "LayerNorm", "NormOptionError", "NormSpec",
    "NormalNorm", "RMSNorm", "accepted_options", "build_norm", "check_norm_spec", "compress", "compression_slope",
    "ibnorm_reference", "option_names", "option_types", "with_legacy_options",
]


def _unknown_kind_message(kind: Any) -> str:
    hint = difflib.get_close_matches(str(kind), NORMS, n=1)
    did_you_mean = f"did you mean {hint[0]!r}? " if hint else ""
    return f"unknown norm; {did_you_mean}valid: {', '.join(NORMS)}"


def accepted_options(kind: str) -> tuple[str, ...]:
    """The keyword options ``kind``'s constructor takes (its signature is the one source of truth)."""
    if kind not in NORMS:
        raise ValueError(f"kind={kind!r}: {_unknown_kind_message(kind)}")
    params = inspect.signature(NORMS[kind].__init__).parameters.values()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _check_option_names(kind: str, options: dict[str, Any]) -> None:
    accepted = accepted_options(kind)
    for name in options:
        if name not in accepted:
            raise NormOptionError(name, options[name], f"kind {kind!r} does not take option {name!r} (it takes: {', '.join(accepted)})")


def build_norm(kind: str, dim: int, **options: Any) -> nn.Module:
    """Construct the registered norm ``kind`` over a last dimension of width ``dim``.

    Raises ValueError for an unknown kind (listing the valid ones), an option the kind
    does not take (listing those it takes) or an invalid option value.
    """
    accepted_options(kind)
    _check_option_names(kind, options)
    return NORMS[kind](dim, **options)


def option_types(kind: str) -> dict[str, Any]:
    """``{option: annotation}`` of ``kind``'s keyword-only constructor options (``Any`` where unannotated)."""
    hints = typing.get_type_hints(NORMS[kind].__init__) if kind in NORMS else {}
    return {name: hints.get(name, Any) for name in accepted_options(kind)}


def option_names() -> tuple[str, ...]:
    """Every option any registered norm takes, in registry order."""
    return tuple(dict.fromkeys(name for kind in NORMS for name in accepted_options(kind)))


def with_legacy_options(spec: dict[str, Any]) -> dict[str, Any]:
    """A norm spec mapping read from a file saved before ``lam_role`` existed, with the reading it
    had then written out: an IBNorm spec without ``lam_role`` gets ``deviation: raw`` (unless set)
    and ``lam_role: rate``. Specs of other kinds, and IBNorm specs that name a ``lam_role``, are
    returned unchanged."""
    legacy = LEGACY_OPTIONS.get(spec.get("kind"))
    if legacy is None or spec.get("lam_role") is not None:
        return spec
    return {**spec, **{k: v for k, v in legacy.items() if spec.get(k) is None}}


def _recorded_defaults(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    names = RECORDED_OPTIONS.get(kind, ())
    if not names or kind not in NORMS:
        return options
    params = inspect.signature(NORMS[kind].__init__).parameters
    return {**options, **{name: params[name].default for name in names if name not in options}}


def check_norm_spec(spec: NormSpec) -> None:
    """Check ``spec`` against the registry: a known kind (ValueError), options its constructor
    takes and values it accepts (NormOptionError naming the option). Builds one norm of a small
    probe width; divisibility of ``num_groups`` by the real width is checked when the model is built."""
    options = spec.options()
    accepted_options(spec.kind)
    _check_option_names(spec.kind, options)
    groups = options.get("num_groups", 1)
    probe_dim = 2 * groups if isinstance(groups, int) and not isinstance(groups, bool) and groups > 0 else 8
    NORMS[spec.kind](probe_dim, **options)


class NormSpec:
    """One norm as data: a registry name plus the options set for it, ``{kind, **options}``.

    Options left unset (or ``None``) take the norm's own default; the options of ``RECORDED_OPTIONS``
    (IBNorm's reading) are written out with that default, so they are always explicit. Immutable and hashable, so
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

"""Normalization layers behind one registry.

``NORMS`` maps a config name to a class; every class takes ``(dim, **options)``, computes statistics
in fp32 and returns the input's dtype. A norm's options are data (:mod:`.options`, one frozen
dataclass per norm, without torch): the class builds itself from them, and a config's ``model.norm``
is a :class:`NormSpec` (``{kind, **options}``) checked against them when the config loads. Adding a
norm means adding its module, its options class (``NORM_OPTIONS``) and its import in ``_load_norms``.

    norm = build_norm("ibnorm", 512, variant="L", lam=4.0)
    spec = NormSpec("ibnorm", variant="L", lam=4.0)
    check_norm_spec(spec)                  # NormOptionError / ValueError naming the option
    norm = build_norm(spec.kind, 512, **spec.options())

The norm classes (and torch) load on first use: the config package reads specs and options from
here without importing torch, so a bad config is reported at once.
"""

from __future__ import annotations

from typing import Any

from .options import NORM_OPTIONS, NormOptions
from .spec import (
    LEGACY_MARKERS,
    LEGACY_OPTIONS,
    RECORDED_OPTIONS,
    RENAMED_OPTIONS,
    NormSpec,
    accepted_options,
    check_norm_spec,
    check_option_names,
    option_defaults,
    option_names,
    option_types,
    options_class,
    renamed_option_message,
    resolve_options,
    with_legacy_options,
)
from .validation import NormOptionError

__all__ = [
    "LEGACY_MARKERS", "LEGACY_OPTIONS", "NORMS", "NORM_OPTIONS", "RECORDED_OPTIONS", "RENAMED_OPTIONS", "DyT",
    "IBNorm", "LayerNorm", "NormOptionError", "NormOptions", "NormSpec", "NormalNorm", "RMSNorm", "accepted_options",
    "build_norm", "check_norm_spec", "check_option_names", "compress", "compression_slope", "ibnorm_reference",
    "option_defaults", "option_names", "option_types", "options_class", "renamed_option_message", "resolve_options",
    "with_legacy_options",
]


_CLASS_NAMES = ("LayerNorm", "RMSNorm", "IBNorm", "DyT", "NormalNorm", "Derf", "SeeDNorm")


def _load_norms() -> dict[str, type]:
    """Every norm kind's class, in registry order (this imports torch). The imports are statements,
    not names in a table: the checkpoint's copy of this file (``models/modeling_norm_lm.py``) and
    transformers' remote-code loader find the modules to copy by reading them."""
    from .derf import Derf
    from .dyt import DyT
    from .ibnorm import IBNorm
    from .layernorm import LayerNorm
    from .normalnorm import NormalNorm
    from .rmsnorm import RMSNorm
    from .seednorm import SeeDNorm

    classes = {cls.Options.kind: cls for cls in (LayerNorm, RMSNorm, IBNorm, DyT, NormalNorm, Derf, SeeDNorm)}
    if list(classes) != list(NORM_OPTIONS):
        raise RuntimeError(f"norm classes {list(classes)} and NORM_OPTIONS {list(NORM_OPTIONS)} differ: register both")
    return classes


def _norms() -> dict[str, type]:
    norms = globals().get("NORMS")
    if norms is None:
        norms = globals()["NORMS"] = _load_norms()
        globals().update({cls.__name__: cls for cls in norms.values()})
    return norms


def __getattr__(name: str) -> Any:
    """``NORMS`` and the norm classes, loaded (with torch) on first use; IBNorm's formula functions."""
    if name == "NORMS":
        return _norms()
    if name in _CLASS_NAMES:
        _norms()  # puts every class into this module's namespace
        return globals()[name]
    if name in ("compress", "compression_slope", "ibnorm_reference"):
        from .ibnorm import compress, compression_slope, ibnorm_reference

        globals().update(compress=compress, compression_slope=compression_slope, ibnorm_reference=ibnorm_reference)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_norm(kind: str, dim: int, **options: Any):
    """Construct the registered norm ``kind`` over a last dimension of width ``dim``.

    Raises ValueError for an unknown kind (listing the valid ones), an option the kind
    does not take (listing those it takes) or an invalid option value (NormOptionError).
    """
    options_class(kind)
    return _norms()[kind](dim, **options)

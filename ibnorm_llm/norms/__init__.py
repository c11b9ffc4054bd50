"""Normalization layers behind one registry.

``NORMS`` maps a config name to a class; every class takes ``(dim, *, **options)`` with
keyword-only options named exactly like the fields of ``ibnorm_llm.config.NormConfig``,
computes statistics in fp32 and returns the input's dtype.

    norm = build_norm("ibnorm", 512, variant="L", lam=4.0)
"""

from __future__ import annotations

import difflib
import inspect
from typing import TYPE_CHECKING, Any

from torch import nn

from .derf import Derf
from .dyt import DyT
from .ibnorm import IBNorm, compress, ibnorm_reference
from .layernorm import LayerNorm
from .normalnorm import NormalNorm
from .rmsnorm import RMSNorm
from .seednorm import SeeDNorm
from .validation import NormOptionError

if TYPE_CHECKING:
    from ibnorm_llm.config import NormConfig

NORMS: dict[str, type[nn.Module]] = {
    "layernorm": LayerNorm,
    "rmsnorm": RMSNorm,
    "ibnorm": IBNorm,
    "dyt": DyT,
    "normalnorm": NormalNorm,
    "derf": Derf,
    "seednorm": SeeDNorm,
}

__all__ = [
    "NORMS", "DyT", "IBNorm", "LayerNorm", "NormOptionError", "NormalNorm", "RMSNorm",
    "accepted_options", "build_norm", "compress", "ibnorm_reference", "validate_norm_config",
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


def validate_norm_config(norm_cfg: NormConfig, key: str) -> None:
    """Check a NormConfig at config time; errors are ConfigErrors naming ``key`` (e.g. ``model.norm``)."""
    from ibnorm_llm.config import ConfigError  # lazy: config.py imports this module lazily too

    kind = norm_cfg.kind
    if kind not in NORMS:
        raise ConfigError(f"{key}.kind={kind!r}: {_unknown_kind_message(kind)}")
    options = norm_cfg.options()
    accepted = accepted_options(kind)
    for name in options:
        if name not in accepted:
            raise ConfigError(
                f"{key}.{name}: kind {kind!r} does not take option {name!r} (it takes: {', '.join(accepted)})"
            )
    # The real width is only known from the model preset; a small multiple of the group
    # count checks every value except divisibility, which build_norm checks with the real width.
    groups = options.get("num_groups", 1)
    probe_dim = 2 * groups if isinstance(groups, int) and not isinstance(groups, bool) and groups > 0 else 8
    try:
        NORMS[kind](probe_dim, **options)
    except NormOptionError as err:
        raise ConfigError(f"{key}.{err}") from None

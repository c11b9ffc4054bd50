"""Option checks shared by the norm classes.

Every check raises :class:`NormOptionError`, which knows the option's name, so that
the config loader (``ibnorm_llm.config``) can prefix the dotted key (``model.norm.lam=-1: ...``)
without parsing message text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


class NormOptionError(ValueError):
    """An invalid value for one norm option; ``str()`` reads ``option=value: reason``."""

    def __init__(self, option: str, value: Any, reason: str) -> None:
        self.option = option
        self.value = value
        self.reason = reason
        super().__init__(f"{option}={value!r}: {reason}")


def check_choice(option: str, value: Any, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise NormOptionError(option, value, f"must be one of {', '.join(allowed)}")
    return value


def check_positive(option: str, value: Any, *, minimum: float = 0.0, inclusive: bool = False) -> float:
    """A finite float above ``minimum`` (or at it when ``inclusive``); NaN and inf are rejected."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NormOptionError(option, value, "must be a number")
    value = float(value)
    ok = value >= minimum if inclusive else value > minimum
    if not (math.isfinite(value) and ok):
        bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
        raise NormOptionError(option, value, f"must be a finite number {bound}")
    return value


def check_non_negative(option: str, value: Any) -> float:
    return check_positive(option, value, minimum=0.0, inclusive=True)


def check_bool(option: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise NormOptionError(option, value, "must be true or false")
    return value


def check_group_count(num_groups: Any) -> int:
    """``num_groups`` must be a positive int (whether it divides the width is :func:`check_groups`)."""
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups < 1:
        raise NormOptionError("num_groups", num_groups, "must be a positive integer")
    return num_groups


def check_groups(dim: int, num_groups: Any) -> int:
    """``num_groups`` must be a positive int that divides the feature width ``dim``."""
    check_group_count(num_groups)
    if dim % num_groups != 0:
        raise NormOptionError(
            "num_groups", num_groups, f"must divide the feature width {dim} (e.g. 1 or a divisor of {dim})"
        )
    return num_groups


def check_dim(dim: Any) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim={dim!r}: the feature width must be a positive integer")
    return dim

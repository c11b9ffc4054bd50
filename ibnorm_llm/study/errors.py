"""The study file's error type and the checks every part of a study file shares."""

from __future__ import annotations

import re
from typing import Any


class StudyError(ValueError):
    """A bad study file or a study that cannot go on; the message names the problem and the fix."""


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def mapping(value: Any, key: str, source: str) -> dict[str, Any]:
    """``value`` as a dict with string keys (None: empty)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise StudyError(f"{source}: '{key}' must be a mapping of dotted config keys to values, got {value!r}")
    return dict(value)


def check_name(value: Any, key: str, source: str) -> str:
    """A name that can go into run and folder names."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise StudyError(f"{source}: {key}={value!r} must be a name of letters, digits, '_', '-' or '.' (used in run names)")
    return value


def check_tune(value: Any, key: str, source: str) -> dict[str, list[Any]]:
    """A grid: dotted key -> non-empty list of distinct values."""
    grid = mapping(value, key, source)
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise StudyError(f"{source}: {key}.{name}={values!r} must be a non-empty list of values")
        if len(set(map(repr, values))) != len(values):
            raise StudyError(f"{source}: {key}.{name} lists a value twice: {values!r}")
    return grid

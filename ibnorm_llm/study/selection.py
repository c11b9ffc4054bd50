"""Choosing each arm's grid point: the lowest final VALIDATION loss at the tuning seed.

The test split is never an input here: :func:`choose` refuses any measurement not tagged
``validation``, so a caller cannot select on test numbers by mistake.
"""

from __future__ import annotations

from dataclasses import dataclass

from ibnorm_llm.study.plan import Point
from ibnorm_llm.study.results import Measurement
from ibnorm_llm.study.spec import StudyError


@dataclass(frozen=True)
class Choice:
    point: Point
    validation_loss: float
    failed: tuple[Point, ...]
    """Grid points whose run diverged or has no validation loss (never chosen)."""
    at_edge: tuple[str, ...]
    """Tuned numeric keys whose chosen value is the smallest or largest of the grid."""


def choose(arm: str, candidates: dict[Point, Measurement | None]) -> Choice:
    """The point with the lowest validation loss; diverged points (None) are never chosen."""
    for point, measured in candidates.items():
        if measured is not None and measured.split != "validation":
            raise ValueError(f"{arm} at {point.describe()}: selection was given a {measured.split} number")
    usable = {p: m.value for p, m in candidates.items() if m is not None}
    if not usable:
        raise StudyError(
            f"arm {arm}: every grid point diverged or has no validation loss "
            f"({', '.join(p.describe() for p in candidates)}); lower the tuned values (e.g. optim.lr) and rerun"
        )
    best = min(usable, key=lambda p: (usable[p], list(candidates).index(p)))
    return Choice(best, usable[best], tuple(p for p in candidates if p not in usable), _at_edge(best, candidates))


def _at_edge(best: Point, candidates: dict[Point, Measurement | None]) -> tuple[str, ...]:
    edges = []
    for key, value in best.values:
        values = {dict(p.values)[key] for p in candidates}
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric and len(values) >= 2 and value in (min(values), max(values)):
            edges.append(key)
    return tuple(edges)

"""Factorial study designs: ``factors:`` instead of ``arms:``, every combination of levels one arm.

    factors:
      norm:                                   # the first factor: the things ranked (rows)
        rmsnorm: {model.norm.kind: rmsnorm}
        ibnorm_l: {model.norm.kind: ibnorm, model.norm.variant: L}
      optimizer:                              # the second: the conditions (columns)
        adamw: {optim.name: adamw, tune: {optim.lr: [1.0e-3, 3.0e-3]}}
        muon: {optim.name: muon, tune: {optim.muon.lr: [0.01, 0.02]}}
    baseline: rmsnorm                         # a level of the first factor

The arms are the product, named ``level_level`` (``ibnorm_l_muon``). A level's ``tune`` is a grid of
its own (Muon and AdamW need different learning-rate grids); an arm tunes the study's ``tune`` plus
its levels' grids, each arm separately. Each dotted key belongs to one factor: two factors setting or
tuning the same key would make an arm's value depend on the order of the factors. Each arm is
compared with the baseline level at the same levels of the other factors (``ibnorm_l_muon`` with
``rmsnorm_muon``), so a difference never mixes in another factor's effect.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from ibnorm_llm.study.errors import StudyError, check_name, check_tune, mapping

LEVEL_TUNE = "tune"
"""The key inside a level holding that level's grid; every other key is a dotted config key."""


@dataclass(frozen=True)
class Factorial:
    factors: dict[str, tuple[str, ...]]
    """Factor -> its levels, in file order (the first factor's levels are ranked)."""
    levels: dict[str, tuple[str, ...]]
    """Arm -> its level of every factor, in factor order."""
    settings: dict[str, dict[str, Any]]
    """Arm -> the dotted keys its levels fix."""
    grids: dict[str, dict[str, list[Any]]]
    """Arm -> the grid it tunes: the study's ``tune`` and its levels' ``tune``."""

    @property
    def first(self) -> str:
        return next(iter(self.factors))

    def arm(self, levels: tuple[str, ...]) -> str:
        return "_".join(levels)

    def describe(self, arm: str) -> str:
        """Where ``arm``'s settings come from: ``factors.norm.rmsnorm + factors.optimizer.adamw``."""
        return " + ".join(f"factors.{f}.{level}" for f, level in zip(self.factors, self.levels[arm], strict=True))

    def with_level(self, arm: str, factor: str, level: str) -> str:
        """``arm`` with its level of ``factor`` replaced by ``level``."""
        index = list(self.factors).index(factor)
        levels = list(self.levels[arm])
        levels[index] = level
        return self.arm(tuple(levels))


def _level(raw: Any, where: str, tune: dict[str, list[Any]], source: str) -> tuple[dict[str, Any], dict[str, list]]:
    """One level: (the dotted keys it fixes, the grid it tunes)."""
    settings = mapping(raw, where, source)
    grid = check_tune(settings.pop(LEVEL_TUNE, None), f"{where}.{LEVEL_TUNE}", source)
    for key in grid:
        if key in settings:
            raise StudyError(f"{source}: {where} both fixes and tunes {key}; tune it or fix it, not both")
        if key in tune:
            raise StudyError(f"{source}: {key} is tuned by the study's tune and by {where}.{LEVEL_TUNE}; "
                             "give it in one place")
    return settings, grid


def parse_factors(raw: Any, tune: dict[str, list[Any]], source: str) -> Factorial:
    """Check ``factors`` and expand it to arms (see the module docstring)."""
    factors_raw = mapping(raw, "factors", source)
    if not factors_raw:
        raise StudyError(f"{source}: 'factors' is empty; give factor: {{level: {{dotted.key: value}}}} pairs")
    factors: dict[str, dict[str, tuple[dict[str, Any], dict[str, list[Any]]]]] = {}
    owner: dict[str, str] = {}
    for factor, levels_raw in factors_raw.items():
        check_name(factor, f"factors.{factor}", source)
        levels = mapping(levels_raw, f"factors.{factor}", source)
        if len(levels) < 2:
            raise StudyError(f"{source}: factors.{factor} has {len(levels)} level(s); a factor needs at least two "
                             "(a setting every arm shares belongs under overrides)")
        factors[factor] = {}
        for level, settings_raw in levels.items():
            where = f"factors.{factor}.{level}"
            check_name(level, where, source)
            settings, grid = _level(settings_raw, where, tune, source)
            for key in (*settings, *grid):
                if owner.setdefault(key, factor) != factor:
                    raise StudyError(f"{source}: {where} sets {key}, which factor {owner[key]} also sets; each "
                                     "key belongs to one factor (move it into one factor, or into overrides)")
            factors[factor][level] = (settings, grid)
    names: dict[str, tuple[str, ...]] = {}
    settings_of: dict[str, dict[str, Any]] = {}
    grids: dict[str, dict[str, list[Any]]] = {}
    for combination in itertools.product(*(levels.items() for levels in factors.values())):
        levels = tuple(level for level, _ in combination)
        arm = "_".join(levels)
        if arm in names:
            raise StudyError(f"{source}: two level combinations are both named {arm!r}; rename a level")
        names[arm] = levels
        settings_of[arm] = {k: v for _, (settings, _) in combination for k, v in settings.items()}
        grids[arm] = {**tune, **{k: v for _, (_, grid) in combination for k, v in grid.items()}}
    return Factorial({f: tuple(levels) for f, levels in factors.items()}, names, settings_of, grids)

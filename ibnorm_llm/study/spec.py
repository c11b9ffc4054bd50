"""A study file: what is compared (arms), against what (baseline), tuned over what grid, with which seeds.

    name: tiny_norms
    base: llama_tiny_rmsnorm.yaml          # a config name or path
    overrides: {train.max_steps: 400}      # dotted keys, applied to every run
    arms:                                  # the things compared; dotted keys per arm
      rmsnorm: {model.norm.kind: rmsnorm}
      ibnorm_l: {model.norm.kind: ibnorm, model.norm.variant: L}
    baseline: rmsnorm
    tune: {optim.lr: [1.0e-3, 3.0e-3, 1.0e-2]}   # grid tuned separately for every arm
    seeds: [0, 1, 2]
    eval: {suite: none}                    # or small / v1 / v2 / all, on every final run; or a list of such

Large designs (studies/ibnorm_readings.yaml) add, all optional:

    arm_grid:                              # more arms: the product of the levels, named level_level_...
      reading: {std_rate: {model.norm.deviation: std}, ...}
      variant: {S: {model.norm.variant: S}, ...}
    exclude: [raw_rate_S_lam0.5]           # generated arms that cannot run (named, so nothing vanishes silently)
    tune_from: {"raw_rate_*": raw_rate_L_lam4}   # arms matching a pattern reuse that arm's tuned point
    final_seeds: best_per_anchor           # or all (default): which arms run the seeds after the first
    analyze: {n_tokens: 512}               # IB analysis + norm statistics of every final checkpoint
    claims: ibnorm_paper                   # the report's table of the IBNorm paper's claims

Factorial designs give ``factors:`` instead of ``arms:`` (study/factorial.py): the arms are every
combination of the factors' levels, a level may carry its own ``tune`` grid, and the report adds the
two-way table and the interaction (study/interaction.py).

Every problem raises :class:`StudyError` naming the key and the fix.
"""

from __future__ import annotations

import difflib
import fnmatch
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ibnorm_llm.config import ConfigError, EvalConfig, check_eval, from_dict, resolve_config_path, yaml_load
from ibnorm_llm.shipped import find_named
from ibnorm_llm.study.errors import StudyError, check_name, check_tune, mapping
from ibnorm_llm.study.factorial import Factorial, parse_factors

_TOP_KEYS = ("name", "base", "overrides", "arms", "baseline", "tune", "seeds", "eval", "arm_grid", "exclude",
             "tune_from", "final_seeds", "analyze", "claims", "factors")
FINAL_SEEDS = ("all", "best_per_anchor")
CLAIMS = ("none", "ibnorm_paper")


@dataclass(frozen=True)
class StudySpec:
    name: str
    base: str
    overrides: dict[str, Any]
    arms: dict[str, dict[str, Any]]
    baseline: str
    tune: dict[str, list[Any]]
    seeds: tuple[int, ...]
    evals: tuple[EvalConfig, ...] = ()
    """The evaluations of every final run's checkpoint, one per suite (the fields of a run config's ``eval``,
    less ``test``); ``eval`` in the file is one mapping or a list of them."""
    source: str = "<study>"
    """The file it was read from (for messages)."""
    tune_from: dict[str, str] = field(default_factory=dict)
    """arm -> the arm whose tuned point it reuses (it runs no grid of its own)."""
    final_seeds: str = "all"
    """``all``: every arm runs every seed; ``best_per_anchor``: of an anchor and the arms tuned from it, only
    the one with the lowest validation loss at the first seed runs the later seeds (other arms: all)."""
    analyze: dict[str, Any] | None = None
    """``analysis.*`` settings for the IB analysis of every final checkpoint, or None (no analysis)."""
    claims: str = "none"
    factorial: Factorial | None = None
    """The factors when the arms are their product (``factors:``); ``baseline`` is then a level of the first."""

    def anchor(self, arm: str) -> str:
        """The arm whose tuning ``arm`` uses (itself when it tunes its own grid)."""
        return self.tune_from.get(arm, arm)

    def grid(self, arm: str) -> dict[str, list[Any]]:
        """The grid ``arm`` tunes: ``tune``, plus its factor levels' grids in a factorial study."""
        return self.factorial.grids[arm] if self.factorial else self.tune

    def baseline_of(self, arm: str) -> str:
        """The arm ``arm`` is compared with: the baseline, at ``arm``'s levels of the other factors."""
        if self.factorial is None:
            return self.baseline
        return self.factorial.with_level(arm, self.factorial.first, self.baseline)


def _parse_evals(raw: Any, source: str) -> tuple[EvalConfig, ...]:
    """``eval``: one mapping of EvalConfig fields or a list of them; suite none entries evaluate nothing."""
    entries = raw if isinstance(raw, list) else [raw]
    evals = []
    for index, entry in enumerate(entries):
        where = f"eval[{index}]" if isinstance(raw, list) else "eval"
        data = mapping(entry, where, source)
        if "test" in data:
            raise StudyError(f"{source}: {where}.test is set by the study itself (every final run is tested); remove it")
        try:
            settings = from_dict(EvalConfig, data, prefix=f"{where}.")
            check_eval(settings, key_of=f"{where}.{{}}".format)
        except ConfigError as err:
            raise StudyError(f"{source}: {err}") from None
        if settings.suite != "none":
            evals.append(settings)
    suites = [e.suite for e in evals]
    if len(set(suites)) != len(suites):
        raise StudyError(f"{source}: eval lists suite {next(s for s in suites if suites.count(s) > 1)} twice; "
                         "each suite is evaluated once per final run")
    return tuple(evals)


def parse_study(data: Any, source: str = "<study>") -> StudySpec:
    """Check a decoded study file (see the module docstring for the schema)."""
    if not isinstance(data, dict):
        raise StudyError(f"{source}: the top level must be a mapping with keys {', '.join(_TOP_KEYS)}")
    for key in data:
        if key not in _TOP_KEYS:
            close = difflib.get_close_matches(str(key), _TOP_KEYS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(_TOP_KEYS)}"
            raise StudyError(f"{source}: unknown key '{key}'{hint}")
    for key in ("name", "base", "baseline", "seeds"):
        if key not in data:
            raise StudyError(f"{source}: missing key '{key}' (a study needs {', '.join(('name', 'base', 'arms', 'baseline', 'seeds'))})")
    name = check_name(data["name"], "name", source)
    base = data["base"]
    if not isinstance(base, str):
        raise StudyError(f"{source}: base={base!r} must be a config name (configs/) or a path")
    try:
        resolve_config_path(base)
    except ConfigError as err:
        raise StudyError(f"{source}: base: {err}") from None
    tune = check_tune(data.get("tune"), "tune", source)
    factorial = None
    if "factors" in data:
        for key in ("arms", "arm_grid", "exclude", "tune_from"):
            if key in data:
                raise StudyError(f"{source}: '{key}' and 'factors' are both given; a factorial study's arms are every "
                                 f"combination of its factors' levels, each tuning its own grid: drop '{key}'")
        factorial = parse_factors(data["factors"], tune, source)
        arms = factorial.settings
        baseline = data["baseline"]
        first, levels = factorial.first, factorial.factors[factorial.first]
        if baseline not in levels:
            raise StudyError(f"{source}: baseline={baseline!r} must be a level of the first factor, {first} "
                             f"({', '.join(levels)}); each arm is compared with it at the same other levels")
    else:
        arms = _listed_arms(data, source)
        baseline = data["baseline"]
        if baseline not in arms:
            raise StudyError(f"{source}: baseline={baseline!r} is not one of the arms ({', '.join(arms)})")
    for key in tune:
        for arm, settings in arms.items():
            if key in settings:
                raise StudyError(f"{source}: {key} is both tuned and fixed by arms.{arm}; tune it or fix it, not both")
    seeds = data["seeds"]
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise StudyError(f"{source}: seeds={seeds!r} must be a non-empty list of non-negative integers, e.g. [0, 1, 2]")
    if len(set(seeds)) != len(seeds):
        raise StudyError(f"{source}: seeds={seeds!r} lists a seed twice")
    final_seeds = data.get("final_seeds", "all")
    if final_seeds not in FINAL_SEEDS:
        raise StudyError(f"{source}: final_seeds={final_seeds!r} must be one of {', '.join(FINAL_SEEDS)}")
    claims = data.get("claims", "none")
    if claims not in CLAIMS:
        raise StudyError(f"{source}: claims={claims!r} must be one of {', '.join(CLAIMS)}")
    analyze = data.get("analyze")
    if analyze is not None:
        analyze = mapping(analyze, "analyze", source)
    return StudySpec(
        name=name, base=base, overrides=mapping(data.get("overrides"), "overrides", source), arms=arms,
        baseline=baseline, tune=tune, seeds=tuple(seeds), evals=_parse_evals(data.get("eval"), source), source=source,
        tune_from=_tune_from(data.get("tune_from"), arms, source), final_seeds=final_seeds, analyze=analyze,
        claims=claims, factorial=factorial,
    )


def _listed_arms(data: dict[str, Any], source: str) -> dict[str, dict[str, Any]]:
    """``arms`` plus the arms ``arm_grid`` generates."""
    if "arms" not in data and "arm_grid" not in data:
        raise StudyError(f"{source}: missing key 'arms' (a study needs arms, an arm_grid or factors)")
    arms_raw = mapping(data.get("arms"), "arms", source)
    if not arms_raw and "arm_grid" not in data:
        raise StudyError(f"{source}: 'arms' is empty; list the things compared, e.g. rmsnorm: {{model.norm.kind: rmsnorm}}")
    arms = {}
    for arm, settings in arms_raw.items():
        check_name(arm, f"arms.{arm}", source)
        arms[arm] = mapping(settings, f"arms.{arm}", source)
    arms.update(_grid_arms(data.get("arm_grid"), data.get("exclude"), arms, source))
    return arms


def _grid_arms(raw: Any, exclude: Any, explicit: dict[str, dict[str, Any]], source: str) -> dict[str, dict[str, Any]]:
    """The product of ``arm_grid``'s factor levels as arms named ``level_level_...``, minus ``exclude``."""
    factors = mapping(raw, "arm_grid", source)
    if exclude is not None and not (isinstance(exclude, list) and all(isinstance(e, str) for e in exclude)):
        raise StudyError(f"{source}: exclude={exclude!r} must be a list of generated arm names")
    if not factors:
        if exclude:
            raise StudyError(f"{source}: exclude is given without an arm_grid to exclude from")
        return {}
    level_sets = []
    for factor, levels in factors.items():
        levels = mapping(levels, f"arm_grid.{factor}", source)
        if not levels:
            raise StudyError(f"{source}: arm_grid.{factor} has no levels; give level: {{dotted.key: value}} pairs")
        for level, settings in levels.items():
            check_name(level, f"arm_grid.{factor}.{level}", source)
            mapping(settings, f"arm_grid.{factor}.{level}", source)
        level_sets.append(list(levels.items()))
    arms: dict[str, dict[str, Any]] = {}
    for combination in itertools.product(*level_sets):
        name = "_".join(level for level, _ in combination)
        settings: dict[str, Any] = {}
        for _level, level_settings in combination:
            for key, value in level_settings.items():
                if key in settings and settings[key] != value:
                    raise StudyError(f"{source}: arm_grid levels of {name} set {key} twice ({settings[key]!r}, "
                                     f"{value!r}); each key belongs to one factor")
                settings[key] = value
        arms[name] = settings
    for name in exclude or []:
        if name not in arms:
            close = difflib.get_close_matches(name, arms, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise StudyError(f"{source}: exclude names {name!r}, which the arm_grid does not generate{hint}")
        del arms[name]
    for name in arms:
        if name in explicit:
            raise StudyError(f"{source}: arm {name!r} is both listed under arms and generated by arm_grid")
    return arms


def _tune_from(raw: Any, arms: dict[str, dict[str, Any]], source: str) -> dict[str, str]:
    """``{pattern: anchor}`` expanded to ``{arm: anchor}``; anchors tune their own grid, and an arm matches one pattern."""
    patterns = mapping(raw, "tune_from", source)
    result: dict[str, str] = {}
    for pattern, anchor in patterns.items():
        if anchor not in arms:
            raise StudyError(f"{source}: tune_from.{pattern}: {anchor!r} is not an arm")
        matched = [arm for arm in arms if fnmatch.fnmatchcase(arm, pattern) and arm != anchor]
        if not matched:
            raise StudyError(f"{source}: tune_from pattern {pattern!r} matches no arm besides its anchor")
        for arm in matched:
            if arm in result:
                raise StudyError(f"{source}: arm {arm} matches two tune_from patterns ({result[arm]!r} and {anchor!r})")
            result[arm] = anchor
    for arm, anchor in result.items():
        if anchor in result:
            raise StudyError(f"{source}: tune_from: {arm} would reuse {anchor}, which itself reuses {result[anchor]}; "
                             "an anchor must tune its own grid")
    return result


def read_named_file(name_or_path: str | Path, kind: str, flag: str, error: type[Exception]) -> tuple[Any, str]:
    """A study or ladder file's decoded YAML and its path: a path, or the name of a file of ``kind`` in
    ./<kind> or shipped with the package; a missing file or bad YAML raises ``error`` naming it."""
    path, problem = find_named(name_or_path, kind)
    if path is None:
        raise error(f"{flag} {problem}")
    try:
        return yaml_load(path.read_text()), str(path)
    except Exception as err:  # yaml.YAMLError and decoding errors alike: name the file
        raise error(f"{path}: not valid YAML ({err})") from None


def load_study(name_or_path: str | Path) -> StudySpec:
    """Read and check a study file: a path, or the name of one in ./studies or shipped with the package."""
    return parse_study(*read_named_file(name_or_path, "studies", "--study", StudyError))

"""The runs of a study: every arm's grid at the first seed (tuning), then its chosen point at the
other seeds (final runs), each an ordinary training run with its own folder under the study's.

A grid key that an arm's norm does not take (``model.norm.lam`` for RMSNorm) is skipped for that
arm, and the plan records why. Every run also gets ``eval.test=true`` (the test split's loss and
bits per byte in its final metrics record), ``train.resume=auto`` (a rerun continues an interrupted
run) and a test split (``data.test_fraction``) when the base config has none.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ibnorm_llm.config import ConfigError, RunConfig, load_config
from ibnorm_llm.norms import accepted_options
from ibnorm_llm.study.spec import StudyError, StudySpec

DEFAULT_TEST_FRACTION = 0.05
"""Share of documents held out as the test split when the base config has none."""
_NORM_SECTIONS = ("model.norm.", "model.final_norm.")


@dataclass(frozen=True)
class Point:
    """One grid point: tuned key -> value (empty when nothing is tuned)."""

    values: tuple[tuple[str, Any], ...]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.values)

    @property
    def label(self) -> str:
        """Short and folder-safe: ``lr0.003_lam4``."""
        return "_".join(f"{_short(k)}{_format(v)}" for k, v in self.values) or "default"

    def describe(self) -> str:
        return ", ".join(f"{k}={_format(v)}" for k, v in self.values) or "(base settings)"


@dataclass(frozen=True)
class Run:
    arm: str
    point: Point
    seed: int
    name: str
    overrides: tuple[str, ...]
    """Every dotted override on top of the base config, in order."""
    out: Path

    @property
    def run_dir(self) -> Path:
        return self.out / self.name

    @property
    def config_path(self) -> Path:
        return self.out / "configs" / f"{self.name}.yaml"


@dataclass(frozen=True)
class ArmGrid:
    arm: str
    points: tuple[Point, ...]
    skipped: dict[str, str]
    """Grid key -> why this arm skips it."""


@dataclass(frozen=True)
class StudyPlan:
    spec: StudySpec
    out: Path
    grids: dict[str, ArmGrid]
    common: tuple[str, ...]
    """Overrides every run gets after the study's own (test split, resume, seed handling)."""
    notes: tuple[str, ...]

    @property
    def tuning_seed(self) -> int:
        return self.spec.seeds[0]

    def run(self, arm: str, point: Point, seed: int) -> Run:
        spec = self.spec
        name = f"{spec.name}_{arm}_{point.label}_seed{seed}"
        overrides = (
            *dotted(spec.overrides), *dotted(spec.arms[arm]), *dotted(point.as_dict()), *self.common,
            f"train.seed={seed}", f"data.shuffle_seed={seed}", f"run_name={name}", f"out_dir={self.out}",
        )
        return Run(arm, point, seed, name, overrides, self.out)

    def tunes_itself(self, arm: str) -> bool:
        return self.spec.anchor(arm) == arm

    def tuning_runs(self) -> list[Run]:
        """Every grid point of the arms that tune their own grid, at the first seed."""
        return [self.run(arm, point, self.tuning_seed) for arm, grid in self.grids.items()
                if self.tunes_itself(arm) for point in grid.points]

    def point_for(self, arm: str, chosen: dict[str, Point]) -> Point:
        """``arm``'s point: its own choice, or its anchor's restricted to the keys ``arm`` takes."""
        if arm in chosen:
            return chosen[arm]
        skipped = self.grids[arm].skipped
        return Point(tuple((k, v) for k, v in chosen[self.spec.anchor(arm)].values if k not in skipped))

    def follower_runs(self, chosen: dict[str, Point]) -> list[Run]:
        """Arms that reuse an anchor's tuned point, at that point and the first seed."""
        return [self.run(arm, self.point_for(arm, chosen), self.tuning_seed)
                for arm in self.grids if not self.tunes_itself(arm)]

    def final_runs(self, chosen: dict[str, Point], arms: list[str] | None = None) -> list[Run]:
        """The chosen point of ``arms`` (default every arm) at every seed (the first seed's run is its tuning run)."""
        return [self.run(arm, self.point_for(arm, chosen), seed) for arm in (arms or list(self.grids))
                for seed in self.spec.seeds]

    def config(self, run: Run) -> RunConfig:
        return load_config(self.spec.base, list(run.overrides))


def _short(key: str) -> str:
    return {"optim.lr": "lr", "optim.muon.lr": "muonlr", "model.norm.lam": "lam", "optim.weight_decay": "wd",
            "optim.warmup_steps": "warmup"}.get(key, key.rsplit(".", 1)[-1])


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def dotted(mapping: dict[str, Any]) -> list[str]:
    """Dotted ``key=value`` overrides of a mapping (what every run of a study or ladder is given)."""
    # JSON is valid YAML and keeps types exact (a string stays a string, 1e-3 stays a float).
    return [f"{key}={json.dumps(value)}" for key, value in mapping.items()]


def _skip_reason(key: str, cfg: RunConfig) -> str | None:
    """Why ``key`` does not apply to a run with config ``cfg`` (a norm option its norm does not take)."""
    for section in _NORM_SECTIONS:
        if key.startswith(section):
            option = key[len(section):]
            norm = cfg.model.norm if section == "model.norm." else (cfg.model.final_norm or cfg.model.norm)
            if option != "kind" and option not in accepted_options(norm.kind):
                return f"{norm.kind} takes no {option}"
    return None


def build_plan(spec: StudySpec, out: str | Path) -> StudyPlan:
    """Resolve every arm's grid and check every run's config (all seeds) before anything runs."""
    out = Path(out).resolve()
    notes = []
    try:
        probe = load_config(spec.base, dotted(spec.overrides))
    except ConfigError as err:
        raise StudyError(f"{spec.source}: base {spec.base} with overrides: {err}") from None
    common = ["eval.test=true", "train.resume=auto"]
    if probe.data.test_fraction == 0 and probe.data.test_split is None:
        common.insert(0, f"data.test_fraction={DEFAULT_TEST_FRACTION}")
        notes.append(f"test split: data.test_fraction={DEFAULT_TEST_FRACTION} added (the base config has none)")
    if probe.eval.suite != "none":
        common.append("eval.suite=none")
        notes.append(f"eval.suite={probe.eval.suite} of the base config replaced by the study's eval (final runs only)")
    grids = {}
    for arm, settings in spec.arms.items():
        try:
            arm_cfg = load_config(spec.base, [*dotted(spec.overrides), *dotted(settings)])
        except ConfigError as err:
            where = spec.factorial.describe(arm) if spec.factorial else f"arms.{arm}"
            raise StudyError(f"{spec.source}: {where} (arm {arm}): {err}") from None
        grid = spec.grid(arm)
        skipped = {key: reason for key in grid if (reason := _skip_reason(key, arm_cfg))}
        keys = [key for key in grid if key not in skipped]
        points = tuple(Point(tuple(zip(keys, values, strict=True)))
                       for values in itertools.product(*(grid[k] for k in keys)))
        grids[arm] = ArmGrid(arm, points, skipped)
    plan = StudyPlan(spec, out, grids, tuple(common), tuple(notes))
    for arm, grid in grids.items():
        for point in grid.points:
            for seed in spec.seeds:
                run = plan.run(arm, point, seed)
                try:
                    plan.config(run)
                except ConfigError as err:
                    raise StudyError(f"{spec.source}: arm {arm} at {point.describe()}, seed {seed}: {err}") from None
    return plan

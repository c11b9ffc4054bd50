"""Comparison tables of leaderboard results: a pure function of the saved ``summary.json`` files.

``eval/leaderboard.py`` writes one result directory per evaluated checkpoint; each holds a
``summary.json`` (schema in :func:`parse_summary`). This module reads those files, groups runs
that differ only in their seed, compares every run with the baseline norm of its preset and
renders the result as Markdown and CSV::

    summaries = load_summaries(["runs/eval/rms_s0", "runs/eval/ibn_l4_s0", ...])
    comparison = build_comparison(summaries)          # baseline: rmsnorm (llama), layernorm (gpt2)
    Path("comparison.md").write_text(to_markdown(comparison))

Conventions (also written into the Markdown):

- Task scores and suite averages are the harness metric x 100 (percent); held-out loss and
  perplexity are as measured.
- A row with several seeds shows the mean over seeds and the sample standard deviation
  (ddof=1); a single-seed row shows the value and the harness's standard error.
- Relative change against the baseline, as the paper reports it:
  ``delta_pct = 100 * (run_mean - baseline_mean) / baseline_mean`` per column.
- Significance, when both the run and its baseline have >= 3 seeds with a value: a paired
  t-test (``scipy.stats.ttest_rel``) over matched seeds when both have exactly the same seed
  set (seed s of the run is paired with seed s of the baseline: same data order and init
  seed), otherwise Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``), named as such.
- Best value per column: bold in Markdown; in CSV the ``best_in`` column lists the columns in
  which the row is best. Higher is better for scores and their deltas, lower for loss and
  perplexity. Ties (equal at display precision) are all marked.
- Missing values are written as ``—`` (in Markdown and CSV), never as 0.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from ibnorm_llm.evaluation.suites import SUITES
from ibnorm_llm.models.presets import FAMILY_BASELINE_NORM, PRESETS

SUITE_TASKS: dict[str, tuple[str, ...]] = {name: tuple(t.name for t in specs) for name, specs in SUITES.items()}
"""The tasks whose mean is each suite's average (Open LLM Leaderboard I and II)."""

SUITES_OF_RUN: dict[str, tuple[str, ...]] = {"v1": ("v1",), "v2": ("v2",), "all": ("v1", "v2")}
"""The suite averages a result of each ``--suite`` value has."""

MISSING = "—"
MIN_SEEDS_FOR_TEST = 3
SUMMARY_FILE = "summary.json"
_RUN_KEYS = ("preset", "norm", "variant", "lam", "seed", "run_name")
"""Run fields with a fixed meaning; any other field of ``run`` must also match for runs to group."""
_NORM_EXTRAS = ("norm_options",)
"""Extra run fields that describe the norm: they split rows but do not have to match the baseline's."""
_MUST_MATCH = {
    "suite": "suites",
    "limit": "--limit values",
    "offline_data": "task data (offline copies vs hub datasets)",
    "smoke": "smoke settings",
    "max_gen_toks": "generation lengths",
}
"""Eval settings that change what is measured: results that differ in one are refused."""
_SHOULD_MATCH = {
    "harness_version": "harness version",
    "batch_size": "batch size",
    "dtype": "dtype",
    "seed": "harness seed (few-shot sampling)",
    "bootstrap_iters": "bootstrap iterations (stderr)",
}
"""Eval settings that can shift scores slightly: a difference is reported in the notes."""


class ResultError(ValueError):
    """A result file or set of result files that cannot be compared; the message names the file."""


# --------------------------------------------------------------------------------------
# Reading summary.json


@dataclass(frozen=True)
class TaskScore:
    metric: str
    value: float
    """The harness metric as a fraction in [0, 1]."""
    stderr: float | None
    n: int | None


@dataclass(frozen=True)
class HeldOut:
    loss: float
    ppl: float
    tokens: int


@dataclass(frozen=True)
class RunSummary:
    """One evaluated checkpoint, as read from its ``summary.json``."""

    source: str
    checkpoint: str
    suite: str
    harness_version: str
    limit: int | None
    offline_data: bool
    step: int | None
    tokens: int | None
    run: Mapping[str, Any]
    """The run's identity; preset, norm and seed are null for a checkpoint without a run config."""
    tasks: Mapping[str, TaskScore]
    held_out: HeldOut | None
    settings: Mapping[str, Any]
    """Eval settings that must (or should) match across compared results, as far as the file has them."""
    notes: tuple[str, ...] = ()
    """The runner's notes (partial offline groups, skipped perplexity ...)."""

    @property
    def preset(self) -> str | None:
        return self.run["preset"]

    @property
    def norm(self) -> str | None:
        return self.run["norm"]

    @property
    def variant(self) -> str | None:
        return self.run.get("variant")

    @property
    def lam(self) -> float | None:
        return self.run.get("lam")

    @property
    def seed(self) -> int | None:
        return self.run["seed"]

    @property
    def run_name(self) -> str:
        return str(self.run.get("run_name", Path(self.source).parent.name))


def _field(data: Mapping, key: str, kinds: tuple, source: str, where: str = "", *, nullable: bool = False) -> Any:
    if key not in data:
        raise ResultError(f"{source}: missing key '{where}{key}' (re-run eval/leaderboard.py to rewrite the summary)")
    value = data[key]
    if value is None and nullable:
        return None
    number = float in kinds
    bad = isinstance(value, bool) and bool not in kinds
    if bad or not isinstance(value, kinds):
        expected = " or ".join(k.__name__ for k in kinds) + (" or null" if nullable else "")
        raise ResultError(f"{source}: '{where}{key}' = {value!r}, expected {expected}")
    if number and not math.isfinite(value):
        raise ResultError(f"{source}: '{where}{key}' = {value!r} is not a finite number")
    return value


def parse_summary(data: Any, source: str) -> RunSummary:
    """Validate one decoded ``summary.json``; every problem raises :class:`ResultError` naming ``source``.

    Schema::

        {"checkpoint": str, "suite": "v1"|"v2"|"all", "harness_version": str, "limit": int|null,
         "offline_data": bool, "step": int|null, "tokens": int|null,
         "run": {"run_name": str, "preset": str|null, "norm": str|null, "variant": str|null,
                 "lam": float|null, "seed": int|null, "norm_options": {...} (optional), ...},
         "tasks": {task: {"metric": str, "value": float in [0, 1], "stderr": float|null, "n": int|null}},
         "perplexity": {"loss": float, "ppl": float, "tokens": int} | null,
         optional: "smoke", "max_gen_toks", "batch_size", "dtype", "bootstrap_iters", "notes": [str]}

    Other keys (subtask scores, the run config, file lists) are the runner's record and are not
    used here: the tables show each leaderboard entry's headline metric.
    """
    if not isinstance(data, dict):
        raise ResultError(f"{source}: expected a JSON object, got {type(data).__name__}")
    suite = _field(data, "suite", (str,), source)
    if suite not in SUITES_OF_RUN:
        raise ResultError(f"{source}: suite={suite!r}, expected one of {', '.join(SUITES_OF_RUN)}")
    run = _field(data, "run", (dict,), source)
    _field(run, "preset", (str,), source, "run.", nullable=True)
    _field(run, "norm", (str,), source, "run.", nullable=True)
    _field(run, "seed", (int,), source, "run.", nullable=True)
    if run.get("variant") is not None:
        _field(run, "variant", (str,), source, "run.")
    if run.get("lam") is not None:
        _field(run, "lam", (int, float), source, "run.")
    tasks_raw = _field(data, "tasks", (dict,), source)
    tasks = {}
    for task, entry in tasks_raw.items():
        where = f"tasks.{task}."
        if not isinstance(entry, dict):
            raise ResultError(f"{source}: 'tasks.{task}' = {entry!r}, expected an object with metric, value, stderr, n")
        value = float(_field(entry, "value", (int, float), source, where))
        if not 0.0 <= value <= 1.0:
            raise ResultError(f"{source}: '{where}value' = {value} is outside [0, 1]; summaries store fractions")
        stderr = _field(entry, "stderr", (int, float), source, where, nullable=True)
        tasks[task] = TaskScore(
            metric=_field(entry, "metric", (str,), source, where),
            value=value,
            stderr=None if stderr is None else float(stderr),
            n=_field(entry, "n", (int,), source, where, nullable=True),
        )
    ppl = _field(data, "perplexity", (dict,), source, nullable=True)
    held_out = None
    if ppl is not None:
        held_out = HeldOut(
            loss=float(_field(ppl, "loss", (int, float), source, "perplexity.")),
            ppl=float(_field(ppl, "ppl", (int, float), source, "perplexity.")),
            tokens=_field(ppl, "tokens", (int,), source, "perplexity."),
        )
    return RunSummary(
        source=source,
        checkpoint=_field(data, "checkpoint", (str,), source),
        suite=suite,
        harness_version=_field(data, "harness_version", (str,), source),
        limit=_field(data, "limit", (int,), source, nullable=True),
        offline_data=_field(data, "offline_data", (bool,), source),
        step=_field(data, "step", (int,), source, nullable=True),
        tokens=_field(data, "tokens", (int,), source, nullable=True),
        run=dict(run),
        tasks=tasks,
        held_out=held_out,
        settings={k: data[k] for k in (*_MUST_MATCH, *_SHOULD_MATCH) if k in data},
        notes=tuple(str(note) for note in data.get("notes") or ()),
    )


def load_summary(result_dir: str | Path) -> RunSummary:
    """Read ``RESULT_DIR/summary.json`` (a path to the file itself also works)."""
    path = Path(result_dir)
    if path.is_dir():
        path = path / SUMMARY_FILE
    if not path.is_file():
        raise ResultError(
            f"{path}: no {SUMMARY_FILE} here; pass result directories written by eval/leaderboard.py --out DIR"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultError(f"{path}: not valid JSON ({err}); re-run eval/leaderboard.py for this checkpoint") from None
    return parse_summary(data, str(path))


def load_summaries(result_dirs: Iterable[str | Path]) -> list[RunSummary]:
    summaries = [load_summary(d) for d in result_dirs]
    if not summaries:
        raise ResultError("no result directories given")
    return summaries


# --------------------------------------------------------------------------------------
# The comparison


@dataclass(frozen=True)
class Column:
    key: str
    """A task name, '<suite>_avg', 'loss' or 'ppl'."""
    title: str
    higher_is_better: bool
    percent: bool
    """Task scores and suite averages are shown in percent."""


@dataclass(frozen=True)
class Cell:
    """One column of one row: a value per seed and their summary."""

    by_seed: Mapping[int, float]
    stderr: float | None = None
    """The harness's standard error (mean over seeds), task columns only."""

    @property
    def n(self) -> int:
        return len(self.by_seed)

    @property
    def mean(self) -> float | None:
        return float(np.mean(list(self.by_seed.values()))) if self.by_seed else None

    @property
    def sd(self) -> float | None:
        """Sample standard deviation over seeds (ddof=1); None with fewer than 2 seeds."""
        return float(np.std(list(self.by_seed.values()), ddof=1)) if self.n >= 2 else None


@dataclass(frozen=True)
class Delta:
    """A row against its baseline in one column."""

    pct: float | None
    """100 * (mean - baseline mean) / baseline mean; None when the baseline mean is 0 or a side is missing."""
    diff: float | None
    """mean - baseline mean, in the column's units (percentage points for scores)."""
    p_value: float | None
    test: str | None
    """'paired' (scipy.stats.ttest_rel over matched seeds), 'welch' (ttest_ind, equal_var=False) or None."""


@dataclass(frozen=True)
class Row:
    """Runs that differ only in their seed, aggregated."""

    preset: str | None
    norm: str | None
    variant: str | None
    lam: float | None
    step: int | None
    tokens: int | None
    extras: tuple[tuple[str, str], ...]
    """Other run fields (JSON-encoded values) that runs of this row share."""
    seeds: tuple[int | None, ...]
    run_names: tuple[str, ...]
    sources: tuple[str, ...]
    cells: Mapping[str, Cell]
    missing: Mapping[str, tuple[str, ...]]
    """Suite -> its tasks absent from at least one seed of this row."""
    is_baseline: bool
    baseline_index: int | None
    """Index (in ``Comparison.rows``) of the row this one is compared with; None for baselines and rows without one."""
    deltas: Mapping[str, Delta]

    @property
    def label(self) -> str:
        parts = [self.preset or "(no run config)"] + ([self.norm] if self.norm is not None else [])
        if self.variant is not None:
            parts.append(self.variant)
        if self.lam is not None:
            parts.append(f"λ={self.lam:g}")
        if self.step is not None:
            parts.append(f"step {self.step}")
        parts += [f"{k}={v}" for k, v in self.extras]
        return " ".join(parts)

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)


@dataclass(frozen=True)
class Comparison:
    suite: str
    harness_versions: tuple[str, ...]
    limit: int | None
    offline_data: bool
    columns: tuple[Column, ...]
    metric_by_task: Mapping[str, str]
    rows: tuple[Row, ...]
    baseline_norms: Mapping[str | None, str | None]
    """Preset -> the baseline norm its rows are compared with (None: no default and none given)."""
    varying_extras: tuple[str, ...]
    """Extra run fields whose values differ between rows (shown as columns)."""
    best: Mapping[str, frozenset[int]]
    """Column key -> indices of the rows with the best mean."""
    best_delta: Mapping[str, frozenset[int]]
    """Column key -> indices of the non-baseline rows with the best relative change."""
    notes: tuple[str, ...]

    def row(self, label: str) -> Row:
        for row in self.rows:
            if row.label == label:
                return row
        raise KeyError(f"no row {label!r}; rows: {[r.label for r in self.rows]}")


def default_baseline_norm(preset: str) -> str | None:
    """The norm the preset's family ships with (rmsnorm for llama, layernorm for gpt2); None for unknown presets."""
    return FAMILY_BASELINE_NORM[PRESETS[preset].family] if preset in PRESETS else None


def build_comparison(summaries: Sequence[RunSummary], baseline: str | None = None) -> Comparison:
    """Group, aggregate and compare runs; ``baseline`` overrides the baseline norm of every preset."""
    if not summaries:
        raise ResultError("no results to compare")
    notes = _check_comparable(summaries)
    notes += _runner_notes(summaries)
    norms = sorted({s.norm for s in summaries if s.norm is not None})
    if baseline is not None and baseline not in norms:
        raise ResultError(f"--baseline {baseline}: no result uses that norm; norms present: {', '.join(norms)}")
    suite = summaries[0].suite
    metric_by_task = _metric_by_task(summaries)
    columns = _columns(suite, metric_by_task, any(s.held_out for s in summaries))
    groups = _group_by_seed(summaries)

    baseline_norms: dict[str | None, str | None] = {}
    for preset in sorted({s.preset for s in summaries}, key=lambda p: p or ""):
        baseline_norms[preset] = None if preset is None else baseline or default_baseline_norm(preset)
        if preset is None:
            notes.append("results of checkpoints without a run config (no preset, norm or seed) are not compared")
        elif baseline_norms[preset] is None:
            notes.append(f"preset {preset}: not a known preset, so no default baseline norm; pass --baseline KIND")

    rows = []
    for (preset, norm, variant, lam, step, tokens, extras), runs in groups.items():
        cells, missing = _cells(runs, columns, suite)
        rows.append(Row(
            preset=preset, norm=norm, variant=variant, lam=lam, step=step, tokens=tokens, extras=extras,
            seeds=tuple(r.seed for r in runs), run_names=tuple(r.run_name for r in runs),
            sources=tuple(r.source for r in runs), cells=cells, missing=missing,
            is_baseline=norm is not None and norm == baseline_norms[preset], baseline_index=None, deltas={},
        ))
    rows.sort(key=_row_order)
    rows = _attach_baselines(rows, baseline_norms, columns, notes)
    notes += _coverage_notes(rows, columns)
    versions = tuple(sorted({s.harness_version for s in summaries}))
    return Comparison(
        suite=suite,
        harness_versions=versions,
        limit=summaries[0].limit,
        offline_data=summaries[0].offline_data,
        columns=columns,
        metric_by_task=metric_by_task,
        rows=tuple(rows),
        baseline_norms=baseline_norms,
        varying_extras=_varying_extras(rows),
        best=_best(rows, columns, lambda row, col: _mean(row, col.key), include_baselines=True),
        best_delta=_best(rows, columns, lambda row, col: _delta_pct(row, col.key), include_baselines=False),
        notes=tuple(notes),
    )


def _check_comparable(summaries: Sequence[RunSummary]) -> list[str]:
    """Refuse results measured differently; return notes for settings that shift scores only slightly."""
    notes = []
    for key in (*_MUST_MATCH, *_SHOULD_MATCH):
        seen: dict[str, str] = {}
        for s in summaries:
            seen.setdefault(json.dumps(s.settings.get(key)), s.source)
        if len(seen) < 2:
            continue
        listing = "; ".join(f"{key}={value} in {source}" for value, source in seen.items())
        if key in _MUST_MATCH:
            raise ResultError(f"mixed {_MUST_MATCH[key]}: {listing}. Compare results of one eval setting at a time")
        notes.append(f"results differ in {_SHOULD_MATCH[key]} ({listing}); scores may shift slightly")
    return notes


def _runner_notes(summaries: Sequence[RunSummary]) -> list[str]:
    """The runner's notes, once each, with how many results carry them."""
    counts: dict[str, int] = {}
    for s in summaries:
        for note in s.notes:
            counts[note] = counts.get(note, 0) + 1
    return [f"eval note ({n} of {len(summaries)} results): {note}" for note, n in counts.items()]


def _metric_by_task(summaries: Sequence[RunSummary]) -> dict[str, str]:
    metric: dict[str, tuple[str, str]] = {}
    for s in summaries:
        for task, score in s.tasks.items():
            first = metric.setdefault(task, (score.metric, s.source))
            if first[0] != score.metric:
                raise ResultError(
                    f"task {task} reports metric {first[0]!r} in {first[1]} but {score.metric!r} in {s.source}; "
                    "one metric per task is needed to compare"
                )
    return {task: m for task, (m, _) in metric.items()}


def _columns(suite: str, metric_by_task: Mapping[str, str], has_held_out: bool) -> tuple[Column, ...]:
    known = [t for s in SUITES_OF_RUN[suite] for t in SUITE_TASKS[s]]
    ordered = [t for t in known if t in metric_by_task] + sorted(set(metric_by_task) - set(known))
    columns = [Column(t, f"{t} ({metric_by_task[t]})", True, True) for t in ordered]
    columns += [Column(f"{s}_avg", f"{s} avg", True, True) for s in SUITES_OF_RUN[suite]]
    if has_held_out:
        columns += [Column("loss", "held-out loss", False, False), Column("ppl", "held-out ppl", False, False)]
    return tuple(columns)


def _group_by_seed(summaries: Sequence[RunSummary]) -> dict[tuple, list[RunSummary]]:
    groups: dict[tuple, list[RunSummary]] = {}
    for s in summaries:
        fields = {k: v for k, v in s.run.items() if k not in _RUN_KEYS}
        if s.seed is None:  # a run of unknown seed is nobody's seed replicate
            fields["run_name"] = s.run_name
        extras = tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in fields.items()))
        lam = None if s.lam is None else float(s.lam)
        key = (s.preset, s.norm, s.variant, lam, s.step, s.tokens, extras)
        group = groups.setdefault(key, [])
        for other in group:
            if other.seed == s.seed:
                raise ResultError(
                    f"{s.source} and {other.source} are the same run (same preset, norm, variant, λ, step and "
                    f"seed {s.seed}); pass each result directory once"
                )
        group.append(s)
    for group in groups.values():
        group.sort(key=lambda s: -1 if s.seed is None else s.seed)
    return groups


def _cells(runs: Sequence[RunSummary], columns: Sequence[Column], suite: str) -> tuple[dict, dict]:
    cells: dict[str, Cell] = {}
    for col in columns:
        if col.key in ("loss", "ppl"):
            values = {r.seed: getattr(r.held_out, col.key) for r in runs if r.held_out is not None}
            cells[col.key] = Cell(values)
        elif col.key.endswith("_avg") and col.key[: -len("_avg")] in SUITE_TASKS:
            tasks = SUITE_TASKS[col.key[: -len("_avg")]]
            values = {
                r.seed: 100.0 * float(np.mean([r.tasks[t].value for t in tasks]))
                for r in runs
                if all(t in r.tasks for t in tasks)
            }
            cells[col.key] = Cell(values)
        else:
            present = [r for r in runs if col.key in r.tasks]
            stderrs = [r.tasks[col.key].stderr for r in present if r.tasks[col.key].stderr is not None]
            cells[col.key] = Cell(
                {r.seed: 100.0 * r.tasks[col.key].value for r in present},
                stderr=100.0 * float(np.mean(stderrs)) if stderrs else None,
            )
    missing = {
        s: tuple(t for t in SUITE_TASKS[s] if any(t not in r.tasks for r in runs)) for s in SUITES_OF_RUN[suite]
    }
    return cells, {s: tasks for s, tasks in missing.items() if tasks}


def _attach_baselines(rows: list[Row], baseline_norms: Mapping, columns: Sequence[Column], notes: list) -> list[Row]:
    out = []
    for row in rows:
        if row.is_baseline or baseline_norms[row.preset] is None:
            out.append(row)
            continue
        kind = baseline_norms[row.preset]
        candidates = [
            i for i, b in enumerate(rows)
            if b.is_baseline and (b.preset, b.step, _context(b)) == (row.preset, row.step, _context(row))
        ]
        if len(candidates) != 1:
            problem = "no" if not candidates else "more than one"
            notes.append(f"{row.label}: {problem} {kind} baseline at the same preset and step; no relative change")
            out.append(row)
            continue
        base = rows[candidates[0]]
        deltas = {col.key: _delta(row.cells[col.key], base.cells[col.key]) for col in columns}
        out.append(dataclasses.replace(row, baseline_index=candidates[0], deltas=deltas))
    return out


def _context(row: Row) -> tuple:
    """The row's extra run fields that are not about the norm (e.g. lr): its baseline must share them."""
    return tuple((k, v) for k, v in row.extras if k not in _NORM_EXTRAS)


def _delta(run: Cell, base: Cell) -> Delta:
    if run.mean is None or base.mean is None:
        return Delta(None, None, None, None)
    diff = run.mean - base.mean
    pct = 100.0 * diff / base.mean if base.mean != 0 else None
    p_value, test = seed_test(run.by_seed, base.by_seed)
    return Delta(pct, diff, p_value, test)


def seed_test(run: Mapping[int, float], base: Mapping[int, float]) -> tuple[float | None, str | None]:
    """p-value of run vs baseline over seeds: paired t-test on matched seeds, else Welch; None below 3 seeds."""
    if len(run) < MIN_SEEDS_FOR_TEST or len(base) < MIN_SEEDS_FOR_TEST:
        return None, None
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # Identical values on both sides make the statistic 0/0; scipy warns and returns nan.
        warnings.simplefilter("ignore", RuntimeWarning)
        if set(run) == set(base):
            seeds = sorted(run)
            result = stats.ttest_rel([run[s] for s in seeds], [base[s] for s in seeds])
            test = "paired"
        else:
            result = stats.ttest_ind(list(run.values()), list(base.values()), equal_var=False)
            test = "welch"
    p_value = float(result.pvalue)
    return (p_value if math.isfinite(p_value) else None), test


def _row_order(row: Row) -> tuple:
    return (
        row.preset or "", row.step if row.step is not None else -1, not row.is_baseline, row.norm or "",
        row.variant or "", row.lam if row.lam is not None else -1.0, row.extras,
    )


def _coverage_notes(rows: Sequence[Row], columns: Sequence[Column]) -> list[str]:
    notes = []
    for row in rows:
        if row.n_seeds == 1:
            continue
        for col in columns:
            cell = row.cells[col.key]
            if 0 < cell.n < row.n_seeds:
                seeds = ", ".join(str(s) for s in sorted(cell.by_seed))
                notes.append(f"{row.label}: {col.title} is the mean over seeds {seeds} only (others lack it)")
    for row in rows:
        for suite, tasks in row.missing.items():
            for task in tasks:
                have = row.cells[task].by_seed if task in row.cells else {}
                lacking = ", ".join(str(s) for s in row.seeds if s not in have)
                where = f"the results of seed {lacking}" if row.seeds != (None,) else "its results"
                notes.append(f"{row.label}: {suite} avg needs {task}, missing from {where}")
    return notes


def _varying_extras(rows: Sequence[Row]) -> tuple[str, ...]:
    keys = sorted({k for row in rows for k, _ in row.extras})
    return tuple(k for k in keys if len({dict(row.extras).get(k) for row in rows}) > 1)


def _mean(row: Row, key: str) -> float | None:
    return row.cells[key].mean


def _delta_pct(row: Row, key: str) -> float | None:
    delta = row.deltas.get(key)
    return None if delta is None else delta.pct


def _best(rows: Sequence[Row], columns: Sequence[Column], value_of, include_baselines: bool) -> dict:
    best = {}
    for col in columns:
        scored = [
            (i, round(v, _decimals(col)))
            for i, row in enumerate(rows)
            if (include_baselines or not row.is_baseline) and (v := value_of(row, col)) is not None
        ]
        if len(scored) < 2:  # nothing to beat
            best[col.key] = frozenset()
            continue
        pick = max if col.higher_is_better else min
        target = pick(v for _, v in scored)
        best[col.key] = frozenset(i for i, v in scored if v == target)
    return best


# --------------------------------------------------------------------------------------
# Rendering


def _decimals(col: Column) -> int:
    return 4 if col.key == "loss" else 2


def _num(value: float | None, col: Column) -> str:
    return MISSING if value is None else f"{value:.{_decimals(col)}f}"


def _p_text(p_value: float | None) -> str:
    if p_value is None:
        return f"p={MISSING}"
    return "p<0.001" if p_value < 0.001 else f"p={p_value:.3f}"


def _seeds_text(row: Row) -> str:
    return "1 (single-seed)" if row.n_seeds == 1 else str(row.n_seeds)


def _test_text(comparison: Comparison, row: Row) -> str:
    if row.is_baseline:
        return "baseline"
    if row.baseline_index is None:
        return MISSING
    base = comparison.rows[row.baseline_index]
    if row.n_seeds < MIN_SEEDS_FOR_TEST or base.n_seeds < MIN_SEEDS_FOR_TEST:
        return f"none (needs ≥{MIN_SEEDS_FOR_TEST} seeds per side)"
    if set(row.seeds) == set(base.seeds):
        return "paired t over seeds " + ",".join(str(s) for s in sorted(row.seeds))
    return "Welch t (seeds differ)"


def _score_cell(row: Row, col: Column) -> str:
    cell = row.cells[col.key]
    if cell.mean is None:
        missing = row.missing.get(col.key[: -len("_avg")]) if col.key.endswith("_avg") else None
        return f"{MISSING} (missing: {', '.join(missing)})" if missing else MISSING
    text = _num(cell.mean, col)
    if cell.n >= 2:
        return f"{text} ± {_num(cell.sd, col)} sd"
    if cell.stderr is not None:
        return f"{text} ± {_num(cell.stderr, col)} se"
    return text


def _delta_cell(row: Row, col: Column) -> str:
    delta = row.deltas.get(col.key)
    if delta is None or delta.pct is None:
        return MISSING
    text = f"{delta.pct:+.2f}"
    if delta.test is not None:
        text += f" ({_p_text(delta.p_value)})"
    return text


def _baseline_label(comparison: Comparison, row: Row) -> str:
    return MISSING if row.baseline_index is None else comparison.rows[row.baseline_index].label


def _bold(text: str, marked: bool) -> str:
    return f"**{text}**" if marked and text != MISSING else text


def _identity_cells(comparison: Comparison, row: Row) -> list[str]:
    extras = dict(row.extras)
    return [
        row.preset or MISSING,
        row.norm or MISSING,
        row.variant or MISSING,
        MISSING if row.lam is None else f"{row.lam:g}",
        MISSING if row.step is None else str(row.step),
        MISSING if row.tokens is None else str(row.tokens),
        *(extras.get(k, MISSING) for k in comparison.varying_extras),
    ]


def _md_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return lines


def to_markdown(comparison: Comparison, title: str = "Norm comparison") -> str:
    """The comparison as Markdown: settings, a score table, a relative-change table, notes and sources."""
    c = comparison
    identity = ["preset", "norm", "variant", "λ", "step", "tokens", *c.varying_extras]
    baselines = ", ".join(f"{p}: {k or MISSING}" for p, k in c.baseline_norms.items() if p is not None) or "none"
    lines = [
        f"# {title}",
        "",
        f"Suite {c.suite} · lm-eval {', '.join(c.harness_versions)} · limit {c.limit if c.limit is not None else 'none'}"
        f" · task data {'offline copies' if c.offline_data else 'hub datasets'} · baseline norm per preset: {baselines}",
        "",
        "Scores are the harness metric × 100. `a ± b sd`: mean and sample standard deviation over seeds; "
        "`a ± b se`: single-seed value and the harness's standard error. Suite averages are the mean of the "
        "suite's six tasks, per seed. Bold: best in its column (higher is better for scores, lower for loss "
        f"and perplexity). {MISSING}: missing.",
        "",
        "## Scores",
        "",
    ]
    body = []
    for i, row in enumerate(c.rows):
        scores = [_bold(_score_cell(row, col), i in c.best[col.key]) for col in c.columns]
        body.append([*_identity_cells(c, row), _seeds_text(row), *scores])
    lines += _md_table([*identity, "seeds", *(col.title for col in c.columns)], body)
    lines += [
        "",
        "## Relative change against the baseline (%)",
        "",
        "Δ% = 100 · (run − baseline) / baseline on seed means, against the baseline norm of the same preset "
        "and step. p: with ≥3 seeds on both sides, a paired t-test (scipy.stats.ttest_rel) pairing seed s of "
        "the run with seed s of the baseline when both have the same seeds, otherwise Welch's t-test "
        "(unequal variances). For loss and perplexity a negative change is an improvement. Bold: best change "
        "in its column.",
        "",
    ]
    body = []
    for i, row in enumerate(c.rows):
        deltas = [
            "baseline" if row.is_baseline else _bold(_delta_cell(row, col), i in c.best_delta[col.key])
            for col in c.columns
        ]
        body.append([*_identity_cells(c, row), _seeds_text(row), _test_text(c, row), *deltas])
    lines += _md_table([*identity, "seeds", "test", *(col.title for col in c.columns)], body)
    if c.notes:
        lines += ["", "## Notes", "", *(f"- {note}" for note in c.notes)]
    lines += ["", "## Sources", ""]
    lines += [f"- {row.label}: " + ", ".join(f"`{s}`" for s in row.sources) for row in c.rows]
    return "\n".join(lines) + "\n"


def _csv_num(value: float | None) -> str:
    return MISSING if value is None else f"{value:.6g}"


def to_csv(comparison: Comparison) -> str:
    """The comparison as CSV, one row per aggregated run.

    Per column ``C``: ``C`` (mean over seeds), ``C_sd`` (over seeds), ``C_stderr`` (harness, tasks
    only), ``C_delta_pct``, ``C_delta`` (absolute, in the column's units) and ``C_p``. ``best_in``
    lists the columns (``C`` or ``C_delta_pct``) in which the row is best, separated by ';'.
    Missing values are '—' (pandas: ``read_csv(..., na_values='—')``).
    """
    c = comparison
    header = ["preset", "norm", "variant", "lam", "step", "tokens", *c.varying_extras, "n_seeds", "seeds",
              "single_seed", "baseline", "test"]
    for col in c.columns:
        header += [col.key, f"{col.key}_sd"] + ([f"{col.key}_stderr"] if col.key in c.metric_by_task else [])
        header += [f"{col.key}_delta_pct", f"{col.key}_delta", f"{col.key}_p"]
    header += [f"{s}_avg_missing" for s in SUITES_OF_RUN[c.suite]] + ["best_in", "run_names", "result_files"]

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for i, row in enumerate(c.rows):
        extras = dict(row.extras)
        seeds = ";".join(MISSING if seed is None else str(seed) for seed in row.seeds)
        values = [
            row.preset or MISSING, row.norm or MISSING, row.variant or MISSING, MISSING if row.lam is None else f"{row.lam:g}",
            MISSING if row.step is None else row.step, MISSING if row.tokens is None else row.tokens,
            *(extras.get(k, MISSING) for k in c.varying_extras),
            row.n_seeds, seeds, row.n_seeds == 1,
            "self" if row.is_baseline else _baseline_label(c, row), _test_text(c, row),
        ]
        best_in = []
        for col in c.columns:
            cell = row.cells[col.key]
            delta = row.deltas.get(col.key, Delta(None, None, None, None))
            values += [_csv_num(cell.mean), _csv_num(cell.sd)]
            if col.key in c.metric_by_task:
                values.append(_csv_num(cell.stderr))
            values += [_csv_num(delta.pct), _csv_num(delta.diff), _csv_num(delta.p_value)]
            if i in c.best[col.key]:
                best_in.append(col.key)
            if i in c.best_delta[col.key]:
                best_in.append(f"{col.key}_delta_pct")
        values += [";".join(row.missing.get(s, ())) or MISSING for s in SUITES_OF_RUN[c.suite]]
        values += [";".join(best_in) or MISSING, ";".join(row.run_names), ";".join(row.sources)]
        writer.writerow(values)
    return buffer.getvalue()


def write_comparison(
    result_dirs: Iterable[str | Path], out_dir: str | Path, baseline: str | None = None,
    title: str = "Norm comparison",
) -> Comparison:
    """Load results, build the comparison and write comparison.md, comparison.csv and PNG plots to ``out_dir``."""
    from ibnorm_llm.evaluation.plots import write_plots

    comparison = build_comparison(load_summaries(result_dirs), baseline=baseline)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.md").write_text(to_markdown(comparison, title=title))
    (out / "comparison.csv").write_text(to_csv(comparison))
    write_plots(comparison, out)
    return comparison

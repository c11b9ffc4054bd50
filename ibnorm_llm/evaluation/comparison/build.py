"""Build a comparison from run summaries: group seeds, attach baselines, compute deltas and tests.

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
- Best value per column, among rows of the same step and token count (never across amounts of
  training): bold in Markdown; in CSV the ``best_in`` column lists the columns in which the row is
  best. Higher is better for scores and their deltas, lower for loss and perplexity. Ties (equal at display precision) are all marked.
- Missing values are written as ``—`` (in Markdown and CSV), never as 0.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ibnorm_llm.evaluation.comparison.render import to_csv, to_markdown
from ibnorm_llm.evaluation.comparison.summaries import (
    MUST_MATCH,
    SHOULD_MATCH,
    ResultError,
    RunSummary,
    load_summaries,
    suite_parts_of,
    task_names_of,
)
from ibnorm_llm.evaluation.comparison.table import Cell, Column, Comparison, Delta, Row
from ibnorm_llm.evaluation.harness.suites import SUITES
from ibnorm_llm.models.presets import FAMILY_BASELINE_NORM, PRESETS
from ibnorm_llm.stats import seed_test

_RUN_KEYS = ("preset", "norm", "variant", "lam", "seed", "run_name")
"""Run fields with a fixed meaning; any other field of ``run`` must also match for runs to group."""
_NORM_EXTRAS = ("norm_options",)
"""Extra run fields that describe the norm: they split rows but do not have to match the baseline's."""


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
    columns = _columns(suite, metric_by_task, summaries)
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
    for key in (*MUST_MATCH, *SHOULD_MATCH):
        seen: dict[str, str] = {}
        for s in summaries:
            seen.setdefault(json.dumps(s.settings.get(key)), s.source)
        if len(seen) < 2:
            continue
        listing = "; ".join(f"{key}={value} in {source}" for value, source in seen.items())
        if key in MUST_MATCH:
            raise ResultError(f"mixed {MUST_MATCH[key]}: {listing}. Compare results of one eval setting at a time")
        notes.append(f"results differ in {SHOULD_MATCH[key]} ({listing}); scores may shift slightly")
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


def _columns(suite: str, metric_by_task: Mapping[str, str], summaries: Sequence[RunSummary]) -> tuple[Column, ...]:
    known = task_names_of(suite)
    ordered = [t for t in known if t in metric_by_task] + sorted(set(metric_by_task) - set(known))
    chance = {t: 100.0 * score.chance for s in summaries for t, score in s.tasks.items() if score.chance is not None}
    columns = [Column(t, f"{t} ({metric_by_task[t]})", True, True, chance.get(t)) for t in ordered]
    columns += [Column(f"{s}_avg", f"{s} avg", True, True) for s in suite_parts_of(suite)]
    # Bits per byte of the correct continuation: lower is better, comparable across tokenizers.
    columns += [Column(f"{t}_bpb", f"{t} bpb", False, False) for t in ordered
                if any(s.tasks[t].bpb is not None for s in summaries if t in s.tasks)]
    if any(s.held_out for s in summaries):
        columns += [Column("loss", "held-out loss", False, False)]
        if any(s.held_out and s.held_out.bpb is not None for s in summaries):
            columns += [Column("bpb", "held-out bpb", False, False)]
        columns += [Column("ppl", "held-out ppl", False, False)]
    if any(s.test for s in summaries):  # training run folders with eval.test
        columns += [Column("test_loss", "test loss", False, False)]
        if any(s.test and s.test.bpb is not None for s in summaries):
            columns += [Column("test_bpb", "test bpb", False, False)]
        columns += [Column("test_ppl", "test ppl", False, False)]
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
        if col.key in ("test_loss", "test_ppl", "test_bpb"):
            values = {r.seed: getattr(r.test, col.key.removeprefix("test_")) for r in runs if r.test is not None}
            cells[col.key] = Cell({seed: v for seed, v in values.items() if v is not None})
        elif col.key in ("loss", "ppl", "bpb"):
            values = {r.seed: getattr(r.held_out, col.key) for r in runs if r.held_out is not None}
            cells[col.key] = Cell({seed: v for seed, v in values.items() if v is not None})
        elif col.key.endswith("_bpb"):
            task = col.key[: -len("_bpb")]
            cells[col.key] = Cell({r.seed: r.tasks[task].bpb for r in runs
                                   if task in r.tasks and r.tasks[task].bpb is not None})
        elif col.key.endswith("_avg") and col.key[: -len("_avg")] in SUITES:
            tasks = task_names_of(col.key[: -len("_avg")])
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
        s: tuple(t for t in task_names_of(s) if any(t not in r.tasks for r in runs)) for s in suite_parts_of(suite)
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
    found = seed_test(run.by_seed, base.by_seed)
    return Delta(pct, diff, found.p, found.test)


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
    """Per column, the rows with the best value among rows of the same step and token count: a run
    trained longer is never "best" against shorter ones."""
    best = {}
    for col in columns:
        marked: set[int] = set()
        by_amount: dict[tuple, list[tuple[int, float]]] = {}
        for i, row in enumerate(rows):
            if (include_baselines or not row.is_baseline) and (v := value_of(row, col)) is not None:
                by_amount.setdefault((row.step, row.tokens), []).append((i, round(v, col.decimals)))
        for scored in by_amount.values():
            if len(scored) < 2:  # nothing to beat
                continue
            pick = max if col.higher_is_better else min
            target = pick(v for _, v in scored)
            marked |= {i for i, v in scored if v == target}
        best[col.key] = frozenset(marked)
    return best


def write_comparison(
    result_dirs: Iterable[str | Path], out_dir: str | Path, baseline: str | None = None,
    title: str = "Norm comparison",
) -> Comparison:
    """Load results, build the comparison and write comparison.md, comparison.csv and PNG plots to ``out_dir``."""
    from ibnorm_llm.evaluation.comparison.plots import write_plots

    comparison = build_comparison(load_summaries(result_dirs), baseline=baseline)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.md").write_text(to_markdown(comparison, title=title))
    (out / "comparison.csv").write_text(to_csv(comparison))
    write_plots(comparison, out)
    return comparison

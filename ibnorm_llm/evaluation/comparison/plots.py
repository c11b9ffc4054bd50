"""PNG plots of a :class:`~ibnorm_llm.evaluation.comparison.table.Comparison` (matplotlib, Agg backend).

- ``task_deltas_<preset>.png``: one bar chart per compared run, the relative change (%) of every
  task, suite average and held-out column against the preset's baseline norm.
- ``lambda_sweep_<preset>[_step<N>].png``: when ibnorm runs of one preset (and step) cover two or
  more λ values, one panel per column with the metric against λ, a line per variant (error bars:
  standard deviation over seeds) and the baseline's mean as a dashed line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ibnorm_llm.evaluation.comparison.table import Column, Comparison, Row

SWEEP_NORM = "ibnorm"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)  # no pyplot: no global state, no GUI backend
    fig.savefig(path, dpi=110)
    return path


def plot_task_deltas(comparison: Comparison, preset: str, path: str | Path) -> Path | None:
    """Bar chart per run of ``preset`` of its % change against the baseline; None when no run has a baseline."""
    rows = [r for r in comparison.rows if r.preset == preset and r.baseline_index is not None]
    if not rows:
        return None
    columns = comparison.columns
    fig = Figure(figsize=(max(6.0, 0.6 * len(columns) + 2), 2.6 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, row in zip(axes, rows, strict=True):
        pcts = [row.deltas[col.key].pct for col in columns]
        heights = [0.0 if p is None else p for p in pcts]
        better = [
            p is not None and (p > 0) == col.higher_is_better and p != 0 for p, col in zip(pcts, columns, strict=True)
        ]
        colors = ["tab:green" if b else "tab:red" for b in better]
        bars = ax.bar(range(len(columns)), heights, color=colors)
        for bar, pct, col in zip(bars, pcts, columns, strict=True):
            if pct is None:  # a missing value is labelled, never drawn as a zero change
                ax.annotate("n/a", (bar.get_x() + bar.get_width() / 2, 0), ha="center", va="bottom", fontsize=7)
            elif (p := row.deltas[col.key].p_value) is not None and p < 0.05:
                ax.annotate("*", (bar.get_x() + bar.get_width() / 2, pct), ha="center", va="bottom")
        ax.axhline(0.0, color="black", linewidth=0.8)
        base = comparison.rows[row.baseline_index]
        seeds = "single-seed" if row.n_seeds == 1 else f"{row.n_seeds} seeds"
        ax.set_title(f"{row.label} ({seeds}) vs {base.norm}", fontsize=9)
        ax.set_ylabel("Δ %")
        ax.set_xticks(range(len(columns)), [col.key for col in columns], rotation=35, ha="right", fontsize=8)
    fig.suptitle("Relative change against the baseline (green: better; *: p < 0.05)", fontsize=10)
    return _save(fig, Path(path))


def sweeps(comparison: Comparison) -> dict[tuple, list[Row]]:
    """ibnorm rows grouped by (preset, step, extras) where a group spans at least two λ values."""
    groups: dict[tuple, list[Row]] = {}
    for row in comparison.rows:
        if row.norm == SWEEP_NORM and row.lam is not None:
            groups.setdefault((row.preset, row.step, row.extras), []).append(row)
    return {key: rows for key, rows in groups.items() if len({r.lam for r in rows}) >= 2}


def plot_lambda_sweep(comparison: Comparison, rows: Sequence[Row], path: str | Path) -> Path:
    """Metric against λ per variant for ``rows`` (one sweep from :func:`sweeps`), a panel per column."""
    columns = [col for col in comparison.columns if any(r.cells[col.key].mean is not None for r in rows)]
    n_cols = min(4, len(columns))
    n_rows = math.ceil(len(columns) / n_cols)
    fig = Figure(figsize=(3.2 * n_cols, 2.6 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    baseline = _baseline_of(comparison, rows)
    variants = sorted({r.variant or "" for r in rows})
    for ax, col in zip(axes, columns, strict=False):  # the grid may have spare axes
        for variant in variants:
            points = sorted(
                (r.lam, r.cells[col.key].mean, r.cells[col.key].sd or 0.0)
                for r in rows
                if (r.variant or "") == variant and r.cells[col.key].mean is not None
            )
            if points:
                lams, means, sds = zip(*points, strict=True)
                ax.errorbar(lams, means, yerr=sds, marker="o", capsize=3, label=variant or "ibnorm")
        if baseline is not None and (base_mean := baseline.cells[col.key].mean) is not None:
            ax.axhline(base_mean, color="gray", linestyle="--", label=baseline.norm)
        ax.set_title(_panel_title(col), fontsize=9)
        ax.set_xlabel("λ")
    for ax in axes[len(columns):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    first = rows[0]
    step = "" if first.step is None else f", step {first.step}"
    fig.suptitle(f"λ sweep: {first.preset}{step} (error bars: sd over seeds)", fontsize=10)
    return _save(fig, Path(path))


def _baseline_of(comparison: Comparison, rows: Sequence[Row]) -> Row | None:
    for row in rows:
        if row.baseline_index is not None:
            return comparison.rows[row.baseline_index]
    return None


def _panel_title(col: Column) -> str:
    unit = " (%)" if col.percent else ""
    direction = "↑" if col.higher_is_better else "↓"
    return f"{col.title}{unit} {direction}"


def write_plots(comparison: Comparison, out_dir: str | Path) -> list[Path]:
    """Write every plot that applies to ``comparison`` into ``out_dir``; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for preset in sorted({r.preset for r in comparison.rows if r.preset is not None}):
        path = plot_task_deltas(comparison, preset, out / f"task_deltas_{_safe(preset)}.png")
        if path is not None:
            written.append(path)
    found = sweeps(comparison)
    for (preset, step, extras), rows in found.items():
        same_preset = [k for k in found if k[0] == preset]
        name = f"lambda_sweep_{_safe(preset)}"
        if len(same_preset) > 1:
            suffix = "" if step is None else f"_step{step}"
            name += suffix + ("_" + _safe("_".join(f"{k}-{v}" for k, v in extras)) if extras else "")
        written.append(plot_lambda_sweep(comparison, rows, out / f"{name}.png"))
    return written

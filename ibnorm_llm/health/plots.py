"""The health report's figures: a layer x step heatmap per run and family, comparison curves across runs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ibnorm_llm.health.series import RunHealth, block_index, norm_role, short_name


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int, ncols: int = 3) -> tuple[int, int]:
    cols = min(n, ncols)
    return math.ceil(n / cols), cols


def _spike_positions(run: RunHealth, steps: list[int]) -> list[float]:
    """Spike steps as fractional column positions of a heatmap whose columns are ``steps``."""
    if len(steps) < 2:
        return [0.0 for _ in run.spikes]
    return [float(np.interp(event.step, steps, range(len(steps)))) for event in run.spikes]


def heatmap(run: RunHealth, family: str, path: Path) -> Path | None:
    """Every statistic of ``family`` as a (place in depth order) x (monitor step) heatmap; spikes as red marks."""
    statistics = run.statistics(family)
    if not statistics:
        return None
    plt = _pyplot()
    steps = run.steps
    rows, cols = _grid(len(statistics))
    places_max = max(len(run.places(family, s)) for s in statistics)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 0.6 + 0.22 * places_max * rows + 1.2 * rows), squeeze=False)
    for ax, statistic in zip(axes.flat, statistics, strict=False):
        places = run.places(family, statistic)
        grid = np.full((len(places), len(steps)), np.nan)
        column = {step: j for j, step in enumerate(steps)}
        for i, where in enumerate(places):
            for step, value in run.values(family, where, statistic):
                grid[i, column[step]] = value
        image = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="viridis")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
        ax.set_title(statistic, fontsize=9)
        ax.set_yticks(range(len(places)), [short_name(p) for p in places], fontsize=6)
        ticks = sorted({0, len(steps) // 2, len(steps) - 1})
        ax.set_xticks(ticks, [str(steps[t]) for t in ticks], fontsize=7)
        ax.set_xlabel("step", fontsize=7)
        for x in _spike_positions(run, steps):
            ax.plot([x], [-0.5], marker="v", color="red", markersize=6, clip_on=False)
    for ax in list(axes.flat)[len(statistics):]:
        ax.axis("off")
    fig.suptitle(f"{run.label}: monitor/{family} (rows: depth; red marks: spikes)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _mean_over_places(run: RunHealth, family: str, statistic: str) -> list[tuple[int, float]]:
    by_step: dict[int, list[float]] = {}
    for where in run.places(family, statistic):
        for step, value in run.values(family, where, statistic):
            by_step.setdefault(step, []).append(value)
    return [(step, float(np.mean(values))) for step, values in sorted(by_step.items())]


def _by_depth(run: RunHealth, family: str, statistic: str, step: int) -> dict[str, list[tuple[int, float]]]:
    """role -> (block index, value at ``step``) of every place inside a block (norms split by role)."""
    lines: dict[str, list[tuple[int, float]]] = {}
    for where in run.places(family, statistic):
        index = block_index(where)
        if index is None:
            continue
        value = dict(run.values(family, where, statistic)).get(step)
        if value is not None:
            role = norm_role(where) if family == "norm" else ""
            lines.setdefault(role, []).append((index, value))
    return lines


def comparison(runs: list[RunHealth], family: str, statistic: str, path: Path) -> Path | None:
    """Left: the statistic over training (mean over the family's places), one line per run, spikes as dashed
    lines. Right: by depth at the first, middle and last monitor step (fainter = earlier), one line per
    run and, for norms, per role (line style)."""
    plotted = [run for run in runs if statistic in run.statistics(family)]
    if not plotted:
        return None
    plt = _pyplot()
    has_depth = any(_by_depth(run, family, statistic, run.steps[-1]) for run in plotted)
    fig, axes = plt.subplots(1, 2 if has_depth else 1, figsize=(11 if has_depth else 5.5, 3.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    for k, run in enumerate(plotted):
        color = colors[k % len(colors)]
        curve = _mean_over_places(run, family, statistic)
        axes[0, 0].plot([s for s, _ in curve], [v for _, v in curve], color=color, label=run.label, marker=".")
        for event in run.spikes:
            axes[0, 0].axvline(event.step, color=color, linestyle="--", linewidth=0.8, alpha=0.7)
        if not has_depth:
            continue
        steps = run.steps
        shown = sorted({steps[0], steps[len(steps) // 2], steps[-1]})
        by_step = {step: _by_depth(run, family, statistic, step) for step in shown}
        roles = sorted({role for lines in by_step.values() for role in lines})
        for alpha, step in zip(np.linspace(0.35, 1.0, len(shown)), shown, strict=True):
            for role, points in by_step[step].items():
                points.sort()
                last = step == shown[-1]
                label = f"{run.label}{' ' + role if role else ''}" if last else None
                axes[0, 1].plot([i for i, _ in points], [v for _, v in points], color=color, alpha=float(alpha),
                                linestyle=styles[roles.index(role) % len(styles)], marker=".", label=label)
    axes[0, 0].set_xlabel("step")
    axes[0, 0].set_title(f"{statistic}, mean over {family} places", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    if has_depth:
        axes[0, 1].set_xlabel("block")
        axes[0, 1].set_title(f"{statistic} by depth (first, middle, last monitor step; fainter = earlier)", fontsize=9)
        axes[0, 1].legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

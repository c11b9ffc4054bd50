"""The study's two figures: learning-rate sensitivity and loss curves with the seed spread."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ibnorm_llm.study.runner import StudyResults


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def sensitivity_key(grid: dict[str, list]) -> str | None:
    """The tuned key of a grid plotted on the x axis: a learning rate when tuned (optim.lr, else another
    key ending in lr, such as optim.muon.lr), else the first numeric tuned key."""
    numeric = [k for k, values in grid.items()
               if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)]
    rates = [k for k in numeric if k == "optim.lr"] or [k for k in numeric if k.endswith("lr")]
    return (rates or numeric or [None])[0]


def plot_sensitivity(results: StudyResults, path: Path) -> Path | None:
    """Final validation loss (tuning seed) against the tuned value, one line per arm (Wortsman et al.).

    Each arm is drawn against its own grid's key (a factorial study's Muon arms tune optim.muon.lr,
    its AdamW arms optim.lr); with other tuned keys too, the line holds them at their chosen values.
    Diverged points are drawn as crosses on the top edge.
    """
    spec = results.plan.spec
    keys = {arm: key for arm in results.tuning if (key := sensitivity_key(spec.grid(arm))) is not None}
    if not keys:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    top = max((r.validation_loss.value for runs in results.tuning.values() for r in runs.values()
               if r.validation_loss is not None), default=1.0)
    for arm, key in keys.items():
        chosen = results.choices[arm].point.as_dict()
        line = sorted(
            (p.as_dict()[key], r) for p, r in results.tuning[arm].items()
            if key in p.as_dict() and all(p.as_dict()[k] == v for k, v in chosen.items() if k != key)
        )
        if not line:
            continue  # the arm skips this key
        xs = [x for x, r in line if r.validation_loss is not None]
        ys = [r.validation_loss.value for _, r in line if r.validation_loss is not None]
        drawn, = ax.plot(xs, ys, "o-", label=arm if len(set(keys.values())) == 1 else f"{arm} ({key})")
        failed = [x for x, r in line if r.validation_loss is None]
        if failed:
            ax.plot(failed, [top] * len(failed), "x", color=drawn.get_color(), markersize=9)
    values = [v for arm, key in keys.items() for v in spec.grid(arm)[key] if v > 0]
    if values and max(values) / min(values) >= 10:
        ax.set_xscale("log")
    xlabel = " / ".join(dict.fromkeys(keys.values()))
    title = f"{spec.name}: sensitivity to {xlabel} (seed {results.plan.tuning_seed}; x = diverged)"
    return _save(fig, ax, xlabel, "final validation loss (nats/token)", title, path)


def plot_curves(results: StudyResults, path: Path) -> Path:
    """Training loss of each arm's chosen point: mean over seeds, band = min..max over seeds."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm, runs in results.finals.items():
        curves = [dict(r.curve) for r in runs.values() if r.diverged is None and r.curve]
        if not curves:
            continue
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        values = np.array([[c[s] for s in steps] for c in curves])  # (seeds, steps)
        line, = ax.plot(steps, values.mean(axis=0), label=f"{arm} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2)
    title = f"{results.plan.spec.name}: chosen settings, mean over seeds (band: seed min..max)"
    return _save(fig, ax, "optimizer step", "training loss (nats/token)", title, path)


def _save(fig, ax, xlabel: str, ylabel: str, title: str, path: Path) -> Path:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path

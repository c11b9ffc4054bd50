"""The ladder's two figures: loss against compute with each arm's compute-optimal curve and band, and the
residuals of every point (the held-out size's points against the law fitted without them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ibnorm_llm.ladder.analysis import LadderAnalysis
from ibnorm_llm.ladder.predict import FLOPS_PER_PARAM_TOKEN, compute_optimal


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on training machines
    import matplotlib.pyplot as plt

    return plt


def _colors(arms: list[str]) -> dict[str, str]:
    return {arm: f"C{i % 10}" for i, arm in enumerate(arms)}


def plot_ladder(analysis: LadderAnalysis, arms: list[str], path: Path) -> Path:
    """Test loss against C = 6ND (log x): points per arm, the compute-optimal loss of each law over the
    searched range with its 95 % bootstrap band, and each target's prediction."""
    plt = _pyplot()
    colors = _colors(arms)
    fig, ax = plt.subplots(figsize=(8, 5))
    low, high = analysis.compute_range
    grid = np.geomspace(low, high, 200)
    for arm in arms:
        mine = [p for p in analysis.points if p.arm == arm and p.loss is not None]
        ax.scatter([FLOPS_PER_PARAM_TOKEN * p.N * p.D for p in mine], [p.loss for p in mine], s=14,
                   color=colors[arm], alpha=0.7, label=f"{arm} (points)")
        law = analysis.laws.get(arm)
        if law is None:
            continue
        curve = compute_optimal([law.E, law.A, law.alpha, law.B, law.beta], grid)[2]
        ax.plot(grid, curve, color=colors[arm], label=f"{arm}: compute-optimal law")
        band = np.array([compute_optimal(row, grid)[2] for row in law.samples])
        if len(band):
            ax.fill_between(grid, np.nanpercentile(band, 2.5, axis=0), np.nanpercentile(band, 97.5, axis=0),
                            color=colors[arm], alpha=0.15, linewidth=0)
        for target in analysis.targets:
            predicted = analysis.predictions[target.name].get(arm)
            if predicted is not None:
                ax.errorbar([target.compute(arm)], [predicted.loss], fmt="D", color=colors[arm], ms=4,
                            yerr=[[predicted.loss - predicted.interval[0]], [predicted.interval[1] - predicted.loss]])
    for target in analysis.targets:
        ax.axvline(target.compute(arms[0]), color="0.8", linewidth=0.8, zorder=0)
        ax.annotate(target.name, (target.compute(arms[0]), 1), xycoords=("data", "axes fraction"), rotation=90,
                    va="top", ha="right", fontsize=7, color="0.4")
    ax.set_xscale("log")
    ax.set_xlabel("compute C = 6 N D (FLOPs, N non-embedding)")
    ax.set_ylabel("test loss")
    ax.set_title("Ladder points and compute-optimal laws (bands: 95 % bootstrap)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_residuals(analysis: LadderAnalysis, arms: list[str], path: Path) -> Path:
    """log(measured) - log(fitted) per point against compute; the largest size's points also against the
    law fitted without them (hollow), the held-out check drawn."""
    plt = _pyplot()
    colors = _colors(arms)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for arm in arms:
        law = analysis.laws.get(arm)
        if law is None:
            continue
        mine = [p for p in analysis.points if p.arm == arm and p.loss is not None]
        ax.scatter([FLOPS_PER_PARAM_TOKEN * p.N * p.D for p in mine],
                   [np.log(p.loss) - np.log(law.predict(p.N, p.D)) for p in mine], s=14, color=colors[arm],
                   label=f"{arm}: full fit")
        check = analysis.held_out.get(arm)
        if check is not None and check.points:
            ax.scatter([FLOPS_PER_PARAM_TOKEN * h.N * h.D for h in check.points],
                       [np.log(h.measured) - np.log(h.predicted) for h in check.points], s=40, facecolors="none",
                       edgecolors=colors[arm], label=f"{arm}: {check.size} held out")
    ax.axhline(0.0, color="0.5", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("compute C = 6 N D (FLOPs)")
    ax.set_ylabel("log measured - log fitted")
    ax.set_title("Residuals (hollow: the largest size predicted by the law fitted without it)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

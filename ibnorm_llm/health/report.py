"""health.md: what the monitor saw in each run, its largest values and spikes, and links to the figures."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ibnorm_llm.health.errors import HealthError
from ibnorm_llm.health.plots import comparison, heatmap
from ibnorm_llm.health.series import FAMILIES, RunHealth, short_name

HEADLINE = (
    ("norm", "in_max"), ("norm", "in_kurtosis"), ("norm", "out_kurtosis"), ("norm", "saturated"),
    ("norm", "eps_dominated"), ("norm", "gain_max"), ("block", "stream_max"), ("block", "massive"),
    ("block", "attn_logit_max"), ("param", "grad_norm"), ("param", "update_ratio"), ("output", "max_logit"),
)
"""The statistics the summary names the largest value of (where it occurs, when)."""

HEATMAP_FAMILIES = FAMILIES[:3]
"""The families drawn as layer x step heatmaps (the output family has one value per step: curves only)."""

LAST_STEP = (
    ("norm", "in_kurtosis"), ("norm", "out_kurtosis"), ("norm", "saturated"), ("norm", "mean_share"),
    ("block", "stream_rms"), ("block", "massive"), ("block", "attn_entropy"), ("block", "attn_logit_max"),
    ("output", "max_logit"), ("output", "z_loss"),
)
"""The statistics compared across runs at each run's last monitor step."""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"


def _largest(run: RunHealth, family: str, statistic: str) -> tuple[float, str, int] | None:
    best = None
    for where in run.places(family, statistic):
        for step, value in run.values(family, where, statistic):
            if best is None or value > best[0]:
                best = (value, where, step)
    return best


def _at_last_step(run: RunHealth, family: str, statistic: str) -> str:
    last = run.steps[-1]
    values = [points[-1][1] for where in run.places(family, statistic)
              if (points := run.values(family, where, statistic)) and points[-1][0] == last]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3g}"
    return f"{np.mean(values):.3g} [{min(values):.3g}, {max(values):.3g}]"


def _where(family: str, where: str) -> str:
    return {"block": f"block {where}", "output": "output"}.get(family, short_name(where))


def _summary(runs: list[RunHealth]) -> list[str]:
    lines = []
    for family, statistic in (("norm", "in_max"), ("norm", "out_kurtosis"), ("block", "massive"), ("block", "attn_logit_max")):
        found = [(run, best) for run in runs if (best := _largest(run, family, statistic)) is not None]
        if found:
            run, (value, where, step) = max(found, key=lambda item: item[1][0])
            lines.append(f"Largest `{statistic}`: {value:.3g}, in {run.label} at {_where(family, where)}, step {step}.")
    for run in runs:
        if (saturated := _largest(run, "norm", "saturated")) is not None:
            value, where, step = saturated
            lines.append(f"{run.label}: `saturated` at the last monitor step (step {run.steps[-1]}), mean [min, max] over "
                         f"its bounded norms: {_at_last_step(run, 'norm', 'saturated')}; largest over training {value:.3g} "
                         f"({short_name(where)}, step {step})"
                         + (": above 0.9, where a layer passes on little more than its inputs' signs" if value > 0.9 else "")
                         + ".")
        steps = ", ".join(str(e.step) for e in run.spikes)
        lines.append(f"{run.label}: {len(run.spikes)} spike{'s' if len(run.spikes) != 1 else ''}"
                     + (f" (step{'s' if len(run.spikes) != 1 else ''} {steps}); {run.skipped_steps} step(s) skipped"
                        if run.spikes else "") + ".")
    return lines


def write_health(runs: list[RunHealth], out: str | Path) -> Path:
    """Write ``out``/health.md, ``out``/heatmaps/<run>/<family>.png and ``out``/curves/<family>_<statistic>.png."""
    if not runs:
        raise HealthError("no runs to report on: give at least one run folder")
    labels = [run.label for run in runs]
    if len(set(labels)) != len(labels):
        raise HealthError(f"run labels {labels} are not unique: name them with --labels")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Health: {', '.join(labels)}", "", "Monitor statistics as training logged them (docs/monitoring.md "
             "gives every formula). Each run's own last monitor step is its \"last step\".", "", "## Summary", ""]
    lines += [f"- {line}" for line in _summary(runs)]
    lines += ["", "## Runs", "", "| run | folder | monitor steps | first, last | spikes | skipped (train.skip_spikes) |",
              "|---|---|---|---|---|---|"]
    for run in runs:
        steps = run.steps
        lines.append(f"| {run.label} | {run.run_dir} | {len(steps)} | {steps[0]}, {steps[-1]} | {len(run.spikes)} | "
                     f"{run.skipped_steps} |")
    lines += ["", "## At the last monitor step (mean [min, max] over layers)", "",
              "| statistic | " + " | ".join(labels) + " |", "|---|" + "---|" * len(runs)]
    for family, statistic in LAST_STEP:
        cells = [_at_last_step(run, family, statistic) for run in runs]
        if any(cell != "–" for cell in cells):
            lines.append(f"| {family}/{statistic} | " + " | ".join(cells) + " |")
    lines += ["", "## Largest values over training", "", "| statistic | run | value | where | step |", "|---|---|---|---|---|"]
    for family, statistic in HEADLINE:
        for run in runs:
            if (best := _largest(run, family, statistic)) is not None:
                value, where, step = best
                lines.append(f"| {family}/{statistic} | {run.label} | {value:.4g} | {_where(family, where)} | {step} |")
    spikes = [(run, event) for run in runs for event in run.spikes]
    if spikes:
        lines += ["", "## Spikes", "", "| run | step | what | value | window mean ± sd | moved most | skipped |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {run.label} | {e.step} | {e.kind} | {e.value:.4g} | {e.mean:.4g} ± {e.std:.3g} | {e.layers or '–'} | "
                  f"{'yes' if e.skipped else 'no'} |" for run, e in spikes]
    lines += ["", "## Comparison across runs", "", "Left: over training, the mean over the family's layers; right: "
              "by depth at the first, middle and last monitor step. Dashed vertical lines: spikes.", ""]
    for family in FAMILIES:
        statistics = sorted({s for run in runs for s in run.statistics(family)})
        for statistic in statistics:
            path = comparison(runs, family, statistic, out / "curves" / f"{family}_{statistic}.png")
            if path is not None:
                lines.append(f"![{family}/{statistic}]({path.relative_to(out).as_posix()})")
    lines += ["", "## Per run: layer x step heatmaps", ""]
    for run in runs:
        links = [f"[{family}]({heatmap_path(run.label, family)})" for family in HEATMAP_FAMILIES
                 if heatmap(run, family, out / heatmap_path(run.label, family)) is not None]
        lines.append(f"- {run.label}: " + ", ".join(links))
    path = out / "health.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def heatmap_path(label: str, family: str) -> str:
    """Where :func:`write_health` draws run ``label``'s heatmap of ``family``, relative to its ``out``."""
    return f"heatmaps/{_slug(label)}/{family}.png"


def heatmap_links(out: str | Path, label: str) -> list[tuple[str, str]]:
    """(family, path relative to ``out``) of the heatmaps :func:`write_health` drew for run ``label``."""
    return [(family, path) for family in HEATMAP_FAMILIES if (Path(out) / (path := heatmap_path(label, family))).is_file()]

"""<out>/report.md, fits.csv, points.csv, ladder.png and residuals.png: what a ladder's laws predict, how
far the extrapolation was tested, and what that supports.

Every loss here is a TEST-split loss of a final model; selection saw validation numbers only.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ibnorm_llm.ladder.analysis import LadderAnalysis, analyse
from ibnorm_llm.ladder.fit import PARAMETERS, ScalingLaw
from ibnorm_llm.ladder.plots import plot_ladder, plot_residuals
from ibnorm_llm.ladder.predict import FLOPS_PER_PARAM_TOKEN, Crossover, Prediction, held_out_sentence
from ibnorm_llm.ladder.runner import LadderResults


def _num(value: float) -> str:
    return f"{value:.3g}" if abs(value) >= 1e4 or abs(value) < 1e-2 else f"{value:.4g}"


def _range(interval: tuple[float, float] | None, fmt=_num) -> str:
    return "–" if interval is None else f"[{fmt(interval[0])}, {fmt(interval[1])}]"


def _signed(value: float) -> str:
    return f"{value:+.4f}"


def _difference_verdict(arm: str, baseline: str, target: str, p: Prediction) -> str:
    low, high = p.difference_interval or (float("nan"), float("nan"))
    what = (f"{arm} vs {baseline} at {target}: predicted difference {_signed(p.difference)} "
            f"(95 % interval {_signed(low)} to {_signed(high)})")
    if low > 0:
        return f"{what}: **higher loss predicted** (the interval excludes 0)."
    if high < 0:
        return f"{what}: **lower loss predicted** (the interval excludes 0)."
    return f"{what}: no difference supported (the interval includes 0)."


def _crossover_sentence(arm: str, baseline: str, c: Crossover) -> str:
    searched = f"between {_num(c.low)} and {_num(c.high)} FLOPs (the ladder's smallest run to the largest target)"
    share = f"{c.share:.0%} of {c.resamples} bootstrap resamples cross there"
    if c.estimate is None:
        return f"{arm}: no crossover with {baseline} in the fitted range, {searched}; {share}."
    e = c.estimate
    return (f"{arm} {e.direction} {baseline} at C ≈ {_num(e.compute)} FLOPs (95 % interval "
            f"{_range(c.compute_interval)} among the resamples that cross), N ≈ {_num(e.n_params)} non-embedding "
            f"parameters on the compute-optimal path (interval {_range(c.n_interval)}); {share}, searched {searched}.")


def _ranking(analysis: LadderAnalysis, arms: list[str]) -> str | None:
    """The order at the largest trained size and budget against the order predicted at the largest target
    (DataDecide, arXiv 2504.11393: ranking at one small size is a strong baseline for a scaling law)."""
    fitted = [p for p in analysis.points if p.loss is not None]
    if not fitted or not analysis.targets:
        return None
    top_n = {arm: max((p.N for p in fitted if p.arm == arm), default=0) for arm in arms}
    measured = {}
    for arm in arms:
        mine = [p for p in fitted if p.arm == arm and p.N == top_n[arm]]
        if mine:
            ratio = max(p.tokens_per_param for p in mine)
            losses = [p.loss for p in mine if p.tokens_per_param == ratio]
            measured[arm] = sum(losses) / len(losses)
    target = analysis.targets[-1]
    predicted = {arm: p.loss for arm, p in analysis.predictions[target.name].items()}
    order = " < ".join(sorted(measured, key=measured.get))
    predicted_order = " < ".join(sorted(predicted, key=predicted.get))
    same = "the same order" if order == predicted_order else "**a different order**"
    return (f"Ranking by test loss at the largest trained size and budget: {order}; predicted at {target.name}: "
            f"{predicted_order} ({same}).")


def summary_lines(results: LadderResults, analysis: LadderAnalysis) -> list[str]:
    plan = results.plan
    baseline = plan.spec.study.baseline
    arms = list(plan.study.grids)
    lines = ["**Held-out check** (each arm refitted without its largest size, which it then predicts):", ""]
    for arm in arms:
        if arm in analysis.problems:
            lines.append(f"- {arm}: no law fitted ({analysis.problems[arm]}).")
        elif arm in analysis.held_out:
            lines.append(f"- {held_out_sentence(arm, analysis.held_out[arm])}")
    lines += ["", "**Predictions** (laws fitted to every size):", ""]
    if analysis.targets:
        last = analysis.targets[-1]
        for arm in arms:
            p = analysis.predictions[last.name].get(arm)
            if arm != baseline and p is not None and p.difference is not None:
                lines.append(f"- {_difference_verdict(arm, baseline, last.name, p)}")
    for arm, c in analysis.crossovers.items():
        lines.append(f"- {_crossover_sentence(arm, baseline, c)}")
    if (ranking := _ranking(analysis, arms)) is not None:
        lines.append(f"- {ranking}")
    checked = [arm for arm, h in analysis.held_out.items() if h.points]
    misses = [arm for arm in checked if analysis.held_out[arm].inside < len(analysis.held_out[arm].points)]
    if misses:
        verdict = f"it missed for {', '.join(misses)}, so read their predictions as unsupported. "
    elif checked:
        verdict = "it passed here, which tests one size of extrapolation, not the many to the targets. "
    else:
        verdict = "no arm could be checked, so nothing here tests the extrapolation: add sizes, budgets or seeds. "
    lines += ["", "A prediction is only as good as the held-out check above: " + verdict
              + "The intervals cover the fit's uncertainty from the resampled points, not a change of regime beyond the "
              "ladder (other data, longer sequences, other recipes). N counts non-embedding parameters; the "
              "targets are read at the same definition.", ""]
    return lines


def _law_row(arm: str, fit: str, law: ScalingLaw) -> dict[str, object]:
    row: dict[str, object] = {"arm": arm, "fit": fit, "n_points": law.n_points, "resamples": len(law.samples)}
    for name in PARAMETERS:
        low, high = law.interval(name) if len(law.samples) else (None, None)
        row.update({name: getattr(law, name), f"{name}_low": low, f"{name}_high": high})
    return row


def _write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    if not rows:
        path.write_text("")
        return
    with open(path, "w", newline="") as sink:
        # Columns in first-seen order over all rows: an arm that skips a tuned key has no column of it.
        writer = csv.DictWriter(sink, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        writer.writerows(rows)


def _protocol(results: LadderResults) -> list[str]:
    plan = results.plan
    spec = plan.spec
    arms = list(plan.study.grids)
    lines = ["## Protocol", "",
             f"Base config {spec.study.base}; {len(arms)} arms, baseline {spec.study.baseline}; seeds "
             f"{list(spec.study.seeds)}; budgets {', '.join(f'{b:g}' for b in spec.budgets)} tokens per non-embedding "
             f"parameter (the baseline's N, so every arm trains the same tokens at a size); {plan.tokens_per_step} "
             "tokens per step; schedule wsd, each budget's run branching from the shorter one's decay start.",
             f"Learning rate: {spec.lr_rule.describe()}; chosen on the validation loss at the largest budget "
             "(selection.json).", ""]
    lines += [f"Note: {note}" for note in plan.notes]
    lines += ["| size | shape | " + " | ".join(f"N {arm}" for arm in arms) + " | N total (baseline) | steps per budget |",
              "|---|---|" + "---|" * len(arms) + "---|---|"]
    for size in plan.sizes:
        shape = ", ".join(f"{k.removeprefix('model.')} {v}" for k, v in spec.sizes[size].items())
        totals = {p.N_total for p in results.points if p.size == size and p.arm == spec.study.baseline and p.N_total}
        steps = ", ".join(str(b.steps) for b in plan.budgets[size])
        lines.append(f"| {size} | {shape} | " + " | ".join(f"{plan.n(arm, size):,}" for arm in arms)
                     + f" | {', '.join(f'{t:,}' for t in sorted(totals)) or '–'} | {steps} |")
    lines += ["", "| arm | size | chosen | validation loss (largest budget) | at grid edge | diverged grid points |",
              "|---|---|---|---|---|---|"]
    for arm, by_size in results.choices.items():
        for size, choice in by_size.items():
            lines.append(f"| {arm} | {size} | {choice.point.describe()} | {choice.validation_loss:.4f} | "
                         f"{', '.join(choice.at_edge) or '–'} | {len(choice.failed)} |")
    diverged = [p.run for p in results.points if p.loss is None]
    if diverged:
        lines += ["", f"Diverged or without a test loss (left out of the fits): {', '.join(diverged)}."]
    return lines + [""]


def _sections(results: LadderResults, analysis: LadderAnalysis) -> list[str]:
    baseline = results.plan.spec.study.baseline
    lines = ["## Fitted laws", "", "L(N, D) = E + A / N^alpha + B / D^beta, N non-embedding parameters, D tokens; "
             "95 % bootstrap intervals in brackets (fits.csv).", "",
             "| arm | fit | points | E | A | alpha | B | beta |", "|---|---|---|---|---|---|---|---|"]
    for arm, law in analysis.laws.items():
        cells = [f"{_num(getattr(law, n))} {_range(law.interval(n)) if len(law.samples) else ''}" for n in PARAMETERS]
        lines.append(f"| {arm} | all sizes | {law.n_points} | " + " | ".join(cells) + " |")
    lines += ["", "## Held-out check at the largest size", "",
              "| arm | size | budget | measured (seeds) | predicted | 95 % interval | error | inside |",
              "|---|---|---|---|---|---|---|---|"]
    for arm, check in analysis.held_out.items():
        if check.problem:
            lines.append(f"| {arm} | {check.size} | – | – | – | – | {check.problem} | – |")
        for h in check.points:
            lines.append(f"| {arm} | {check.size} | {h.tokens_per_param:g} | {h.measured:.4f} ({h.seeds}) | "
                         f"{h.predicted:.4f} | {_range(h.interval, lambda v: f'{v:.4f}')} | {_signed(h.error)} "
                         f"({h.relative_error:+.1%}) | {'yes' if h.inside else '**no**'} |")
    lines += ["", "The interval is the refitted law's bootstrap interval widened by the scatter the fit leaves on its "
              "own points (RMS of the log residuals, over the square root of the seeds), since the measured value "
              "carries seed noise the law's mean does not.", "",
              "## Predictions at the targets", "",
              f"Each target preset with the arm's norm, at {results.plan.spec.target_tokens_per_param:g} tokens per "
              "non-embedding parameter (of the baseline's model).", "",
              f"| target | N | D | C (FLOPs) | arm | predicted loss | 95 % interval | vs {baseline} | 95 % interval |",
              "|---|---|---|---|---|---|---|---|---|"]
    for target in analysis.targets:
        for arm, p in analysis.predictions[target.name].items():
            diff = "–" if p.difference is None else _signed(p.difference)
            lines.append(f"| {target.name} | {target.n_params[arm]:,} | {_num(target.tokens)} | "
                         f"{_num(target.compute(arm))} | {arm} | {p.loss:.4f} | "
                         f"{_range(p.interval, lambda v: f'{v:.4f}')} | {diff} | "
                         f"{_range(p.difference_interval, _signed)} |")
    lines += ["", f"## Crossover with {baseline}", "",
              "On each law's compute-optimal path (the N and D = C / 6N that minimise the loss at compute C), the "
              f"first compute where the arm's loss crosses {baseline}'s.", "",
              "| arm | direction | compute (FLOPs) | 95 % interval | N on the path | 95 % interval | resamples crossing |",
              "|---|---|---|---|---|---|---|"]
    for arm, c in analysis.crossovers.items():
        if c.estimate is None:
            lines.append(f"| {arm} | no crossover in the fitted range | – | {_range(c.compute_interval)} | – | "
                         f"{_range(c.n_interval)} | {c.share:.0%} |")
        else:
            lines.append(f"| {arm} | {c.estimate.direction} | {_num(c.estimate.compute)} | {_range(c.compute_interval)} "
                         f"| {_num(c.estimate.n_params)} | {_range(c.n_interval)} | {c.share:.0%} |")
    return lines + ["", "Figures: ladder.png (loss against compute, laws and bands, targets), residuals.png.", ""]


def write_report(results: LadderResults, n_bootstrap: int = 200) -> Path:
    """Fit, predict and write every report file into the ladder's folder; returns report.md's path."""
    plan = results.plan
    out = plan.out
    arms = list(plan.study.grids)
    # Bootstrap resamples of a poorly fixed law can have huge exponents; their overflow to inf is harmless here.
    with np.errstate(over="ignore", invalid="ignore"):
        analysis = analyse(plan, results.points, n_bootstrap=n_bootstrap)
    lines = [f"# Ladder {plan.spec.name}", "", "## What this ladder supports", "",
             *summary_lines(results, analysis), *_protocol(results), *_sections(results, analysis)]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    rows = [_law_row(arm, "all sizes", law) for arm, law in analysis.laws.items()]
    rows += [_law_row(arm, f"without {check.size}", check.law) for arm, check in analysis.held_out.items()
             if check.law is not None]
    _write_csv(out / "fits.csv", rows)
    point_rows = []
    for p in results.points:
        law = analysis.laws.get(p.arm)
        fitted = float(law.predict(p.N, p.D)) if law is not None else None
        point_rows.append({
            "arm": p.arm, "size": p.size, "tokens_per_param": p.tokens_per_param, "seed": p.seed, "N": p.N,
            "N_total": p.N_total, "D": p.D, "C": FLOPS_PER_PARAM_TOKEN * p.N * p.D, "test_loss": p.loss,
            "validation_loss": p.validation_loss, "fitted_loss": fitted,
            "residual": None if fitted is None or p.loss is None else p.loss - fitted,
            **{f"point.{k}": v for k, v in p.point.values}, "run": p.run,
        })
    _write_csv(out / "points.csv", point_rows)
    plot_ladder(analysis, arms, out / "ladder.png")
    plot_residuals(analysis, arms, out / "residuals.png")
    return report

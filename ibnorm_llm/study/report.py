"""<out>/report.md, report.csv and runs.csv: what a study found, and what it does not support.

Numbers per arm come from the TEST split of its final runs (the chosen point at every seed);
the tuning table shows VALIDATION numbers only, which is all that selection saw.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from ibnorm_llm.config import EvalConfig
from ibnorm_llm.config.eval_flags import eval_flags
from ibnorm_llm.evaluation.comparison.summaries import TaskScore, load_summary
from ibnorm_llm.health import HealthError, load_run, write_health
from ibnorm_llm.health.report import heatmap_links
from ibnorm_llm.stats import SeedTest, Spread, describe_difference, seed_test, spread
from ibnorm_llm.study.claims import claims_section
from ibnorm_llm.study.factorial_report import write_factorial
from ibnorm_llm.study.plan import Point
from ibnorm_llm.study.plots import plot_curves, plot_sensitivity
from ibnorm_llm.study.results import Measurement, RunResult
from ibnorm_llm.study.runner import StudyResults


@dataclass(frozen=True)
class TaskSummary:
    metric: str
    value: Spread
    bpb: Spread | None
    chance: float | None

    @property
    def at_chance(self) -> bool:
        return self.chance is not None and self.value.mean <= self.chance


@dataclass(frozen=True)
class ArmSummary:
    arm: str
    point: Point
    validation_loss: float
    """At the tuning seed: what the point was chosen on."""
    test_loss: dict[int, float]
    test_bpb: dict[int, float]
    diverged_seeds: tuple[int, ...]
    at_edge: tuple[str, ...]
    failed_points: tuple[Point, ...]
    skipped: dict[str, str]
    compared_with: str | None = None
    """The arm it is compared with (None: the study's baseline; in a factorial study the baseline level at
    this arm's other levels)."""
    vs_baseline: SeedTest | None = None
    vs_baseline_bpb: SeedTest | None = None
    suites: dict[str, dict[str, TaskSummary]] = field(default_factory=dict)
    """suite -> task -> its score over the seeds."""

    @property
    def loss(self) -> Spread | None:
        return spread(list(self.test_loss.values())) if self.test_loss else None

    @property
    def bpb(self) -> Spread | None:
        return spread(list(self.test_bpb.values())) if self.test_bpb else None


def _test_value(measured: Measurement | None) -> float | None:
    if measured is None:
        return None
    if measured.split != "test":
        raise ValueError(f"a {measured.split} number was about to be reported as a test number")
    return measured.value


def _per_seed(runs: dict[int, RunResult], attr: str) -> dict[int, float]:
    values = {seed: _test_value(getattr(r, attr)) for seed, r in runs.items() if r.diverged is None}
    return {seed: v for seed, v in values.items() if v is not None}


def _suite_summary(result_dirs: dict[int, Path]) -> dict[str, TaskSummary]:
    by_task: dict[str, list[TaskScore]] = {}
    for directory in result_dirs.values():
        for task, score in load_summary(directory).tasks.items():
            by_task.setdefault(task, []).append(score)
    out = {}
    for task, scores in by_task.items():
        bpbs = [s.bpb for s in scores if s.bpb is not None]
        out[task] = TaskSummary(metric=scores[0].metric, value=spread([s.value for s in scores]),
                                bpb=spread(bpbs) if bpbs else None, chance=scores[0].chance)
    return out


def summarize(results: StudyResults) -> list[ArmSummary]:
    spec = results.plan.spec
    arms = []
    for arm, runs in results.finals.items():
        choice = results.choices[arm]
        arms.append(ArmSummary(
            arm=arm, point=choice.point, validation_loss=choice.validation_loss,
            test_loss=_per_seed(runs, "test_loss"), test_bpb=_per_seed(runs, "test_bpb"),
            diverged_seeds=tuple(s for s, r in runs.items() if r.diverged is not None),
            at_edge=choice.at_edge, failed_points=choice.failed, skipped=results.plan.grids[arm].skipped,
            suites={suite: _suite_summary(by_arm.get(arm, {})) for suite, by_arm in results.suite.items()},
        ))
    by_name = {a.arm: a for a in arms}
    compared = []
    for summary in arms:
        base = by_name[spec.baseline_of(summary.arm)]
        summary = replace(summary, compared_with=base.arm)
        if summary.arm != base.arm and summary.test_loss and base.test_loss:
            summary = replace(
                summary, vs_baseline=seed_test(summary.test_loss, base.test_loss),
                vs_baseline_bpb=seed_test(summary.test_bpb, base.test_bpb) if summary.test_bpb and base.test_bpb
                else None,
            )
        compared.append(summary)
    return compared


def verdicts(arms: list[ArmSummary], default_baseline: str, smoke_suites: tuple[str, ...] = ()) -> list[str]:
    """What the study supports and what it does not, in words, one line per finding; each arm against its
    ``compared_with`` arm, or ``default_baseline``. Scores of ``smoke_suites`` are a pipeline check, so
    their chance levels are not findings."""
    by_name = {a.arm: a for a in arms}
    lines = []
    for arm in arms:
        baseline = arm.compared_with or default_baseline
        if arm.arm == baseline:
            continue
        base = by_name[baseline]
        test = arm.vs_baseline
        if test is None:
            lines.append(f"**{arm.arm} vs {baseline}: no comparison** (no finished test numbers on one side).")
            continue
        seed_sd = max(s for s in (arm.loss.sd, base.loss.sd, 0.0) if s is not None)
        lines.append(describe_difference(arm.arm, baseline, test, seed_sd, quantity="nats test loss",
                                         lower_is_better=True))
    for arm in arms:
        if arm.at_edge:
            lines.append(f"{arm.arm}'s chosen {', '.join(arm.at_edge)} is at the edge of the grid: its optimum may lie "
                         "outside, so the comparison may be unfair to it (widen the grid).")
        if arm.diverged_seeds:
            lines.append(f"{arm.arm} diverged at seed(s) {', '.join(map(str, arm.diverged_seeds))} of its chosen "
                         "settings; its numbers use the other seeds.")
        for suite, tasks in arm.suites.items():
            if suite in smoke_suites:
                continue
            at_chance = [t for t, s in tasks.items() if s.at_chance]
            if at_chance:
                lines.append(f"{arm.arm}: {', '.join(at_chance)} ({suite}) at or below chance; those scores cannot "
                             "rank norms.")
    lines.append("Not supported by any study of this kind: claims beyond its model size, training length, data and "
                 "grid; every number here is for this setting only.")
    return lines


def _fmt(spread_: Spread | None) -> str:
    if spread_ is None:
        return "-"
    return f"{spread_.mean:.4f} ± {spread_.sd:.4f}" if spread_.sd is not None else f"{spread_.mean:.4f}"


def _diff(test: SeedTest | None) -> str:
    if test is None:
        return "-"
    sd = f" ± {test.sd_difference:.4f}" if test.sd_difference is not None else ""
    return f"{test.mean_difference:+.4f}{sd}"


def _p(test: SeedTest | None) -> str:
    return f"{test.p:.3g}" if test is not None and test.p is not None else "-"


def _tuning_table(results: StudyResults) -> list[str]:
    lines = ["| arm | point | validation loss | validation bpb | |", "|---|---|---|---|---|"]
    for arm, runs in results.tuning.items():
        for point, r in runs.items():
            mark = "**chosen**" if point == results.choices[arm].point else ("diverged" if r.diverged else "")
            loss = f"{r.validation_loss.value:.4f}" if r.validation_loss else "-"
            bpb = f"{r.validation_bpb.value:.4f}" if r.validation_bpb else "-"
            lines.append(f"| {arm} | {point.describe()} | {loss} | {bpb} | {mark} |")
    return lines


def _suite_table(arms: list[ArmSummary], settings: EvalConfig) -> list[str]:
    suite = settings.suite
    tasks = list(dict.fromkeys(t for a in arms for t in a.suites.get(suite, {})))
    if not tasks:
        return []
    lines = [f"## {suite} suite on the final runs (mean ± sd over seeds; *at/below chance* marked)", ""]
    if settings.smoke:
        lines += ["**Offline smoke: a pipeline check, not a result.** These scores come from a few items per task "
                  f"with short generations (`{' '.join(eval_flags(settings)[2:])}`); they show that the evaluation "
                  "runs end to end and say nothing about the norms.", ""]
    lines += ["| arm | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for arm in arms:
        cells = []
        for task in tasks:
            s = arm.suites.get(suite, {}).get(task)
            if s is None:
                cells.append("-")
                continue
            cell = f"{s.metric} {_fmt(s.value)}" + (f"; bpb {_fmt(s.bpb)}" if s.bpb else "")
            cells.append(cell + (" *at/below chance*" if s.at_chance else ""))
        lines.append(f"| {arm.arm} | " + " | ".join(cells) + " |")
    chances = {t: s.chance for a in arms for t, s in a.suites.get(suite, {}).items() if s.chance is not None}
    if chances:
        lines += ["", "Chance levels: " + ", ".join(f"{t} {c:.3f}" for t, c in chances.items()) + "."]
    return lines + [""]


def write_csv(arms: list[ArmSummary], results: StudyResults) -> None:
    out = results.plan.out
    with open(out / "report.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arm", "chosen", "validation_loss_tuning_seed", "n", "test_loss_mean", "test_loss_sd",
                         "test_bpb_mean", "test_bpb_sd", "diff_test_loss_vs_baseline", "diff_sd", "paired_p",
                         "diff_test_bpb_vs_baseline", "paired_p_bpb", "diverged_seeds"])
        for a in arms:
            loss, bpb, vs, vsb = a.loss, a.bpb, a.vs_baseline, a.vs_baseline_bpb
            writer.writerow([
                a.arm, a.point.describe(), a.validation_loss, loss.n if loss else 0,
                loss.mean if loss else "", loss.sd if loss and loss.sd is not None else "",
                bpb.mean if bpb else "", bpb.sd if bpb and bpb.sd is not None else "",
                vs.mean_difference if vs else "", vs.sd_difference if vs and vs.sd_difference is not None else "",
                vs.p if vs and vs.p is not None else "", vsb.mean_difference if vsb else "",
                vsb.p if vsb and vsb.p is not None else "", " ".join(map(str, a.diverged_seeds)),
            ])
    with open(out / "runs.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "arm", "point", "seed", "phase", "diverged", "validation_loss", "validation_bpb",
                         "test_loss", "test_bpb"])
        chosen = {arm: c.point for arm, c in results.choices.items()}
        for arm, runs in results.tuning.items():
            for point, r in runs.items():
                final = point == chosen[arm]
                writer.writerow([r.run_dir.name, arm, point.describe(), results.plan.tuning_seed,
                                 "tuning+final" if final else "tuning", bool(r.diverged),
                                 *(m.value if m else "" for m in (r.validation_loss, r.validation_bpb)),
                                 # test numbers of points selection rejected stay unreported
                                 *((m.value if m else "" for m in (r.test_loss, r.test_bpb)) if final else ("", ""))])
        for arm, runs in results.finals.items():
            for seed, r in runs.items():
                if seed != results.plan.tuning_seed:
                    writer.writerow([r.run_dir.name, arm, chosen[arm].describe(), seed, "final", bool(r.diverged),
                                     *(m.value if m else "" for m in (r.validation_loss, r.validation_bpb,
                                                                      r.test_loss, r.test_bpb))])


def _grids(spec) -> str:
    """Which grid each arm tuned, in words."""
    if spec.factorial is None:
        return f"Every arm tuned over {json.dumps(spec.tune) if spec.tune else 'no grid'}"
    return "Each arm tuned over its own grid (" + "; ".join(
        f"{arm} {json.dumps(spec.grid(arm)) if spec.grid(arm) else 'no grid'}" for arm in spec.arms) + ")"


def _selection(spec, tuning_seed: int) -> str:
    if not any(spec.grid(arm) for arm in spec.arms):
        return "No grid is tuned: every arm runs its own settings at"
    return (f"{_grids(spec)} at seed {tuning_seed}; its point chosen on the **validation** split (lowest final "
            "validation loss); that point run with")


def _health_section(results: StudyResults) -> list[str]:
    """health/health.md over each arm's final run at the tuning seed, and links to each arm's heatmaps;
    nothing when the runs were not monitored (monitor.every = 0)."""
    seed = results.plan.tuning_seed
    runs = []
    for arm, by_seed in results.finals.items():
        result = by_seed.get(seed)
        if result is None or result.diverged is not None:
            continue
        try:
            runs.append(load_run(result.run_dir, arm))
        except HealthError:
            continue
    if not runs:
        return []
    out = results.plan.out / "health"
    write_health(runs, out)
    lines = ["## Health (monitor statistics while training, seed " + str(seed) + ")", "",
             "[health/health.md](health/health.md): largest values, spikes, and the curves of every statistic "
             "across arms. Layer x step heatmaps per arm:", ""]
    for run in runs:
        links = ", ".join(f"[{family}](health/{path})" for family, path in heatmap_links(out, run.label))
        lines.append(f"- {run.label}: {links}")
    return [*lines, ""]


def write_report(results: StudyResults) -> Path:
    plan, spec = results.plan, results.plan.spec
    arms = summarize(results)
    out = plan.out
    sensitivity = plot_sensitivity(results, out / "lr_sensitivity.png")
    plot_curves(results, out / "loss_curves.png")
    write_csv(arms, results)
    n_seeds = len(spec.seeds)
    lines = [f"# Study {spec.name}: {', '.join(spec.arms)} (baseline {spec.baseline})", "",
             "## What this study supports", ""]
    smoke = tuple(settings.suite for settings in spec.evals if settings.smoke)
    lines += [f"- {line}" for line in verdicts(arms, spec.baseline, smoke)]
    if spec.factorial is not None:
        lines += ["", *write_factorial(spec.factorial, spec.baseline, {a.arm: a.test_loss for a in arms},
                                       {a.arm: a.test_bpb for a in arms}, out / "interaction.csv")]
    if spec.claims == "ibnorm_paper":
        lines += ["", *claims_section(results)]
    lines += [
        "", "## Protocol", "",
        f"- Base config `{spec.base}` with {json.dumps(spec.overrides) if spec.overrides else 'no overrides'}; "
        f"arms: " + "; ".join(f"{a} {json.dumps(s)}" for a, s in spec.arms.items()) + ".",
        f"- {_selection(spec, plan.tuning_seed)} seeds {', '.join(map(str, spec.seeds))} (n={n_seeds}); the numbers "
        "below are from the **test** split, which selection never saw. A seed sets train.seed and data.shuffle_seed.",
    ]
    for arm in arms:
        for key, reason in arm.skipped.items():
            lines.append(f"- {key} not tuned for {arm.arm}: {reason}.")
        if arm.failed_points:
            lines.append(f"- {arm.arm}: diverged at {'; '.join(p.describe() for p in arm.failed_points)} "
                         "(excluded from selection).")
    lines += [f"- {note}." for note in plan.notes]
    lines += [
        "", "## Test split, chosen settings (mean ± sd over seeds)", "",
        "| arm | chosen | n | test loss | test bpb | Δ test loss vs baseline (paired) | p | Δ test bpb | p (bpb) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for a in arms:
        lines.append(f"| {a.arm}{' (baseline)' if a.arm == a.compared_with else ''} | {a.point.describe()} | "
                     f"{a.loss.n if a.loss else 0} | {_fmt(a.loss)} | {_fmt(a.bpb)} | {_diff(a.vs_baseline)} | "
                     f"{_p(a.vs_baseline)} | {_diff(a.vs_baseline_bpb)} | {_p(a.vs_baseline_bpb)} |")
    lines += ["", "Δ: arm minus baseline per seed (negative = better than the baseline); p: two-sided paired "
              "t-test when both have the same seeds, Welch's otherwise (ibnorm_llm.stats). bpb: bits per byte (loss · tokens / (ln 2 · bytes)), comparable "
              "across tokenizers.", ""]
    for settings in spec.evals:
        lines += _suite_table(arms, settings)
    lines += ["## Tuning (validation split, seed " + str(plan.tuning_seed) + ")", "", *_tuning_table(results), ""]
    if sensitivity is not None:
        lines += ["![validation loss against the tuned value](lr_sensitivity.png)", ""]
    lines += ["![training loss, mean over seeds with the seed spread as a band](loss_curves.png)", "",
              *_health_section(results),
              f"Runs: one folder per run under {out} (configs in configs/, logs in logs/); every run in runs.csv, "
              "the selection in selection.json.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path

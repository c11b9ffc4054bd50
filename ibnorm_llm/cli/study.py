"""Run a study: every arm tuned on validation, the chosen settings at several seeds, test-split numbers.

    ibnorm-llm study --study tiny_norms                    # -> runs/study/tiny_norms/report.md
    ibnorm-llm study --study tiny_norms --dry-run          # the plan, nothing runs
    ibnorm-llm study --study my_study.yaml --jobs 2        # a study file of your own
    ibnorm-llm study --study llama60m_norms --out runs/llama60m_study \\
        --launcher "accelerate launch --config_file launch/ddp.yaml"

--study is a path, or the name of a study file in ./studies or shipped with the package.

Protocol: every arm is tuned over the study's grid at its first seed (grid keys an arm's norm
does not take are skipped for it); each arm's best point is chosen on the validation split and
run with the remaining seeds; final numbers come from a test split selection never saw. Every
run is an ordinary training run under --out; rerunning the same command skips finished runs and
resumes interrupted ones. See docs/studies.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from ibnorm_llm.cli.flags import add_dry_run, add_jobs_and_launcher, add_out
from ibnorm_llm.study import StudyRunner, build_plan, load_study, write_report
from ibnorm_llm.study.plan import StudyPlan
from ibnorm_llm.study.runner import eval_command, run_state, training_command


def describe_plan(plan: StudyPlan, launcher: str | None) -> str:
    spec = plan.spec
    tuning = plan.tuning_runs()
    n_final = len(plan.grids) * (len(spec.seeds) - 1)
    lines = [f"study {spec.name}: {len(plan.grids)} arms, baseline {spec.baseline}, seeds {list(spec.seeds)}, "
             f"out {plan.out}"]
    if spec.factorial is not None:
        factors = "; ".join(f"{factor}: {', '.join(levels)}" for factor, levels in spec.factorial.factors.items())
        lines.append(f"factorial: {factors}; each arm compared with {spec.baseline} at its other levels "
                     f"(report: the two-way table and the interaction, interaction.csv)")
    lines += [f"note: {note}" for note in plan.notes]
    for arm, grid in plan.grids.items():
        if not plan.tunes_itself(arm):
            lines.append(f"arm {arm}: reuses {spec.anchor(arm)}'s tuned point")
            continue
        lines.append(f"arm {arm}: {len(grid.points)} grid point(s)")
        lines += [f"  skip {key}: {reason}" for key, reason in grid.skipped.items()]
    lines.append(f"1) tuning at seed {plan.tuning_seed}: {len(tuning)} runs")
    for run in tuning:
        lines.append(f"  [{run_state(run)}] {run.name}: {shlex.join(training_command(run, launcher))}")
    lines.append("2) per arm, the point with the lowest final validation loss is chosen (selection.json)")
    followers = [arm for arm in plan.grids if not plan.tunes_itself(arm)]
    if followers:
        lines.append(f"   then {len(followers)} arms run at their anchor's chosen point, seed {plan.tuning_seed}: "
                     + ", ".join(f"{arm} (from {spec.anchor(arm)})" for arm in followers))
    if spec.final_seeds == "best_per_anchor":
        n_final = len(set(map(spec.anchor, plan.grids))) * (len(spec.seeds) - 1)
        lines.append("   per anchor and the arms tuned from it, only the best on validation runs the later seeds")
    lines.append(f"3) final runs: the chosen point at seeds {list(spec.seeds[1:])}: {n_final} runs "
                 "(names known after step 2)")
    if spec.analyze is not None:
        lines.append(f"   then the IB analysis of every final checkpoint ({json.dumps(spec.analyze)})")
    example = plan.final_runs({arm: grid.points[0] for arm, grid in plan.grids.items()})[0]
    for settings in spec.evals:
        lines.append(f"4) eval suite {settings.suite} on every final run, e.g. "
                     f"{shlex.join(eval_command(example, settings))}")
    lines.append(f"report: {plan.out / 'report.md'} (+ report.csv, runs.csv, lr_sensitivity.png, loss_curves.png); "
                 f"{len(tuning) + len(followers) + n_final} training runs in all")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", required=True, metavar="NAME|PATH", help="study file (shipped: studies/)")
    add_out(parser, "study folder", default="runs/study/<name>")
    add_dry_run(parser)
    add_jobs_and_launcher(parser)


def run(args: argparse.Namespace) -> int:
    spec = load_study(args.study)
    plan = build_plan(spec, Path(args.out) if args.out else Path("runs/study") / spec.name)
    if args.dry_run:
        print(describe_plan(plan, args.launcher))
        return 0
    results = StudyRunner(plan, launcher=args.launcher, jobs=args.jobs).run()
    print(f"wrote {write_report(results)}", file=sys.stderr)
    return 0

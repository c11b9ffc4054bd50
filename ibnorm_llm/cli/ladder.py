"""Run a norm scaling ladder: every arm at several sizes and token budgets, a law fitted per arm, the
extrapolation tested on the largest size, predictions and crossovers at the target sizes.

    ibnorm-llm ladder --ladder tiny_norms --out runs/ladder --jobs 2        # = make ladder
    ibnorm-llm ladder --ladder tiny_norms --dry-run                         # the plan, nothing runs
    ibnorm-llm ladder --ladder llama_norms --out runs/llama_ladder \\
        --launcher "accelerate launch --config_file launch/ddp.yaml"

--ladder is a path, or the name of a ladder file in ./ladders or shipped with the package. Every
training is an ordinary run under --out; rerunning the same command skips finished runs and resumes
interrupted ones. See docs/ladders.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ibnorm_llm.cli.flags import add_dry_run, add_jobs_and_launcher, add_out


def describe_plan(plan, launcher: str | None) -> str:
    """The plan as --dry-run prints it: sizes, budgets, the tuning runs with their commands, the totals."""
    from ibnorm_llm.ladder.plan import describe_budgets
    from ibnorm_llm.study.runner import run_state, training_command

    spec = plan.spec
    arms = list(plan.study.grids)
    lines = [f"ladder {spec.name}: {len(arms)} arms ({', '.join(arms)}), baseline {spec.study.baseline}, "
             f"{len(plan.sizes)} sizes, budgets {list(spec.budgets)} tokens per non-embedding parameter, seeds "
             f"{list(spec.study.seeds)}, out {plan.out}"]
    lines += [f"note: {note}" for note in plan.notes]
    lines += describe_budgets(plan)
    for arm, grid in plan.study.grids.items():
        lines += [f"arm {arm}: skip {key}: {reason}" for key, reason in grid.skipped.items()]
    tuning = plan.tuning_chains()
    runs = [run for chain in tuning for run in chain.runs]
    lines.append(f"1) tuning ({spec.lr_rule.describe()}) at seed {plan.tuning_seed}: {len(tuning)} chains, "
                 f"{len(runs)} runs, {sum(c.steps for c in tuning):,} steps")
    for run in runs:
        start = "from scratch" if run.parent is None else f"branches from {run.branch_point}"
        lines.append(f"  [{run_state(run.run)}] {run.run.name} ({run.budget.steps} steps, {start}): "
                     f"{shlex.join(training_command(run.run, launcher))}")
    lines.append("2) per arm, the point with the lowest validation loss at the largest budget is chosen (selection.json)")
    # The later chains' names depend on the choice; their length does not.
    provisional = plan.final_chains({arm: {size: grid.points[0] for size in plan.tuning_sizes()}
                                     for arm, grid in plan.study.grids.items()})
    lines.append(f"3) every other size and seed at the chosen settings: {len(provisional)} chains, "
                 f"{len(provisional) * len(spec.budgets)} runs, {sum(c.steps for c in provisional):,} steps "
                 "(names known after step 2)")
    total_steps = sum(c.steps for c in tuning) + sum(c.steps for c in provisional)
    lines.append(f"report: {plan.out / 'report.md'} (+ fits.csv, points.csv, ladder.png, residuals.png); "
                 f"{len(runs) + len(provisional) * len(spec.budgets)} training runs, {total_steps:,} steps, "
                 f"{total_steps * plan.tokens_per_step:,} tokens in all")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ladder", required=True, metavar="NAME|PATH", help="ladder file (shipped: ladders/)")
    add_out(parser, "ladder folder", default="runs/ladder/<name>")
    add_dry_run(parser)
    add_jobs_and_launcher(parser)


def run(args: argparse.Namespace) -> int:
    # The ladder pulls in torch and the model classes: imported here, so --help answers at once.
    from ibnorm_llm.ladder.plan import build_ladder_plan
    from ibnorm_llm.ladder.report import write_report
    from ibnorm_llm.ladder.runner import LadderRunner
    from ibnorm_llm.ladder.spec import load_ladder

    spec = load_ladder(args.ladder)
    plan = build_ladder_plan(spec, Path(args.out) if args.out else Path("runs/ladder") / spec.name)
    if args.dry_run:
        print(describe_plan(plan, args.launcher))
        return 0
    results = LadderRunner(plan, launcher=args.launcher, jobs=args.jobs).run()
    print(f"wrote {write_report(results)}", file=sys.stderr)
    return 0

"""The offline demo: tiny LLaMA models with RMSNorm and IBNorm-S, -L and -T, trained, tested and
compared, then run through both leaderboards and the small suite on the shipped smoke data.

    ibnorm-llm demo                         # runs/demo/report.md (+ loss_curves.png, report.csv)
    ibnorm-llm demo --steps 60              # shorter
    ibnorm-llm demo --no-leaderboard model.d_model=64   # overrides apply to every run

The demo is the shipped study file ``demo`` (studies/demo.yaml): one seed, no tuning, every run on
the same data, tokenizer, seed and schedule, only the norm differs. The report leads with the test
split's loss and bits per byte and the loss curves; the leaderboard sections are marked as the
pipeline check they are. A rerun reuses finished runs; other settings need another --out (or
--fresh, which replaces the demo folder). For a comparison that can support a claim, run a study
(`ibnorm-llm study --study tiny_norms`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from ibnorm_llm.cli.flags import add_jobs_and_launcher, add_out, positive_int
from ibnorm_llm.config import parse_override

DEMO_STUDY = "demo"
DEMO_DIR = Path("runs/demo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=positive_int, help="optimizer steps per run (default: the study file's, 400)")
    add_out(parser, "demo folder", default=str(DEMO_DIR))
    parser.add_argument("--no-leaderboard", dest="leaderboard", action="store_false",
                        help="skip the offline smoke evaluation of the leaderboards and the small suite")
    parser.add_argument("--fresh", action="store_true", help="delete the demo folder first and train every run anew")
    add_jobs_and_launcher(parser)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted.key=value overrides for every run")


def demo_study(steps: int | None, leaderboard: bool, overrides: list[str]) -> dict:
    """The shipped demo study file with the command line's changes."""
    from ibnorm_llm.config import yaml_load
    from ibnorm_llm.shipped import find_named

    path, _ = find_named(DEMO_STUDY, "studies")
    data = yaml_load(path.read_text())
    settings = data["overrides"]
    if steps is not None:
        settings.update({"train.max_steps": steps, "train.eval_every": max(1, steps // 4),
                         "train.checkpoint_every": steps, "optim.warmup_steps": min(settings["optim.warmup_steps"], steps)})
    settings.update(dict(parse_override(item) for item in overrides))
    if not leaderboard:
        data.pop("eval", None)
    return data


def run(args: argparse.Namespace) -> int:
    from ibnorm_llm.study import StudyRunner, build_plan, write_report
    from ibnorm_llm.study.spec import parse_study

    out = Path(args.out) if args.out else DEMO_DIR
    plan = build_plan(parse_study(demo_study(args.steps, args.leaderboard, args.overrides), source="demo"), out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    results = StudyRunner(plan, launcher=args.launcher, jobs=args.jobs).run()
    print(f"wrote {write_report(results)}", file=sys.stderr)
    return 0

"""Download the task datasets (and NLTK punkt_tab) for offline evaluation.

    ibnorm-llm prefetch --out /shared/leaderboard_data                  # both leaderboards
    ibnorm-llm prefetch --out /shared/leaderboard_data --suite small    # the small-model suite
    ibnorm-llm prefetch --out DIR --suite v1 --tasks hellaswag,mmlu
    ibnorm-llm eval --checkpoint CKPT --suite all --offline-data /shared/leaderboard_data --out OUT

Run on a machine with Hub access; copy DIR to the air-gapped one. Exits with status 1 when an item
could not be downloaded (the rest are written; the message names each failure).
"""

from __future__ import annotations

import argparse
import json

from ibnorm_llm.cli.flags import add_out
from ibnorm_llm.config import EVAL_SUITES


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_out(p, "folder to write (the --offline-data layout)", required=True)
    p.add_argument("--suite", default="all", choices=EVAL_SUITES)
    p.add_argument("--tasks", help="comma-separated subset of the suite's tasks")


def run(args: argparse.Namespace) -> int:
    from ibnorm_llm.evaluation.harness.prefetch import prefetch

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    manifest = prefetch(args.out, args.suite, tasks)
    print(json.dumps({name: splits for name, splits in manifest["tasks"].items()}, indent=1))
    return 0

"""Compare evaluated runs: comparison.md, comparison.csv and PNG plots.

    ibnorm-llm compare runs/llama60m_rmsnorm_s*/eval_v1 runs/llama60m_ibnorm_l_s*/eval_v1 --out runs/compare
    ibnorm-llm compare runs/llama_tiny_rmsnorm runs/llama_tiny_ibnorm_l --out runs/compare   # training runs

Each RESULT_DIR is an ``ibnorm-llm eval --out`` directory holding a summary.json, or a training run
folder (runs/<run_name>: held-out and test loss, perplexity and bits per byte of its last evaluated
metrics.jsonl record; one kind per comparison). Runs that differ only in their seed become one row
(mean ± sd); every row is compared with the baseline norm of its preset (rmsnorm for llama-*,
layernorm for gpt2-*, or --baseline KIND for all). Folders without a summary.json (an evaluation
that failed or still runs) are skipped with a note.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ibnorm_llm.cli.errors import CommandError
from ibnorm_llm.cli.flags import add_out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("result_dirs", nargs="+", metavar="RESULT_DIR",
                        help="`ibnorm-llm eval` output directories or training run folders")
    add_out(parser, "where comparison.md/.csv and plots are written", required=True)
    parser.add_argument("--baseline", metavar="KIND", help="baseline norm for every preset (default: per preset)")


def run(args: argparse.Namespace) -> int:
    from ibnorm_llm.evaluation.comparison import write_comparison
    from ibnorm_llm.evaluation.comparison.summaries import SUMMARY_FILE, is_run_folder

    finished = []
    for result_dir in args.result_dirs:
        if Path(result_dir).is_dir() and not (Path(result_dir) / SUMMARY_FILE).is_file() and not is_run_folder(result_dir):
            # e.g. runs/*/eval_v1 matching an evaluation that failed or is still running
            print(f"note: skipping {result_dir}: no {SUMMARY_FILE} (an evaluation that did not finish) and not a "
                  "training run folder", file=sys.stderr)
        else:
            finished.append(result_dir)
    if not finished:
        raise CommandError(f"none of the {len(args.result_dirs)} folders holds a {SUMMARY_FILE} or a training run; "
                           "pass `ibnorm-llm eval --out` directories or runs/<run_name> folders")
    comparison = write_comparison(finished, args.out, baseline=args.baseline)
    print(f"{len(comparison.rows)} rows from {len(finished)} results -> {args.out}/comparison.md, comparison.csv")
    return 0

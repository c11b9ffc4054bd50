"""Compare leaderboard results of several runs: comparison.md, comparison.csv and PNG plots.

    python eval/compare.py runs/eval/llama60m_rmsnorm_s* runs/eval/llama60m_ibnorm_l_s* --out runs/compare

Each RESULT_DIR is an ``eval/leaderboard.py --out`` directory holding a summary.json, or a training
run folder (runs/<run_name>: held-out and test loss, perplexity and bits per byte of its last
evaluated metrics.jsonl record; one kind per comparison). Runs that differ
only in their seed become one row (mean ± sd); every row is compared with the baseline norm of its
preset (rmsnorm for llama-*, layernorm for gpt2-*, or --baseline KIND for all). Folders without a
summary.json (an evaluation that failed or still runs) are skipped with a note.
"""

import argparse
import sys
from pathlib import Path

from ibnorm_llm.evaluation.comparison import ResultError, write_comparison
from ibnorm_llm.evaluation.comparison.summaries import SUMMARY_FILE, is_run_folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("result_dirs", nargs="+", metavar="RESULT_DIR", help="eval/leaderboard.py output directories")
    parser.add_argument("--out", required=True, metavar="DIR", help="where comparison.md/.csv and plots are written")
    parser.add_argument("--baseline", metavar="KIND", help="baseline norm for every preset (default: per preset)")
    args = parser.parse_args(argv)
    finished = []
    for result_dir in args.result_dirs:
        if Path(result_dir).is_dir() and not (Path(result_dir) / SUMMARY_FILE).is_file() and not is_run_folder(result_dir):
            # e.g. runs/eval/* matching an evaluation that failed or is still running
            print(f"note: skipping {result_dir}: no {SUMMARY_FILE} (an evaluation that did not finish) and not a "
                  "training run folder", file=sys.stderr)
        else:
            finished.append(result_dir)
    if not finished:
        parser.exit(2, f"error: none of the {len(args.result_dirs)} folders holds a {SUMMARY_FILE} or a training run; "
                       "pass eval/leaderboard.py --out directories or runs/<run_name> folders\n")
    try:
        comparison = write_comparison(finished, args.out, baseline=args.baseline)
    except ResultError as err:
        parser.exit(2, f"error: {err}\n")
    print(f"{len(comparison.rows)} rows from {len(finished)} results -> {args.out}/comparison.md, comparison.csv")


if __name__ == "__main__":
    main()

"""Compare leaderboard results of several runs: comparison.md, comparison.csv and PNG plots.

    python eval/compare.py runs/eval/llama60m_rmsnorm_s* runs/eval/llama60m_ibnorm_l_s* --out runs/compare

Each RESULT_DIR is an ``eval/leaderboard.py --out`` directory holding a summary.json. Runs that differ
only in their seed become one row (mean ± sd); every row is compared with the baseline norm of its
preset (rmsnorm for llama-*, layernorm for gpt2-*, or --baseline KIND for all).
"""

import argparse

from ibnorm_llm.evaluation.comparison import ResultError, write_comparison


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("result_dirs", nargs="+", metavar="RESULT_DIR", help="eval/leaderboard.py output directories")
    parser.add_argument("--out", required=True, metavar="DIR", help="where comparison.md/.csv and plots are written")
    parser.add_argument("--baseline", metavar="KIND", help="baseline norm for every preset (default: per preset)")
    args = parser.parse_args(argv)
    try:
        comparison = write_comparison(args.result_dirs, args.out, baseline=args.baseline)
    except ResultError as err:
        parser.exit(2, f"error: {err}\n")
    print(f"{len(comparison.rows)} rows from {len(args.result_dirs)} results -> {args.out}/comparison.md, comparison.csv")


if __name__ == "__main__":
    main()

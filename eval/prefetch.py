"""Download the task datasets (and NLTK punkt_tab) for offline evaluation.

    python eval/prefetch.py --out /shared/leaderboard_data              # both leaderboards
    python eval/prefetch.py --out /shared/leaderboard_data --suite small   # the small-model suite
    python eval/prefetch.py --out DIR --suite v1 --tasks hellaswag,mmlu
    python eval/leaderboard.py --checkpoint CKPT --suite all --offline-data /shared/leaderboard_data --out OUT

Run on a machine with Hub access; copy DIR to the air-gapped one.
"""

from __future__ import annotations

import argparse
import json
import sys

from ibnorm_llm.evaluation.harness.prefetch import prefetch
from ibnorm_llm.evaluation.harness.suites import SUITE_CHOICES, SuiteError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder to write (the --offline-data layout)")
    p.add_argument("--suite", default="all", choices=SUITE_CHOICES)
    p.add_argument("--tasks", help="comma-separated subset of the suite's tasks")
    args = p.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    try:
        manifest = prefetch(args.out, args.suite, tasks)
    except (SuiteError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps({name: splits for name, splits in manifest["tasks"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Evaluate a checkpoint on the Open LLM Leaderboard suites or the small-model suite (lm-evaluation-harness).

    python eval/leaderboard.py --checkpoint runs/x/checkpoints/final --suite v1 --out runs/eval/x
    python eval/leaderboard.py --checkpoint DIR --suite small --out OUT   # 0-shot cloze, above chance at 60M-350M
    python eval/leaderboard.py --checkpoint DIR --suite all --offline-data eval/offline_data --smoke --limit 4 --out OUT
    accelerate launch eval/leaderboard.py --checkpoint DIR --suite v2 --device cuda --out OUT   # data parallel

Writes OUT/summary.json, OUT/results.json (the harness's raw results), OUT/samples/ and
OUT/tasks/ (see ibnorm_llm.evaluation.harness.leaderboard).
"""

from __future__ import annotations

import argparse
import json
import sys

from ibnorm_llm.checkpoint import CheckpointError
from ibnorm_llm.data import DataError
from ibnorm_llm.evaluation.harness.leaderboard import SMOKE_MAX_GEN_TOKS, run_leaderboard
from ibnorm_llm.evaluation.harness.offline import OfflineDataError
from ibnorm_llm.evaluation.harness.suites import SUITE_CHOICES, SuiteError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (Hugging Face format)")
    p.add_argument("--suite", required=True, choices=SUITE_CHOICES, help="small = the small-model suite (arc_easy, arc_challenge, piqa, sciq, lambada_openai, "
                        "hellaswag, winogrande: 0-shot cloze, acc/acc_norm and bits per byte of the correct "
                        "continuation), v1 = Leaderboard I, v2 = Leaderboard II, all = v1 + v2")
    p.add_argument("--out", required=True, help="result directory")
    p.add_argument("--tasks", help="comma-separated subset of the suite's tasks, e.g. hellaswag,arc_challenge")
    p.add_argument("--limit", type=int, help="examples per (sub)task; for smoke runs only")
    p.add_argument("--batch-size", type=int, default=8, help="fixed batch size (scores depend on it); default 8")
    p.add_argument("--offline-data", help="local task data (eval/offline_data, or a folder from eval/prefetch.py)")
    p.add_argument("--smoke", action="store_true",
                   help=f"short generations ({SMOKE_MAX_GEN_TOKS} tokens), fewer bootstrap iterations, partial groups allowed")
    p.add_argument("--max-gen-toks", type=int, help="cap on generated tokens for generative tasks")
    p.add_argument("--allow-partial-groups", action="store_true",
                   help="offline: score a group on the subtasks that have data (recorded in summary.json)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N; default cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--seed", type=int, help="one seed for all harness seeds (default: the harness's 0,1234,1234,1234)")
    p.add_argument("--no-perplexity", action="store_true", help="skip the held-out perplexity")
    p.add_argument("--threads", type=int,
                   help="torch CPU threads (1 is fastest for tiny models on a busy CPU); default: torch's choice")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    try:
        summary = run_leaderboard(
            args.checkpoint, args.suite, args.out, tasks=tasks, limit=args.limit, batch_size=args.batch_size,
            offline_data=args.offline_data, smoke=args.smoke, max_gen_toks=args.max_gen_toks,
            allow_partial_groups=args.allow_partial_groups, device=args.device, dtype=args.dtype, seed=args.seed,
            perplexity=not args.no_perplexity,
        )
    except (CheckpointError, OfflineDataError, SuiteError, DataError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if summary is not None:
        scores = {name: round(entry["value"], 4) for name, entry in summary["tasks"].items()}
        print(json.dumps({"out": args.out, "scores": scores, "perplexity": summary["perplexity"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Evaluate a checkpoint on the Open LLM Leaderboard suites or the small-model suite (lm-evaluation-harness).

    ibnorm-llm eval --checkpoint runs/x/checkpoints/final --suite v1
    ibnorm-llm eval --checkpoint DIR --suite small --out OUT   # 0-shot cloze, above chance at 60M-350M
    ibnorm-llm eval --checkpoint DIR --suite all --smoke --limit 4   # offline, on the shipped smoke data
    accelerate launch -m ibnorm_llm eval --checkpoint DIR --suite v2 --device cuda --out OUT   # data parallel

Writes OUT/summary.json, OUT/results.json (the harness's raw results), OUT/samples/ and OUT/tasks/
(see ibnorm_llm.evaluation.harness.leaderboard). OUT defaults to runs/<run>/eval_<suite> for a
checkpoint in a run folder (runs/<run>/checkpoints/<step>), where a study looks for it. The flags are
the fields of the config's ``eval`` section (EvalConfig). --smoke without --offline-data reads the
smoke data shipped with the package, a few handwritten items per task: it shows that the pipeline
runs, and its scores say nothing about a model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ibnorm_llm.cli.errors import CommandError
from ibnorm_llm.cli.flags import add_device, add_out, add_threads, apply_threads, resolve_device
from ibnorm_llm.config.eval_flags import add_eval_arguments, default_eval_dir, eval_config_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (Hugging Face format)")
    add_eval_arguments(p)
    add_out(p, "result directory", default="runs/<run>/eval_<suite> for runs/<run>/checkpoints/<step>")
    add_device(p)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    add_threads(p)


def run(args: argparse.Namespace) -> int:
    settings = eval_config_from_args(args)
    out = Path(args.out) if args.out else default_eval_dir(Path(args.checkpoint), settings.suite)
    if out is None:
        raise CommandError(f"--checkpoint {args.checkpoint} is not in a run folder (runs/<run>/checkpoints/<step>): "
                           "give --out DIR")
    apply_threads(args.threads)
    from ibnorm_llm.evaluation.harness.leaderboard import run_eval

    summary = run_eval(args.checkpoint, settings, out, device=resolve_device(args.device), dtype=args.dtype)
    if summary is not None:
        scores = {name: round(entry["value"], 4) for name, entry in summary["tasks"].items()}
        print(json.dumps({"out": str(out), "scores": scores, "perplexity": summary["perplexity"]}, indent=2))
    return 0

"""Pretrain a model from a run config.

    ibnorm-llm train --config llama_tiny_ibnorm_l.yaml train.max_steps=200
    accelerate launch --config_file launch/ddp.yaml -m ibnorm_llm train --config llama60m_ibnorm_l.yaml
    ibnorm-llm train --list-configs

--config is a YAML path, or the name of a preset: ./configs/<name> first, then the presets shipped
with the package. Extra ``dotted.key=value`` arguments override the file. Bad settings (and a run
folder or checkpoint that cannot be used as asked) exit with status 2 and a one-line message naming
the key or path; a non-finite loss (without train.skip_nonfinite) exits with status 3 and a failed
checkpoint write with status 1, both leaving the last checkpoint intact.
"""

from __future__ import annotations

import argparse
import os
import sys

from ibnorm_llm.cli.flags import add_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config(parser)


def run(args: argparse.Namespace) -> int:
    from ibnorm_llm.config import load_config
    from ibnorm_llm.config.eval_flags import default_eval_dir

    cfg = load_config(args.config, args.overrides)  # before the heavy imports below: a bad setting is reported at once
    from ibnorm_llm.evaluation.harness import run_final_eval
    from ibnorm_llm.train.trainer import train

    result = train(cfg, final_eval=run_final_eval)
    if os.environ.get("RANK", "0") == "0":
        print(f"done: {result.steps} steps, final checkpoint {result.final_checkpoint}", file=sys.stderr)
        if result.eval_scores:
            summary = default_eval_dir(result.final_checkpoint, cfg.eval.suite) / "summary.json"
            print(f"leaderboard ({cfg.eval.suite}): {summary}", file=sys.stderr)
    return 0

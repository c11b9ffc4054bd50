"""Pretrain a model from a run config.

    python scripts/pretrain.py --config llama_tiny_ibnorm_l.yaml train.max_steps=200
    accelerate launch --config_file launch/ddp.yaml scripts/pretrain.py --config llama60m_ibnorm_l.yaml

A bare config name is looked up in ./configs, then in the shipped configs/. Extra ``dotted.key=value`` arguments override
the file. Bad settings (and a run folder or checkpoint that cannot be used as asked) exit with
status 2 and a one-line message naming the key or path; a non-finite loss (without
train.skip_nonfinite) exits with status 3 and a failed checkpoint write with status 1, both
leaving the last checkpoint intact.
"""

from __future__ import annotations

import argparse
import os
import sys

from ibnorm_llm.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="config path, or a file name in ./configs or the shipped configs/")
    parser.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. train.max_steps=100")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:  # before the heavy imports below: a bad setting is reported at once
        print(f"config error: {err}", file=sys.stderr)
        return 2
    from ibnorm_llm.checkpoint import CheckpointError
    from ibnorm_llm.data import DataError
    from ibnorm_llm.evaluation.harness import run_final_eval
    from ibnorm_llm.train.checkpoint import CheckpointWriteError
    from ibnorm_llm.train.trainer import NonFiniteError, train

    try:
        result = train(cfg, final_eval=run_final_eval)
    except NonFiniteError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except CheckpointWriteError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (ConfigError, DataError, CheckpointError) as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") == "0":
        print(f"done: {result.steps} steps, final checkpoint {result.final_checkpoint}", file=sys.stderr)
        if result.eval_scores:
            print(f"leaderboard ({cfg.eval.suite}): {result.run_dir / 'eval' / 'summary.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

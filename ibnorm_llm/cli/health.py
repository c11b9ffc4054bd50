"""The health report of monitored runs: layer x step heatmaps, comparison curves across runs, health.md.

    ibnorm-llm health runs/llama_tiny_rmsnorm runs/llama_tiny_ibnorm_t --out runs/health
    ibnorm-llm health runs/a runs/b --labels RMSNorm IBNorm-T --out runs/health

Each RUN is a run folder whose metrics.jsonl holds monitor statistics (train with monitor.every > 0;
docs/monitoring.md). Writes health.md (largest values, where and when; the statistics at the last
monitor step side by side; spikes), curves/<family>_<statistic>.png (over training, and by depth at
three steps, one line per run) and heatmaps/<run>/<family>.png (layer x step, spikes marked).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ibnorm_llm.cli.errors import CommandError
from ibnorm_llm.cli.flags import add_out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders (runs/<name>) trained with monitor.every > 0")
    add_out(parser, "output folder", default="runs/health")
    parser.add_argument("--labels", nargs="+", help="one name per run (default: the run folders' names)")


def run(args: argparse.Namespace) -> int:
    if args.labels is not None and len(args.labels) != len(args.runs):
        raise CommandError(f"--labels has {len(args.labels)} names for {len(args.runs)} runs: give one per run")
    from ibnorm_llm.health import load_run, write_health

    labels = args.labels or [None] * len(args.runs)
    runs = [load_run(path, label) for path, label in zip(args.runs, labels, strict=True)]
    path = write_health(runs, Path(args.out or "runs/health"))
    print(f"wrote {path}", file=sys.stderr)
    return 0

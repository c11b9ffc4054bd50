"""Helpers shared by the training tests (imported by name: tests/ is not a package)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ibnorm_llm.config import load_config
from ibnorm_llm.train.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[2]


def tiny_config(overrides):
    return load_config(None, overrides)


def losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(Path(run_dir) / "metrics.jsonl")}


def pretrain(overrides, *, launch: list[str] | None = None, env: dict | None = None, timeout: int = 600):
    """Run scripts/pretrain.py in a subprocess, optionally under ``accelerate launch`` args."""
    prefix = [sys.executable, "-m", "accelerate.commands.launch", *launch] if launch else [sys.executable]
    command = [*prefix, str(ROOT / "scripts" / "pretrain.py"), "--config", str(ROOT / "configs" / "llama_tiny_rmsnorm.yaml"),
               *overrides]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(command, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)

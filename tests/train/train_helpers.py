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


PROBE = Path(__file__).resolve().parent / "probe_pretrain.py"


def pretrain_command(overrides, *, launch: list[str] | None = None, probe: bool = False) -> list[str]:
    """``-m ibnorm_llm train`` (or the probing wrapper, probe_pretrain.py), optionally under ``accelerate launch`` args."""
    prefix = [sys.executable, "-m", "accelerate.commands.launch", *launch] if launch else [sys.executable]
    entry = [str(PROBE)] if probe else ["-m", "ibnorm_llm", "train"]
    return [*prefix, *entry, "--config", str(ROOT / "configs" / "llama_tiny_rmsnorm.yaml"), *overrides]


def pretrain_env(env: dict | None = None) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}


def pretrain(overrides, *, launch: list[str] | None = None, env: dict | None = None, probe: bool = False,
             timeout: int = 600):
    """Run ``ibnorm-llm train`` in a subprocess (see pretrain_command)."""
    return subprocess.run(pretrain_command(overrides, launch=launch, probe=probe), cwd=ROOT, env=pretrain_env(env),
                          capture_output=True, text=True, timeout=timeout)


def overrides_for(out_dir: Path, data_files: dict[str, Path]) -> list[str]:
    """A tiny run (2 blocks, d_model 64, seq 32) on the test corpus, writing under ``out_dir``."""
    return [
        f"out_dir={out_dir}",
        "model.preset=llama-tiny", "model.d_model=64", "model.n_layers=2", "model.n_heads=2", "model.d_ff=128",
        "data.source=files", f"data.files=[{data_files['corpus']}]", f"data.cache_dir={data_files['cache']}",
        "data.seq_len=32", "data.val_tokens=256", "data.val_fraction=0.1",
        f"tokenizer.name_or_path={data_files['tokenizer']}", "tokenizer.vocab_size=512",
        "optim.lr=0.003", "optim.warmup_steps=2", "optim.min_lr_ratio=0.1",
        "train.micro_batch_size=4", "train.log_every=1", "train.eval_every=0", "train.eval_batches=2",
        "train.checkpoint_every=0", "logging.wandb='off'", "logging.progress=false",
    ]

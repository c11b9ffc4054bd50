"""Analysis of a saved checkpoint on its own run's held-out text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ibnorm_llm.analysis.capture import gather_tokens
from ibnorm_llm.analysis.report import analyze_model
from ibnorm_llm.checkpoint import RUN_CONFIG_FILE, CheckpointError, load_checkpoint
from ibnorm_llm.config import AnalysisConfig, RunConfig, replace, to_dict
from ibnorm_llm.data.loader import build_val_batches


def held_out_batch(run_cfg: RunConfig, tokenizer, n_tokens: int) -> dict[str, torch.Tensor]:
    """The run's held-out rows as one batch with at least ``n_tokens`` predictable tokens."""
    return gather_tokens(build_val_batches(run_cfg, tokenizer, rank=0, world_size=1), n_tokens)


def analyze_checkpoint(
    path: str | Path,
    cfg: AnalysisConfig | None = None,
    layers: Sequence[int] | None = None,
    device: str = "cpu",
    val_tokens: int | None = None,
) -> dict:
    """Full analysis report (see :func:`analyze_model`) of the checkpoint at ``path`` on its
    run's held-out text, plus the checkpoint's identity (path, run name, norm settings).
    ``val_tokens`` overrides the run's ``data.val_tokens`` (how much held-out text to read)."""
    cfg = AnalysisConfig() if cfg is None else cfg
    if not (Path(path) / RUN_CONFIG_FILE).is_file():
        raise CheckpointError(
            f"{path}: no {RUN_CONFIG_FILE}; the analysis reads the run's data settings from it "
            "(checkpoints written by `ibnorm-llm train` have one)"
        )
    ckpt = load_checkpoint(path, device=device, dtype=torch.float32)
    run_cfg = ckpt.config
    if val_tokens is not None:
        run_cfg = replace(run_cfg, "data.val_tokens", val_tokens)
    batch = held_out_batch(run_cfg, ckpt.tokenizer, cfg.n_tokens)
    batch = {key: value.to(device) for key, value in batch.items()}
    report = analyze_model(ckpt.model, batch, cfg, layers=layers)
    report["checkpoint"] = {
        "path": str(path),
        "run_name": run_cfg.run_name,
        "preset": run_cfg.model.preset,
        "norm": to_dict(run_cfg.model.norm),
    }
    return report

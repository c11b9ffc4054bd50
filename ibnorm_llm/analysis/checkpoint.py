"""Analysis of a saved checkpoint on its own run's held-out text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ibnorm_llm.analysis.capture import gather_tokens
from ibnorm_llm.analysis.report import analyze_model
from ibnorm_llm.config import AnalysisConfig, RunConfig, load_config, replace


def checkpoint_run_config(path: str | Path) -> RunConfig:
    """The resolved run config saved in the checkpoint directory (``config.yaml``)."""
    config_file = Path(path) / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{path}: no config.yaml; the analysis reads the run's data and tokenizer settings from it "
            "(checkpoints written by scripts/pretrain.py have one)"
        )
    return load_config(config_file)


def checkpoint_tokenizer(path: str | Path, run_cfg: RunConfig):
    """The tokenizer saved in the checkpoint, else the one the run config names."""
    from ibnorm_llm.data.tokenizer import ensure_special_tokens, load_tokenizer

    if (Path(path) / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        return ensure_special_tokens(AutoTokenizer.from_pretrained(str(path), trust_remote_code=False))
    return load_tokenizer(run_cfg)


def held_out_batch(run_cfg: RunConfig, tokenizer, n_tokens: int) -> dict[str, torch.Tensor]:
    """The run's held-out rows as one batch with at least ``n_tokens`` predictable tokens."""
    from ibnorm_llm.data.loader import build_val_batches

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
    from ibnorm_llm.config import to_dict
    from ibnorm_llm.models import load_model

    cfg = AnalysisConfig() if cfg is None else cfg
    run_cfg = checkpoint_run_config(path)
    if val_tokens is not None:
        run_cfg = replace(run_cfg, "data.val_tokens", val_tokens)
    tokenizer = checkpoint_tokenizer(path, run_cfg)
    batch = held_out_batch(run_cfg, tokenizer, cfg.n_tokens)
    model = load_model(path, dtype=torch.float32).to(device)
    batch = {key: value.to(device) for key, value in batch.items()}
    report = analyze_model(model, batch, cfg, layers=layers)
    report["checkpoint"] = {
        "path": str(path),
        "run_name": run_cfg.run_name,
        "preset": run_cfg.model.preset,
        "norm": to_dict(run_cfg.model.norm),
    }
    return report

"""Helpers of the study tests (imported by name: tests/ is not a package): a stand-in trainer that writes
what a finished run leaves behind, with chosen losses; study files; a tiny run's overrides."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ibnorm_llm.config import load_config
from ibnorm_llm.study.runner import NONFINITE_EXIT
from ibnorm_llm.train.checkpoint import COMPLETE, STATE_DIR

LossTable = Callable[[str, float, int], tuple[float, float] | None]
"""(norm label, lr, seed) -> (validation loss, test loss), or None for a diverging run."""


def norm_label(cfg) -> str:
    norm = cfg.model.norm
    return norm.kind if norm.variant is None else f"{norm.kind}_{norm.variant}"


class FakeTrainer:
    """``execute`` for StudyRunner: reads the run's config and writes metrics.jsonl and a complete final/."""

    def __init__(self, losses: LossTable, fail_on: int | None = None, by_config: bool = False):
        """``by_config``: ``losses`` takes the run's whole config instead of (norm label, lr, seed)."""
        self.losses, self.fail_on, self.by_config = losses, fail_on, by_config
        self.calls: list[str] = []
        self.configs: dict[str, dict] = {}

    def __call__(self, command: list[str], log: Path) -> int:
        config_path = command[command.index("--config") + 1]
        cfg = load_config(config_path)
        self.calls.append(cfg.run_name)
        self.configs[cfg.run_name] = {"resume": cfg.train.resume, "test": cfg.eval.test,
                                      "test_fraction": cfg.data.test_fraction, "lam": cfg.model.norm.lam}
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            (cfg.run_dir / "checkpoints" / "step_2" / STATE_DIR).mkdir(parents=True)  # interrupted midway
            return 1
        losses = self.losses(cfg) if self.by_config else self.losses(norm_label(cfg), cfg.optim.lr, cfg.train.seed)
        if losses is None:
            return NONFINITE_EXIT
        validation, test = losses
        steps = cfg.train.max_steps
        records = [{"step": s, "loss": validation + 1.0 / s} for s in range(1, steps + 1)]
        records[-1].update(eval_loss=validation, eval_bpb=validation / 2, test_loss=test, test_bpb=test / 2)
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        (cfg.run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        state = cfg.run_dir / "checkpoints" / "final" / STATE_DIR
        state.mkdir(parents=True, exist_ok=True)
        (state / COMPLETE).write_text("done\n")
        return 0


def write_study(path: Path, **changes) -> Path:
    study = {
        "name": "t",
        "base": "llama_tiny_rmsnorm.yaml",
        "overrides": {"train.max_steps": 3},
        "arms": {"rmsnorm": {"model.norm.kind": "rmsnorm"},
                 "ibnorm_t": {"model.norm.kind": "ibnorm", "model.norm.variant": "T"}},
        "baseline": "rmsnorm",
        "tune": {"optim.lr": [0.001, 0.003, 0.01], "model.norm.lam": [2.0, 4.0]},
        "seeds": [0, 1, 2],
    }
    study.update(changes)
    path.write_text(json.dumps(study))
    return path


def tiny_run_overrides(data: dict[str, Path]) -> dict[str, object]:
    """A 2-block d_model 64 LLaMA on the tiny corpus, a few steps: the study's ``overrides``."""
    return {
        "model.d_model": 64, "model.n_layers": 2, "model.n_heads": 2, "model.d_ff": 128,
        "data.source": "files", "data.files": [str(data["corpus"])], "data.cache_dir": str(data["cache"]),
        "data.seq_len": 32, "data.val_tokens": 256, "data.val_fraction": 0.1,
        "tokenizer.name_or_path": str(data["tokenizer"]), "tokenizer.vocab_size": 512,
        "train.max_steps": 6, "train.micro_batch_size": 4, "optim.warmup_steps": 2, "train.log_every": 1,
        "train.eval_every": 3, "train.checkpoint_every": 3, "logging.progress": False, "logging.wandb": "off",
    }

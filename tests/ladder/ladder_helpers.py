"""Helpers of the ladder tests (imported by name: tests/ is not a package): ladder files on the tests' tiny
corpus and tokenizer."""

from __future__ import annotations

import json
from pathlib import Path


def tiny_overrides(data: dict[str, Path]) -> dict[str, object]:
    """One-block models on the tests' corpus, 128 tokens per step: a run is a few steps."""
    return {
        "data.source": "files", "data.files": [str(data["corpus"])], "data.cache_dir": str(data["cache"]),
        "data.seq_len": 32, "data.val_tokens": 256, "data.val_fraction": 0.1, "data.test_fraction": 0.05,
        "tokenizer.name_or_path": str(data["tokenizer"]), "tokenizer.vocab_size": 512,
        "train.micro_batch_size": 4, "train.global_batch_size": 4, "optim.warmup_steps": 1, "train.log_every": 1,
        "train.eval_every": 0, "logging.progress": False, "logging.wandb": "off",
    }


def ladder_dict(data: dict[str, Path] | None = None, **changes) -> dict:
    """2 arms, 3 sizes, 2 budgets, 1 seed, one learning rate: 12 runs of 5 to 50 steps."""
    ladder = {
        "name": "t",
        "base": "llama_tiny_rmsnorm.yaml",
        "overrides": tiny_overrides(data) if data else {
            "train.global_batch_size": 4, "train.micro_batch_size": 4, "data.seq_len": 32, "optim.warmup_steps": 1},
        "arms": {"rmsnorm": {"model.norm.kind": "rmsnorm"},
                 "ibnorm_l": {"model.norm.kind": "ibnorm", "model.norm.variant": "L"}},
        "baseline": "rmsnorm",
        "tune": {"optim.lr": [0.01]},
        "seeds": [0],
        "sizes": {"a": {"model.d_model": 16, "model.n_layers": 1, "model.n_heads": 2, "model.d_ff": 32},
                  "b": {"model.d_model": 24, "model.n_layers": 1, "model.n_heads": 2, "model.d_ff": 48},
                  "c": {"model.d_model": 32, "model.n_layers": 1, "model.n_heads": 2, "model.d_ff": 64}},
        "budgets": [0.25, 0.5],
        "lr_rule": {"kind": "power", "exponent": -0.333},
        "targets": ["llama-60m", "llama-1b"],
    }
    ladder.update(changes)
    return ladder


def write_ladder(path: Path, data: dict[str, Path] | None = None, **changes) -> Path:
    path.write_text(json.dumps(ladder_dict(data, **changes)))
    return path


class FakeTrainer:
    """``execute`` for LadderRunner: reads the run's config and writes what a finished run leaves (metrics with
    a validation and a test loss that fall with width and steps, a complete final/, run.json); a learning rate
    above ``diverge_above`` exits as a non-finite loss."""

    def __init__(self, diverge_above: float = 1.0):
        self.diverge_above = diverge_above
        self.calls: list[tuple[str, str]] = []
        """(run name, train.resume) of every training started."""

    def __call__(self, command: list[str], log: Path) -> int:
        from ibnorm_llm.config import load_config
        from ibnorm_llm.study.runner import NONFINITE_EXIT
        from ibnorm_llm.train.checkpoint import COMPLETE, STATE_DIR

        cfg = load_config(command[command.index("--config") + 1])
        self.calls.append((cfg.run_name, cfg.train.resume))
        if cfg.optim.lr > self.diverge_above:
            return NONFINITE_EXIT
        steps = cfg.train.max_steps
        test = 2.0 + 40.0 / cfg.model.d_model + 30.0 / steps + abs(cfg.optim.lr - 0.01)
        records = [{"step": s, "loss": test + 1.0 / s, "tokens": s * 128} for s in range(1, steps + 1)]
        records[-1].update(eval_loss=test + 0.01, test_loss=test)
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        (cfg.run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        (cfg.run_dir / "run.json").write_text(json.dumps({"n_params": 10_000 * cfg.model.d_model}))
        for name in ("final", f"step_{steps - 1}"):
            state = cfg.run_dir / "checkpoints" / name / STATE_DIR
            state.mkdir(parents=True, exist_ok=True)
            (state / COMPLETE).write_text("done\n")
        return 0

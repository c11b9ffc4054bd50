"""What an evaluation needs to know about a checkpoint directory, checked before any work.

A checkpoint is a Hugging Face model directory (``config.json``, weights, tokenizer files),
plus, when our trainer wrote it, ``config.yaml`` (the resolved run config) and
``trainer_state/trainer.json`` (step and tokens seen). Stock Hugging Face directories are
accepted too; they simply have no run config, step or tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ibnorm_llm.config import ConfigError, RunConfig, config_from_tree, yaml_load
from ibnorm_llm.train.checkpoint import STATE_DIR, is_complete, read_state

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
RUN_CONFIG_FILE = "config.yaml"


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be evaluated; the message names the problem and the fix."""


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    config: RunConfig | None
    """The run's resolved config (``config.yaml``); None for a checkpoint without one."""
    step: int | None
    tokens: int | None

    def run_fields(self) -> dict[str, Any]:
        """The identity of the run for comparison tables: preset, norm, variant, λ, seed ...

        Norm options other than variant and λ (deviation, num_groups ...) are included only when
        set, so runs that differ in them are never averaged together as seeds.
        """
        if self.config is None:
            return {"run_name": self.path.name, "preset": None, "norm": None, "variant": None, "lam": None, "seed": None}
        norm = self.config.model.norm
        options = {k: v for k, v in norm.options().items() if k not in ("variant", "lam", "impl")}
        fields: dict[str, Any] = {
            "run_name": self.config.run_name,
            "preset": self.config.model.preset,
            "norm": norm.kind,
            "variant": norm.variant,
            "lam": norm.lam,
            "seed": self.config.train.seed,
        }
        if options:
            fields["norm_options"] = options
        return fields


def _fail(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(
        f"--checkpoint {path}: {problem}. Pass a checkpoint directory written by the trainer "
        "(runs/<run_name>/checkpoints/final or step_<N>) or by save_pretrained"
    )


def inspect_checkpoint(path: str | Path) -> CheckpointInfo:
    """Validate the directory's files and read its run config, step and tokens."""
    path = Path(path)
    if not path.is_dir():
        raise _fail(path, "no such directory")
    config_json = path / "config.json"
    if not config_json.is_file():
        raise _fail(path, "no config.json")
    try:
        json.loads(config_json.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _fail(path, f"config.json is not valid JSON ({err}); the checkpoint is corrupt") from None
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise _fail(path, f"no model weights (looked for {', '.join(WEIGHT_FILES)})")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise _fail(path, f"no tokenizer files (looked for {', '.join(TOKENIZER_FILES)}); save the tokenizer beside the model")

    config = None
    if (path / RUN_CONFIG_FILE).is_file():
        try:
            tree = yaml_load((path / RUN_CONFIG_FILE).read_text()) or {}
            config = config_from_tree(tree)
        except (yaml.YAMLError, ConfigError) as err:
            raise _fail(path, f"{RUN_CONFIG_FILE} is not a valid run config ({err})") from None

    step = tokens = None
    if (path / STATE_DIR).is_dir():
        if not is_complete(path):
            raise _fail(path, f"{STATE_DIR}/ is incomplete (the save was interrupted); use the previous checkpoint")
        state = read_state(path)
        step, tokens = state.step, state.tokens
    return CheckpointInfo(path=path, config=config, step=step, tokens=tokens)

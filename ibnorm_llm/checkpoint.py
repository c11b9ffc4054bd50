"""Reading a checkpoint directory: one loader for evaluation, analysis, export and resume.

    ckpt = load_checkpoint("runs/x/checkpoints/final")
    ckpt.model, ckpt.tokenizer, ckpt.config, ckpt.step      # config: the run's RunConfig (or None)
    info = inspect_checkpoint(path)                         # the same checks, without loading weights

A checkpoint is a Hugging Face model directory (``config.json``, weights, tokenizer files),
plus, when our trainer wrote it (``ibnorm_llm.train.checkpoint``), ``config.yaml`` (the resolved
run config) and ``trainer_state/`` (``trainer.json`` with step and tokens; ``COMPLETE`` written
last). Stock Hugging Face directories (e.g. ``ibnorm-llm export`` output) load too; they have
no run config, step or tokens. Every problem raises :class:`CheckpointError` naming it (as
``--checkpoint PATH``, the flag of every script that reads one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml
from transformers import AutoTokenizer

from ibnorm_llm.config import ConfigError, RunConfig, config_from_tree, legacy_norm_options, yaml_load
from ibnorm_llm.data.tokenizer import ensure_special_tokens
from ibnorm_llm.models import load_model

STATE_DIR = "trainer_state"
COMPLETE = "COMPLETE"
TRAINER_STATE_FILE = "trainer.json"
RUN_CONFIG_FILE = "config.yaml"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be read; the message names the problem and the fix."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint directory says about itself, read without loading the weights."""

    path: Path
    config: RunConfig | None
    """The run's resolved config (``config.yaml``); None for a directory without one."""
    step: int | None
    """Optimizer steps trained (``trainer_state/trainer.json``); None without trainer state."""
    tokens: int | None


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the model (eval mode), its tokenizer and what :class:`CheckpointInfo` holds."""

    info: CheckpointInfo
    model: object
    """A ``transformers.PreTrainedModel``: this package's classes for our checkpoints, stock ones otherwise."""
    tokenizer: object | None
    """None when loaded with ``tokenizer=False``."""

    @property
    def path(self) -> Path:
        return self.info.path

    @property
    def config(self) -> RunConfig | None:
        return self.info.config

    @property
    def step(self) -> int | None:
        return self.info.step


def is_complete(path: str | Path) -> bool:
    """Whether the trainer finished writing the checkpoint at ``path`` (``trainer_state/COMPLETE``)."""
    return (Path(path) / STATE_DIR / COMPLETE).is_file()


def _fail(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(
        f"--checkpoint {path}: {problem}. Pass a checkpoint directory written by the trainer "
        "(runs/<run_name>/checkpoints/final or step_<N>) or by save_pretrained"
    )


def inspect_checkpoint(path: str | Path, *, tokenizer: bool = True) -> CheckpointInfo:
    """Check the directory's files (tokenizer files too unless ``tokenizer=False``) and read its
    run config, step and tokens (no weights loaded)."""
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
    if tokenizer and not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise _fail(path, f"no tokenizer files (looked for {', '.join(TOKENIZER_FILES)}); save the tokenizer beside the model")

    config = None
    if (path / RUN_CONFIG_FILE).is_file():
        try:
            config = config_from_tree(legacy_norm_options(yaml_load((path / RUN_CONFIG_FILE).read_text()) or {}))
        except (yaml.YAMLError, ConfigError) as err:
            raise _fail(path, f"{RUN_CONFIG_FILE} is not a valid run config ({err})") from None

    step = tokens = None
    if (path / STATE_DIR).is_dir():
        if not is_complete(path):
            raise _fail(path, f"{STATE_DIR}/ is incomplete (the save was interrupted); use the previous checkpoint")
        state = json.loads((path / STATE_DIR / TRAINER_STATE_FILE).read_text())
        step, tokens = int(state["step"]), int(state["tokens"])
    return CheckpointInfo(path=path, config=config, step=step, tokens=tokens)


def load_checkpoint(path: str | Path, *, device: str = "cpu", dtype=None, tokenizer: bool = True) -> Checkpoint:
    """Check and load the checkpoint at ``path``: model (in eval mode, on ``device``, in ``dtype``
    or the saved dtype), tokenizer (the one saved beside it, with pad/EOS ensured; skipped with
    ``tokenizer=False``) and run config."""
    info = inspect_checkpoint(path, tokenizer=tokenizer)
    try:
        model = load_model(info.path, **({} if dtype is None else {"dtype": dtype})).to(device)
        loaded = AutoTokenizer.from_pretrained(str(info.path), trust_remote_code=False) if tokenizer else None
    except Exception as err:  # any failure here means a broken or foreign checkpoint: say which and why
        raise _fail(info.path, f"could not be loaded ({type(err).__name__}: {err})") from err
    return Checkpoint(info=info, model=model.eval(), tokenizer=loaded and ensure_special_tokens(loaded))

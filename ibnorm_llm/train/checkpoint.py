"""Atomic, resumable checkpoints.

Layout of ``runs/<run_name>/checkpoints/step_<N>/`` and ``final/``::

    config.json, model.safetensors, ...   a Hugging Face model directory (save_pretrained)
    tokenizer files                         so the directory is self-contained for lm-eval
    config.yaml                             the resolved run config
    trainer_state/
        trainer.json                        step, tokens, skipped steps, batch plan
        optimizer.pt                        single process / DDP (train.strategies.Replicated)
        accelerate/                         DeepSpeed: accelerator.save_state
        fsdp2/                              FSDP2: sharded model and optimizer (torch.distributed.checkpoint)
        rank_<r>.pt                         per rank: RNG states and the data loader's state
        COMPLETE                            written last

Every rank writes into ``.tmp_<name>/``; after a barrier the main process fsyncs, writes
COMPLETE and renames the folder into place, so a crash at any point leaves either the old
checkpoint or the new one, never a half-written one under a real name. The learning-rate
schedule is a pure function of the step (optim.lr_at), so the step is the scheduler state.
Checkpoints need a file system shared by all ranks (distributed.check_shared_out_dir checks
it at start-up). What is saved for resume is up to the strategy (train.strategies).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ibnorm_llm.checkpoint import COMPLETE, RUN_CONFIG_FILE, STATE_DIR, TRAINER_STATE_FILE, is_complete
from ibnorm_llm.config import ConfigError, RunConfig, save_config, yaml_load


class CheckpointWriteError(RuntimeError):
    """Writing a checkpoint failed; the previous checkpoints are intact and the temporary folder removed."""


@dataclass(frozen=True)
class TrainerState:
    step: int
    """Optimizer steps completed."""
    tokens: int
    """Target tokens trained on (labels != -100, all ranks): padding excluded, see train.metrics."""
    skipped_steps: int
    """Steps skipped for a non-finite loss or gradient (train.skip_nonfinite)."""
    world_size: int
    grad_accum: int
    micro_batch_size: int
    state_format: str | None = None
    """How the optimizer state was saved (the strategy's state_format); None in checkpoints from before it was recorded."""
    spike_skipped_steps: int = 0
    """Steps skipped for a loss or gradient-norm spike (train.skip_spikes); 0 in checkpoints from before it was recorded."""


def checkpoints_root(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def read_state(path: Path) -> TrainerState:
    path = Path(path)
    if not is_complete(path):
        raise ConfigError(
            f"train.resume={path}: not a complete checkpoint (no {STATE_DIR}/{COMPLETE}); "
            "point it at a runs/<name>/checkpoints/step_<N> or final directory, or use train.resume=auto"
        )
    return TrainerState(**json.loads((path / STATE_DIR / TRAINER_STATE_FILE).read_text()))


def _step_of(path: Path) -> int:
    """The step a checkpoint records; from its name (step_<N>) when trainer.json cannot be read."""
    try:
        return int(json.loads((path / STATE_DIR / TRAINER_STATE_FILE).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        name = path.name.removeprefix("step_")
        return int(name) if name.isdigit() else -1


def candidates(run_dir: Path) -> list[Path]:
    """The complete checkpoints of a run, newest first (final/ first on a tie)."""
    root = checkpoints_root(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if not p.name.startswith(".") and is_complete(p)]
    return sorted(found, key=lambda p: (_step_of(p), p.name == "final"), reverse=True)


def find_latest(run_dir: Path) -> Path | None:
    """The complete checkpoint with the most steps (final/ wins a tie), or None."""
    found = candidates(run_dir)
    return found[0] if found else None


def _safetensors_problem(file: Path) -> str | None:
    """Whether a safetensors file is whole: its header parses and describes exactly the bytes there."""
    size = file.stat().st_size
    with open(file, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{file.name} is truncated ({size} bytes)"
        n = int.from_bytes(head, "little")
        if n > size - 8:
            return f"{file.name} is truncated ({size} bytes, shorter than its own header)"
        try:
            header = json.loads(f.read(n))
            end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return f"{file.name} has an unreadable header"
    if size != 8 + n + end:
        return f"{file.name} is truncated ({size} bytes, its header describes {8 + n + end})"
    return None


def _torch_file_problem(file: Path) -> str | None:
    """torch.save writes a zip archive whose directory sits at the end: a truncated file has none."""
    import zipfile

    try:
        with zipfile.ZipFile(file):
            return None
    except (zipfile.BadZipFile, OSError) as err:
        return f"{file.relative_to(file.parents[1])} is truncated or corrupt ({err})"


def checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be resumed from, or None when its files are whole.

    Reads headers and directories only (no tensors): trainer.json, config.yaml, every safetensors
    file and every torch.save file (model, optimizer, per-rank state).
    """
    path = Path(path)
    if not is_complete(path):
        return f"no {STATE_DIR}/{COMPLETE} (the save was interrupted)"
    try:
        state = TrainerState(**json.loads((path / STATE_DIR / TRAINER_STATE_FILE).read_text()))
    except (OSError, ValueError, TypeError) as err:
        return f"{STATE_DIR}/{TRAINER_STATE_FILE} cannot be read ({err})"
    if (path / RUN_CONFIG_FILE).is_file():
        import yaml

        try:
            yaml.safe_load((path / RUN_CONFIG_FILE).read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            return f"{RUN_CONFIG_FILE} cannot be read ({type(err).__name__})"
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError) as err:
            return f"{index.name} cannot be read ({err})"
    elif (path / "model.safetensors").is_file():
        weight_files = ["model.safetensors"]
    else:
        return "no model.safetensors (or index)"
    for name in weight_files:
        if not (path / name).is_file():
            return f"{name} is missing"
        if problem := _safetensors_problem(path / name):
            return problem
    for rank in range(state.world_size):
        if not (path / STATE_DIR / f"rank_{rank}.pt").is_file():
            return f"{STATE_DIR}/rank_{rank}.pt is missing"
    for file in sorted((path / STATE_DIR).rglob("*")):
        if file.suffix in (".pt", ".bin") and file.is_file():
            problem = _torch_file_problem(file)
        elif file.suffix == ".safetensors" and file.is_file():
            problem = _safetensors_problem(file)
        else:
            continue
        if problem:
            return problem
    return None


def remove_stale(run_dir: Path) -> None:
    """Clean up after interrupted writes; main process only.

    ``.tmp_*`` are unfinished and deleted. ``.old_<name>`` is a complete checkpoint moved
    aside while its replacement was renamed in: put back if the crash came between the two
    renames, deleted otherwise.
    """
    root = checkpoints_root(run_dir)
    if not root.is_dir():
        return
    for path in root.iterdir():
        if path.name.startswith(".old_"):
            original = root / path.name.removeprefix(".old_")
            if not original.exists() and is_complete(path):
                path.rename(original)
                continue
        if path.name.startswith((".tmp_", ".old_")):
            shutil.rmtree(path)


def prune(run_dir: Path, keep_last: int) -> None:
    """Keep the newest ``keep_last`` complete step checkpoints; final/ is never removed."""
    steps = [p for p in checkpoints_root(run_dir).glob("step_*") if is_complete(p)]
    steps.sort(key=lambda p: read_state(p).step)
    for path in steps[:-keep_last]:
        shutil.rmtree(path)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_tree(path: Path) -> None:
    for root, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        dir_fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def save_checkpoint(
    target: Path,
    *,
    accelerator,
    strategy,
    model: torch.nn.Module,
    optimizer,
    tokenizer,
    cfg: RunConfig,
    state: TrainerState,
    loader,
) -> Path:
    """Write ``target`` atomically (collective: every rank must call it)."""
    target = Path(target)
    tmp = target.parent / f".tmp_{target.name}"
    try:
        if accelerator.is_main_process:
            if tmp.exists():
                shutil.rmtree(tmp)
            (tmp / STATE_DIR).mkdir(parents=True)
        accelerator.wait_for_everyone()
        write_model_dir(tmp, accelerator=accelerator, strategy=strategy, model=model, tokenizer=tokenizer, cfg=cfg)
        write_training_state(tmp / STATE_DIR, accelerator=accelerator, strategy=strategy, model=model,
                             optimizer=optimizer, loader=loader)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            _commit(tmp, target, state)
    except Exception as err:
        # Disk full, quota, a vanished mount...: the previous checkpoints stay as they are and the
        # unfinished folder goes, so train.resume=auto continues from the last good one.
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        previous = find_latest(target.parent.parent)
        raise CheckpointWriteError(
            f"writing checkpoint {target} failed ({type(err).__name__}: {err}); the unfinished {tmp.name} was "
            f"removed and the newest checkpoint ({previous or 'none yet'}) is intact. Fix the cause (e.g. free space on "
            f"the file system of {target.parent}) and continue with train.resume=auto"
        ) from err
    accelerator.wait_for_everyone()
    return target


def write_model_dir(directory: Path, *, accelerator, strategy, model, tokenizer, cfg: RunConfig) -> None:
    """The Hugging Face model directory: full weights gathered on the main process (a collective
    under ZeRO-3/FSDP2), the tokenizer and the run config."""
    full_state = strategy.full_state_dict(model)
    if accelerator.is_main_process:
        strategy.plain_model(model).save_pretrained(directory, state_dict=full_state, safe_serialization=True)
        tokenizer.save_pretrained(directory)
        save_config(cfg, directory / RUN_CONFIG_FILE)


def write_training_state(state_dir: Path, *, accelerator, strategy, model, optimizer, loader) -> None:
    """What resume needs besides the weights: the strategy's optimizer (and sharded model)
    state, and each rank's RNG streams and data position."""
    strategy.save_state(model, optimizer, state_dir)
    rank = accelerator.process_index
    torch.save({"rng": rng_state(), "data": loader.state_dict()}, state_dir / f"rank_{rank}.pt")


def _commit(tmp: Path, target: Path, state: TrainerState) -> None:
    """Mark ``tmp`` complete and rename it into place (main process, after every rank wrote)."""
    (tmp / STATE_DIR / TRAINER_STATE_FILE).write_text(json.dumps(asdict(state), indent=2))
    (tmp / STATE_DIR / COMPLETE).write_text(f"step {state.step}\n")
    _fsync_tree(tmp)
    old = target.parent / f".old_{target.name}"
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    if old.exists():
        shutil.rmtree(old)
    _fsync_tree(target.parent)


def check_compatible(
    state: TrainerState, path: Path, world_size: int, grad_accum: int, micro: int, state_format: str
) -> None:
    """Exact resume needs the same data split, batch shape and optimizer-state layout as the run that saved."""
    if state.state_format is not None and state.state_format != state_format:
        raise ConfigError(
            f"train.resume={path}: the checkpoint's optimizer state was saved as {state.state_format}, this launch "
            f"uses {state_format}. Resume with the launch file the checkpoint was written with."
        )
    if (state.world_size, state.grad_accum, state.micro_batch_size) != (world_size, grad_accum, micro):
        raise ConfigError(
            f"train.resume={path}: the checkpoint was written with world size {state.world_size}, "
            f"gradient accumulation {state.grad_accum} and train.micro_batch_size={state.micro_batch_size}, "
            f"this launch has {world_size}, {grad_accum} and {micro}. Resume with the same number of processes "
            "and batch settings (each rank restores its own data position)."
        )


def check_same_optimizer(path: Path, name: str) -> None:
    """The optimizer state of one optim.name does not load into another (AdamW's moments are not Muon's
    momentum): say so, naming the key, instead of failing inside load_state_dict."""
    config = Path(path) / RUN_CONFIG_FILE
    if not config.is_file():
        return
    optim = (yaml_load(config.read_text()) or {}).get("optim") or {}
    saved = optim.get("name", "adamw")
    if saved != name:
        raise ConfigError(
            f"train.resume={path}: the checkpoint was trained with optim.name={saved}, this config has "
            f"optim.name={name}, and the optimizer state does not carry over. Resume with optim.name={saved}, "
            "or start a new run from these weights elsewhere."
        )


def load_rank_state(path: Path, rank: int) -> dict[str, Any]:
    """RNG and data-loader state that rank ``rank`` saved (our own file: full unpickling)."""
    return torch.load(Path(path) / STATE_DIR / f"rank_{rank}.pt", weights_only=False)


def state_dir(path: Path) -> Path:
    return Path(path) / STATE_DIR


def load_model_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a checkpoint's safetensors (single file or sharded index) into ``model`` exactly.

    Tied parameters (GPT-2's lm_head) are stored once by save_pretrained; any other missing
    or unexpected tensor is an error.
    """
    from safetensors.torch import load_file

    path = Path(path)
    index = path / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (path / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise ConfigError(f"train.resume={path}: no model.safetensors (or index) in the checkpoint")
    weights: dict[str, torch.Tensor] = {}
    for name in files:
        weights.update(load_file(path / name))
    try:
        result = model.load_state_dict(weights, strict=False)
    except RuntimeError as err:  # shapes that differ: the first line names the model class, the next ones the tensors
        lines = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
        raise ConfigError(
            f"train.resume={path}: the checkpoint's weights do not match model.* of this config ({len(lines)} "
            f"tensor(s) differ, e.g. {lines[0] if lines else err})"
        ) from None
    loaded = {id(p) for n, p in model.named_parameters() if n in weights}
    named = dict(model.named_parameters(remove_duplicate=False))
    missing = [k for k in result.missing_keys if not (k in named and id(named[k]) in loaded)]
    if missing or result.unexpected_keys:
        raise ConfigError(
            f"train.resume={path}: the checkpoint's weights do not match model.* of this config "
            f"(missing {missing[:5]}, unexpected {result.unexpected_keys[:5]})"
        )

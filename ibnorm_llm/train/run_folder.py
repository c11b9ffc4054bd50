"""The run folder's checks: everything is checked before anything is written.

    check_out_dir(cfg)                        out_dir / run folder usable: a folder, creatable, writable
    check_fresh_start(cfg, resume)            no silent overwrite of an earlier run's checkpoints or metrics
    check_free_space(cfg, n_params, ...)      room for one checkpoint (weights + optimizer state)
    clear_run(run_dir)                        train.overwrite=true: remove the earlier run's files

All raise :class:`RunFolderError` (a ConfigError: exit status 2 in the scripts) with a one-line
message naming the path and the fix. docs/reliability.md lists what a run folder guarantees.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ibnorm_llm.config import ConfigError, RunConfig

RUN_FILES = ("checkpoints", "metrics.jsonl", "run.json", "config.yaml", "eval", "wandb")
"""What a run writes into its folder; train.overwrite=true removes exactly these."""


class RunFolderError(ConfigError):
    """The run folder cannot be used as asked; the message names the path and the fix."""


def free_bytes(path: Path) -> int:
    """Free bytes on the file system holding ``path`` (tests replace this to simulate a full disk)."""
    return shutil.disk_usage(path).free


def _existing_ancestor(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def check_out_dir(cfg: RunConfig) -> None:
    """The run folder is (or can be made) a writable folder; checked without creating anything."""
    out_dir, run_dir = Path(cfg.out_dir), cfg.run_dir
    for path in (out_dir, run_dir):
        if path.exists() and not path.is_dir():
            raise RunFolderError(
                f"out_dir={cfg.out_dir}: {path} is a file, not a folder; set out_dir to a folder (or move {path} away)"
            )
    base = _existing_ancestor(run_dir)
    if not base.is_dir():
        raise RunFolderError(
            f"out_dir={cfg.out_dir}: cannot create {run_dir}: {base} is a file, not a folder; set out_dir to a folder"
        )
    for path in (base, run_dir / "checkpoints"):
        if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
            raise RunFolderError(
                f"out_dir={cfg.out_dir}: cannot write to {path} (permission denied); set out_dir to a folder you can "
                f"write to, or make {path} writable"
            )


def is_inside(path: Path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def held(run_dir: Path) -> list[str]:
    """What of an earlier run the folder holds: checkpoints and metrics (empty for an unused folder)."""
    found = []
    root = Path(run_dir) / "checkpoints"
    if root.is_dir():
        found += sorted(f"checkpoints/{p.name}" for p in root.iterdir() if not p.name.startswith("."))
    metrics = Path(run_dir) / "metrics.jsonl"
    if metrics.is_file() and metrics.stat().st_size > 0:
        found.append("metrics.jsonl")
    return found


def check_fresh_start(cfg: RunConfig, resume: Path | None) -> None:
    """A start that does not continue this folder's run must not replace what the folder holds
    unless train.overwrite=true says so."""
    if resume is not None and is_inside(resume, cfg.run_dir):
        if cfg.train.overwrite:
            raise RunFolderError(
                f"train.overwrite=true with train.resume={cfg.train.resume}: the checkpoint lies in the run folder "
                f"{cfg.run_dir} that train.overwrite=true would replace; drop train.overwrite to continue the run"
            )
        return
    if cfg.train.overwrite or cfg.train.resume == "auto":
        return  # auto without a checkpoint to continue: a run killed before its first one starts again
    found = held(cfg.run_dir)
    if found:
        shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        raise RunFolderError(
            f"{cfg.run_dir} already holds a run ({shown}): continue it with train.resume=auto, replace it with "
            "train.overwrite=true, or choose another run_name"
        )


def checkpoint_bytes(n_params: int, precision: str, state_format: str | None) -> int:
    """About the size of one checkpoint: the weights as saved plus Adam's two moments (and, under
    DeepSpeed, its fp32 master copy)."""
    weight = 2 if precision == "bf16-pure" else 4
    optimizer = 2 * weight
    if state_format and state_format.startswith("deepspeed"):
        optimizer = 12  # fp32 master weights and two fp32 moments
    return n_params * (weight + optimizer)


def check_free_space(cfg: RunConfig, n_params: int, state_format: str | None) -> None:
    need = checkpoint_bytes(n_params, cfg.train.precision, state_format)
    base = _existing_ancestor(cfg.run_dir)
    free = free_bytes(base)
    if free < need:
        raise RunFolderError(
            f"out_dir={cfg.out_dir}: {_size(free)} free on the file system of {base}, but one checkpoint needs about "
            f"{_size(need)} ({n_params:,} parameters: weights and optimizer state); free space there or set out_dir "
            "to a larger disk"
        )


def clear_run(run_dir: Path) -> list[str]:
    """Remove an earlier run's files (train.overwrite=true); other files in the folder stay."""
    removed = []
    for name in RUN_FILES:
        path = Path(run_dir) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed

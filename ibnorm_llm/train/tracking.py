"""What a run tells the outside world: wandb, the progress bar, and run.json."""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import uuid
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from ibnorm_llm.config import RunConfig, to_dict


def resolve_wandb_mode(setting: str, env: Mapping[str, str] = os.environ) -> str | None:
    """The wandb mode to use, or None for off. ``auto`` is online only with an API key."""
    if setting == "off":
        return None
    if setting == "auto":
        return "online" if env.get("WANDB_API_KEY") else "offline"
    return setting


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("ibnorm_llm", "torch", "transformers", "accelerate", "datasets", "deepspeed"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def wandb_run_id(cfg: RunConfig, resume: Path | None) -> str | None:
    """The W&B run id for this launch; None when wandb is off.

    A resume from a checkpoint of this run's own folder continues the W&B run recorded in its
    run.json; anything else (a fresh run, even one reusing the name, or a start from another
    run's checkpoint) gets a new id, so W&B histories never mix.
    """
    if resolve_wandb_mode(cfg.logging.wandb) is None:
        return None
    run_json = Path(cfg.run_dir) / "run.json"
    own_checkpoint = resume is not None and Path(resume).resolve().is_relative_to(Path(cfg.run_dir).resolve())
    if own_checkpoint and run_json.is_file():
        previous = json.loads(run_json.read_text()).get("wandb_id")
        if previous:
            return previous
    # W&B ids allow letters, digits, '-', '_' and '.'; uuid4 draws from os.urandom, not the seeded RNGs.
    safe_name = re.sub(r"[^A-Za-z0-9_.-]", "-", cfg.run_name)[:48]
    return f"{safe_name}-{uuid.uuid4().hex[:8]}"


def write_run_metadata(path: Path, info: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2, default=str) + "\n")


class Tracker:
    """wandb and a tqdm bar on the main process; silent on the others."""

    def __init__(self, cfg: RunConfig, *, is_main: bool, start_step: int, wandb_id: str | None = None):
        """``wandb_id`` (see :func:`wandb_run_id`) names the W&B run; resuming continues it."""
        self.is_main = is_main
        self._wandb = None
        self._bar = None
        if not is_main:
            return
        mode = resolve_wandb_mode(cfg.logging.wandb)
        if mode is not None:
            import wandb

            norm = cfg.model.norm
            self._wandb = wandb.init(
                project=cfg.logging.wandb_project,
                name=cfg.run_name,
                mode=mode,
                dir=str(cfg.run_dir),
                config=to_dict(cfg),
                tags=[cfg.model.preset, norm.kind] + ([f"variant={norm.variant}"] if norm.variant else []),
                id=wandb_id,
                resume="allow" if start_step > 0 else None,
            )
        if cfg.logging.progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=cfg.train.max_steps, initial=start_step, desc=cfg.run_name, unit="step",
                dynamic_ncols=True, file=sys.stderr,
                # Redirected to a file or CI log, redraws would be thousands of joined lines.
                mininterval=0.1 if sys.stderr.isatty() else 30.0,
            )

    def advance(self, steps_done: int) -> None:
        """Move the bar to ``steps_done`` (cheap: tqdm redraws at most a few times a second)."""
        if self._bar is not None:
            self._bar.update(steps_done - self._bar.n)

    def log(self, record: dict[str, Any]) -> None:
        """Push a metrics record to wandb and the bar's postfix."""
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in record.items() if v is not None}, step=record["step"])
        if self._bar is not None and "loss" in record:  # training records; not the final leaderboard scores
            postfix = {"loss": f"{record['loss']:.4f}", "tok/s": f"{record['tokens_per_s']:.0f}"}
            if record.get("eval_loss") is not None:
                postfix["eval"] = f"{record['eval_loss']:.4f}"
            self._bar.set_postfix(postfix, refresh=False)

    def write(self, message: str) -> None:
        """A line on the main process that does not break the bar."""
        if not self.is_main:
            return
        if self._bar is not None:
            self._bar.write(message)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._wandb is not None:
            self._wandb.finish()


def quiet_libraries(is_main: bool) -> None:
    """No per-file save progress bars anywhere; only errors from libraries on non-main ranks."""
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    if not is_main:
        transformers.utils.logging.set_verbosity_error()
        datasets.utils.logging.set_verbosity_error()
        datasets.utils.logging.disable_progress_bar()

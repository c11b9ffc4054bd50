"""The eval.* section: a leaderboard suite on final/ at the end of a single-process run.

Training sits below evaluation, so ``train()`` does not import the harness: the caller passes
the runner (``train(cfg, final_eval=run_final_eval)`` with
:func:`ibnorm_llm.evaluation.harness.run_final_eval`, as ``ibnorm-llm train`` does). The
scores land in ``runs/<name>/eval/`` and, as ``eval/<task>`` headline values, in the final step's
metrics record and the tracker.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ibnorm_llm.config import ConfigError, EvalConfig

FinalEval = Callable[[EvalConfig, Path, Path, str], dict[str, float]]
"""``(cfg.eval, final checkpoint, output folder, device type) -> {"eval/<task>": headline value}``."""


def check_final_eval(cfg: EvalConfig, world_size: int, final_eval: FinalEval | None = None) -> None:
    """Refuse eval.* settings that would only fail after training, before any work (the values
    alone are checked when the config is loaded)."""
    if cfg.suite == "none":
        return
    if world_size > 1:
        raise ConfigError(
            f"eval.suite={cfg.suite} under a launch of {world_size} processes: lm-eval cannot run in-process "
            "under a multi-process launch. Set eval.suite=none and, after training, run "
            "`ibnorm-llm eval --checkpoint runs/<run_name>/checkpoints/final` (it shards the tasks itself under accelerate launch)."
        )
    if cfg.offline_data not in (None, "builtin") and not Path(cfg.offline_data).expanduser().is_dir():
        raise ConfigError(
            f"eval.offline_data={cfg.offline_data}: no such directory; point it at task data in the "
            "layout `ibnorm-llm prefetch` writes, builtin for the shipped smoke data, or null for the Hugging Face Hub"
        )
    if final_eval is None:
        raise ConfigError(
            f"eval.suite={cfg.suite}: this train() call was given no final_eval runner; pass "
            "final_eval=ibnorm_llm.evaluation.harness.run_final_eval (`ibnorm-llm train` does) or set eval.suite=none"
        )

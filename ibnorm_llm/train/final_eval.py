"""The eval.* section: a leaderboard suite on final/ at the end of a single-process run.

The scores land in ``runs/<name>/eval/`` (summary.json and the harness's files, see
:func:`ibnorm_llm.evaluation.run_leaderboard`) and, as ``eval/<task>`` headline values, in the
final step's metrics record and the tracker.
"""

from __future__ import annotations

from pathlib import Path

from ibnorm_llm.config import ConfigError, EvalConfig


def check_final_eval(cfg: EvalConfig, world_size: int) -> None:
    """Refuse eval.* settings that would only fail after training, before any work (the values
    alone are checked when the config is loaded)."""
    if cfg.suite == "none":
        return
    if world_size > 1:
        raise ConfigError(
            f"eval.suite={cfg.suite} under a launch of {world_size} processes: lm-eval cannot run in-process "
            "under a multi-process launch. Set eval.suite=none and, after training, run "
            "eval/leaderboard.py on runs/<run_name>/checkpoints/final (it shards the tasks itself under accelerate launch)."
        )
    if cfg.offline_data is not None and not Path(cfg.offline_data).is_dir():
        raise ConfigError(
            f"eval.offline_data={cfg.offline_data}: no such directory; point it at task data in the "
            "eval/offline_data layout, or set eval.offline_data=null to use the Hugging Face Hub"
        )


def run_final_eval(cfg: EvalConfig, final: Path, out_dir: Path, device: str) -> dict[str, float]:
    """Run ``cfg.suite`` on the checkpoint ``final``; returns ``{"eval/<task>": headline value}``.

    Input problems the leaderboard finds (e.g. offline data lacking a task) become a ConfigError
    naming eval.* and the saved checkpoint, so the launcher reports them like any bad setting.
    """
    from ibnorm_llm.evaluation.harness import OfflineDataError, SuiteError, run_leaderboard

    try:
        summary = run_leaderboard(
            final, cfg.suite, out_dir, limit=cfg.limit, batch_size=cfg.batch_size, offline_data=cfg.offline_data,
            smoke=cfg.smoke, device=device,
        )
    except (SuiteError, OfflineDataError) as err:
        raise ConfigError(
            f"eval.suite={cfg.suite}: {str(err).rstrip('.')}. Training finished and {final} is saved; fix eval.* and run "
            f"eval/leaderboard.py on it."
        ) from err
    return {f"eval/{task}": score["value"] for task, score in summary["tasks"].items()}

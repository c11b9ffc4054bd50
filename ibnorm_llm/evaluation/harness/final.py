"""The eval.* section's runner: the configured suite on a run's final checkpoint, right after training.

    result = train(cfg, final_eval=run_final_eval)      # see ibnorm_llm.train.final_eval
"""

from __future__ import annotations

from pathlib import Path

from ibnorm_llm.config import ConfigError, EvalConfig
from ibnorm_llm.evaluation.harness.leaderboard import run_eval
from ibnorm_llm.evaluation.harness.offline import OfflineDataError
from ibnorm_llm.evaluation.harness.suites import SuiteError


def run_final_eval(cfg: EvalConfig, final: Path, out_dir: Path, device: str) -> dict[str, float]:
    """Run ``cfg.suite`` on the checkpoint ``final``; returns ``{"eval/<task>": headline value}``.

    Input problems the leaderboard finds (e.g. offline data lacking a task) become a ConfigError
    naming eval.* and the saved checkpoint, so the launcher reports them like any bad setting.
    """
    try:
        summary = run_eval(final, cfg, out_dir, device=device)
    except (SuiteError, OfflineDataError) as err:
        raise ConfigError(
            f"eval.suite={cfg.suite}: {str(err).rstrip('.')}. Training finished and {final} is saved; fix eval.* and run "
            f"`ibnorm-llm eval --checkpoint {final}` on it."
        ) from err
    return {f"eval/{task}": score["value"] for task, score in summary["tasks"].items()}

"""Leaderboard evaluation (lm-evaluation-harness) and comparison tables.

    from ibnorm_llm.evaluation import run_leaderboard
    summary = run_leaderboard(checkpoint, "v1", out_dir, limit=4, offline_data="eval/offline_data", smoke=True)

Importing this package does not import lm_eval or datasets: the runner switches the Hub off
first when it is given offline data.
"""

from ibnorm_llm.evaluation.leaderboard import run_leaderboard
from ibnorm_llm.evaluation.suites import SUITES, TaskSpec, select_tasks, suite_tasks

__all__ = ["SUITES", "TaskSpec", "run_leaderboard", "select_tasks", "suite_tasks"]

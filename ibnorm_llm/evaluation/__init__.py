"""Evaluation in two parts.

- :mod:`ibnorm_llm.evaluation.harness`: run the Open LLM Leaderboard suites on a checkpoint with
  lm-evaluation-harness (online or from local task data) and write ``summary.json``;
- :mod:`ibnorm_llm.evaluation.comparison`: compare the ``summary.json`` of several runs (seed
  aggregation, deltas against the baseline norm, t-tests, Markdown/CSV tables, plots).

::

    from ibnorm_llm.evaluation import run_leaderboard
    summary = run_leaderboard(checkpoint, "v1", out_dir, limit=4, offline_data=OFFLINE_DATA, smoke=True)  # ibnorm_llm.shipped

Importing this package does not import lm_eval or datasets: the runner switches the Hub off
first when it is given offline data.
"""

from ibnorm_llm.evaluation.harness import SUITES, TaskSpec, run_leaderboard, select_tasks, suite_tasks

__all__ = ["SUITES", "TaskSpec", "run_leaderboard", "select_tasks", "suite_tasks"]

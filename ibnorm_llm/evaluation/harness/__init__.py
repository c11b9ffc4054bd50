"""Run the Open LLM Leaderboard suites on a checkpoint with lm-evaluation-harness.

:mod:`.suites` names the tasks (shots, headline metric); :mod:`.tasks` reads the harness's own
task YAMLs; :mod:`.task_dir` writes the YAMLs a run evaluates; :mod:`.offline`, :mod:`.prefetch`
and :mod:`.punkt` provide local task data for machines without the Hub; :mod:`.perplexity` adds the
held-out perplexity; :mod:`.leaderboard` runs it all and writes ``summary.json``; :mod:`.final`
runs the eval.* suite right after training.

Importing this package does not import lm_eval or datasets: the runner switches the Hub off
first when it is given offline data.
"""

from ibnorm_llm.evaluation.harness.final import run_final_eval
from ibnorm_llm.evaluation.harness.leaderboard import run_eval, run_leaderboard
from ibnorm_llm.evaluation.harness.offline import OfflineDataError
from ibnorm_llm.evaluation.harness.suites import (
    SUITES,
    SuiteError,
    TaskSpec,
    select_tasks,
    suite_tasks,
)

__all__ = [
    "SUITES", "OfflineDataError", "SuiteError", "TaskSpec", "run_eval", "run_final_eval", "run_leaderboard", "select_tasks", "suite_tasks",
]

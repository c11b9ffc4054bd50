"""Fair comparisons as one command: per-arm tuning on validation, several seeds, a test split.

    spec = load_study("studies/tiny_norms.yaml")
    plan = build_plan(spec, "runs/study")
    results = StudyRunner(plan, launcher=None).run()
    write_report(results)              # runs/study/report.md, report.csv, runs.csv, plots

Below the command line only: it drives the trainer and the evaluation through the package's own
entry point, ``python -m ibnorm_llm train|eval``, each in a subprocess.
"""

from ibnorm_llm.study.plan import StudyPlan, build_plan
from ibnorm_llm.study.report import write_report
from ibnorm_llm.study.runner import StudyResults, StudyRunner
from ibnorm_llm.study.spec import StudyError, StudySpec, load_study

__all__ = ["StudyError", "StudyPlan", "StudyResults", "StudyRunner", "StudySpec", "build_plan", "load_study",
           "write_report"]

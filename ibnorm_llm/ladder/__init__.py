"""Norm scaling ladders: every arm of a study at several sizes and token budgets, a law fitted per arm, the
extrapolation tested on the largest size, and the predictions and crossovers it leads to.

    spec = load_ladder("tiny_norms")                     # ladder file (spec.py)
    plan = build_ladder_plan(spec, "runs/ladder")        # sizes, budgets as wsd branches (plan.py)
    results = LadderRunner(plan, jobs=2).run()           # the study runner's machinery (runner.py)
    write_report(results)                                # report.md, fits.csv, points.csv, plots (report.py)

The fit is :mod:`.fit`; what the laws predict is :mod:`.predict`. The top layer of the package below the
command line: it builds on :mod:`ibnorm_llm.study`.
"""

from ibnorm_llm.ladder.fit import ComputeLaw, FitError, ScalingLaw, compute_frontier, fit_compute_law, fit_scaling_law

__all__ = ["ComputeLaw", "FitError", "ScalingLaw", "compute_frontier", "fit_compute_law", "fit_scaling_law"]

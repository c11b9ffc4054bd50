"""Norm scaling ladders: fitted laws per norm and their tested extrapolation.

So far the fit (:mod:`.fit`); the ladder runner and report build on :mod:`ibnorm_llm.study`.
"""

from ibnorm_llm.ladder.fit import ComputeLaw, FitError, ScalingLaw, compute_frontier, fit_compute_law, fit_scaling_law

__all__ = ["ComputeLaw", "FitError", "ScalingLaw", "compute_frontier", "fit_compute_law", "fit_scaling_law"]

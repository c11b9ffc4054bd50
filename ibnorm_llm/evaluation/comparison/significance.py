"""Whether a run differs from its baseline over seeds: a t-test on per-seed values."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
from scipy import stats

MIN_SEEDS_FOR_TEST = 3
"""Seeds each side needs before a p-value is computed."""


def seed_test(run: Mapping[int, float], base: Mapping[int, float]) -> tuple[float | None, str | None]:
    """p-value of run vs baseline over seeds: paired t-test on matched seeds, else Welch; None below 3 seeds."""
    if len(run) < MIN_SEEDS_FOR_TEST or len(base) < MIN_SEEDS_FOR_TEST:
        return None, None
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # Identical values on both sides make the statistic 0/0; scipy warns and returns nan.
        warnings.simplefilter("ignore", RuntimeWarning)
        if set(run) == set(base):
            seeds = sorted(run)
            result = stats.ttest_rel([run[s] for s in seeds], [base[s] for s in seeds])
            test = "paired"
        else:
            result = stats.ttest_ind(list(run.values()), list(base.values()), equal_var=False)
            test = "welch"
    p_value = float(result.pvalue)
    return (p_value if math.isfinite(p_value) else None), test

"""Mean ± sd over seeds and the paired test of an arm against the baseline.

Seeds pair the runs: seed s of an arm and seed s of the baseline share the data order and the
initialization seed, so the test is a paired t-test on the per-seed differences (arm - baseline).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class Spread:
    mean: float
    sd: float | None
    """Sample standard deviation (n - 1); None for a single value."""
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4f}" + (f" ± {self.sd:.4f}" if self.sd is not None else "") + f" (n={self.n})"


def spread(values: list[float]) -> Spread:
    if not values:
        raise ValueError("spread of no values")
    return Spread(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


@dataclass(frozen=True)
class PairedTest:
    n: int
    """Seeds present on both sides."""
    mean_difference: float
    """Mean of arm - baseline over the paired seeds."""
    sd_difference: float | None
    t: float | None
    p: float | None
    """Two-sided p-value; None below 2 pairs or when the differences have no spread."""


def paired_test(arm: Mapping[int, float], baseline: Mapping[int, float]) -> PairedTest:
    """Paired t-test of ``arm`` against ``baseline`` over the seeds both have."""
    seeds = sorted(set(arm) & set(baseline))
    if not seeds:
        raise ValueError("paired test: the arm and the baseline share no seed")
    differences = [arm[s] - baseline[s] for s in seeds]
    mean = statistics.fmean(differences)
    if len(seeds) < 2:
        return PairedTest(1, mean, None, None, None)
    sd = statistics.stdev(differences)
    if sd == 0:
        return PairedTest(len(seeds), mean, 0.0, None, None)
    result = stats.ttest_rel([arm[s] for s in seeds], [baseline[s] for s in seeds])
    t, p = float(result.statistic), float(result.pvalue)
    return PairedTest(len(seeds), mean, sd, t if math.isfinite(t) else None, p if math.isfinite(p) else None)

"""Statistics over seeds, one module for the comparison tables and the study report: mean ± sd, the
test of an arm against its baseline, and the words for what a difference supports.

Seeds pair runs: seed s of an arm and seed s of its baseline share the data order and the
initialization seed. So when both sides have the same seeds, the test is a paired t-test on the
per-seed differences (arm - baseline); when the seeds differ (other seeds, or one diverged), it is
Welch's t-test on the two samples. Either needs at least 2 values per side.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from scipy import stats

MIN_SEEDS_FOR_TEST = 2
"""Values each side needs before a t-test (a p-value) is computed."""
SIGNIFICANCE = 0.05


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
class SeedTest:
    """An arm against its baseline over seeds."""

    test: Literal["paired", "welch"] | None
    """paired (scipy.stats.ttest_rel, same seeds), welch (ttest_ind, equal_var=False, seeds differ), or None
    (fewer than MIN_SEEDS_FOR_TEST values on a side)."""
    n: int
    """Pairs for a paired test; otherwise the smaller side's count."""
    mean_difference: float
    """Mean of arm - baseline over the pairs (paired), or mean(arm) - mean(baseline)."""
    sd_difference: float | None
    """Sample sd of the per-seed differences (paired tests only)."""
    t: float | None
    p: float | None
    """Two-sided p-value; None without a test or when the values have no spread."""


def seed_test(arm: Mapping[int, float], baseline: Mapping[int, float]) -> SeedTest:
    """``arm`` against ``baseline`` (seed -> value): paired on the same seeds, Welch otherwise."""
    if not arm or not baseline:
        raise ValueError("seed test: a side has no values")
    if set(arm) == set(baseline):
        seeds = sorted(arm)
        differences = [arm[s] - baseline[s] for s in seeds]
        sd = statistics.stdev(differences) if len(seeds) > 1 else None
        test = "paired" if len(seeds) >= MIN_SEEDS_FOR_TEST else None
        a, b, n, mean = [arm[s] for s in seeds], [baseline[s] for s in seeds], len(seeds), statistics.fmean(differences)
    else:
        a, b = list(arm.values()), list(baseline.values())
        sd, n, mean = None, min(len(a), len(b)), statistics.fmean(a) - statistics.fmean(b)
        test = "welch" if n >= MIN_SEEDS_FOR_TEST else None
    if test is None or (test == "paired" and sd == 0):
        return SeedTest(test if test is None else "paired", n, mean, sd, None, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant samples: scipy returns nan with a warning
        result = stats.ttest_rel(a, b) if test == "paired" else stats.ttest_ind(a, b, equal_var=False)
    t, p = float(result.statistic), float(result.pvalue)
    return SeedTest(test, n, mean, sd, t if math.isfinite(t) else None, p if math.isfinite(p) else None)


def describe_difference(arm: str, baseline: str, found: SeedTest, seed_sd: float, *, quantity: str,
                        lower_is_better: bool) -> str:
    """What a difference supports, in words: supported, no difference, suggestive only, or nothing (one seed)."""
    better = (found.mean_difference < 0) == lower_is_better
    diff = f"{found.mean_difference:+.4f} {quantity}"
    p = f"p={found.p:.3g}" if found.p is not None else "no p-value"
    kind = {"paired": "paired t-test", "welch": "Welch t-test (seeds differ)"}.get(found.test or "", "")
    if found.test is None:
        return (f"**{arm} vs {baseline}: not supported either way**: {diff} from {found.n} seed(s) on a side; "
                f"that cannot separate a difference from seed noise.")
    within_spread = abs(found.mean_difference) <= seed_sd
    if found.p is not None and found.p < SIGNIFICANCE:
        caveat = (f"; it is smaller than the seed-to-seed spread (sd {seed_sd:.4f}), so single runs would not show "
                  "it reliably" if within_spread else "")
        return (f"**{arm} vs {baseline}: supported**: {arm} is {'better' if better else 'worse'} ({diff}, {kind} "
                f"over n={found.n} seeds, {p}){caveat}.")
    if within_spread:
        return (f"**{arm} vs {baseline}: no difference supported**: {diff} is smaller than the seed spread "
                f"(sd {seed_sd:.4f} over n={found.n} seeds) and not significant ({p}).")
    return (f"**{arm} vs {baseline}: suggestive only**: {diff} exceeds the seed spread (sd {seed_sd:.4f}) but is "
            f"not significant at {SIGNIFICANCE} ({p}, n={found.n} seeds).")

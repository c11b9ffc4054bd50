"""What fitted laws predict, each number with a bootstrap interval: the compute-optimal path, where an
arm crosses the baseline on it, the held-out check at the largest size, and losses at target sizes.

All functions are pure: they take :class:`~ibnorm_llm.ladder.fit.ScalingLaw` objects and point
mappings (``N``, ``D``, ``loss``, ``seed``, ``size``, ``tokens_per_param``), so the tests drive them
with laws written out by hand.

Intervals of a difference between two arms pair their bootstrap resamples by index. The fits share
their random seed, so with whole seeds resampled, resample i of every arm draws the same seeds.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from ibnorm_llm.ladder.fit import FitError, ScalingLaw, fit_scaling_law

FLOPS_PER_PARAM_TOKEN = 6.0
"""C = 6 N D: forward and backward matmuls (Kaplan et al. 2020), as fit.compute_frontier counts."""
Z95 = 1.96
"""Two-sided 95 % quantile of the normal: the point-noise part of the held-out interval."""
GRID = 400
"""Log-spaced compute values searched for a sign change of the loss difference."""


def _params(law: ScalingLaw) -> np.ndarray:
    return np.array([law.E, law.A, law.alpha, law.B, law.beta])


def compute_optimal(params: Sequence[float], compute: float | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D, loss) on the compute-optimal path of L = E + A/N^alpha + B/D^beta at C = 6ND.

    Minimising A N^-alpha + B (C/6N)^-beta over N gives N = G (C/6)^(beta/(alpha+beta)) with
    G = (alpha A / (beta B))^(1/(alpha+beta)) (Hoffmann et al. 2022, eq. 4). A law that does not fall
    with both N and D has no such path: NaN."""
    E, A, alpha, B, beta = params
    compute = np.asarray(compute, dtype=float)
    if not (A > 0 and B > 0 and alpha > 0 and beta > 0):
        nan = np.full_like(compute, np.nan)
        return nan, nan, nan
    scale = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    n = scale * (compute / FLOPS_PER_PARAM_TOKEN) ** (beta / (alpha + beta))
    d = compute / (FLOPS_PER_PARAM_TOKEN * n)
    return n, d, E + A / n**alpha + B / d**beta


@dataclass(frozen=True)
class Crossing:
    compute: float
    """FLOPs (6ND) at which the two compute-optimal losses are equal."""
    n_params: float
    """The arm's compute-optimal N there."""
    direction: str
    """overtakes (the arm's loss falls below the baseline's as compute grows) or falls behind."""


def crossing(arm: Sequence[float], baseline: Sequence[float], low: float, high: float) -> Crossing | None:
    """The first compute in [low, high] where the arm's compute-optimal loss crosses the baseline's."""
    logs = np.linspace(np.log(low), np.log(high), GRID)

    def gap(log_c):
        return compute_optimal(arm, np.exp(log_c))[2] - compute_optimal(baseline, np.exp(log_c))[2]

    values = gap(logs)
    if not np.all(np.isfinite(values)):
        return None
    signs = np.sign(values)
    changes = np.nonzero(signs[:-1] * signs[1:] < 0)[0]
    if not len(changes):
        return None
    i = changes[0]
    root = brentq(gap, logs[i], logs[i + 1])
    compute = float(np.exp(root))
    return Crossing(compute, float(compute_optimal(arm, compute)[0]), "overtakes" if values[i] > 0 else "falls behind")


@dataclass(frozen=True)
class Crossover:
    estimate: Crossing | None
    """From the fitted laws; None: no crossover in [low, high]."""
    share: float
    """Fraction of bootstrap resamples that cross in [low, high]."""
    compute_interval: tuple[float, float] | None
    """Percentile interval of the crossing compute over the resamples that cross."""
    n_interval: tuple[float, float] | None
    low: float
    high: float
    resamples: int


def _interval(values: Sequence[float], level: float) -> tuple[float, float] | None:
    if not values:
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def crossover(arm: ScalingLaw, baseline: ScalingLaw, low: float, high: float) -> Crossover:
    """Where ``arm`` is predicted to cross ``baseline`` on the compute-optimal path, with a bootstrap interval."""
    count = min(len(arm.samples), len(baseline.samples))
    crossings = [c for i in range(count) if (c := crossing(arm.samples[i], baseline.samples[i], low, high))]
    return Crossover(
        crossing(_params(arm), _params(baseline), low, high), len(crossings) / count if count else 0.0,
        _interval([c.compute for c in crossings], arm.level), _interval([c.n_params for c in crossings], arm.level),
        low, high, count,
    )


@dataclass(frozen=True)
class Prediction:
    loss: float
    interval: tuple[float, float]
    difference: float | None
    """Minus the baseline's prediction at the same target (None for the baseline)."""
    difference_interval: tuple[float, float] | None


def predict_pair(arm: ScalingLaw, baseline: ScalingLaw | None, N: float, D: float, N_base: float | None = None,
                 D_base: float | None = None) -> Prediction:
    """``arm``'s loss at (N, D) and, given the baseline, the difference to its loss at (N_base, D_base)."""
    loss = float(arm.predict(N, D))
    if baseline is None:
        return Prediction(loss, arm.predict_interval(N, D), None, None)
    N_base, D_base = N_base or N, D_base or D
    count = min(len(arm.samples), len(baseline.samples))
    differences = [_law(arm.samples[i], N, D) - _law(baseline.samples[i], N_base, D_base) for i in range(count)]
    return Prediction(loss, arm.predict_interval(N, D), loss - float(baseline.predict(N_base, D_base)),
                      _interval(differences, arm.level))


def _law(row: np.ndarray, N: float, D: float) -> float:
    E, A, alpha, B, beta = row
    return float(E + A / N**alpha + B / D**beta)


@dataclass(frozen=True)
class HeldOutPoint:
    tokens_per_param: float
    N: float
    D: float
    measured: float
    """Mean test loss over the seeds at this budget."""
    seeds: int
    predicted: float
    interval: tuple[float, float]
    """95 %: the refitted law's bootstrap interval, widened by the fit's point scatter (see :func:`held_out`)."""

    @property
    def error(self) -> float:
        return self.measured - self.predicted

    @property
    def relative_error(self) -> float:
        return self.error / self.measured

    @property
    def inside(self) -> bool:
        return self.interval[0] <= self.measured <= self.interval[1]


@dataclass(frozen=True)
class HeldOut:
    size: str
    points: tuple[HeldOutPoint, ...]
    problem: str | None = None
    """Why the check could not be made (too few points without the largest size)."""
    law: ScalingLaw | None = None
    """The law fitted without the largest size."""

    @property
    def inside(self) -> int:
        return sum(p.inside for p in self.points)

    @property
    def worst(self) -> HeldOutPoint | None:
        return max(self.points, key=lambda p: abs(p.relative_error), default=None)


def held_out(points: Sequence[Mapping], n_bootstrap: int = 200) -> HeldOut:
    """Refit without the largest size (by N) and predict its measured losses, budget by budget."""
    top = max(points, key=lambda p: p["N"])["size"]
    rest = [p for p in points if p["size"] != top]
    try:
        law = fit_scaling_law(rest, n_bootstrap=n_bootstrap)
    except FitError as err:
        return HeldOut(top, (), f"the fit without {top} is not possible: {err}")
    # The measured value is a mean over seeds and carries their noise, which the law's interval (of its mean
    # prediction) does not: widen it by the scatter the fit leaves on its own points, over sqrt(seeds).
    scatter = float(np.sqrt(np.mean([(np.log(p["loss"]) - np.log(law.predict(p["N"], p["D"]))) ** 2 for p in rest])))
    rows = []
    for ratio in sorted({p["tokens_per_param"] for p in points if p["size"] == top}):
        same = [p for p in points if p["size"] == top and p["tokens_per_param"] == ratio]
        N, D = statistics.fmean(p["N"] for p in same), statistics.fmean(p["D"] for p in same)
        low, high = law.predict_interval(N, D)
        noise = np.exp(Z95 * scatter / np.sqrt(len(same)))
        rows.append(HeldOutPoint(ratio, N, D, statistics.fmean(p["loss"] for p in same), len(same),
                                 float(law.predict(N, D)), (low / noise, high * noise)))
    return HeldOut(top, tuple(rows), law=law)


def held_out_sentence(arm: str, check: HeldOut) -> str:
    """The report's line for one arm: the error at the largest size, and in words what a miss means."""
    if check.problem:
        return f"{arm}: no held-out check ({check.problem})."
    worst = check.worst
    line = (f"{arm}: refitted without {check.size}, the law predicts its test loss within "
            f"{abs(worst.relative_error):.1%} (worst budget {worst.tokens_per_param:g}/param: measured "
            f"{worst.measured:.4f}, predicted {worst.predicted:.4f}); {check.inside} of {len(check.points)} measured "
            f"values inside the 95 % interval.")
    if check.inside < len(check.points):
        direction = "worse" if worst.error > 0 else "better"
        line += (f" **The extrapolation misses**: one size up, {arm} did {direction} than its law predicted, by more "
                 f"than the interval allows, so its predictions further out (the targets, the crossover) are not "
                 f"borne out by this ladder.")
    return line

"""Scaling-law fits of a ladder's points: L(N, D) = E + A/N^alpha + B/D^beta, with bootstrap intervals.

The fit is Chinchilla's "approach 3" (Hoffmann et al. 2022, appendix D.2), as OLMo's ladder fits it:
in log space, ``log L`` against ``LSE(a - alpha log N, b - beta log D, e)`` (A = e^a, B = e^b,
E = e^e), a Huber loss on the residuals (delta 1e-3), L-BFGS-B (analytic gradient; alpha, beta >= 0)
from the best 16 points of a grid of starting points, the best end point kept. Intervals come from refitting resampled data: points with replacement, or,
when the points carry several seeds, whole seeds with replacement (a seed's points share its noise).
Each refit starts from the full fit's parameters, so a bootstrap costs one descent per resample.

    law = fit_scaling_law([{"N": 1e6, "D": 2e7, "loss": 4.1}, ...])
    law.E, law.alpha, law.interval("alpha"), law.predict(60e6, 1.2e9), law.predict_interval(60e6, 1.2e9)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from scipy.special import huber, logsumexp
from threadpoolctl import threadpool_limits

PARAMETERS = ("E", "A", "alpha", "B", "beta")
HUBER_DELTA = 1e-3
"""Chinchilla's: residuals above 1e-3 in log loss count linearly, so one bad point cannot dominate."""
START_GRID = {
    "a": (0.0, 5.0, 10.0, 15.0, 20.0),
    "b": (0.0, 5.0, 10.0, 15.0, 20.0),
    "e": (-1.0, 0.0, 1.0),
    "alpha": (0.2, 0.5, 1.0),
    "beta": (0.2, 0.5, 1.0),
}
"""Starting points of the full fit (a coarser version of Chinchilla's grid: 675 starts)."""


class FitError(ValueError):
    """The points cannot be fitted (too few, non-positive values); the message says which."""


@dataclass(frozen=True)
class ScalingLaw:
    E: float
    A: float
    alpha: float
    B: float
    beta: float
    n_points: int
    samples: np.ndarray = field(repr=False)
    """Bootstrap parameter vectors (rows: resamples; columns: E, A, alpha, B, beta)."""
    level: float = 0.95

    def predict(self, N: float | np.ndarray, D: float | np.ndarray) -> float | np.ndarray:
        return _law(np.array([self.E, self.A, self.alpha, self.B, self.beta]), N, D)

    def interval(self, name: str) -> tuple[float, float]:
        """The bootstrap percentile interval of one parameter."""
        return _percentiles(self.samples[:, PARAMETERS.index(name)], self.level)

    def predict_interval(self, N: float, D: float) -> tuple[float, float]:
        """The bootstrap percentile interval of the predicted loss at (N, D)."""
        return _percentiles(np.array([_law(row, N, D) for row in self.samples]), self.level)


def _law(params: np.ndarray, N, D):
    E, A, alpha, B, beta = params
    return E + A / np.power(N, alpha) + B / np.power(D, beta)


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_loss: np.ndarray):
    """The Huber loss of the log residuals, in units of delta (so L-BFGS's tolerances bite), and its gradient."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    predicted = logsumexp(terms, axis=0)
    residual = predicted - log_loss
    slope = np.clip(residual, -HUBER_DELTA, HUBER_DELTA) / HUBER_DELTA  # d huber / d residual, over delta
    weights = np.exp(terms - predicted)  # d predicted / d term (softmax)
    gradient = np.array([
        np.sum(slope * weights[0]), np.sum(slope * weights[1]), np.sum(slope * weights[2]),
        -np.sum(slope * weights[0] * log_n), -np.sum(slope * weights[1] * log_d),
    ])
    return float(np.sum(huber(HUBER_DELTA, residual)) / HUBER_DELTA), gradient


BOUNDS = ((None, None), (None, None), (None, None), (0.0, None), (0.0, None))
"""a, b, e free (their exponentials are positive); alpha, beta >= 0. Unbounded, a fit to few sizes can
take a negative exponent, a loss that grows with N or D: the refit of a 3-size ladder without its
largest size then predicted a loss of 1e13 one size up."""


def _descend(start: np.ndarray, data: tuple[np.ndarray, ...]) -> tuple[float, np.ndarray]:
    result = minimize(_objective, start, args=data, jac=True, method="L-BFGS-B", bounds=BOUNDS)
    return float(result.fun), result.x


def _to_parameters(theta: np.ndarray) -> np.ndarray:
    a, b, e, alpha, beta = theta
    return np.array([np.exp(e), np.exp(a), alpha, np.exp(b), beta])


def _arrays(points: Sequence[Mapping]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = np.array([[p["N"], p["D"], p["loss"]] for p in points], dtype=float)
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise FitError("every point needs finite N, D and loss above 0")
    return np.log(values[:, 0]), np.log(values[:, 1]), np.log(values[:, 2])


DESCENTS = 16
"""L-BFGS runs from the grid's best starting points (by their objective), not from all of them."""


def _best_fit(data: tuple[np.ndarray, ...], starts: Iterable[np.ndarray]) -> np.ndarray:
    ranked = sorted(starts, key=lambda start: _objective(start, *data)[0])
    return min((_descend(start, data) for start in ranked[:DESCENTS]), key=lambda fit: fit[0])[1]


def fit_scaling_law(points: Sequence[Mapping], *, n_bootstrap: int = 200, level: float = 0.95,
                    random_seed: int = 0, start_grid: Mapping[str, Sequence[float]] = START_GRID) -> ScalingLaw:
    """Fit L(N, D) = E + A/N^alpha + B/D^beta to ``points`` (mappings with ``N``, ``D``, ``loss`` and
    optionally ``seed``) and bootstrap its parameters (``n_bootstrap`` resamples, ``level`` intervals)."""
    # Five parameters and a few dozen points: BLAS threads only spin (on a busy 2-core machine a fit took
    # 10x the CPU time with two of them).
    with threadpool_limits(1, user_api="blas"):
        return _fit_scaling_law(list(points), n_bootstrap, level, random_seed, start_grid)


def _fit_scaling_law(points: list[Mapping], n_bootstrap: int, level: float, random_seed: int,
                     start_grid: Mapping[str, Sequence[float]]) -> ScalingLaw:
    if len(points) < len(PARAMETERS):
        raise FitError(f"{len(points)} points cannot fix the law's {len(PARAMETERS)} parameters; give at least "
                       f"{len(PARAMETERS)} (several sizes and budgets)")
    if len({p["N"] for p in points}) < 2 or len({p["D"] for p in points}) < 2:
        raise FitError("the points need at least two model sizes N and two token counts D")
    data = _arrays(points)
    grid = itertools.product(*(start_grid[k] for k in ("a", "b", "e", "alpha", "beta")))
    theta = _best_fit(data, (np.array(start) for start in grid))
    rng = np.random.default_rng(random_seed)
    groups = _bootstrap_groups(points)
    samples = []
    for _ in range(n_bootstrap):
        chosen = rng.integers(len(groups), size=len(groups))
        resampled = [points[i] for g in chosen for i in groups[g]]
        if len({p["N"] for p in resampled}) < 2 or len({p["D"] for p in resampled}) < 2:
            continue  # a resample that lost a whole axis fixes nothing
        samples.append(_to_parameters(_descend(theta, _arrays(resampled))[1]))
    return ScalingLaw(*_to_parameters(theta), n_points=len(points), samples=np.array(samples), level=level)


def _bootstrap_groups(points: Sequence[Mapping]) -> list[list[int]]:
    """What a resample draws: whole seeds when the points carry two or more, else single points."""
    seeds = [p.get("seed") for p in points]
    if None in seeds or len(set(seeds)) < 2:
        return [[i] for i in range(len(points))]
    return [[i for i, s in enumerate(seeds) if s == seed] for seed in dict.fromkeys(seeds)]


@dataclass(frozen=True)
class ComputeLaw:
    """L(C) = E + K / C^gamma over the compute-optimal frontier (C = 6 N D FLOPs)."""

    E: float
    K: float
    gamma: float
    frontier: tuple[tuple[float, float], ...]
    """(C, loss) of the frontier points the law was fitted to."""

    def predict(self, C: float | np.ndarray) -> float | np.ndarray:
        return self.E + self.K / np.power(C, self.gamma)


def compute_frontier(points: Sequence[Mapping]) -> list[tuple[float, float]]:
    """The points no cheaper point beats: sorted by compute C = 6ND, each with a lower loss than all before."""
    ordered = sorted((6.0 * p["N"] * p["D"], p["loss"]) for p in points)
    frontier, best = [], np.inf
    for compute, loss in ordered:
        if loss < best:
            frontier.append((compute, loss))
            best = loss
    return frontier


def fit_compute_law(points: Sequence[Mapping]) -> ComputeLaw:
    """Fit L(C) = E + K/C^gamma (Huber on log residuals, a grid of starts) to :func:`compute_frontier`."""
    frontier = compute_frontier(points)
    if len(frontier) < 3:
        raise FitError(f"the compute-optimal frontier has {len(frontier)} point(s); a law needs at least 3")
    log_c, log_loss = np.log([c for c, _ in frontier]), np.log([loss for _, loss in frontier])

    def objective(theta):
        k, e, gamma = theta
        predicted = logsumexp(np.stack([k - gamma * log_c, np.full_like(log_c, e)]), axis=0)
        return float(np.sum(huber(HUBER_DELTA, predicted - log_loss)))

    starts = itertools.product((0.0, 5.0, 10.0, 20.0), (-1.0, 0.0, 1.0), (0.05, 0.1, 0.3, 0.6))
    best = min((minimize(objective, np.array(s), method="L-BFGS-B") for s in starts), key=lambda r: r.fun)
    k, e, gamma = best.x
    return ComputeLaw(float(np.exp(e)), float(np.exp(k)), float(gamma), tuple(frontier))

"""Loss and gradient-norm spikes: a value above the mean of the previous ``window`` values by more
than ``sigmas`` standard deviations (OLMo-core's stability monitor: 128 values, 6 sigmas; unbiased
standard deviation; no decision before half the window is filled). Every finite value joins the
window after it is tested, so a lasting change of level stops counting as a spike once the window
has seen it.

The trainer tests each rank's own loss (a bad batch on one rank shows there first) and the global
gradient norm, and sums the per-rank flags in the step's one all-reduce: any rank spiking makes
every rank skip (train.skip_spikes), never rank 0 alone.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict, deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Spike:
    value: float
    mean: float
    std: float


class SpikeDetector:
    def __init__(self, window: int, sigmas: float) -> None:
        self.sigmas = sigmas
        self.min_values = max(2, window // 2)
        self.history: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window))

    def check(self, name: str, value: float) -> Spike | None:
        """Whether ``value`` of series ``name`` (e.g. one rank's loss, the gradient norm) is a spike;
        then add it to that series' window."""
        history = self.history[name]
        spike = None
        if math.isfinite(value) and len(history) >= self.min_values:
            mean, std = statistics.fmean(history), statistics.stdev(history)
            if value > mean + self.sigmas * std:
                spike = Spike(value, mean, std)
        if math.isfinite(value):
            history.append(value)
        return spike


def moved_most(current: dict[str, float], reference: dict[str, float] | None, k: int = 3) -> list[str]:
    """The ``k`` parameter groups whose gradient norm changed most, by factor up or down, since
    ``reference`` (the last monitor step's), as ``group (x ratio)``; without a reference, the largest
    gradient norms."""
    if reference:
        ratios = {g: v / reference[g] for g, v in current.items() if reference.get(g) and v > 0}
        ranked = sorted(ratios, key=lambda g: abs(math.log(ratios[g])), reverse=True)[:k]
        return [f"{g} (x{ratios[g]:.3g})" for g in ranked]
    ranked = sorted(current, key=current.get, reverse=True)[:k]
    return [f"{g} ({current[g]:.3g})" for g in ranked]

"""Norm-centric telemetry while training (``monitor.every``) and spike detection (``monitor.spike_*``,
``train.skip_spikes``). Metric names and formulas: docs/monitoring.md.

    stats     the statistics as functions of tensors (each checked against a hand computation)
    tally     per-rank sums and maxima of those statistics, reduced over the ranks into one record
    hooks     forward hooks on norms, blocks, attention: registered for one monitor step, then removed
    params    gradient norms, update/parameter ratios and affine gains per parameter group
    spikes    the running-window loss and gradient-norm spike detector
"""

from .hooks import MonitorHooks, hook_count
from .params import gain_stats, grad_sq_sums, group_of, snapshot, update_stats
from .spikes import SpikeDetector, moved_most
from .stats import output_stats, z_loss
from .tally import Tally

__all__ = [
    "MonitorHooks", "SpikeDetector", "Tally", "gain_stats", "grad_sq_sums", "group_of", "hook_count", "moved_most",
    "output_stats", "snapshot", "update_stats", "z_loss",
]

"""The health report of monitored runs: layer x step heatmaps, per-norm comparison curves and health.md.

Reads what ``monitor.*`` wrote into each run's metrics.jsonl (docs/monitoring.md); trains and
loads nothing.
"""

from ibnorm_llm.health.errors import HealthError
from ibnorm_llm.health.report import write_health
from ibnorm_llm.health.series import RunHealth, SpikeEvent, load_run

__all__ = ["HealthError", "RunHealth", "SpikeEvent", "load_run", "write_health"]

"""The health report's bad-input error."""


class HealthError(ValueError):
    """A run cannot be reported on (no metrics.jsonl, no monitor records); the message names the fix."""

"""The one error type of configuration problems."""

class ConfigError(ValueError):
    """A bad configuration: the message names the dotted key and the fix."""

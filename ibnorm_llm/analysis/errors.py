"""The analysis's bad-input error (a layer index, too little held-out text, an unsupported model)."""


class AnalysisError(ValueError):
    """The analysis cannot run as asked; the message names the setting and what to change."""

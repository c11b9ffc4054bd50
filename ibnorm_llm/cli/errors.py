"""One mapping from the package's error types to exit codes and one-line messages.

Every subcommand raises; :func:`call_reporting_errors` turns a known error into ``<label>: <message>``
on stderr and its exit status, and lets anything else (a bug) raise with its traceback:

- 2: bad input (a config key or value, a data file, a checkpoint, a study or ladder file, an
  evaluation setting): the message names the problem and the fix;
- 3: training stopped on a non-finite loss (the last checkpoint is intact);
- 1: the command could not finish (a checkpoint write failed, a download failed, a missing package).

Error classes are named by module path and matched only when their module is already imported (an
error cannot be an instance of a class that was never loaded), so reporting a config error does not
import torch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class CommandError(Exception):
    """A subcommand's own bad-input error (a flag combination, a path): exit status 2."""


@dataclass(frozen=True)
class ErrorKind:
    module: str
    name: str
    exit_code: int
    label: str

    def matches(self, err: BaseException) -> bool:
        module = sys.modules.get(self.module)
        cls = getattr(module, self.name, None) if module is not None else None
        return cls is not None and isinstance(err, cls)


# First match wins: subclasses before their bases (RunFolderError is a ConfigError, NonFiniteError a RuntimeError).
ERROR_KINDS = (
    ErrorKind("ibnorm_llm.train.trainer", "NonFiniteError", 3, "error"),
    ErrorKind("ibnorm_llm.train.checkpoint", "CheckpointWriteError", 1, "error"),
    ErrorKind("ibnorm_llm.evaluation.harness.prefetch", "PrefetchError", 1, "error"),
    ErrorKind("ibnorm_llm.evaluation.harness.tasks", "MissingDependencyError", 1, "error"),
    ErrorKind("ibnorm_llm.cli.errors", "CommandError", 2, "error"),
    ErrorKind("ibnorm_llm.config.errors", "ConfigError", 2, "config error"),
    ErrorKind("ibnorm_llm.norms.validation", "NormOptionError", 2, "config error"),
    ErrorKind("ibnorm_llm.data.corpus", "DataError", 2, "data error"),
    ErrorKind("ibnorm_llm.checkpoint", "CheckpointError", 2, "checkpoint error"),
    ErrorKind("ibnorm_llm.models.export", "ExportError", 2, "export error"),
    ErrorKind("ibnorm_llm.models.weights", "UnsetWeightsError", 2, "checkpoint error"),
    ErrorKind("ibnorm_llm.models.official", "OfficialStateDictError", 2, "checkpoint error"),
    ErrorKind("ibnorm_llm.analysis.errors", "AnalysisError", 2, "analysis error"),
    ErrorKind("ibnorm_llm.health.errors", "HealthError", 2, "health error"),
    ErrorKind("ibnorm_llm.ladder.spec", "LadderError", 2, "ladder error"),  # a StudyError
    ErrorKind("ibnorm_llm.study.errors", "StudyError", 2, "study error"),
    ErrorKind("ibnorm_llm.ladder.fit", "FitError", 2, "ladder error"),
    ErrorKind("ibnorm_llm.evaluation.harness.suites", "SuiteError", 2, "eval error"),
    ErrorKind("ibnorm_llm.evaluation.harness.offline", "OfflineDataError", 2, "eval error"),
    ErrorKind("ibnorm_llm.evaluation.comparison.summaries", "ResultError", 2, "eval error"),
)


def error_kind(err: BaseException) -> ErrorKind | None:
    return next((kind for kind in ERROR_KINDS if kind.matches(err)), None)


def call_reporting_errors(fn: Callable[..., int], *args: Any) -> int:
    """``fn(*args)``; a known error becomes one stderr line and its exit status."""
    try:
        return fn(*args)
    except Exception as err:
        kind = error_kind(err)
        if kind is None:
            raise
        print(f"{kind.label}: {err}", file=sys.stderr)
        return kind.exit_code

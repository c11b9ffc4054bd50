"""What a finished run measured, read back from its metrics.jsonl, each number tagged with its split.

Selection may only read ``validation`` numbers and the final comparison only ``test`` numbers;
:class:`Measurement` carries the split so both sides check it (and the tests assert it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ibnorm_llm.train import checkpoint as ckpt
from ibnorm_llm.train.metrics import read_metrics

DIVERGED_FILE = "diverged.txt"
"""Written into a run folder whose training stopped on a non-finite loss (a failed grid point)."""


@dataclass(frozen=True)
class Measurement:
    value: float
    split: str
    """validation or test."""


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    diverged: str | None
    """Why training stopped (non-finite loss), else None."""
    validation_loss: Measurement | None
    validation_bpb: Measurement | None
    test_loss: Measurement | None
    test_bpb: Measurement | None
    curve: tuple[tuple[int, float], ...]
    """(step, training loss) of every logged step."""
    eval_curve: tuple[tuple[int, float], ...]
    """(step, validation loss) of every evaluation."""


def _number(record: dict, key: str, split: str) -> Measurement | None:
    value = record.get(key)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return Measurement(float(value), split)
    return None


def is_finished(run_dir: Path) -> bool:
    """A complete final checkpoint whose last metrics record holds the test split's loss, or a diverged run."""
    run_dir = Path(run_dir)
    if (run_dir / DIVERGED_FILE).is_file():
        return True
    metrics = run_dir / "metrics.jsonl"
    if not ckpt.is_complete(ckpt.checkpoints_root(run_dir) / "final") or not metrics.is_file():
        return False
    records = read_metrics(metrics)
    return bool(records) and "test_loss" in records[-1]


def read_result(run_dir: Path) -> RunResult:
    """The numbers of a finished run (see :func:`is_finished`)."""
    run_dir = Path(run_dir)
    diverged = run_dir / DIVERGED_FILE
    if diverged.is_file():
        return RunResult(run_dir, diverged.read_text().strip() or "non-finite loss", None, None, None, None, (), ())
    records = read_metrics(run_dir / "metrics.jsonl")
    final = records[-1]
    curve = tuple((r["step"], float(r["loss"])) for r in records if isinstance(r.get("loss"), (int, float)))
    evals = tuple((r["step"], float(r["eval_loss"])) for r in records if isinstance(r.get("eval_loss"), (int, float)))
    return RunResult(
        run_dir=run_dir, diverged=None,
        validation_loss=_number(final, "eval_loss", "validation"),
        validation_bpb=_number(final, "eval_bpb", "validation"),
        test_loss=_number(final, "test_loss", "test"),
        test_bpb=_number(final, "test_bpb", "test"),
        curve=curve, eval_curve=evals,
    )

"""Leaderboard results as read from ``summary.json``: one :class:`RunSummary` per evaluated checkpoint.

``ibnorm-llm eval`` writes one result directory per evaluated checkpoint, each holding a
``summary.json`` (schema in :func:`parse_summary`). Every problem with a file raises
:class:`ResultError` naming it::

    summaries = load_summaries(["runs/eval/rms_s0", "runs/eval/ibn_l4_s0"])
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ibnorm_llm.config import EVAL_SUITES
from ibnorm_llm.evaluation.harness.suites import suite_parts, task_names

SUMMARY_FILE = "summary.json"
TRAINING = "training"
"""The ``suite`` of a summary read from a training run folder: held-out and test-split numbers only."""


def suite_parts_of(suite: str) -> tuple[str, ...]:
    """The leaderboard suites a comparison of ``suite`` averages over (none for training runs)."""
    return () if suite == TRAINING else suite_parts(suite)


def task_names_of(suite: str) -> tuple[str, ...]:
    return () if suite == TRAINING else task_names(suite)
MUST_MATCH = {
    "suite": "suites",
    "limit": "--limit values",
    "offline_data": "task data (offline copies vs hub datasets)",
    "smoke": "smoke settings",
    "max_gen_toks": "generation lengths",
}
"""Eval settings that change what is measured: results that differ in one are refused."""
SHOULD_MATCH = {
    "harness_version": "harness version",
    "batch_size": "batch size",
    "dtype": "dtype",
    "seed": "harness seed (few-shot sampling)",
    "bootstrap_iters": "bootstrap iterations (stderr)",
}
"""Eval settings that can shift scores slightly: a difference is reported in the notes."""


class ResultError(ValueError):
    """A result file or set of result files that cannot be compared; the message names the file."""



@dataclass(frozen=True)
class TaskScore:
    metric: str
    value: float
    """The harness metric as a fraction in [0, 1]."""
    stderr: float | None
    n: int | None
    chance: float | None = None
    """The metric's value when guessing (a fraction); scores at or below it cannot rank models."""
    bpb: float | None = None
    """Bits per byte of the correct continuation (small suite)."""


@dataclass(frozen=True)
class HeldOut:
    loss: float
    ppl: float
    tokens: int
    bpb: float | None = None
    """Bits per byte of the held-out text (summaries written before it existed have none)."""


@dataclass(frozen=True)
class RunSummary:
    """One evaluated checkpoint, as read from its ``summary.json``."""

    source: str
    checkpoint: str
    suite: str
    harness_version: str
    limit: int | None
    offline_data: bool
    step: int | None
    tokens: int | None
    run: Mapping[str, Any]
    """The run's identity; preset, norm and seed are null for a checkpoint without a run config."""
    tasks: Mapping[str, TaskScore]
    held_out: HeldOut | None
    settings: Mapping[str, Any]
    """Eval settings that must (or should) match across compared results, as far as the file has them."""
    notes: tuple[str, ...] = ()
    """The runner's notes (partial offline groups, skipped perplexity ...)."""
    test: HeldOut | None = None
    """The data test split (eval.test) of a training run folder; None for leaderboard results."""

    @property
    def preset(self) -> str | None:
        return self.run["preset"]

    @property
    def norm(self) -> str | None:
        return self.run["norm"]

    @property
    def variant(self) -> str | None:
        return self.run.get("variant")

    @property
    def lam(self) -> float | None:
        return self.run.get("lam")

    @property
    def seed(self) -> int | None:
        return self.run["seed"]

    @property
    def run_name(self) -> str:
        return str(self.run.get("run_name", Path(self.source).parent.name))


def _field(data: Mapping, key: str, kinds: tuple, source: str, where: str = "", *, nullable: bool = False) -> Any:
    if key not in data:
        raise ResultError(f"{source}: missing key '{where}{key}' (re-run `ibnorm-llm eval` to rewrite the summary)")
    value = data[key]
    if value is None and nullable:
        return None
    number = float in kinds
    bad = isinstance(value, bool) and bool not in kinds
    if bad or not isinstance(value, kinds):
        expected = " or ".join(k.__name__ for k in kinds) + (" or null" if nullable else "")
        raise ResultError(f"{source}: '{where}{key}' = {value!r}, expected {expected}")
    if number and not math.isfinite(value):
        raise ResultError(f"{source}: '{where}{key}' = {value!r} is not a finite number")
    return value


def parse_summary(data: Any, source: str) -> RunSummary:
    """Validate one decoded ``summary.json``; every problem raises :class:`ResultError` naming ``source``.

    Schema::

        {"checkpoint": str, "suite": "v1"|"v2"|"all", "harness_version": str, "limit": int|null,
         "offline_data": bool, "step": int|null, "tokens": int|null,
         "run": {"run_name": str, "preset": str|null, "norm": str|null, "variant": str|null,
                 "lam": float|null, "seed": int|null, "norm_options": {...} (optional), ...},
         "tasks": {task: {"metric": str, "value": float in [0, 1], "stderr": float|null, "n": int|null,
                          optional: "chance": float|null, "bpb": float|null}},
         "perplexity": {"loss": float, "ppl": float, "tokens": int, optional: "bpb": float|null} | null,
         optional: "smoke", "max_gen_toks", "batch_size", "dtype", "bootstrap_iters", "notes": [str]}

    Other keys (subtask scores, the run config, file lists) are the runner's record and are not
    used here: the tables show each leaderboard entry's headline metric.
    """
    if not isinstance(data, dict):
        raise ResultError(f"{source}: expected a JSON object, got {type(data).__name__}")
    suite = _field(data, "suite", (str,), source)
    if suite not in EVAL_SUITES:
        raise ResultError(f"{source}: suite={suite!r}, expected one of {', '.join(EVAL_SUITES)}")
    run = _field(data, "run", (dict,), source)
    _field(run, "preset", (str,), source, "run.", nullable=True)
    _field(run, "norm", (str,), source, "run.", nullable=True)
    _field(run, "seed", (int,), source, "run.", nullable=True)
    if run.get("variant") is not None:
        _field(run, "variant", (str,), source, "run.")
    if run.get("lam") is not None:
        _field(run, "lam", (int, float), source, "run.")
    tasks_raw = _field(data, "tasks", (dict,), source)
    tasks = {}
    for task, entry in tasks_raw.items():
        where = f"tasks.{task}."
        if not isinstance(entry, dict):
            raise ResultError(f"{source}: 'tasks.{task}' = {entry!r}, expected an object with metric, value, stderr, n")
        value = float(_field(entry, "value", (int, float), source, where))
        if not 0.0 <= value <= 1.0:
            raise ResultError(f"{source}: '{where}value' = {value} is outside [0, 1]; summaries store fractions")
        stderr = _field(entry, "stderr", (int, float), source, where, nullable=True)
        chance, bpb = (_field(entry, k, (int, float), source, where, nullable=True) if k in entry else None
                       for k in ("chance", "bpb"))
        tasks[task] = TaskScore(
            metric=_field(entry, "metric", (str,), source, where),
            value=value,
            stderr=None if stderr is None else float(stderr),
            n=_field(entry, "n", (int,), source, where, nullable=True),
            chance=None if chance is None else float(chance),
            bpb=None if bpb is None else float(bpb),
        )
    ppl = _field(data, "perplexity", (dict,), source, nullable=True)
    held_out = None
    if ppl is not None:
        held_out = HeldOut(
            loss=float(_field(ppl, "loss", (int, float), source, "perplexity.")),
            ppl=float(_field(ppl, "ppl", (int, float), source, "perplexity.")),
            tokens=_field(ppl, "tokens", (int,), source, "perplexity."),
            bpb=_field(ppl, "bpb", (int, float), source, "perplexity.", nullable=True) if "bpb" in ppl else None,
        )
    return RunSummary(
        source=source,
        checkpoint=_field(data, "checkpoint", (str,), source),
        suite=suite,
        harness_version=_field(data, "harness_version", (str,), source),
        limit=_field(data, "limit", (int,), source, nullable=True),
        offline_data=_field(data, "offline_data", (bool,), source),
        step=_field(data, "step", (int,), source, nullable=True),
        tokens=_field(data, "tokens", (int,), source, nullable=True),
        run=dict(run),
        tasks=tasks,
        held_out=held_out,
        settings={k: data[k] for k in (*MUST_MATCH, *SHOULD_MATCH) if k in data},
        notes=tuple(str(note) for note in data.get("notes") or ()),
    )


def is_run_folder(path: str | Path) -> bool:
    """A training run folder (runs/<run_name>/: metrics.jsonl and the run config), not a leaderboard result."""
    path = Path(path)
    return path.is_dir() and (path / "metrics.jsonl").is_file() and (path / "config.yaml").is_file()


def _held_out(record: Mapping[str, Any], prefix: str, tokens: int) -> HeldOut | None:
    loss = record.get(f"{prefix}_loss")
    if not isinstance(loss, (int, float)) or not math.isfinite(loss):
        return None
    ppl = record.get(f"{prefix}_ppl")
    bpb = record.get(f"{prefix}_bpb")
    return HeldOut(loss=float(loss), ppl=float(ppl) if isinstance(ppl, (int, float)) else math.exp(min(loss, 700.0)),
                   tokens=tokens, bpb=float(bpb) if isinstance(bpb, (int, float)) else None)


def load_run_folder(run_dir: str | Path) -> RunSummary:
    """A training run folder as a summary: the run's identity from config.yaml, and the held-out
    loss/ppl/bpb (and the test split's, with eval.test) of the last metrics record that has them;
    step and tokens are that record's."""
    from ibnorm_llm.checkpoint import CheckpointInfo
    from ibnorm_llm.config import ConfigError, config_from_tree, yaml_load
    from ibnorm_llm.evaluation.harness.run_identity import run_fields

    run_dir = Path(run_dir)
    source = str(run_dir / "metrics.jsonl")
    try:
        cfg = config_from_tree(yaml_load((run_dir / "config.yaml").read_text()) or {})
    except (ConfigError, ValueError) as err:
        raise ResultError(f"{run_dir / 'config.yaml'}: not a valid run config ({err})") from None
    records = []
    for number, line in enumerate((run_dir / "metrics.jsonl").read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise ResultError(f"{source} line {number}: not valid JSON; the file is damaged") from None
    evaluated = [r for r in records if isinstance(r.get("eval_loss"), (int, float))]
    if not evaluated:
        raise ResultError(f"{source}: no record with a held-out loss yet (eval_loss); the run has not been evaluated")
    last = evaluated[-1]
    info = CheckpointInfo(path=run_dir, config=cfg, step=last.get("step"), tokens=last.get("tokens"))
    return RunSummary(
        source=source, checkpoint=str(run_dir), suite=TRAINING, harness_version="-", limit=None, offline_data=False,
        step=last.get("step"), tokens=last.get("tokens"), run=run_fields(info), tasks={},
        held_out=_held_out(last, "eval", cfg.data.val_tokens), settings={"suite": TRAINING},
        test=_held_out(last, "test", 0),
    )


def load_summary(result_dir: str | Path) -> RunSummary:
    """Read ``RESULT_DIR/summary.json`` (a path to the file itself also works), or a training run
    folder's held-out numbers (:func:`load_run_folder`)."""
    path = Path(result_dir)
    if path.is_dir() and not (path / SUMMARY_FILE).is_file() and is_run_folder(path):
        return load_run_folder(path)
    if path.is_dir():
        path = path / SUMMARY_FILE
    if not path.is_file():
        raise ResultError(
            f"{path}: no {SUMMARY_FILE} here; pass result directories written by `ibnorm-llm eval --out DIR` "
            "or training run folders (runs/<run_name>)"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultError(f"{path}: not valid JSON ({err}); re-run `ibnorm-llm eval` for this checkpoint") from None
    return parse_summary(data, str(path))


def load_summaries(result_dirs: Iterable[str | Path]) -> list[RunSummary]:
    summaries = [load_summary(d) for d in result_dirs]
    if not summaries:
        raise ResultError("no result directories given")
    return summaries

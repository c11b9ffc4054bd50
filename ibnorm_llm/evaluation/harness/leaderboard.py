"""Run the Open LLM Leaderboard suites on a checkpoint with lm-evaluation-harness.

    summary = run_leaderboard("runs/demo_rms/checkpoints/final", "v1", "runs/eval/demo_rms",
                              limit=4, offline_data=OFFLINE_DATA, smoke=True)

Writes into ``out_dir``:

- ``results.json``: the harness's results object as ``simple_evaluate`` returns it (minus the
  per-sample logs), serialized with the harness's own JSON encoder;
- ``samples/<task>.jsonl``: the per-sample logs (``log_samples``) of every leaf task;
- ``tasks/``: the task YAMLs that were evaluated (see :mod:`ibnorm_llm.evaluation.harness.task_dir`);
- ``summary.json``: task -> headline metric, stderr, n; the run's identity (preset, norm,
  variant, λ, seed), step and tokens; held-out perplexity; the harness version and every
  setting that changes scores (suite, limit, batch size, seed, offline data, smoke length).

Single process: an in-process ``HFLM(pretrained=<model>)`` over :func:`ibnorm_llm.models.load_model`
(no remote code). Under ``accelerate launch`` with more than one process the harness forbids an
in-process model, so each rank builds ``HFLM(pretrained=<dir>, trust_remote_code=True)`` (our
checkpoints carry their modeling code) and the harness shards the requests data-parallel; rank 0
writes the files.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ibnorm_llm.checkpoint import CheckpointError, CheckpointInfo, inspect_checkpoint, load_checkpoint
from ibnorm_llm.config import EvalConfig, to_dict
from ibnorm_llm.config.sections import SMOKE_MAX_GEN_TOKS
from ibnorm_llm.evaluation.harness.offline import Coverage, check_hub_data, check_offline_data, enable_offline_mode
from ibnorm_llm.evaluation.harness.perplexity import held_out_perplexity
from ibnorm_llm.evaluation.harness.punkt import PunktSource, ensure_punkt_tab
from ibnorm_llm.evaluation.harness.run_identity import run_fields
from ibnorm_llm.evaluation.harness.suites import SuiteError, TaskSpec, select_tasks
from ibnorm_llm.evaluation.harness.task_dir import write_task_dir
from ibnorm_llm.evaluation.harness.tasks import MissingDependencyError, TaskTree, resolve_task
from ibnorm_llm.shipped import OFFLINE_DATA

SMOKE_BOOTSTRAP_ITERS = 1000
FULL_BOOTSTRAP_ITERS = 100_000
"""The harness default, used for the stderr of non-mean aggregations (ifeval's instruction level)."""
HARNESS_SEEDS = {"random_seed": 0, "numpy_random_seed": 1234, "torch_random_seed": 1234, "fewshot_random_seed": 1234}
"""lm-eval's defaults (its CLI's ``--seed 0,1234,1234,1234``), used unless ``seed`` is given."""

MATH_EXTRAS = {"sympy": "sympy>=1.12", "antlr4": "antlr4-python3-runtime==4.11", "math_verify": "math_verify"}


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_math_extras() -> None:
    """leaderboard_math_hard's scorer imports these; name what to install if one is missing."""
    import importlib

    missing = []
    for module, requirement in MATH_EXTRAS.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(requirement)
    if not missing:
        from importlib.metadata import version

        if not version("antlr4-python3-runtime").startswith("4.11"):
            missing.append("antlr4-python3-runtime==4.11")
    if missing:
        raise MissingDependencyError(
            "leaderboard_math_hard needs " + ", ".join(missing) + ": pip install " + " ".join(f"'{m}'" for m in missing)
        )


def _load_model_and_tokenizer(path: Path, device: str, dtype: str):
    import torch

    ckpt = load_checkpoint(path, device=device, dtype=getattr(torch, dtype))
    if ckpt.tokenizer.eos_token is None:
        raise CheckpointError(f"--checkpoint {path}: its tokenizer has no EOS token; lm-eval needs one")
    return ckpt.model, ckpt.tokenizer


def _number(value: Any) -> float | None:
    """The harness writes "N/A" for a stderr it could not compute."""
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _score(results: dict[str, Any], name: str, spec: TaskSpec) -> dict[str, Any]:
    entry = results["results"].get(name)
    if entry is None or spec.result_key not in entry:
        available = sorted(k for k in (entry or {}) if "," in k)
        raise KeyError(f"{name}: the harness reported no {spec.result_key} (it reported: {', '.join(available)})")
    n = entry.get("sample_len", results.get("n-samples", {}).get(name, {}).get("effective"))
    return {
        "metric": spec.metric,
        "filter": spec.filter,
        "value": float(entry[spec.result_key]),
        "stderr": _number(entry.get(f"{spec.metric}_stderr,{spec.filter}")),
        "n": int(n) if n is not None else None,
    }


SIDE_METRICS = ("acc", "acc_norm")
"""Reported beside the headline metric when the harness computed them (the small suite shows both)."""


def _side_metrics(results: dict[str, Any], tree: TaskTree) -> dict[str, Any]:
    spec = tree.spec
    entry = results["results"].get(spec.name, {})
    extra: dict[str, Any] = {m: float(entry[f"{m},{spec.filter}"]) for m in SIDE_METRICS
                             if isinstance(entry.get(f"{m},{spec.filter}"), (int, float))}
    if spec.chance is not None:
        extra["chance"] = spec.chance
    if spec.continuation_bpb:
        from ibnorm_llm.evaluation.harness.continuation_bpb import continuation_bpb, gold_resolver

        (leaf,) = tree.leaves  # the small suite's entries are single tasks
        samples = (results.get("samples") or {}).get(leaf.name)
        if samples is None:
            raise KeyError(f"{leaf.name}: no per-sample log for the bits per byte of the correct continuation")
        extra["bpb"] = continuation_bpb(samples, gold_resolver(leaf))
    return extra


def summarize(
    results: dict[str, Any], trees: list[TaskTree], included: dict[str, tuple[str, ...]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Headline score per entry (plus acc/acc_norm, chance level and continuation bits per byte
    where they apply) and per subtask/sub-group, from the harness results and per-sample logs."""
    tasks, subtasks = {}, {}
    for tree in trees:
        spec = tree.spec
        tasks[spec.name] = {**_score(results, spec.name, spec), "num_fewshot": spec.num_fewshot,
                            **_side_metrics(results, tree)}
        if tree.is_group:
            members = [g.name for g in tree.groups[1:]] + list(included[spec.name])
            subtasks[spec.name] = {m: _score(results, m, spec) for m in members if m in results["results"]}
    return tasks, subtasks


def _write_outputs(out_dir: Path, results: dict[str, Any]) -> None:
    from lm_eval.utils import handle_non_serializable

    samples = results.pop("samples", None) or {}
    (out_dir / "results.json").write_text(
        json.dumps(results, indent=2, default=handle_non_serializable, ensure_ascii=False)
    )
    sample_dir = out_dir / "samples"
    sample_dir.mkdir(exist_ok=True)
    for task, rows in samples.items():
        lines = (json.dumps(row, default=handle_non_serializable, ensure_ascii=False) for row in rows)
        (sample_dir / f"{task}.jsonl").write_text("\n".join(lines) + "\n")


def _perplexity(info: CheckpointInfo, model, tokenizer, device: str, notes: list[str]) -> dict[str, Any] | None:
    if info.config is None:
        notes.append(
            "held-out perplexity skipped: the checkpoint has no config.yaml (not written by this project's "
            "trainer), so its training corpus is unknown"
        )
        return None
    return held_out_perplexity(model, tokenizer, info.config, device)


@dataclass(frozen=True)
class _Plan:
    """Everything checked and written before the model is loaded."""

    specs: tuple[TaskSpec, ...]
    info: CheckpointInfo
    trees: list[TaskTree]
    included: dict[str, tuple[str, ...]]
    coverage: dict[str, Coverage]
    offline_dir: Path | None
    punkt: PunktSource | None
    task_names: list[str]


def _prepare(
    checkpoint, suite, out_dir: Path, tasks, limit, batch_size, max_gen_toks, offline_data, allow_partial: bool
) -> _Plan:
    for flag, value in (("--limit", limit), ("--max-gen-toks", max_gen_toks)):
        if value is not None and value <= 0:
            raise SuiteError(f"{flag} {value}: must be a positive number")
    if batch_size <= 0:
        raise SuiteError(f"--batch-size {batch_size}: must be positive (a fixed batch size keeps scores comparable)")
    specs = select_tasks(suite, tasks)
    info = inspect_checkpoint(checkpoint)
    offline_dir = Path(offline_data).resolve() if offline_data is not None else None
    if offline_dir is not None:
        enable_offline_mode()  # before lm_eval/datasets make any request
    trees = [resolve_task(spec) for spec in specs]
    coverage = check_offline_data(trees, offline_dir, allow_partial_groups=allow_partial) if offline_dir else {}
    if offline_dir is None:
        check_hub_data(trees, suite)
    included = {
        t.spec.name: coverage[t.spec.name].included if coverage else tuple(leaf.name for leaf in t.leaves) for t in trees
    }
    names = {spec.name for spec in specs}
    if "leaderboard_math_hard" in names:
        check_math_extras()
    out_dir.mkdir(parents=True, exist_ok=True)
    punkt = ensure_punkt_tab(offline_dir, out_dir / "nltk_data") if "leaderboard_ifeval" in names else None
    task_names = write_task_dir(trees, out_dir / "tasks", offline_data=offline_dir, included=included)
    return _Plan(specs, info, trees, included, coverage, offline_dir, punkt, task_names)


def _build_lm(info: CheckpointInfo, device: str, dtype: str, batch_size: int, perplexity: bool, notes: list[str]):
    """The harness's model wrapper, and the held-out perplexity measured with the same weights."""
    from lm_eval.models.huggingface import HFLM

    held_out = None
    if _world_size() > 1:
        # The harness refuses an in-process model under accelerate; it loads the directory on every rank.
        lm = HFLM(pretrained=str(info.path), trust_remote_code=True, device=device, dtype=dtype, batch_size=batch_size)
        if perplexity and lm.rank == 0:
            held_out = _perplexity(info, lm.model, lm.tokenizer, lm.device, notes)
    else:
        model, tokenizer = _load_model_and_tokenizer(info.path, device, dtype)
        if perplexity:
            held_out = _perplexity(info, model, tokenizer, device, notes)
        lm = HFLM(pretrained=model, tokenizer=tokenizer, device=device, batch_size=batch_size)
    if not perplexity:
        notes.append("held-out perplexity skipped (--no-perplexity)")
    return lm, held_out


def offline_data_of(settings: EvalConfig) -> Path | None:
    """The task data folder ``settings`` asks for: ``builtin`` (and smoke with none given) is the
    smoke data shipped with the package; None reads the Hub."""
    if settings.offline_data == "builtin" or (settings.offline_data is None and settings.smoke):
        return OFFLINE_DATA
    return Path(settings.offline_data).expanduser() if settings.offline_data is not None else None


def run_eval(checkpoint: str | Path, settings: EvalConfig, out_dir: str | Path, *, device: str = "cpu",
             dtype: str = "float32") -> dict[str, Any] | None:
    """:func:`run_leaderboard` with the settings of an EvalConfig (a run's ``eval``, a study's, the CLI's)."""
    return run_leaderboard(
        checkpoint, settings.suite, out_dir, tasks=list(settings.tasks) if settings.tasks else None,
        limit=settings.limit, batch_size=settings.batch_size, offline_data=offline_data_of(settings),
        smoke=settings.smoke, max_gen_toks=settings.max_gen_toks, allow_partial_groups=settings.allow_partial_groups,
        device=device, dtype=dtype, seed=settings.seed, perplexity=settings.perplexity,
    )


def run_leaderboard(
    checkpoint: str | Path,
    suite: str,
    out_dir: str | Path,
    *,
    tasks: list[str] | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    offline_data: str | Path | None = None,
    smoke: bool = False,
    max_gen_toks: int | None = None,
    allow_partial_groups: bool = False,
    device: str = "cpu",
    dtype: str = "float32",
    seed: int | None = None,
    perplexity: bool = True,
) -> dict[str, Any] | None:
    """Evaluate ``checkpoint`` on a leaderboard suite; returns the summary (None on ranks other than 0).

    ``smoke`` caps generation at :data:`SMOKE_MAX_GEN_TOKS` tokens (or ``max_gen_toks``), uses
    fewer bootstrap iterations for stderrs and allows partial groups; the summary records all of it.
    ``seed`` sets all four harness seeds (Python, NumPy, torch, few-shot sampling); None keeps
    the harness's defaults. Every input is checked (checkpoint, suite, tasks, offline data, task
    extras) before the model is loaded.
    """
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    try:
        return _run(checkpoint, suite, out_dir, tasks, limit, batch_size, offline_data, smoke, max_gen_toks,
                    allow_partial_groups, device, dtype, seed, perplexity)
    except BaseException:
        # No half-written result folder: summary.json is written last, and a folder this call
        # created goes again when it fails (compare.py also skips folders without summary.json).
        if created and os.environ.get("RANK", "0") == "0":
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def _run(checkpoint, suite, out_dir: Path, tasks, limit, batch_size, offline_data, smoke, max_gen_toks,
         allow_partial_groups, device, dtype, seed, perplexity) -> dict[str, Any] | None:
    started = time.time()
    plan = _prepare(checkpoint, suite, out_dir, tasks, limit, batch_size, max_gen_toks, offline_data,
                    allow_partial_groups or smoke)
    import lm_eval  # after _prepare: offline mode is on before datasets is imported
    from lm_eval.tasks import TaskManager

    notes: list[str] = []
    lm, held_out = _build_lm(plan.info, device, dtype, batch_size, perplexity, notes)
    gen_toks = max_gen_toks if max_gen_toks is not None else (SMOKE_MAX_GEN_TOKS if smoke else None)
    bootstrap_iters = SMOKE_BOOTSTRAP_ITERS if smoke else FULL_BOOTSTRAP_ITERS
    seeds = HARNESS_SEEDS if seed is None else dict.fromkeys(HARNESS_SEEDS, seed)
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=plan.task_names,
        task_manager=TaskManager(include_path=str((out_dir / "tasks").resolve()), include_defaults=False),
        limit=limit,
        log_samples=True,
        gen_kwargs={"max_gen_toks": gen_toks} if gen_toks is not None else None,
        bootstrap_iters=bootstrap_iters,
        **seeds,
    )
    if results is None:  # not rank 0
        return None

    scores, subtask_scores = summarize(results, plan.trees, plan.included)
    _write_outputs(out_dir, results)
    partial = {
        name: {"included": list(cov.included), "missing": sorted(cov.missing)}
        for name, cov in plan.coverage.items()
        if cov.partial
    }
    for name, groups in partial.items():
        notes.append(
            f"{name}: scored on {len(groups['included'])} of {len(groups['included']) + len(groups['missing'])} "
            "subtasks (partial offline data); not comparable to a full-group score"
        )
    summary = {
        "checkpoint": str(plan.info.path.resolve()),
        "suite": suite,
        "tasks_run": [spec.name for spec in plan.specs],
        "harness_version": lm_eval.__version__,
        "limit": limit,
        "batch_size": batch_size,
        "seeds": seeds,
        "device": device,
        "dtype": dtype,
        "world_size": _world_size(),
        "offline_data": plan.offline_dir is not None,
        "offline_data_dir": str(plan.offline_dir) if plan.offline_dir is not None else None,
        "partial_groups": partial,
        "smoke": smoke,
        "max_gen_toks": gen_toks,
        "bootstrap_iters": bootstrap_iters,
        "nltk_punkt_tab": plan.punkt.as_dict() if plan.punkt is not None else None,
        "step": plan.info.step,
        "tokens": plan.info.tokens,
        "run": run_fields(plan.info),
        "run_config": _config_dict(plan.info),
        "tasks": scores,
        "subtasks": subtask_scores,
        "perplexity": held_out,
        "notes": notes,
        "files": {"results": "results.json", "samples": "samples/", "task_configs": "tasks/"},
        "elapsed_s": round(time.time() - started, 1),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    return summary


def _config_dict(info: CheckpointInfo) -> dict[str, Any] | None:
    if info.config is None:
        return None
    return to_dict(info.config)

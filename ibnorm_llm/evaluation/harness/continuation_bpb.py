"""Bits per byte of the correct continuation, from the harness's own per-sample log-likelihoods.

For every logged sample of a log-likelihood or multiple-choice task, the harness records the
requests (``arguments``: ``[context, continuation]`` per choice) and their log-likelihoods
(``filtered_resps``: ``[loglik, is_greedy]`` per choice). The correct choice's continuation costs
``-loglik`` nats for ``len(continuation.encode())`` bytes; over a task

    bpb = sum(-loglik of the correct continuation) / (ln 2 * sum(its UTF-8 bytes))

(total nats over total bytes, like held-out bits per byte). Unlike accuracy it moves smoothly with
model quality and ranks small models the way larger ones rank (OLMES, arXiv 2406.08446;
DataDecide, arXiv 2504.11393).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ibnorm_llm.evaluation.harness.tasks import HarnessTask

GoldOf = Callable[[dict[str, Any]], int]


def gold_resolver(task: HarnessTask) -> GoldOf:
    """The correct choice's index for a logged sample of ``task``, as the harness decides it.

    One request (lambada): that one. Several: the logged ``target`` when it is an index (or the
    text of one of the continuations); for tasks whose choices are contexts sharing one
    continuation (winogrande), the harness takes the gold index from ``doc_to_text``, and so
    does this, through the task's own YAML function.
    """
    from lm_eval.tasks._yaml_loader import load_yaml

    doc_to_text = load_yaml(task.yaml_path, resolve_func=True).get("doc_to_text")

    def gold(sample: dict[str, Any]) -> int:
        arguments, target = sample["arguments"], sample["target"]
        if len(arguments) == 1:
            return 0
        if isinstance(target, int):
            return target
        if isinstance(target, str) and target.isdigit():
            return int(target)
        continuations = [str(a[1]) for a in arguments]
        if callable(doc_to_text) and len(set(continuations)) == 1:
            index = doc_to_text(sample["doc"])
            if isinstance(index, int):
                return index
        stripped = [c.strip() for c in continuations]
        if str(target).strip() in stripped:
            return stripped.index(str(target).strip())
        raise ValueError(f"{task.name}: cannot tell the correct choice of sample {sample.get('doc_id')} "
                         f"(target {target!r})")

    return gold


def _loglik(response: Any) -> float:
    """``[loglik, is_greedy]`` (possibly wrapped once more) -> loglik."""
    while isinstance(response, (list, tuple)):
        response = response[0]
    return float(response)


def continuation_bpb(samples: list[dict[str, Any]], gold_of: GoldOf) -> float | None:
    """Bits per byte of the correct continuations of ``samples`` (None when they hold no bytes)."""
    nats, n_bytes = 0.0, 0
    for sample in samples:
        gold = gold_of(sample)
        nats -= _loglik(sample["filtered_resps"][gold])
        n_bytes += len(str(sample["arguments"][gold][1]).encode("utf-8"))
    return nats / (math.log(2) * n_bytes) if n_bytes else None

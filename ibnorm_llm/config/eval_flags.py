"""EvalConfig on the command line: the flags of ``ibnorm-llm eval``, read into an EvalConfig and
written back from one (a study starts its evaluations with the flags of its ``eval`` section).

One table, :data:`FLAGS`, pairs each flag with its EvalConfig field, so the two cannot drift apart.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .checks import check_eval
from .sections import EVAL_SUITES, SMOKE_MAX_GEN_TOKS, EvalConfig

_DEFAULTS = EvalConfig()
FLAGS: dict[str, str] = {
    "suite": "--suite", "tasks": "--tasks", "limit": "--limit", "batch_size": "--batch-size",
    "offline_data": "--offline-data", "smoke": "--smoke", "max_gen_toks": "--max-gen-toks",
    "allow_partial_groups": "--allow-partial-groups", "seed": "--seed", "perplexity": "--no-perplexity",
}
"""EvalConfig field -> its flag. ``test`` has none: it is part of training (the data's test split)."""


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", required=True, choices=EVAL_SUITES,
                   help="small = the small-model suite (arc_easy, arc_challenge, piqa, sciq, lambada_openai, "
                        "hellaswag, winogrande: 0-shot cloze, acc/acc_norm and bits per byte of the correct "
                        "continuation), v1 = Leaderboard I, v2 = Leaderboard II, all = v1 + v2")
    p.add_argument("--tasks", help="comma-separated subset of the suite's tasks, e.g. hellaswag,arc_challenge")
    p.add_argument("--limit", type=int, help="examples per (sub)task; for smoke runs only")
    p.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size,
                   help=f"fixed batch size (scores depend on it); default {_DEFAULTS.batch_size}")
    p.add_argument("--offline-data", metavar="DIR|builtin",
                   help="local task data (a folder `ibnorm-llm prefetch` wrote), or builtin: the smoke data shipped "
                        "with the package (the default with --smoke)")
    p.add_argument("--smoke", action="store_true", help=f"short generations ({SMOKE_MAX_GEN_TOKS} tokens), fewer "
                                                        "bootstrap iterations, partial groups allowed")
    p.add_argument("--max-gen-toks", type=int, help="cap on generated tokens for generative tasks")
    p.add_argument("--allow-partial-groups", action="store_true",
                   help="offline: score a group on the subtasks that have data (recorded in summary.json)")
    p.add_argument("--seed", type=int, help="one seed for all harness seeds (default: the harness's 0,1234,1234,1234)")
    p.add_argument("--no-perplexity", dest="perplexity", action="store_false", help="skip the held-out perplexity")


def eval_config_from_args(args: argparse.Namespace) -> EvalConfig:
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip()) if args.tasks is not None else None
    settings = EvalConfig(**{field: getattr(args, field) for field in FLAGS if field != "tasks"}, tasks=tasks)
    check_eval(settings, key_of=FLAGS.__getitem__)
    return settings


def eval_flags(settings: EvalConfig) -> list[str]:
    """The flags that make ``ibnorm-llm eval`` evaluate with ``settings`` (defaults left out)."""
    flags = []
    for field, flag in FLAGS.items():
        value = getattr(settings, field)
        if value == getattr(_DEFAULTS, field) and field != "suite":
            continue
        if isinstance(value, bool):
            flags.append(flag)  # every bool flag departs from its default when given (--smoke, --no-perplexity)
        elif field == "tasks":
            flags += [flag, ",".join(value)]
        elif field == "offline_data" and value != "builtin":
            flags += [flag, str(Path(value).expanduser().resolve())]  # the evaluation may start elsewhere
        else:
            flags += [flag, str(value)]
    return flags


def default_eval_dir(checkpoint: Path, suite: str) -> Path | None:
    """``runs/<run>/eval_<suite>`` for a checkpoint in a run folder (``runs/<run>/checkpoints/<step>``)."""
    checkpoint = Path(checkpoint)
    if checkpoint.parent.name != "checkpoints":
        return None
    return checkpoint.parent.parent / f"eval_{suite}"

"""Which settings may change when a run is resumed: the one list, and the comparison behind it.

A resumed run must be the run its record says it is. ``train.resume`` compares the new run config
with the one saved in the checkpoint (``config.yaml``) key by key: a difference outside
:data:`SAFE_ON_RESUME` is an error listing every differing key with both values, unless the key is
named in ``train.resume_allow_changes`` (then run.json records the change and the step it took
effect). docs/reliability.md shows the same list.
"""

from __future__ import annotations

from typing import Any

from .convert import to_dict
from .errors import ConfigError
from .legacy import legacy_norm_options

SAFE_ON_RESUME: tuple[str, ...] = (
    # where the run is written: a resume from another run's checkpoint starts a new record (a branch)
    "run_name", "out_dir",
    # how long to train and how to resume
    "train.max_steps", "train.resume", "train.overwrite", "train.resume_allow_changes",
    # cadence of logging, held-out evaluation and checkpoints
    "train.log_every", "train.eval_every", "train.checkpoint_every", "train.keep_last",
    # how the same computation runs, not what it computes
    "train.peak_flops", "train.compile", "train.allow_slow_cpu_bf16", "train.reuse_freed_memory",
    "train.skip_nonfinite", "train.skip_spikes", "model.gradient_checkpointing", "data.num_workers", "data.cache_dir",
    "tokenizer.train_if_missing",
    # what is reported: wandb and progress, the leaderboard after training, the IB analysis
    "logging", "eval", "analysis", "monitor",
)
"""Keys (or whole sections) that may differ from the checkpoint's run config on resume. Entries
are exact dotted keys or section prefixes."""
RESULT_NEUTRAL: tuple[str, ...] = tuple(k for k in SAFE_ON_RESUME if k not in ("train.max_steps", "train.skip_nonfinite",
                                                                                       "train.skip_spikes"))
"""Keys in which a finished run may differ from a planned one and still be that run (a study reuses it)."""


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"model": {"norm": {"lam": 4}}}`` -> ``{"model.norm.lam": 4}``; lists are values."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted))
        else:
            flat[dotted] = value
    return flat


def covered(key: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """Whether ``key`` is one of ``patterns`` or lies in a section named there."""
    return any(key == p or key.startswith(p + ".") for p in patterns)


_ABSENT = object()


def _fmt(value: Any) -> str:
    if value is _ABSENT:
        return "(unset)"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def differences(saved: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(dotted key, saved value, new value) for every key whose value differs, in key order."""
    a, b = flatten(saved), flatten(new)
    out = []
    for key in sorted(set(a) | set(b)):
        old, now = a.get(key, _ABSENT), b.get(key, _ABSENT)
        if old != now:
            out.append((key, old, now))
    return out


def config_differences(saved_tree: dict[str, Any], cfg, ignore: tuple[str, ...]) -> list[tuple[str, Any, Any]]:
    """:func:`differences` of a saved run config and ``cfg`` outside the keys and sections ``ignore`` names."""
    from . import config_from_tree  # the package imports this module

    try:
        # keys added since it was written get their defaults, norm specs the reading they were written with
        saved = to_dict(config_from_tree(legacy_norm_options(saved_tree)))
    except ConfigError:
        saved = saved_tree
    return [d for d in differences(saved, to_dict(cfg)) if not covered(d[0], ignore)]


def describe_differences(found: list[tuple[str, Any, Any]]) -> str:
    """``key old -> new; ...`` for messages."""
    return "; ".join(f"{key} {_fmt(old)} -> {_fmt(new)}" for key, old, new in found)


def resume_changes(saved_tree: dict[str, Any], cfg, source: str) -> list[dict[str, Any]]:
    """Compare ``cfg`` with the run config ``saved_tree`` read from ``source`` (a checkpoint's
    config.yaml). Returns the changes ``train.resume_allow_changes`` allows, as
    ``{"key", "from", "to"}`` records; any other difference outside SAFE_ON_RESUME raises
    ConfigError naming each key with both values."""
    changed = config_differences(saved_tree, cfg, ignore=SAFE_ON_RESUME)
    allowed = cfg.train.resume_allow_changes
    refused = [d for d in changed if not covered(d[0], allowed)]
    if refused:
        listed = describe_differences(refused)
        keys = ",".join(key for key, _, _ in refused)
        raise ConfigError(
            f"train.resume={cfg.train.resume}: the run config differs from the one the checkpoint was trained with "
            f"({source}): {listed}. Resume with the checkpoint's settings, start a new run under another run_name, "
            f"or allow the change with train.resume_allow_changes=[{keys}] (recorded in run.json)"
        )
    return [{"key": key, "from": None if old is _ABSENT else old, "to": None if new is _ABSENT else new}
            for key, old, new in changed]


_NORM_KEYS = ("model.norm", "model.final_norm", "model.qk_norm")


def check_allow_changes(cfg) -> None:
    """Every train.resume_allow_changes entry must name a config key (a norm option counts for
    every norm key, set or not) or a section."""
    from ibnorm_llm.norms import option_names

    keys = set(flatten(to_dict(cfg)))
    keys |= {f"{norm}.{option}" for norm in _NORM_KEYS for option in ("kind", *option_names())}
    for entry in cfg.train.resume_allow_changes:
        if not any(covered(key, [entry]) for key in keys):
            import difflib

            sections = {k.rsplit(".", i)[0] for k in keys for i in range(k.count(".") + 1)}
            close = difflib.get_close_matches(entry, sorted(sections), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"train.resume_allow_changes: '{entry}' is not a config key or section{hint}")

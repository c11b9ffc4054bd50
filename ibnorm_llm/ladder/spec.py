"""A ladder file: the arms of a study, trained at several model sizes and token budgets.

    name: tiny_norms
    base: llama_tiny_rmsnorm.yaml          # a config name or path, as in a study file
    overrides: {train.global_batch_size: 16}
    arms:                                  # as in a study file
      rmsnorm: {model.norm.kind: rmsnorm}
      ibnorm_l: {model.norm.kind: ibnorm, model.norm.variant: L, model.norm.lam: 4.0}
    baseline: rmsnorm
    tune: {optim.lr: [1.0e-3, 3.0e-3, 1.0e-2]}
    seeds: [0, 1, 2]
    sizes:                                 # name -> model shape overrides (at least 3 sizes)
      s1: {model.d_model: 16, model.n_layers: 2, model.n_heads: 2, model.d_ff: 44}
      ...
    budgets: [5, 10, 20]                   # tokens per non-embedding parameter, increasing
    lr_rule: {kind: power, exponent: -0.333}   # or {kind: tune_each}
    targets: [llama-60m, llama-130m, llama-350m, llama-1b]   # presets the fitted laws are read at
    target_tokens_per_param: 20

The study part (name, base, overrides, arms, baseline, tune, seeds) is read by the study's own
parser (:func:`ibnorm_llm.study.spec.parse_study`), so it is checked exactly as a study file is.
Every problem raises :class:`LadderError` naming the key and the fix.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ibnorm_llm.models.presets import PRESETS
from ibnorm_llm.study.errors import StudyError, check_name, mapping
from ibnorm_llm.study.spec import StudySpec, parse_study, read_named_file

STUDY_KEYS = ("name", "base", "overrides", "arms", "baseline", "tune", "seeds")
LADDER_KEYS = ("sizes", "budgets", "lr_rule", "targets", "target_tokens_per_param")
TOP_KEYS = STUDY_KEYS + LADDER_KEYS
REQUIRED = ("name", "base", "arms", "baseline", "seeds", "sizes", "budgets")
LR_RULES = ("power", "tune_each")
DEFAULT_TARGETS = ("llama-60m", "llama-130m", "llama-350m", "llama-1b")
DEFAULT_TARGET_TOKENS_PER_PARAM = 20.0
"""Chinchilla's compute-optimal ratio (Hoffmann et al. 2022)."""
SIZE_EXTRA_KEYS = ("optim.warmup_steps", "train.micro_batch_size")
"""Besides the shape, a size may set its warmup (which grows with N in OLMo's ladder) and its micro batch (memory)."""
MIN_SIZES = 3
"""Two sizes fix a line, not a curve, and the held-out check drops the largest size."""
# A study file's keys that have no meaning in a ladder (named in the error, not silently dropped).
_STUDY_ONLY = ("eval", "arm_grid", "exclude", "tune_from", "final_seeds", "analyze", "claims", "factors")


class LadderError(StudyError):
    """A bad ladder file or a ladder that cannot go on; the message names the key and the fix."""


@dataclass(frozen=True)
class LrRule:
    kind: str
    """power: tune at the smallest size, then value * (N / N_smallest) ** exponent; tune_each: tune every size."""
    exponent: float = -1 / 3
    key: str = "optim.lr"
    """The tuned key the power rule scales (other tuned keys keep their chosen value)."""

    def describe(self) -> str:
        if self.kind == "tune_each":
            return "tuned at every size"
        return f"tuned at the smallest size, then {self.key} x (N / N_smallest)^{self.exponent:g}"


@dataclass(frozen=True)
class LadderSpec:
    study: StudySpec
    """The arms, baseline, grid and seeds, read as a study file's."""
    sizes: dict[str, dict[str, Any]]
    """Size name -> dotted model overrides, in file order (the plan sorts them by parameter count)."""
    budgets: tuple[float, ...]
    """Tokens per non-embedding parameter, increasing."""
    lr_rule: LrRule
    targets: tuple[str, ...]
    target_tokens_per_param: float
    source: str

    @property
    def name(self) -> str:
        return self.study.name


def _unknown(key: str, valid: tuple[str, ...], where: str, source: str) -> LadderError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(valid)}"
    return LadderError(f"{source}: unknown key '{where}{key}'{hint}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _sizes(raw: Any, arms: dict[str, dict[str, Any]], source: str) -> dict[str, dict[str, Any]]:
    sizes = mapping(raw, "sizes", source)
    if len(sizes) < MIN_SIZES:
        raise LadderError(f"{source}: sizes has {len(sizes)} size(s); a ladder needs at least {MIN_SIZES} to fit a law "
                          "and test it on the largest (add sizes, e.g. s3: {model.d_model: 64, model.n_layers: 4})")
    result = {}
    for name, settings in sizes.items():
        check_name(name, f"sizes.{name}", source)
        settings = mapping(settings, f"sizes.{name}", source)
        if not settings:
            raise LadderError(f"{source}: sizes.{name} is empty; give its shape, e.g. {{model.d_model: 64, model.n_layers: 2}}")
        for key in settings:
            shape = key.startswith("model.") and not key.startswith(("model.norm", "model.final_norm", "model.qk_norm"))
            if not (shape or key in SIZE_EXTRA_KEYS):
                raise LadderError(f"{source}: sizes.{name}.{key}: a size sets the model's shape (model.d_model, "
                                  f"model.n_layers, model.n_heads, model.d_ff, ...) and may set {', '.join(SIZE_EXTRA_KEYS)}; "
                                  "other settings belong to overrides or, for the norm, to the arms")
            for arm, arm_settings in arms.items():
                if key in arm_settings:
                    raise LadderError(f"{source}: {key} is set by sizes.{name} and by arms.{arm}; set it in one place")
        result[name] = settings
    return result


def _budgets(raw: Any, source: str) -> tuple[float, ...]:
    if not isinstance(raw, list) or len(raw) < 2 or not all(_number(b) and b > 0 for b in raw):
        raise LadderError(f"{source}: budgets={raw!r} must be a list of at least 2 positive numbers of tokens per "
                          "parameter, e.g. [5, 10, 20]")
    for low, high in zip(raw, raw[1:], strict=False):
        if not high > low:
            raise LadderError(f"{source}: budgets={raw!r} must increase ({high} follows {low}); list them from the "
                              "smallest, e.g. [5, 10, 20]: each budget's run branches from the one before it")
    return tuple(float(b) for b in raw)


def _lr_rule(raw: Any, tune: dict[str, list[Any]], source: str) -> LrRule:
    data = mapping(raw if raw is not None else {"kind": "power"}, "lr_rule", source)
    for key in data:
        if key not in ("kind", "exponent", "key"):
            raise _unknown(key, ("kind", "exponent", "key"), "lr_rule.", source)
    kind = data.get("kind")
    if kind not in LR_RULES:
        raise LadderError(f"{source}: lr_rule.kind={kind!r} must be one of {', '.join(LR_RULES)} "
                          "(power: tune at the smallest size and transfer by (N/N0)^exponent; tune_each: tune every size)")
    if kind == "tune_each":
        if set(data) - {"kind"}:
            raise LadderError(f"{source}: lr_rule.kind=tune_each takes no exponent or key; remove them")
        return LrRule("tune_each")
    exponent = data.get("exponent", -1 / 3)
    if not _number(exponent):
        raise LadderError(f"{source}: lr_rule.exponent={exponent!r} must be a number, e.g. -0.333 (OLMo's N^-1/3)")
    key = data.get("key", "optim.lr")
    if key not in tune:
        raise LadderError(f"{source}: lr_rule.kind=power transfers the tuned value of {key}, but tune has no {key}; "
                          f"add tune: {{{key}: [...]}} or name a tuned key in lr_rule.key")
    if not all(_number(v) and v > 0 for v in tune[key]):
        raise LadderError(f"{source}: lr_rule.kind=power scales tune.{key}, whose values must be positive numbers")
    return LrRule("power", float(exponent), key)


def _targets(raw: Any, source: str) -> tuple[str, ...]:
    if raw is None:
        return DEFAULT_TARGETS
    if not isinstance(raw, list) or not raw or not all(isinstance(t, str) for t in raw):
        raise LadderError(f"{source}: targets={raw!r} must be a list of model presets, e.g. [llama-60m, llama-1b]")
    for target in raw:
        if target not in PRESETS:
            close = difflib.get_close_matches(target, PRESETS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise LadderError(f"{source}: targets: {target!r} is not a model preset; {hint}valid: {', '.join(PRESETS)}")
    return tuple(raw)


def parse_ladder(data: Any, source: str = "<ladder>") -> LadderSpec:
    """Check a decoded ladder file (see the module docstring for the schema)."""
    if not isinstance(data, dict):
        raise LadderError(f"{source}: the top level must be a mapping with keys {', '.join(TOP_KEYS)}")
    for key in data:
        if key in _STUDY_ONLY:
            raise LadderError(f"{source}: '{key}' is a study file's key that a ladder does not take; remove it "
                              f"(a ladder's keys: {', '.join(TOP_KEYS)})")
        if key not in TOP_KEYS:
            raise _unknown(str(key), TOP_KEYS, "", source)
    for key in REQUIRED:
        if key not in data:
            raise LadderError(f"{source}: missing key '{key}' (a ladder needs {', '.join(REQUIRED)})")
    study = parse_study({key: data[key] for key in STUDY_KEYS if key in data}, source)
    schedule = study.overrides.get("optim.schedule", "wsd")
    if schedule != "wsd":
        raise LadderError(f"{source}: overrides sets optim.schedule={schedule}; a ladder trains on wsd (each budget "
                          "branches from the shorter one's stable phase): remove it")
    study = replace(study, overrides={"optim.schedule": "wsd", **study.overrides})
    target_ratio = data.get("target_tokens_per_param", DEFAULT_TARGET_TOKENS_PER_PARAM)
    if not _number(target_ratio) or target_ratio <= 0:
        raise LadderError(f"{source}: target_tokens_per_param={target_ratio!r} must be a positive number (e.g. 20)")
    return LadderSpec(
        study=study, sizes=_sizes(data["sizes"], study.arms, source), budgets=_budgets(data["budgets"], source),
        lr_rule=_lr_rule(data.get("lr_rule"), study.tune, source), targets=_targets(data.get("targets"), source),
        target_tokens_per_param=float(target_ratio), source=source,
    )


def load_ladder(name_or_path: str | Path) -> LadderSpec:
    """Read and check a ladder file: a path, or the name of one in ./ladders or shipped with the package."""
    return parse_ladder(*read_named_file(name_or_path, "ladders", "--ladder", LadderError))

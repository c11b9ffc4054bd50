"""Run configuration: frozen dataclasses per section, YAML as their serialization.

Merge order: dataclass defaults <- YAML file <- ``dotted.key=value`` overrides.
Every key is checked: an unknown key, a wrong type or an invalid value raises
:class:`ConfigError` naming the dotted key, and for unknown keys the closest valid one.

    cfg = load_config("configs/llama_tiny_ibnorm_l.yaml", ["train.max_steps=20"])
    cfg.model.norm.kind        # 'ibnorm'
    save_config(cfg, "runs/x/config.yaml")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ibnorm_llm.shipped import find_named, shipped_dir

from .checks import check_eval, check_values, wsd_decay_steps
from .convert import from_dict, to_dict
from .errors import ConfigError
from .legacy import legacy_norm_options
from .sections import (
    EVAL_SUITES,
    AnalysisConfig,
    DataConfig,
    EmbedScaleConfig,
    EvalConfig,
    LoggingConfig,
    ModelConfig,
    MonitorConfig,
    MuonConfig,
    NormConfig,
    NormOverride,
    OptimConfig,
    PositionAlphaInit,
    RunConfig,
    TokenizerConfig,
    TrainConfig,
)
from .yaml12 import yaml_load

__all__ = [
    "CONFIG_DIR", "EVAL_SUITES", "AnalysisConfig", "ConfigError", "DataConfig", "EmbedScaleConfig", "EvalConfig",
    "LoggingConfig", "ModelConfig", "MonitorConfig", "MuonConfig", "NormConfig", "NormOverride", "OptimConfig",
    "PositionAlphaInit", "RunConfig", "TokenizerConfig", "TrainConfig",
    "check_eval", "config_from_tree", "config_to_yaml", "from_dict", "legacy_norm_options", "load_config", "parse_override",
    "replace", "resolve_config_path", "save_config", "wsd_decay_steps",
    "to_dict", "yaml_load",
]


CONFIG_DIR = shipped_dir("configs")
"""The shipped config presets (ibnorm_llm/shipped/configs: the checkout's configs/, copied into a wheel)."""


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path as given; else a bare name (``.yaml`` optional) looked up in ``./configs``, then in the
    shipped presets."""
    path, problem = find_named(name_or_path, "configs")
    if path is None:
        raise ConfigError(problem)
    return path


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted}: '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``model.norm.lam=4`` -> ("model.norm.lam", 4); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected dotted.key=value, e.g. train.max_steps=100")
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({err})") from None
    return key.strip(), value


def config_from_tree(tree: dict[str, Any]) -> RunConfig:
    cfg = from_dict(RunConfig, tree)
    check_values(cfg)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Defaults <- YAML at ``path`` (a path or a name in configs/) <- ``key=value`` overrides."""
    tree: dict[str, Any] = {}
    if path is not None:
        resolved = resolve_config_path(path)
        try:
            tree = yaml_load(resolved.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{resolved}: not valid YAML ({err})") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{resolved}: the top level must be a mapping of sections")
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
    return config_from_tree(tree)


def config_to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_to_yaml(cfg))


def replace(obj: Any, dotted: str, value: Any) -> Any:
    """A copy of a (nested) frozen config with one dotted key changed and re-validated."""
    tree = to_dict(obj)
    _set_dotted(tree, dotted, value)
    if isinstance(obj, RunConfig):
        return config_from_tree(tree)
    return from_dict(type(obj), tree)

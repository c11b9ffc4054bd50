"""dict <-> dataclass with strict type checking: errors name the dotted key and, for an
unknown key, the closest valid one."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Literal, Union

from ibnorm_llm.norms import (
    NormOptionError,
    NormSpec,
    check_norm_spec,
    option_names,
    option_types,
    renamed_option_message,
)

from .errors import ConfigError


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "list of " + _type_name(typing.get_args(tp)[0])
    if dataclasses.is_dataclass(tp):
        return "a mapping {" + ", ".join(f.name for f in dataclasses.fields(tp)) + "}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _norm_spec(value: Any, key: str) -> NormSpec:
    """A norm spec from its YAML mapping, checked once against the norm registry: the kind, each
    option's name and type (from the norm's options class, norms/options.py) and its value."""
    if isinstance(value, NormSpec):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping with kind and that norm's options, got {value!r}")
    kind = _convert(value.get("kind", "rmsnorm"), str, f"{key}.kind")
    try:
        types_ = option_types(kind)  # unknown kind: "kind='ibnrom': unknown norm; did you mean ..."
    except ValueError as err:
        raise ConfigError(f"{key}.{err}") from None
    options = {}
    for name, option in value.items():
        if name == "kind":
            continue
        if name not in option_names():
            renamed = renamed_option_message(str(name))
            if renamed and option is None:  # an older config.yaml lists every option, unset ones as null
                continue
            if renamed:
                raise ConfigError(f"{key}.{name}: {renamed}")
            close = difflib.get_close_matches(str(name), ["kind", *option_names()], n=1)
            hint = f"; did you mean '{key}.{close[0]}'?" if close else f"; valid keys: kind, {', '.join(option_names())}"
            raise ConfigError(f"unknown config key '{key}.{name}'{hint}")
        if option is None:  # unset: the norm's default (config.yaml files list every option, unset ones as null)
            continue
        if name not in types_:
            raise ConfigError(f"{key}.{name}: kind {kind!r} does not take option {name!r} (it takes: {', '.join(types_)})")
        options[name] = _convert(option, types_[name], f"{key}.{name}")
    spec = NormSpec(kind, **options)
    try:
        check_norm_spec(spec)
    except NormOptionError as err:
        raise ConfigError(f"{key}.{err}") from None
    return spec


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it in canonical form."""
    if tp is NormSpec:
        return _norm_spec(value, key)
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{key}: null is not allowed; expected {_type_name(tp)}")
        mappings = [arg for arg in args if dataclasses.is_dataclass(arg)]
        if isinstance(value, dict) and len(mappings) == 1:
            return _convert(value, mappings[0], key)  # a mapping can only mean the dataclass: its own errors
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}={value!r}: expected {_type_name(tp)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}={value!r}: must be one of {', '.join(map(str, allowed))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            if typing.get_args(tp)[-1] is Ellipsis and isinstance(value, str):
                value = [value]  # a single path where a list of paths is expected
            else:
                raise ConfigError(f"{key}={value!r}: expected {_type_name(tp)}")
        args = typing.get_args(tp)
        if args[-1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}={list(value)!r}: expected {len(args)} values")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} keys, got {value!r}")
        return from_dict(tp, value, prefix=key + ".")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r}: expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)  # YAML writes 1e6 as a float
            raise ConfigError(f"{key}={value!r}: expected an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}={value!r}: expected a number")
        value = float(value)
        if math.isnan(value):
            raise ConfigError(f"{key}=nan: expected a number")
        return value
    if tp is str:
        if not isinstance(value, str):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)  # e.g. layers: 5, or a run name that YAML read as a number
            raise ConfigError(f"{key}={value!r}: expected a string")
        return value
    raise TypeError(f"unsupported config annotation {tp!r} at {key}")


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad types raise ConfigError."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"unknown config key '{prefix}{key}'{hint}")
        kwargs[key] = _convert(value, hints[key], prefix + key)
    try:
        return cls(**kwargs)
    except TypeError as err:  # a required field without a value
        raise ConfigError(f"{prefix or 'config'}: {err}") from None


def to_dict(obj: Any) -> Any:
    """Plain YAML-serializable form (tuples become lists)."""
    if isinstance(obj, NormSpec):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj

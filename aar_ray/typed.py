"""Plain data (YAML, JSON, dicts) into typed dataclasses and back, with errors that name the
field: unknown keys (with a did-you-mean), wrong types, values outside a Literal. `config.py`
declares the dataclasses; this is how they are read."""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, TypeVar

from aar_ray.errors import ConfigError
from aar_ray.registry import did_you_mean

T = TypeVar("T")


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Build dataclass `cls` from plain data, rejecting unknown keys and wrong types by path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"{where}.{key}: unknown field{did_you_mean(key, sorted(names))}; "
                              f"allowed: {sorted(names)}")
        kwargs[key] = _coerce(hints[key], value, f"{where}.{key}")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in args:
            try:
                return _coerce(arg, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return {str(k): _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null")
        return None
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        if isinstance(value, bool) and tp is not bool:
            raise ConfigError(f"{where}: expected {tp.__name__}, got a boolean")
        if not isinstance(value, tp):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass config as plain data (the inverse of `from_dict`)."""
    return dataclasses.asdict(obj)

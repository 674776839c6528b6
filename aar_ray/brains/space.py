"""A method's parameters as an Optuna search space, from the JSON schema that the registry and
`describe_method` give (`minimum`/`maximum`, `enum`, booleans). One reading of that schema for
every searcher: the sweep explorer and the offline researcher ask Optuna the same way."""
from __future__ import annotations

from typing import Any

import optuna

from aar_ray.config import ConfigError


def suggestion(method: str, key: str, spec: dict[str, Any]) -> tuple[str, tuple]:
    """The Optuna `suggest_*` call (name, args) for one parameter's JSON schema."""
    if "enum" in spec:
        return "suggest_categorical", (spec["enum"],)
    if spec["type"] == "boolean":
        return "suggest_categorical", ([True, False],)
    if spec.get("minimum") is None or spec.get("maximum") is None:
        raise ConfigError(f"method {method}.{key}: declares no range (lo, hi); a search needs one")
    kind = "suggest_int" if spec["type"] == "integer" else "suggest_float"
    return kind, (spec["minimum"], spec["maximum"])


def suggest(trial: optuna.Trial, method: str, schema: dict[str, Any],
            prefix: str = "") -> dict[str, Any]:
    """Ask `trial` for every parameter of `method` (`schema` holds `properties`); parameter
    names in the study are `prefix + key`, the returned dict is keyed by the bare names."""
    out = {}
    for key, spec in schema.get("properties", {}).items():
        kind, args = suggestion(method, key, spec)
        out[key] = getattr(trial, kind)(prefix + key, *args)
    return out

"""What the offline manifest checks (`cluster_config.py`) share: strict YAML loading, Ray's
private validators looked up so that a Ray upgrade that moves them says so, and the wording of
each problem as `<field.path>: <what is wrong>`.

Ray's conversion and validation functions are private (`ray.autoscaler._private`); `ray_private`
looks them up so that a moved function fails with a message naming it rather than with an
AttributeError deep inside a check.
"""
from __future__ import annotations

import importlib
import importlib.resources
import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from aar_ray.registry import closest, did_you_mean

CUTOFF = 0.75  # field names are short: only near-certain typos get a hint

# The Ray version these private APIs were read from.
TESTED_RAY = "2.60.0"


class ClusterConfigError(ValueError):
    """A manifest is invalid. `problems` holds one `field.path: message` per finding."""

    def __init__(self, source: str, problems: Sequence[str]):
        self.source = source
        self.problems = list(dict.fromkeys(problems))  # de-duplicated, order kept
        super().__init__("\n".join(f"{source}: {p}" for p in self.problems))


class RayApiMovedError(ImportError):
    """A private Ray function or file this module relies on is not where it used to be."""


# --------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, which plain YAML silently resolves to the last."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # unhashable key: let construct_mapping report it
            break
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def load_yaml_mapping(path: str | Path) -> tuple[str, dict[str, Any]]:
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ClusterConfigError(source, [f"cannot read file: {e.strerror or e}"]) from e
    try:
        doc = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ClusterConfigError(source, [f"{where}invalid YAML: {problem}"]) from e
    if not isinstance(doc, dict):
        raise ClusterConfigError(
            source, [f"top level: expected a mapping, got {type(doc).__name__}"]
        )
    return source, doc


# --------------------------------------------------------------------------- Ray private APIs


def ray_private(module: str, name: str) -> Callable[..., Any]:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise RayApiMovedError(moved_message(f"{module}.{name}")) from e


def moved_message(what: str) -> str:
    import ray

    return (
        f"{what} is not available in Ray {ray.__version__}. It is a private Ray API "
        f"(read from Ray {TESTED_RAY}) and may have moved; update aar_ray/manifests.py."
    )


def ray_schema() -> dict[str, Any]:
    try:
        schema_file = importlib.resources.files("ray.autoscaler") / "ray-schema.json"
        return json.loads(schema_file.read_text())
    except (ImportError, OSError) as e:
        raise RayApiMovedError(moved_message("ray/autoscaler/ray-schema.json")) from e


# --------------------------------------------------------------------------- error wording


def join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def dotted(parts: Iterable[Any]) -> str:
    path = ""
    for part in parts:
        path = join(path, part)
    return path


def typo_hint(key: str, known: Iterable[Any]) -> str:
    """For an unexpected key: the known field it probably meant."""
    return did_you_mean(key, [str(k) for k in known], cutoff=CUTOFF)


def missing_hint(key: str, present: Iterable[Any]) -> str:
    """For a missing key: a present key that is probably a misspelling of it."""
    close = closest(key, [str(k) for k in present], cutoff=CUTOFF)
    return f" (found {close!r}: a typo?)" if close else ""


def describe_schema_error(err: jsonschema.ValidationError) -> list[str]:
    """One readable line per field for a jsonschema error (which names the parent object)."""
    path = dotted(err.absolute_path)
    where = path or "top level"
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        known = err.schema.get("properties", {})
        patterns = err.schema.get("patternProperties", {})
        extras = [
            k
            for k in err.instance
            if k not in known and not any(re.search(p, str(k)) for p in patterns)
        ]
        return [f"{join(path, k)}: unexpected field{typo_hint(str(k), known)}" for k in extras]
    if err.validator == "required" and isinstance(err.instance, dict):
        missing = [k for k in err.validator_value if k not in err.instance]
        return [
            f"{join(path, k)}: required field missing{missing_hint(k, err.instance)}"
            for k in missing
        ]
    if err.validator == "type":
        expected = err.validator_value
        if isinstance(expected, list):
            expected = " or ".join(expected)
        return [f"{where}: expected {expected}, got {err.instance!r}"]
    if err.validator == "enum":
        return [f"{where}: expected one of {err.validator_value}, got {err.instance!r}"]
    return [f"{where}: {err.message}"]


def describe_ray_error(e: BaseException) -> str:
    if isinstance(e, jsonschema.ValidationError):
        return "; ".join(describe_schema_error(e))
    if isinstance(e, KeyError):
        return f"missing field {e.args[0]!r}" if e.args else "missing field"
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split())

"""Methods: how the strong student learns from weak labels. One file per method, registered by
name in `registry.METHODS` (which imports every module of this folder, then installed packages'
entry points in the group "aar_ray.methods": see `aar_ray/registry.py`); each declares typed
parameters with ranges, from which validation, the JSON schema agents see (`describe_method`)
and the CLI help all come.

A method gets the weak soft labels on the unlabelled split and a factory of fresh students —
never ground truth — and returns the student's class probabilities on the test split. It may set
each student's training length and early stopping (`Student.fit`), and declares the student
modes it supports (`modes`), checked before any training starts. docs/methods.md walks through it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import math
import sys
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from aar_ray.config import ConfigError, StudentConfig
from aar_ray.registry import METHODS
from aar_ray.w2s.student import StudentFactory

MODES: tuple[str, ...] = typing.get_args(typing.get_type_hints(StudentConfig)["mode"])


@dataclass
class MethodContext:
    weak: np.ndarray  # (n_train, C) the teacher's soft labels on the unlabelled split
    students: StudentFactory
    rng: np.random.Generator

    def hold_out(self, fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """Set aside a random `fraction` of the weak-labelled examples for validation:
        returns (weights for `fit`, 0 on the held-out examples; the held-out indices)."""
        n = self.students.n_train
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) \
                or not 0 < fraction < 1:
            raise ConfigError(f"hold_out(fraction={fraction!r}): must be in (0, 1)")
        k = int(round(fraction * n))
        if not 1 <= k < n:
            raise ConfigError(f"hold_out(fraction={fraction}): holds out {k} of {n} examples; "
                              "at least one must be held out and one kept")
        held = np.sort(self.rng.permutation(n)[:k])
        weights = np.ones(n, dtype=np.float32)
        weights[held] = 0.0
        return weights, held


@dataclass
class NoParams:
    pass


def param(default: Any, *, lo: float | None = None, hi: float | None = None,
          choices: list[Any] | None = None, help: str = "") -> Any:
    """A method parameter with its allowed range: the single source for checks and schemas."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "choices": choices, "help": help})


class Method(ABC):
    """Subclass, set `name`, `tags` and a `Params` dataclass, and implement `run`. A method
    that cannot run in every student mode (e.g. it reads `ctx.students.features`, which only
    head mode has) lists the ones it supports in `modes`."""

    name: ClassVar[str]
    tags: ClassVar[tuple[str, ...]] = ()
    modes: ClassVar[tuple[str, ...]] = MODES
    Params: ClassVar[type] = NoParams

    def __init__(self, params: Any) -> None:
        self.p = params

    @abstractmethod
    def run(self, ctx: MethodContext) -> np.ndarray:
        """Train student(s) from `ctx.weak` and return test-split probabilities (n_test, C)."""

    @classmethod
    def summary(cls) -> str:
        return inspect.getdoc(cls) or ""


def register(cls: type[Method]) -> type[Method]:
    return METHODS.register(cls.name)(cls)


def check_mode(method: type[Method] | Method, mode: str) -> None:
    """Refuse a method in a student mode it does not support, before anything trains."""
    modes = method.modes
    if not modes or not set(modes) <= set(MODES):
        raise ConfigError(f"method {method.name}: modes {modes!r} must be a non-empty subset "
                          f"of {list(MODES)}")
    if mode not in modes:
        raise ConfigError(f"method {method.name} does not support student mode {mode!r}; it "
                          f"runs in {list(modes)} (student.mode)")


_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}


def params_schema(method: type[Method]) -> dict[str, Any]:
    """JSON schema of a method's parameters (what agents and Claude see)."""
    props: dict[str, Any] = {}
    for f in dataclasses.fields(method.Params):
        m = f.metadata
        prop: dict[str, Any] = {"type": _TYPES[_field_type(method, f)], "default": f.default}
        if m.get("lo") is not None:
            prop["minimum"] = m["lo"]
        if m.get("hi") is not None:
            prop["maximum"] = m["hi"]
        if m.get("choices"):
            prop["enum"] = m["choices"]
        if m.get("help"):
            prop["description"] = m["help"]
        props[f.name] = prop
    return {"type": "object", "properties": props, "additionalProperties": False}


def _field_type(method: type[Method], f: dataclasses.Field) -> type:
    import typing

    return typing.get_type_hints(method.Params)[f.name]


def build_params(method: type[Method], raw: dict[str, Any] | None) -> Any:
    """Validated Params for `method` from plain data; a ConfigError names the bad parameter and
    what is allowed."""
    raw = dict(raw or {})
    fields = {f.name: f for f in dataclasses.fields(method.Params)}
    where = f"method {method.name}"
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown parameter(s) {unknown}; allowed: {sorted(fields)}")
    values = {}
    for name, f in fields.items():
        if name not in raw:
            continue
        v, tp, m = raw[name], _field_type(method, f), f.metadata
        if tp is float and isinstance(v, int) and not isinstance(v, bool):
            # JSON integers are unbounded: past float's range the value is simply infinite
            v = float(v) if abs(v) <= sys.float_info.max else math.inf * (1 if v > 0 else -1)
        if not isinstance(v, tp) or (isinstance(v, bool) and tp is not bool):
            raise ConfigError(f"{where}.{name}: expected {tp.__name__}, got {v!r}")
        if tp is float and not math.isfinite(v):  # an int is finite (and may not fit np)
            raise ConfigError(f"{where}.{name}: must be finite, got {v!r}")
        lo, hi = m.get("lo"), m.get("hi")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ConfigError(f"{where}.{name}: {v!r} is out of range [{lo}, {hi}]")
        if m.get("choices") and v not in m["choices"]:
            raise ConfigError(f"{where}.{name}: {v!r} is not one of {m['choices']}")
        values[name] = v
    return method.Params(**values)


def make_method(name: str, params: dict[str, Any] | None = None,
                mode: str | None = None) -> Method:
    """A validated method; with `mode`, also refuse a student mode it does not support."""
    cls = METHODS.get(name)
    if mode is not None:
        check_mode(cls, mode)
    return cls(build_params(cls, params))


def code_hash(name: str) -> str:
    """Hash of the source of the module that defines method `name`: a trial's provenance
    records it, and the audit and `aar rerun` compare it with today's code."""
    src = inspect.getsource(inspect.getmodule(METHODS.get(name)))
    return hashlib.sha256(src.encode()).hexdigest()[:16]


def describe(name: str) -> dict[str, Any]:
    cls = METHODS.get(name)
    return {"name": cls.name, "summary": cls.summary(), "tags": list(cls.tags),
            "modes": list(cls.modes), "params": params_schema(cls)}


def catalog(mode: str | None = None) -> dict[str, dict[str, Any]]:
    """Every registered method (that runs in student `mode`, if given), described."""
    described = {name: describe(name) for name in METHODS.names()}
    return {n: d for n, d in described.items() if mode is None or mode in d["modes"]}

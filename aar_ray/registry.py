"""The name → object catalogs — tasks, models, methods — with errors that list the allowed names.

Each catalog fills itself the first time it is read: it imports its built-in folder (every
module in `aar_ray/w2s/tasks/`, `models.py`, every module in `aar_ray/w2s/methods/`; each
registers what it defines) and then loads the Python entry points of its group, so an installed
package adds a task, a model or a method without editing this repository:

    # the other package's pyproject.toml
    [project.entry-points."aar_ray.tasks"]
    my_task = "my_pkg.tasks:SPEC"          # a TaskSpec whose .name is "my_task"
    [project.entry-points."aar_ray.methods"]
    my_method = "my_pkg.methods:MyMethod"  # a Method subclass whose .name is "my_method"

An entry point may also name a module whose import registers its objects itself. The catalogs
live here, below the science, so `config` checks names without importing the science: the
science is reached only by discovery, by module name, when a catalog is first read.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
import threading
import types
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any, Generic, TypeVar

from aar_ray.errors import ConfigError

T = TypeVar("T")


def closest(name: str, allowed: list[str], cutoff: float = 0.6) -> str | None:
    """The allowed name most like `name`, if any is alike enough (difflib's ratio >= cutoff)."""
    close = difflib.get_close_matches(str(name), allowed, n=1, cutoff=cutoff)
    return close[0] if close else None


def did_you_mean(name: str, allowed: list[str], cutoff: float = 0.6) -> str:
    """' (did you mean 'x'?)' for the allowed name closest to `name`, or '': the one wording of
    an unknown name, for the catalogs, the config's fields and the cluster manifests."""
    close = closest(name, allowed, cutoff)
    return f" (did you mean {close!r}?)" if close else ""


class Registry(Generic[T]):
    def __init__(self, kind: str, builtins: str = "", group: str = "") -> None:
        self.kind = kind
        self.builtins = builtins  # a module, or a package whose every module is imported
        self.group = group  # the entry point group third-party packages register under
        self._items: dict[str, T] = {}
        # entry points that failed to load, name -> why: only a read of that name (or of the
        # whole catalog) fails, so one broken plugin does not break every command
        self._broken: dict[str, str] = {}
        self._state = "new"  # -> "loading" -> "loaded"
        self._lock = threading.RLock()  # re-entrant: a discovered module may read the catalog

    # ---- filling ---------------------------------------------------------------------------

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return add

    def add(self, name: str, obj: T) -> T:
        return self.register(name)(obj)

    def _load(self) -> None:
        if self._state == "loaded":
            return
        with self._lock:
            if self._state != "new":  # loaded by another thread, or loading in this one
                return
            self._state = "loading"
            try:
                if self.builtins:
                    self._import_builtins()
                if self.group:
                    for ep in metadata.entry_points(group=self.group):
                        self._load_entry_point(ep)
            except BaseException:
                self._state = "new"  # the next read retries and raises the error again
                raise
            self._state = "loaded"

    def _import_builtins(self) -> None:
        package = importlib.import_module(self.builtins)
        for mod in pkgutil.iter_modules(getattr(package, "__path__", [])):
            importlib.import_module(f"{self.builtins}.{mod.name}")

    def _load_entry_point(self, ep: metadata.EntryPoint) -> None:
        where = f"entry point {ep.name} = {ep.value!r} in group {self.group!r}"
        try:
            obj: Any = ep.load()
        except Exception as e:
            self._broken[ep.name] = f"{where}: failed to load: {type(e).__name__}: {e}"
            return
        if isinstance(obj, types.ModuleType):  # the module registered its objects on import
            return
        name = getattr(obj, "name", ep.name)
        if name != ep.name:
            self._broken[ep.name] = (f"{where}: names a {self.kind} called {name!r}; the entry "
                                     "point name must be the same")
        elif self._items.get(name) is not obj:
            self.add(name, obj)

    # ---- reading ---------------------------------------------------------------------------

    def get(self, name: str) -> T:
        self.check(name, self.kind)
        return self._items[name]

    def check(self, name: str, where: str) -> None:
        """Raise a ConfigError naming `where` and the allowed names unless `name` is registered."""
        self._load()
        if name in self._broken and name not in self._items:
            raise ConfigError(self._broken[name])
        if name not in self._items:
            raise ConfigError(f"{where}: unknown {self.kind} {name!r}"
                              f"{did_you_mean(name, list(self._items))}; "
                              f"allowed: {sorted(self._items)}")

    def names(self) -> list[str]:
        """Every registered name; a ConfigError naming the first broken entry point if any
        failed to load, since whoever reads the whole catalog would miss it."""
        self._load()
        broken = sorted(set(self._broken) - set(self._items))
        if broken:
            raise ConfigError(self._broken[broken[0]])
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


TASKS: Registry[Any] = Registry("task", "aar_ray.w2s.tasks", "aar_ray.tasks")  # TaskSpec
MODELS: Registry[Any] = Registry("model", "aar_ray.w2s.models", "aar_ray.models")  # ModelSpec
METHODS: Registry[Any] = Registry("method", "aar_ray.w2s.methods", "aar_ray.methods")

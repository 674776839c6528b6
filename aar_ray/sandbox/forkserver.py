"""The warm sandbox's trusted loop: `python -I -m aar_ray.sandbox.forkserver CTRL`, bubblewrap's
only child (pid 2 of the sandbox's pid namespace; bwrap's reaper is pid 1).

It applies the kernel layers once (`launcher.restrict`), makes itself non-dumpable (so a child,
same uid, cannot open its /proc files, fds or memory), imports the method path (numpy, torch,
aar_ray.w2s: the two seconds a fresh interpreter spends per call) and says it is ready. Then per
call, on the socket CTRL from the supervisor: one pipe's write end (SCM_RIGHTS) and a pickled
(fn_path, args, limits) frame. It forks a child, which drops CTRL before any untrusted byte is
decoded, works in a fresh directory under the scratch tmpfs and runs `launcher.call` with
results on that pipe, read by the supervisor directly. The server reports the child's wait
status, never its words; then it SIGKILLs every other process of the namespace (kill(-1) spares
only pid 1 and itself), so no fork outlives its call, and empties the scratch tmpfs, so no file
reaches the next call. The supervisor checks both from outside."""
from __future__ import annotations

import ctypes
import importlib
import json
import os
import pickle
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import Any

from aar_ray.sandbox import bwrap, kernel
from aar_ray.sandbox.audit_hook import EXIT_REPORT_FAILED, TORCH_PRELOAD
from aar_ray.sandbox.launcher import call, restrict
from aar_ray.sandbox.wire import read_frame, write_frame

# What a method's call imports; loaded once here so each fork starts with them.
PRELOAD = (*TORCH_PRELOAD, "aar_ray.w2s.trial", "aar_ray.sandbox.custom_methods")
_PR_SET_DUMPABLE = 4


def in_own_pid_namespace() -> bool:
    """kill(-1) must never run outside the sandbox: there it would signal the host's processes."""
    try:
        init = open("/proc/1/cmdline", "rb").read().split(b"\0")[0]
    except OSError:
        return False
    return os.getpid() == 2 and os.path.basename(init) == b"bwrap"


def _end_others(deadline_s: float = 5.0) -> int:
    """SIGKILL every process of this namespace but pid 1 and this one; how many remain."""
    me, end = os.getpid(), time.monotonic() + deadline_s
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        others = [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]
        if not others or time.monotonic() > end:
            return len(others)
        time.sleep(0.002)  # killed, not yet reaped by pid 1


def _wipe(root: str) -> bool:
    """Empty the scratch tmpfs; False if anything is left. (chmod is off the allow-list, so
    no child can make a directory of it unremovable.)"""
    for entry in os.listdir(root):
        path = os.path.join(root, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass
    return not os.listdir(root)


def _child(ctrl: int, out_fd: int, work: str, payload: bytes) -> None:
    """Never returns. CTRL goes first: the agent's code must hold nothing but its result pipe."""
    code = EXIT_REPORT_FAILED
    try:
        os.close(ctrl)
        kernel.die_with_parent()
        os.chdir(work)
        os.environ.update(HOME=work, TMPDIR=work)
        tempfile.tempdir = work
        sys.argv[1:] = ["-", str(out_fd)]  # as the one-shot launcher's: IN OUT

        def send(*msg: Any) -> None:
            write_frame(out_fd, pickle.dumps(msg, protocol=5))

        fn_path, args, limits = pickle.loads(payload)
        call(send, fn_path, args, limits)
        code = 0
    finally:
        os._exit(code)


def serve(ctrl: int) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fileno=ctrl)
    calls = 0
    while True:
        _, fds, _, _ = socket.recv_fds(sock, 1, 1)
        if not fds:
            return  # the supervisor closed its end
        payload = read_frame(ctrl)
        if payload is None:
            return
        calls += 1
        work = os.path.join(bwrap.SANDBOX_TMP, f"call-{calls}")
        os.mkdir(work, 0o700)
        pid = os.fork()
        if pid == 0:
            _child(ctrl, fds[0], work, payload)
        os.close(fds[0])
        _, status = os.waitpid(pid, 0)
        left = _end_others()
        clean = _wipe(bwrap.SANDBOX_TMP)
        write_frame(ctrl, json.dumps({"status": status, "left": left, "clean": clean}).encode())


def main() -> None:
    ctrl = int(sys.argv[1])
    kernel.die_with_parent()
    try:
        if not in_own_pid_namespace():
            raise kernel.IsolationError("the fork server runs only as bubblewrap's child")
        restrict(json.loads(read_frame(ctrl) or b"null"))
        if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            raise kernel.IsolationError("prctl(PR_SET_DUMPABLE, 0) failed")
        for name in PRELOAD:
            importlib.import_module(name)
    except Exception as exc:  # a promised layer failed: refuse rather than run weaker
        write_frame(ctrl, json.dumps({"setup": f"sandbox isolation failed: "
                                               f"{type(exc).__name__}: {exc}"}).encode())
        return
    write_frame(ctrl, json.dumps({"ready": os.getpid()}).encode())
    serve(ctrl)


if __name__ == "__main__":
    main()

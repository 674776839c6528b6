"""Supervisor side of the warm sandbox: one bubblewrap fork server per process and memory limit.

A fresh sandboxed interpreter spends about two seconds importing torch; the fork server
(`forkserver`) imports once and forks a child per call, in the same namespaces, uid, seccomp
allow-list and Landlock rules. Each call gets its own result pipe, read here with the same
hostile-bytes decoder; the verdict comes from the child's wait status as its parent, the
server, saw it. That server shares a uid with the child, so it is checked from outside as
well: after each call this process lists the sandbox's processes on the host, and any besides
bwrap and the server, a server that died, lost its framing or could not empty the scratch
tmpfs, or a violation of any kind, ends the whole sandbox; the next call starts a fresh one."""
from __future__ import annotations

import atexit
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from typing import Any

from aar_ray.sandbox import bwrap, kernel, syscalls
from aar_ray.sandbox.audit_hook import SandboxedCallError, SandboxViolation
from aar_ray.sandbox.wire import collect, read_frame, write_frame

START_TIMEOUT_S = 300.0  # a cold start imports torch; a loaded node takes far longer than 2 s
_STATUS_TIMEOUT_S = 30.0  # from the result pipe's end to the server's report


class ForkServer:
    def __init__(self, policy: dict[str, Any], env: dict[str, str]) -> None:
        self._errlog = tempfile.TemporaryFile()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        bpf = syscalls.export_bpf()
        read = policy["read"]
        try:
            self.proc = subprocess.Popen(
                [*bwrap.argv(read, bpf), sys.executable, "-I", "-m",
                 "aar_ray.sandbox.forkserver", str(theirs.fileno())],
                pass_fds=[theirs.fileno(), bpf], close_fds=True, env=env, cwd="/",
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._errlog,
                start_new_session=True)
        finally:
            theirs.close()
            os.close(bpf)
        self._sock, self._ctrl = ours, ours.fileno()
        try:
            write_frame(self._ctrl, json.dumps(policy).encode())
            hello = self._status(START_TIMEOUT_S, "start")
        except BaseException:
            self.close()
            raise
        if "setup" in hello:
            self.close()
            raise kernel.IsolationError(hello["setup"])
        self.baseline = self._sandbox_pids()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(self, payload: bytes, timeout_s: float, fn_path: str
             ) -> tuple[int, list, tuple | None, str]:
        """(exit code, reported violations, final message, stderr tail) of one forked call."""
        mark = self._errlog.seek(0, os.SEEK_END)
        r, w = os.pipe()
        reported: list = []
        try:
            socket.send_fds(self._sock, [b"F"], [w])
            os.close(w)
            w = -1
            threading.Thread(target=self._send, args=(payload,), daemon=True).start()
            final = collect(r, timeout_s, fn_path, reported, self.close)
        except OSError:
            self.close()
            raise SandboxViolation("sandbox-server",
                                   "the fork server died during the call") from None
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
        try:
            report = self._status(_STATUS_TIMEOUT_S, "call")
        except SandboxViolation:
            self.close()
            raise
        escaped = self._sandbox_pids() - self.baseline
        if report.get("left") or escaped or not report.get("clean"):
            self.close()
            raise SandboxViolation("process-escape", f"processes of the call outlived it "
                                   f"({len(escaped) or report.get('left')}) or left files")
        self._errlog.seek(mark)
        tail = self._errlog.read().decode(errors="replace")[-4000:]
        return os.waitstatus_to_exitcode(report["status"]), reported, final, tail

    def _send(self, payload: bytes) -> None:
        try:
            write_frame(self._ctrl, payload)
        except OSError:
            pass  # the server died; the call's end says so

    def _status(self, timeout_s: float, what: str) -> dict:
        if not select.select([self._ctrl], [], [], timeout_s)[0]:
            raise SandboxViolation("sandbox-server", f"no {what} report in {timeout_s:.0f}s")
        try:
            frame = read_frame(self._ctrl, limit=1 << 16)
            report = json.loads(frame) if frame is not None else None
        except (OSError, ValueError, SandboxedCallError):
            report = None
        if not isinstance(report, dict):
            self.proc.poll()
            self._errlog.seek(0)
            tail = self._errlog.read().decode(errors="replace")[-2000:]
            raise SandboxViolation("sandbox-server", f"the fork server ended at {what} "
                                   f"(exit {self.proc.returncode}){chr(10) + tail if tail else ''}")
        return report

    def _sandbox_pids(self) -> set[int]:
        """The host's view: every descendant of the bwrap process, by parent links."""
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat", "rb") as f:
                        fields = f.read().rsplit(b")", 1)[1].split()
                except OSError:
                    continue
                if fields[0] != b"Z":
                    children.setdefault(int(fields[1]), []).append(int(entry))
        out, todo = set(), [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.add(pid)
            todo += children.get(pid, [])
        return out

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        self._sock.close()
        self._errlog.close()


_servers: dict[Any, ForkServer] = {}
_lock = threading.Lock()


def run(policy: dict[str, Any], env: dict[str, str], payload: bytes, timeout_s: float,
        fn_path: str) -> tuple[int, list, tuple | None, str]:
    """One call through this process's warm server for `policy` (started on first use). Calls
    are serialised: a trial worker runs one method at a time."""
    key = json.dumps(policy, sort_keys=True)
    with _lock:
        server = _servers.get(key)
        if server is None or not server.alive():
            server = _servers[key] = ForkServer(policy, env)
        try:
            code, reported, final, tail = server.call(payload, timeout_s, fn_path)
        except BaseException:
            _servers.pop(key, None)
            server.close()
            raise
        if reported or code != 0 or final is None or final[0] not in ("ok", "error"):
            _servers.pop(key).close()  # a violation of any kind: start the next call afresh
        return code, reported, final, tail


@atexit.register
def close_all() -> None:
    for server in _servers.values():
        server.close()
    _servers.clear()

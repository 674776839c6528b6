"""Attacks of agent-written code, through `aar trial --method-file` (the agents' own sandbox and
limits), each refused by the bubblewrap layer: native syscalls from a module loaded out of a
memfd, a fork that outlives its trial, a forged result frame, the host's /proc/net and `stat`
of campaign and cache files. Each method *succeeds* (its trial is `done`) if the attack works,
so each test goes red when the layer is off."""
from __future__ import annotations

import base64
import os
import socket
import textwrap
import time
import uuid

import pytest

from aar_ray.cli import build_parser, trial_config
from aar_ray.lab import method_file
from aar_ray.sandbox import kernel
from aar_ray.sandbox.redteam_kit import MEMFD_LOAD, NoCompiler, build_native

LAYERS = kernel.detect()
pytestmark = pytest.mark.skipif(not LAYERS.bwrap, reason=f"kernel offers {LAYERS.describe()}")
HEAD = '''
import os, sys
import numpy as np
from dataclasses import dataclass
from aar_ray.w2s.methods import Method, MethodContext
from aar_ray.w2s.student import one_hot

class Attack(Method):
    name = "attack"

    @dataclass
    class Params:
        pass

    def run(self, ctx: MethodContext):
        attack()  # returns only if the attack worked: the trial is then `done`
        student = ctx.students.new()
        student.fit(one_hot(ctx.weak, ctx.students.n_classes))
        return student.predict("test")
'''


def trial(tmp_path, cache_dir, monkeypatch, body: str) -> dict:
    monkeypatch.setenv("AAR_CACHE", cache_dir)
    path = tmp_path / "attack_method.py"
    path.write_text(textwrap.dedent(body) + HEAD)
    args = build_parser().parse_args([
        "trial", "--method-file", str(path), "--task", "tweets", "--weak", "glove50",
        "--strong", "minilm_l1", "--max-examples", "800", "--test-size", "200", "--seeds", "0",
        "--hidden", "0", "--epochs", "5"])
    return method_file.trial(args.config, trial_config(args), str(path))


def test_a_harmless_method_file_runs(tmp_path, cache_dir, monkeypatch):
    out = trial(tmp_path, cache_dir, monkeypatch, "def attack():\n    pass\n")
    assert out["status"] == "done", out
    assert out["summary"]["method"] == "custom:method-file/attack_method"


EVIL_C = r'''
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/shm.h>
#include <sys/stat.h>
static PyObject *op(PyObject *self, PyObject *args) {
    int which; const char *path; long r;
    if (!PyArg_ParseTuple(args, "is", &which, &path)) return NULL;
    errno = 0;
    switch (which) {
    case 0: r = syscall(SYS_reboot, 0, 0, 0, NULL); break;  /* bad magic: EINVAL past the cap */
    case 1: r = sethostname("aar-pwned", 9); break;
    case 2: r = chmod(path, 0777); break;
    case 3: r = chown(path, 12345, 12345); break;
    default: r = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600); break;
    }
    return Py_BuildValue("(li)", r, errno);
}
static PyMethodDef M[] = {{"op", op, METH_VARARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef D = {PyModuleDef_HEAD_INIT, "evil", NULL, -1, M};
PyMODINIT_FUNC PyInit_evil(void) { return PyModule_Create(&D); }
'''


@pytest.fixture(scope="module")
def evil_so(tmp_path_factory) -> bytes:
    try:
        return build_native("evil", EVIL_C, tmp_path_factory.mktemp("evil"))
    except NoCompiler as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("which", ["reboot", "sethostname", "chmod", "chown", "shmget"])
def test_native_syscalls_from_a_memfd_module_are_refused(tmp_path, cache_dir, monkeypatch,
                                                         evil_so, which):
    victim = tmp_path / "outside.txt"  # a host file outside every grant
    victim.write_text("x")
    os.chmod(victim, 0o600)
    before, host = os.stat(victim), socket.gethostname()
    out = trial(tmp_path, cache_dir, monkeypatch, f'''
        SO = {base64.b64encode(evil_so)!r}
        VICTIM = {str(victim)!r}
        {textwrap.indent(MEMFD_LOAD, " " * 8).strip()}
        def attack():
            evil = load("evil", SO)
            ret, err = evil.op({["reboot", "sethostname", "chmod", "chown", "shmget"].index(which)},
                               VICTIM)
            if ret < 0 and err in (1, 2, 13, 30):  # EPERM ENOENT EACCES EROFS: refused
                raise RuntimeError(f"refused: errno {{err}}")
    ''')
    assert out["status"] == "error", out
    after = os.stat(victim)
    assert (after.st_mode, after.st_uid) == (before.st_mode, before.st_uid)
    assert socket.gethostname() == host


def test_a_fork_does_not_outlive_its_trial(tmp_path, cache_dir, monkeypatch):
    token = f"aar-fork-{uuid.uuid4().hex[:12]}"
    out = trial(tmp_path, cache_dir, monkeypatch, f'''
        def attack():
            import subprocess, tempfile, time
            def linger():  # runs in the forked child, with no audit event
                os.setsid()  # out of the trial's session too
                d = os.path.join(tempfile.gettempdir(), {token!r})
                os.makedirs(d, exist_ok=True)
                os.chdir(d)
                time.sleep(120)
            r, w = os.pipe()
            try:  # bound at import, so patching _posixsubprocess.fork_exec later misses it
                subprocess._fork_exec(["/bin/true"], [b"/bin/true"], True, (w,), None, None,
                                      -1, -1, -1, -1, -1, -1, r, w, False, False, -1, None,
                                      None, None, -1, linger, False)
            except Exception:
                pass
    ''')
    time.sleep(1)
    alive = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if token in os.readlink(f"/proc/{pid}/cwd"):
                alive.append(pid)
        except OSError:
            pass
    for pid in alive:
        os.kill(int(pid), 9)
    assert alive == [], (alive, out)


def test_a_forged_result_frame_still_records_the_violation(tmp_path, cache_dir, monkeypatch):
    out = trial(tmp_path, cache_dir, monkeypatch, '''
        def attack():
            import struct
            fd = int(sys.argv[2])  # the result pipe
            os.write(fd, struct.pack(">Q", 400))  # a frame whose body swallows the reports
            try:
                import ctypes  # a violation: the hook reports it... into the forged frame
            except Exception:
                pass
            os.write(fd, b"\\0" * 400)
            os._exit(0)
    ''')
    assert out["status"] == "error" and out["event"] is not None, out


def test_the_hosts_proc_net_is_not_visible(tmp_path, cache_dir, monkeypatch):
    out = trial(tmp_path, cache_dir, monkeypatch, '''
        def attack():
            seen = []
            for name in ("tcp", "tcp6", "unix"):
                try:
                    seen += open(f"/proc/net/{name}").read().splitlines()[1:]
                except OSError:
                    pass
            if not seen:
                raise RuntimeError("no sockets to see")
    ''')
    assert out["status"] == "error", out


def test_campaign_and_cache_files_cannot_be_stat(tmp_path, cache_dir, monkeypatch):
    campaign = tmp_path / "campaign"
    campaign.mkdir()
    (campaign / "scorer.sqlite").write_bytes(b"SQLite format 3\0")
    targets = [str(campaign / "scorer.sqlite"), cache_dir, os.path.expanduser("~/.ray"),
               "/tmp/ray"]
    out = trial(tmp_path, cache_dir, monkeypatch, f'''
        def attack():
            found = []
            for p in {targets!r}:
                try:
                    os.stat(p)
                    found.append(p)
                except OSError:
                    pass
            if not found:
                raise RuntimeError("nothing found")
    ''')
    assert out["status"] == "error", out


def test_refuse_fallback_refuses_custom_methods_in_one_line():
    from aar_ray.sandbox.runner import IsolationUnavailable, run_sandboxed

    no_userns = kernel.Layers(landlock_abi=LAYERS.landlock_abi, seccomp=True, bwrap=False)
    with pytest.raises(IsolationUnavailable, match="sandbox_fallback") as info:
        run_sandboxed("aar_ray.sandbox.launcher:run_main", "def main():\n    return 1\n",
                      layers=no_userns, fallback="refuse")
    assert "\n" not in str(info.value)
    assert run_sandboxed("aar_ray.sandbox.launcher:run_main", "def main():\n    return 1\n",
                         layers=no_userns, fallback="landlock") == 1

"""The warm sandbox (`sandbox.pool` + `sandbox.forkserver`): calls are forks of one bubblewrap
server, yet each is judged as a fresh sandbox would be. Each test is an attack on what the
calls share (the server, its scratch tmpfs, its channel, its pid namespace); each method returns
what it reached, so a broken layer shows up as a value, not a silence."""
from __future__ import annotations

import base64

import pytest

from aar_ray.sandbox import kernel, pool
from aar_ray.sandbox.audit_hook import SandboxLimits, SandboxViolation
from aar_ray.sandbox.redteam_kit import MEMFD_LOAD, NoCompiler, build_native
from aar_ray.sandbox.runner import run_sandboxed

LAYERS = kernel.detect()
pytestmark = pytest.mark.skipif(not LAYERS.bwrap, reason=f"kernel offers {LAYERS.describe()}")
RUN = "aar_ray.sandbox.launcher:run_main"
LIMITS = SandboxLimits(cpu_seconds=60)


def run(source: str, *args):
    return run_sandboxed(RUN, source, *args, limits=LIMITS, timeout_s=120, layers=LAYERS)


def server_pid() -> int:
    (server,) = pool._servers.values()
    return server.proc.pid


def test_calls_reuse_one_warm_server():
    run("def main():\n    return 1\n")
    first = server_pid()
    assert [run(f"def main():\n    return {i}\n") for i in range(3)] == [0, 1, 2]
    assert server_pid() == first


def test_no_file_of_one_call_reaches_the_next():
    wrote = run('''
        import os, tempfile
        import pyarrow.fs  # a native writer: no audit event, so only the wipe stops it
        def main():
            paths = [os.path.join(tempfile.gettempdir(), "note"), "/var/tmp/note"]
            for path in paths:
                with pyarrow.fs.LocalFileSystem().open_output_stream(path) as f:
                    f.write(b"from the last call")
            return [p for p in paths if os.path.exists(p)]
    ''')
    assert len(wrote) == 2  # the attack itself works: the files were there
    seen = run('''
        import os
        def main():
            return sorted(os.listdir("/var/tmp"))
    ''')
    assert len(seen) == 1 and seen[0].startswith("call-"), seen  # only its own fresh dir


def test_a_child_holds_only_its_result_pipe_and_cannot_reach_the_server():
    reached = run('''
        import os, sys
        import pyarrow.fs  # native reads: no audit event, so only the kernel stops them
        def main():
            fs, server = pyarrow.fs.LocalFileSystem(), os.getppid()
            out = {"fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
                   "pipe": int(sys.argv[2])}
            for what in ("fd", "mem", "environ"):
                try:
                    if what == "fd":
                        fs.get_file_info(pyarrow.fs.FileSelector(f"/proc/{server}/fd"))
                    else:
                        fs.open_input_stream(f"/proc/{server}/{what}").read(1)
                    out[what] = True
                except OSError:
                    out[what] = False
            out["own"] = len(fs.open_input_stream("/proc/self/stat").read(64)) > 0
            return out
    ''')
    assert reached["own"], reached  # the reader works: the refusals are the kernel's
    assert not (reached["fd"] or reached["mem"] or reached["environ"]), reached
    # stdin, stdout, stderr, the result pipe, and the fd listdir itself holds open
    assert set(reached["fds"]) - {0, 1, 2, reached["pipe"]} <= {max(reached["fds"])}, reached


KILL_PARENT_C = r'''
#include <Python.h>
#include <signal.h>
#include <unistd.h>
static PyObject *kill_parent(PyObject *self, PyObject *args) {
    return PyLong_FromLong(kill(getppid(), SIGKILL));
}
static PyMethodDef M[] = {{"kill_parent", kill_parent, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef D = {PyModuleDef_HEAD_INIT, "killer", NULL, -1, M};
PyMODINIT_FUNC PyInit_killer(void) { return PyModule_Create(&D); }
'''


def test_killing_the_server_fails_the_call_and_the_next_starts_afresh(tmp_path):
    try:  # native, so the audit hook never sees the kill: only the server's absence tells
        blob = build_native("killer", KILL_PARENT_C, tmp_path)
    except NoCompiler as exc:
        pytest.skip(str(exc))
    run("def main():\n    return 1\n")
    first = server_pid()
    with pytest.raises(SandboxViolation, match="fork server"):
        run(MEMFD_LOAD + f'''
def main():
    load("killer", {base64.b64encode(blob)!r}).kill_parent()
    return "a result nobody vouches for"
''')
    assert run("def main():\n    return 2\n") == 2
    assert server_pid() != first


def test_a_violation_retires_the_server():
    run("def main():\n    return 1\n")
    first = server_pid()
    with pytest.raises(SandboxViolation):
        run("import ctypes\ndef main():\n    return 1\n")
    assert run("def main():\n    return 3\n") == 3
    assert server_pid() != first


def test_the_server_refuses_to_run_outside_a_bubblewrap_pid_namespace():
    from aar_ray.sandbox.forkserver import in_own_pid_namespace

    assert not in_own_pid_namespace()  # this process: kill(-1) here would hit the host

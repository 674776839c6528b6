"""bubblewrap: the outer layer of the sandbox, where the kernel lets us make user namespaces.

The launcher runs as uid/gid 65534 with no capabilities and no_new_privs, in new user, pid, net,
ipc, uts and cgroup namespaces, in a new session, killed with its parent. Its mount namespace
holds only read-only binds of what `runner.read_allowlist()` names (the interpreter, the stdlib,
system libraries, the granted packages and their metadata, aar_ray's code), a private /proc,
a minimal /dev and a tmpfs /var/tmp: no campaign, cache, data-set package, ~/.ray or /tmp/ray. When
the launcher (bwrap's only child) exits, the pid namespace dies and every fork with it. The
seccomp allow-list is loaded by bwrap itself as BPF before it execs the launcher."""
from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache

NOBODY = 65534
# The scratch tmpfs: cwd, HOME and TMPDIR. Not /tmp: a venv under /tmp (a CI clone) would then
# sit in a writable tmpfs, and a method could drop a .pth beside the bound packages.
SANDBOX_TMP = "/var/tmp"


@cache
def executable() -> str | None:
    return shutil.which("bwrap")


@cache
def usable() -> str:
    """'' when bwrap runs here with every namespace; otherwise why not (one line)."""
    exe = executable()
    if exe is None:
        return "bubblewrap (bwrap) is not installed"
    proc = subprocess.run([exe, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/",
                           "--cap-drop", "ALL", "--uid", str(NOBODY), "--gid", str(NOBODY),
                           "true"], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:  # e.g. "No permissions to creating new namespace" in a pod
        return f"bwrap cannot create namespaces here: {proc.stderr.strip()[:200]}"
    return ""


def argv(read: tuple[str, ...], seccomp_fd: int) -> list[str]:
    """bwrap's command line up to and including `--`; the launcher's argv follows."""
    args = [executable() or "bwrap", "--unshare-all", "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--uid", str(NOBODY), "--gid", str(NOBODY),
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", SANDBOX_TMP,
            "--chdir", SANDBOX_TMP, "--unsetenv", "PWD", "--seccomp", str(seccomp_fd)]
    for path in read:
        if path.startswith(("/proc", "/dev")):
            continue  # the sandbox's own /proc and /dev already provide them
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    return [*args, "--"]

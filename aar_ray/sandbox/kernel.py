"""Kernel layers for the sandbox child: Landlock (files, TCP, scoping) and seccomp (syscalls).

Both are unprivileged and work in a container without root where the node's kernel offers them.
`detect()` runs in the supervisor; `restrict()` runs in the freshly exec'd child before it reads
any untrusted input and before any library starts a thread: Landlock (ABI <= 7) binds only the
calling thread and its future children, and seccomp here is loaded for the single thread too.
Landlock ABI 1-3: filesystem rights per path beneath; 4: TCP bind/connect; 5: device ioctls;
6: scoping of abstract UNIX sockets and signals to the sandbox's own domain. Landlock does not
cover connecting to a *pathname* UNIX socket (the raylet's, plasma's) or path-less syscalls
(ptrace, process_vm_readv): seccomp closes those, so the strong boundary needs both.
"""
from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass
from functools import cache

from aar_ray.sandbox import bwrap, syscalls

# Syscall numbers of the Landlock calls are the same on every architecture (generic table).
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_PR_SET_NO_NEW_PRIVS, _PR_SET_PDEATHSIG = 38, 1
_RULE_PATH_BENEATH = 1
_PR_CAPBSET_DROP, _CAP_V3 = 24, 0x20080522
# LANDLOCK_ACCESS_FS_*: execute, write_file, read_file, read_dir, remove_dir, remove_file,
# make_char, make_dir, make_reg, make_sock, make_fifo, make_block, make_sym (bits 0-12, ABI 1),
# refer (13, ABI 2), truncate (14, ABI 3), ioctl_dev (15, ABI 5).
_FS_BITS_BY_ABI = {1: 13, 2: 14, 3: 15, 4: 15, 5: 16}
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_DIR, MAKE_REG, MAKE_SYM = 1 << 4, 1 << 5, 1 << 7, 1 << 8, 1 << 12
TRUNCATE = 1 << 14
_FILE_ONLY = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | (1 << 15)  # rights a file rule takes
READ = READ_FILE | READ_DIR
WRITE = READ | WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SYM | TRUNCATE
_NET_TCP = 0b11  # LANDLOCK_ACCESS_NET_BIND_TCP | CONNECT_TCP (ABI 4): no rule, so all denied
_SCOPES = 0b11  # LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | SIGNAL (ABI 6)



class IsolationError(RuntimeError):
    """A kernel layer that detection promised could not be applied."""


@dataclass(frozen=True)
class Layers:
    """What the kernel offers this process (0 / False: absent)."""

    landlock_abi: int = 0
    seccomp: bool = False
    bwrap: bool = False  # bubblewrap with user namespaces: the strong outer layer

    @property
    def strong(self) -> bool:
        """Files and network bounded by the kernel: Landlock for paths and TCP, seccomp for
        sockets of every family and for other processes' memory."""
        return self.landlock_abi >= 1 and self.seccomp

    def describe(self) -> str:
        parts = [f"Landlock ABI {self.landlock_abi}" if self.landlock_abi else "no Landlock",
                 "seccomp allow-list" if self.seccomp else "no seccomp"]
        return ", ".join(["bubblewrap" if self.bwrap else "no bubblewrap", *parts])


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


@cache
def detect() -> Layers:
    abi = _libc().syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    seccomp = syscalls.available()
    return Layers(landlock_abi=max(abi, 0), seccomp=seccomp,
                  bwrap=seccomp and not bwrap.usable())


def die_with_parent() -> None:
    """The child must not outlive the supervisor that reads its result and enforces the clock."""
    _libc().prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0)


def _check(ret: int, what: str) -> int:
    if ret < 0:
        raise IsolationError(f"{what}: {os.strerror(ctypes.get_errno())}")
    return ret


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed", ctypes.c_uint64), ("fd", ctypes.c_int32)]


def landlock(abi: int, read: list[str], list_only: list[str], write: list[str]) -> None:
    """Deny every filesystem access but these: `read` (files and dirs beneath), `list_only`
    (directory listings, no file contents), `write` (a private temp dir); and, by ABI, all TCP,
    abstract UNIX sockets and signals outside the sandbox. Missing paths are skipped."""
    libc, abi = _libc(), min(abi, 7)
    handled = (1 << _FS_BITS_BY_ABI.get(abi, 16)) - 1
    attr = _RulesetAttr(handled, _NET_TCP if abi >= 4 else 0, _SCOPES if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24  # the struct grew with the ABI
    ruleset = _check(libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                                  ctypes.c_uint32(0)), "landlock_create_ruleset")
    try:
        for paths, rights in ((read, READ), (list_only, READ_DIR), (write, WRITE)):
            for path in paths:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                try:
                    allowed = rights & handled
                    if not os.path.isdir(path):
                        allowed &= _FILE_ONLY
                    if allowed:
                        rule = _PathBeneath(allowed, fd)
                        _check(libc.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH,
                                            ctypes.byref(rule), ctypes.c_uint32(0)),
                               f"landlock_add_rule {path}")
                finally:
                    os.close(fd)
        _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
        _check(libc.syscall(_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)),
               "landlock_restrict_self")
    finally:
        os.close(ruleset)


def seccomp() -> None:
    try:
        syscalls.load()
    except syscalls.FilterError as exc:
        raise IsolationError(str(exc)) from None


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


def drop_privileges() -> None:
    """Where no user namespace did it (the fallback): no capability is left, in any set, and
    no_new_privs (set by Landlock/seccomp) keeps an exec from regaining one. The uid stays: a
    venv's interpreter may live under a root-only home; chmod/chown are off the allow-list, so
    owning a file outside the grants gives no way to change it."""
    libc = _libc()
    for cap in range(64):  # the bounding set first: it needs CAP_SETPCAP, dropped next
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 and ctypes.get_errno() == errno.EINVAL:
            break  # past the last capability this kernel knows
    data = (ctypes.c_uint32 * 6)()  # two _user_cap_data: effective, permitted, inheritable
    _check(libc.capset(ctypes.byref(_CapHeader(_CAP_V3, 0)), data), "capset")

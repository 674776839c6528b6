"""The seccomp allow-list for agents' code: deny by default, one filter in two uses.

`export_bpf(allow_exec=True)` compiles it to a BPF program that bubblewrap loads (`--seccomp FD`)
just before it execs the launcher, so execve must pass that once; the launcher then stacks the
same list without execve (`load()`), which is also the whole filter of the Landlock fallback.
Stacked filters only ever narrow. Anything not listed fails with EPERM (libraries see a plain
refusal); the calls that only an attack makes kill the process, so the parent sees SIGSYS.
The list is what CPython, numpy, scipy, scikit-learn, torch (CPU) and pyarrow call here."""
from __future__ import annotations

import ctypes
import errno
import os

ALLOW = tuple("""
read write readv writev pread64 pwrite64 preadv pwritev preadv2 pwritev2 lseek sendfile
copy_file_range splice open openat openat2 close close_range creat stat fstat lstat newfstatat
statx fstatfs statfs access faccessat faccessat2 readlink readlinkat getdents getdents64 getcwd
chdir fchdir rename renameat renameat2 mkdir mkdirat rmdir unlink unlinkat link linkat symlink
symlinkat umask utime utimes utimensat futimesat truncate ftruncate
fsync fdatasync fadvise64 flock fcntl ioctl dup dup2 dup3 pipe pipe2 select pselect6 poll ppoll
epoll_create epoll_create1 epoll_ctl epoll_wait epoll_pwait epoll_pwait2 eventfd eventfd2
timerfd_create timerfd_settime timerfd_gettime getxattr lgetxattr fgetxattr listxattr
llistxattr flistxattr memfd_create
mmap mprotect munmap mremap msync mincore madvise brk mlock munlock get_mempolicy set_mempolicy
mbind membarrier rseq futex futex_waitv set_robust_list get_robust_list set_tid_address
arch_prctl prctl seccomp landlock_create_ruleset landlock_add_rule landlock_restrict_self
clone clone3 fork vfork wait4 waitid exit exit_group kill tgkill tkill
rt_sigaction rt_sigprocmask rt_sigreturn rt_sigsuspend rt_sigpending rt_sigtimedwait sigaltstack
pause alarm setitimer getitimer nanosleep clock_nanosleep clock_gettime clock_getres
gettimeofday time times sched_yield sched_getaffinity sched_setaffinity sched_getparam
sched_getscheduler sched_get_priority_max sched_get_priority_min sched_getattr getcpu
getpriority setpriority getpid getppid gettid getuid geteuid getgid getegid getgroups getresuid
getresgid getpgrp getpgid getsid setsid setpgid setgroups setresuid setresgid setuid setgid
capget uname sysinfo getrlimit setrlimit prlimit64 getrusage getrandom
recvmsg
""".split())
# Only an attack calls these: kill, so the parent sees SIGSYS rather than a library's error.
KILL = tuple("""
reboot sethostname setdomainname kexec_load kexec_file_load init_module finit_module
delete_module mount umount2 pivot_root chroot swapon swapoff syslog ptrace process_vm_readv
process_vm_writev pidfd_getfd kcmp bpf perf_event_open userfaultfd unshare setns keyctl add_key
request_key acct settimeofday clock_settime adjtimex clock_adjtime iopl ioperm quotactl
io_uring_setup io_uring_enter io_uring_register shmget shmat msgget semget open_by_handle_at
name_to_handle_at fanotify_init
""".split())
_ALLOW, _KILL_PROCESS, _ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_LIBSECCOMP = "libseccomp.so.2"  # Debian/Ubuntu libseccomp2: apt itself depends on it


class FilterError(RuntimeError):
    """The filter could not be built or loaded: callers refuse to run the agent's code."""


def _lib() -> ctypes.CDLL:
    lib = ctypes.CDLL(_LIBSECCOMP, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                     ctypes.c_uint]
    lib.seccomp_load.argtypes = lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def available() -> bool:
    try:
        ctypes.CDLL(_LIBSECCOMP)
        return True
    except OSError:
        return False


def _build(lib: ctypes.CDLL, allow_exec: bool) -> int:
    """Foreign-ABI calls (i386 on x86_64) match no rule: the default refuses them."""
    ctx = lib.seccomp_init(_ERRNO | errno.EPERM)
    if not ctx:
        raise FilterError("seccomp_init failed")
    rules = [(n, _ALLOW) for n in ALLOW] + [(n, _KILL_PROCESS) for n in KILL]
    if allow_exec:
        rules.append(("execve", _ALLOW))
    else:
        rules += [("execve", _KILL_PROCESS), ("execveat", _KILL_PROCESS)]
    for name, action in rules:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr >= 0:  # a syscall this architecture lacks needs no rule
            if (rc := lib.seccomp_rule_add(ctx, action, nr, 0)) < 0:
                lib.seccomp_release(ctx)
                raise FilterError(f"seccomp_rule_add {name}: {os.strerror(-rc)}")
    return ctx


def load() -> None:
    """Load the list (without execve) into this process; sets no_new_privs itself."""
    lib = _lib()
    ctx = _build(lib, allow_exec=False)
    try:
        if (rc := lib.seccomp_load(ctx)) < 0:
            raise FilterError(f"seccomp_load: {os.strerror(-rc)}")
    finally:
        lib.seccomp_release(ctx)


def export_bpf(allow_exec: bool = True) -> int:
    """A readable fd (offset 0) holding the compiled program, for `bwrap --seccomp FD`."""
    lib = _lib()
    ctx = _build(lib, allow_exec)
    fd = os.memfd_create("aar-seccomp", 0)  # inheritable only through pass_fds
    try:
        if (rc := lib.seccomp_export_bpf(ctx, fd)) < 0:
            raise FilterError(f"seccomp_export_bpf: {os.strerror(-rc)}")
    except BaseException:
        os.close(fd)
        raise
    finally:
        lib.seccomp_release(ctx)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd

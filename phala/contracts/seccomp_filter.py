"""The executor's seccomp filter: every system call refused (EPERM) except those reading
requests, writing outcomes and managing memory need. Loaded after the executor has imported
all it needs, before it reads contract code."""

from __future__ import annotations

import errno

ALLOWED = (
    "read", "write", "brk", "mmap", "munmap", "mremap", "madvise", "mprotect", "futex",
    "rt_sigreturn", "rt_sigaction", "rt_sigprocmask", "sigaltstack", "exit", "exit_group",
    "getpid", "gettid", "fstat", "newfstatat", "lseek",
)


def install() -> bool:
    """Install the filter; False where the kernel or library cannot (then rlimits alone)."""
    try:
        import pyseccomp as seccomp
    except (ImportError, OSError):
        return False
    try:
        flt = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
        for name in ALLOWED:
            flt.add_rule(seccomp.ALLOW, name)
        flt.load()
    except (OSError, RuntimeError, ValueError):
        return False
    return True

"""One mount per upper and work dir: two daemons writing one upper would each trust caches the
other makes stale. Kernel overlayfs refuses that only with index=on (EBUSY); without it, the
userxattr default, it warns ("upperdir is in-use by another mount ... undefined behavior") and
mounts. cowfs refuses always.

A daemon holds an exclusive flock(2) on its upper dir and on its work dir's `work` for as long as
it runs. The kernel drops it when the daemon dies, however it dies, so a claim is never stale;
and a flock lives on the inode, so mounts made in other mount namespaces or by other users see
it. A kernel overlay mount of the same dirs shows in the mount table (of this namespace only).
"""
from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Sequence

#: How long a claim is waited for: a daemon lets go of it just after its unmount returned
#: (`cowfs umount M && cowfs mount ... M` must work).
WAIT = 3.0


class InUse(OSError):
    def __init__(self, message: str):
        super().__init__(errno.EBUSY, message)

    def __str__(self) -> str:
        return self.strerror


def take(fd: int, what: str, path: str) -> None:
    """Claim the directory open as FD for this process's life, or raise InUse."""
    if not _lock(fd):
        raise InUse(f"{what} directory {path} is in use by another mount")


def holder(upper: str, work: str, mounts: Sequence) -> str | None:
    """Why UPPER or WORK (real paths) cannot be mounted now, or None. MOUNTS: this namespace's
    mount table (config.read_mountinfo)."""
    dirs = (("upper", upper, "upperdir", upper),
            ("work", work, "workdir", os.path.join(work, "work")))
    for m in mounts:
        for what, path, key, _ in dirs:
            if m.fstype == "overlay" and same_dir(m.option(key), path):
                return f"{what} directory {path} is in use by kernel overlayfs at {m.mountpoint}"
    for what, path, _, claimed in dirs:
        try:
            fd = os.open(claimed, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue  # not made yet, or not ours to open: the daemon's own claim decides
        try:
            if not _lock(fd):
                return f"{what} directory {path} is in use by another cowfs mount"
        finally:
            os.close(fd)  # and with it the probe's lock
    return None


def _lock(fd: int) -> bool:
    deadline = time.monotonic() + WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
        time.sleep(0.02)


def same_dir(given: str | None, real: str | None) -> bool:
    """Whether a path as a mount table gives it (GIVEN) names the real path REAL."""
    return given is not None and real is not None and os.path.realpath(given) == real

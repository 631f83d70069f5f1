"""Python API: a cowfs mount for the length of a `with` block.

    with cowfs.mounted("/srv/data") as mnt:                  # temporary upper and mountpoint
        ...                                                  # change anything below mnt
    async with cowfs.open_mount(["/srv/a", "/srv/b"], upper="/tmp/up") as mnt:     # trio
        ...

Both run the CLI as a subprocess (`python -m cowfs mount ...`, `cowfs umount` on the way out), so
they need no root, import no pyfuse3 and work from any program, threaded or async: the daemon is
the CLI's background daemon. With server=SOCKET a running `cowfs serve` forks the daemon instead
(serve.py: faster, and the daemons share memory). A mount that cannot be made raises MountError
with the CLI's one-line message (bad input and runtime failures alike). The child runs the cowfs
that `python -m cowfs` finds for this interpreter: install cowfs for it (or put it on PYTHONPATH).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

from .config import FSTYPE, mount_at
from .mount import MountError
from .sandbox import remove_tree

StrPath = str | os.PathLike[str]

_CLI = (sys.executable, "-m", "cowfs")


@dataclass(frozen=True)
class _Plan:
    argv: list[str]  # the `cowfs mount` command
    mountpoint: str
    real: str  # where the mount lands: looked up before mounting, never through the mount
    tmp: str | None  # temporary dir holding what the caller did not give; removed afterwards


def _abs(path: StrPath) -> str:
    # the child runs in /; an empty path stays empty for the CLI to refuse (abspath: the cwd)
    path = os.fspath(path)
    return os.path.abspath(path) if path else path


def _plan(lower: StrPath | Sequence[StrPath], upper: StrPath | None, work: StrPath | None,
          mountpoint: StrPath | None, read_only: bool) -> _Plan:
    """The mount command; creates the temporary upper/work/mountpoint it needs."""
    lowers = [lower] if isinstance(lower, (str, os.PathLike)) else list(lower)
    if upper is None and work is not None:
        raise ValueError("a work directory needs an upper directory")
    argv = [*_CLI, "mount"]
    for low in lowers:
        argv += ["--lower", _abs(low)]
    tmp = None
    if (upper is None and not read_only) or mountpoint is None:
        tmp = tempfile.mkdtemp(prefix="cowfs-")
    if upper is None and not read_only:
        upper = os.path.join(tmp, "upper")
        work = os.path.join(tmp, "work")
        os.mkdir(upper)
    if mountpoint is None:
        mountpoint = os.path.join(tmp, "mnt")
        os.mkdir(mountpoint)
    if upper is not None:
        argv += ["--upper", _abs(upper)]
    if work is not None:
        argv += ["--work", _abs(work)]
    if read_only:
        argv.append("--ro")
    mnt = _abs(mountpoint)
    return _Plan(argv + [mnt], mnt, os.path.realpath(mnt), tmp)


def _failure(what: str, returncode: int, stderr: bytes) -> MountError:
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return MountError(f"cowfs {what} failed with exit status {returncode}")
    return MountError(lines[-1].strip().removeprefix("cowfs: "))


def _is_mounted(plan: _Plan) -> bool:
    entry = mount_at(plan.real)
    return entry is not None and entry.fstype == FSTYPE


def _umount_commands(mountpoint: str) -> list[list[str]]:
    # a process still using the mount makes the plain unmount fail (EBUSY): then detach it lazily,
    # so that no mount outlives the block
    return [[*_CLI, "umount", mountpoint], [*_CLI, "umount", "-z", mountpoint]]


def _cleanup(plan: _Plan) -> None:
    if plan.tmp is not None and not _is_mounted(plan):
        remove_tree(plan.tmp)


def _request(server: StrPath, plan: _Plan) -> None:
    """The mount made by the daemon `cowfs serve` at SERVER forks (no interpreter start)."""
    from .config import UsageError  # noqa: PLC0415
    from .serve import request  # noqa: PLC0415

    try:
        request(os.fspath(server), plan.argv[len(_CLI):], cwd="/")
    except UsageError as e:  # bad input and runtime failures alike, as from the CLI
        raise MountError(str(e)) from None


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, cwd="/",
                          check=False)


def _unmount(plan: _Plan) -> None:
    for argv in _umount_commands(plan.real):
        res = _run(argv)
        if res.returncode == 0 or not _is_mounted(plan):
            return
    raise _failure("umount", res.returncode, res.stderr)


@contextmanager
def mounted(lower: StrPath | Sequence[StrPath], upper: StrPath | None = None, *,
            work: StrPath | None = None, mountpoint: StrPath | None = None,
            read_only: bool = False, server: StrPath | None = None) -> Iterator[str]:
    """Mount LOWER (a directory, or a list of them, top first) copy-on-write; yield the mountpoint.

    Without `upper` the changes go to a temporary upper (with `read_only`: no upper at all);
    without `mountpoint` a temporary one is used. Unmounted on exit, also after an exception;
    the temporary directories are removed then. Raises MountError if the mount cannot be made.
    With `server` (the socket of a `cowfs serve` of this user) that ready parent forks the
    daemon: no interpreter start, memory shared with the parent's other mounts.
    """
    plan = _plan(lower, upper, work, mountpoint, read_only)
    try:
        if server is not None:
            _request(server, plan)
        else:
            res = _run(plan.argv)
            if res.returncode != 0:
                raise _failure("mount", res.returncode, res.stderr)
        try:
            yield plan.mountpoint
        finally:
            _unmount(plan)
    finally:
        _cleanup(plan)


@asynccontextmanager
async def open_mount(lower: StrPath | Sequence[StrPath], upper: StrPath | None = None, *,
                     work: StrPath | None = None, mountpoint: StrPath | None = None,
                     read_only: bool = False,
                     server: StrPath | None = None) -> AsyncIterator[str]:
    """mounted() for trio: the same arguments and behaviour; never blocks the trio loop.

    Mounting and unmounting are shielded from cancellation (each takes well under a second): a
    cancel that arrives meanwhile takes effect right after, and the mount never outlives the
    block.
    """
    import trio  # noqa: PLC0415 - only async users pay for it

    plan = await trio.to_thread.run_sync(_plan, lower, upper, work, mountpoint, read_only)
    try:
        with trio.CancelScope(shield=True):
            if server is not None:
                await trio.to_thread.run_sync(_request, server, plan)
            else:
                res = await trio.run_process(plan.argv, stdin=b"", capture_stdout=True,
                                             capture_stderr=True, cwd="/", check=False)
                if res.returncode != 0:
                    raise _failure("mount", res.returncode, res.stderr)
        try:
            yield plan.mountpoint
        finally:
            with trio.CancelScope(shield=True):
                for argv in _umount_commands(plan.real):
                    res = await trio.run_process(argv, stdin=b"", capture_stdout=True,
                                                 capture_stderr=True, cwd="/", check=False)
                    if res.returncode == 0 or not _is_mounted(plan):
                        break
                else:
                    raise _failure("umount", res.returncode, res.stderr)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_cleanup, plan)

"""`cowfs sandbox`: private, resettable copy-on-write views of one shared, read-only snapshot.

    cowfs sandbox mount --snapshot S --state DIR [--subdir SUB] MOUNTPOINT
    cowfs sandbox reset DIR
    cowfs sandbox umount [-z] MOUNTPOINT          (the same as cowfs umount)

Snapshots (written by the snapshot builder): ROOT/snapshots/<id>/ holds each kind's entries
(pip/, wheels/, requirements.txt; npm/, ...), MANIFEST and MANIFEST.xxh3; ROOT/current ->
snapshots/<id> is switched atomically by a rebuild. S is a ROOT or one snapshot dir (a dir
with a MANIFEST). A ROOT's `current` is resolved once, when the sandbox is mounted: the daemon
gets the snapshot's real path, so a rebuild never changes a running sandbox. The lower is the
snapshot dir, or SNAP/SUB.

A state directory DIR holds one sandbox; many sandboxes share one snapshot:
  DIR/upper, DIR/work   the sandbox's changes (kernel overlayfs format)
  DIR/snapshot          the lower they were made over (one line): an upper only makes sense over
                        its own lower, so mounting DIR over another one is refused until reset
  DIR/lock              flock()ed while a command works on DIR and, inherited across the fork,
                        by the daemon for as long as it serves DIR/upper: in use <=> locked, in
                        every mount namespace, and a crashed daemon leaves no stale claim
  DIR/mounted-at        where DIR was last mounted: names the mountpoint when DIR is in use

The daemon also holds a shared flock on the snapshot dir, so `cowfs snapshot gc` keeps it
(hold_snapshot).

Bad input (no such snapshot, not a snapshot, state dir not writable, DIR in use or made over
another snapshot) raises UsageError: one line, exit status 2, nothing created.
"""
from __future__ import annotations

import fcntl
import os
import time
from typing import TYPE_CHECKING

from . import layers
from .config import FSTYPE, UsageError, build_config, is_within, mount_at
from .mount import MountError, run, unmount

if TYPE_CHECKING:
    import argparse

MANIFEST = "MANIFEST"
#: How long a command waits for DIR's lock when DIR is not mounted here any more: the daemon
#: lets go of it just after its unmount (e.g. `sandbox umount M && sandbox reset DIR`).
LOCK_WAIT = 5.0


def main(args: argparse.Namespace) -> int:
    if args.action is None:
        raise UsageError(
            "missing sandbox action: mount, reset or umount (see cowfs sandbox --help)")
    if args.action == "mount":
        return mount(args.snapshot, args.state, args.subdir, args.mountpoint)
    if args.action == "reset":
        reset(args.state)
        return 0
    unmount(args.mountpoint, lazy=args.lazy)
    return 0


# ---------------------------------------------------------------------------------------------
# snapshots


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(os.path.expanduser(path)))


def _is_snapshot(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, MANIFEST))


def resolve_snapshot(snapshot: str) -> str:
    """Real path of the snapshot dir S names (S itself, or S/current resolved now)."""
    if snapshot == "":
        raise UsageError("snapshot path is empty")
    path = os.path.abspath(os.path.expanduser(snapshot))
    try:
        os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"snapshot {snapshot} does not exist") from None
    except OSError as e:
        raise UsageError(f"snapshot {snapshot}: {e.strerror}") from None
    current = os.path.join(path, "current")
    if os.path.lexists(current):
        snap = os.path.realpath(current)
        if not _is_snapshot(snap):
            raise UsageError(f"snapshot root {snapshot}: current ({snap}) is not a snapshot "
                             f"(no {MANIFEST})")
        return snap
    if not _is_snapshot(path):
        raise UsageError(f"{snapshot} is not a snapshot (no {MANIFEST}) "
                         "nor a snapshot root (no current)")
    return os.path.realpath(path)


def resolve_lower(snapshot: str, subdir: str | None) -> tuple[str, str]:
    """(snapshot dir, lower): the lower is the snapshot dir or SUB inside it, real paths."""
    snap = resolve_snapshot(snapshot)
    if subdir is None:
        return snap, snap
    lower = os.path.realpath(os.path.join(snap, subdir))
    if os.path.isabs(subdir) or subdir == "" or not is_within(lower, snap):
        raise UsageError(f"--subdir {subdir}: not a path inside snapshot {snap}")
    if not os.path.isdir(lower):
        raise UsageError(f"--subdir {subdir}: no such directory in snapshot {snap}")
    return snap, lower


# ---------------------------------------------------------------------------------------------
# state directories


def _check_state(state: str, snap: str) -> str:
    """Real path of a usable state dir (existing and writable, or creatable). Creates nothing."""
    if state == "":
        raise UsageError("state directory path is empty")
    real = _real(state)
    if is_within(real, snap) or is_within(snap, real):
        raise UsageError(f"state directory {state} overlaps snapshot {snap}")
    if os.path.lexists(real):
        if not os.path.isdir(real):
            raise UsageError(f"state directory {state} is not a directory")
        if not os.access(real, os.W_OK | os.X_OK):
            raise UsageError(f"state directory {state} is not writable")
        return real
    parent = os.path.dirname(real)
    if not os.path.isdir(parent):
        raise UsageError(f"cannot create state directory {state}: {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot create state directory {state}: {parent} is not writable")
    return real


def _read_line(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read().rstrip("\n")
    except FileNotFoundError:
        return None


def _write_line(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


def _mounted_at(state: str) -> str | None:
    """The recorded mountpoint of DIR if a cowfs mount is there now (in this namespace)."""
    where = _read_line(os.path.join(state, "mounted-at"))
    entry = mount_at(where) if where else None
    return where if entry is not None and entry.fstype == FSTYPE else None


def _lock(state: str, shown: str) -> int:
    """An fd holding DIR/lock exclusively (created if missing), or UsageError if DIR is in use."""
    fd = os.open(os.path.join(state, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            pass
        where = _mounted_at(state)
        if where is not None or time.monotonic() > deadline:
            os.close(fd)
            if where is not None:
                raise UsageError(f"state directory {shown} is in use: mounted at {where} "
                                 f"(cowfs sandbox umount {where} first)")
            raise UsageError(f"state directory {shown} is in use by another cowfs process")
        time.sleep(0.05)


def _undo(created: list[str]) -> None:
    for path in reversed(created):
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                os.rmdir(path)
            else:
                os.unlink(path)
        except OSError:
            pass


def hold_snapshot(snapshot: str, subdir: str | None) -> tuple[str, str, int]:
    """resolve_lower, and an fd holding a shared flock(2) on the snapshot dir. The daemon
    inherits it across the fork: `cowfs snapshot gc` sees the snapshot in use for as long as the
    daemon runs, and no longer. gc renames a snapshot while holding its lock exclusively, before
    removing it: a path that still names the dir we locked is safe (collect.py)."""
    while True:  # again only if gc removed the snapshot between resolving it and locking it
        snap, lower = resolve_lower(snapshot, subdir)
        try:
            fd = os.open(snap, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise UsageError(f"snapshot {snap}: {e.strerror}") from None
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits while gc holds it: then it is renamed
        try:
            if os.path.samestat(os.stat(snap), os.fstat(fd)):
                return snap, lower, fd
        except FileNotFoundError:
            pass
        os.close(fd)


def mount(snapshot: str, state: str, subdir: str | None, mountpoint: str) -> int:
    """`cowfs sandbox mount`: returns the exit status (0) once the sandbox is live."""
    snap, lower, held = hold_snapshot(snapshot, subdir)
    try:
        return _mount(snap, lower, state, mountpoint)
    finally:
        os.close(held)  # the daemon's copy keeps the lock


def _mount(snap: str, lower: str, state: str, mountpoint: str) -> int:
    real = _check_state(state, snap)
    created: list[str] = []
    fd = -1
    try:
        if not os.path.isdir(real):
            os.mkdir(real, 0o700)  # the changes are the sandbox's own business
            created.append(real)
        lock_path = os.path.join(real, "lock")
        if not os.path.lexists(lock_path):
            created.append(lock_path)
        # The daemon forked by run() inherits this locked open file: DIR stays locked for as
        # long as it serves DIR/upper, after this process has closed its own fd.
        fd = _lock(real, state)
        record = os.path.join(real, "snapshot")
        made_over = _read_line(record)
        if made_over is not None and made_over != lower:
            raise UsageError(f"state directory {state} holds changes made over {made_over}, not "
                             f"{lower}: run `cowfs sandbox reset {state}` first")
        upper = os.path.join(real, "upper")
        if not os.path.isdir(upper):
            os.mkdir(upper, 0o755)  # the mode of the sandbox's root directory
            created.append(upper)
        # a snapshot is read-only and not the user's: the sandbox sees it as its own, writable
        cfg = build_config(lowers=[lower], upper=upper, work=os.path.join(real, "work"),
                           mountpoint=mountpoint, own_lowers=True)
        if made_over is None:
            _write_line(record, lower)
            created.append(record)
        at = os.path.join(real, "mounted-at")
        if not os.path.lexists(at):
            created.append(at)
        _write_line(at, cfg.mountpoint)
        code = run(cfg)
    except BaseException:
        _undo(created)
        raise
    finally:
        if fd >= 0:
            os.close(fd)
    return code


def reset(state: str) -> None:
    """`cowfs sandbox reset`: drop every change kept in DIR; refused while DIR is mounted."""
    real = _real(state)
    if not os.path.isdir(real):
        raise UsageError(f"state directory {state} does not exist")
    if not os.path.exists(os.path.join(real, "lock")):
        raise UsageError(f"{state} is not a sandbox state directory (no lock file)")
    fd = _lock(real, state)
    try:
        for name in ("upper", "work"):
            path = os.path.join(real, name)
            if os.path.lexists(path):
                remove_tree(path)
        for name in ("snapshot", "mounted-at"):
            try:
                os.unlink(os.path.join(real, name))
            except FileNotFoundError:
                pass
    except OSError as e:
        raise MountError(f"cannot reset {state}: {e.filename or real}: {e.strerror}") from None
    finally:
        os.close(fd)


def remove_tree(path: str) -> None:
    """Remove PATH and everything below it, also directories their owner made read-only (copy-up
    keeps a lower directory's mode: an upper over a read-only snapshot has 0555 directories)."""
    parent = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
    try:
        layers.remove_tree(parent, os.fsencode(os.path.basename(os.path.abspath(path))))
    finally:
        os.close(parent)

"""`cowfs snapshot gc ROOT [--keep N]`: remove the snapshots nothing needs any more, then the store
objects no snapshot links.

Kept: ROOT/current's snapshot, the N newest (by build time, which their id starts with), and
every snapshot a mounted sandbox uses. Removed: the other snapshots, the dirs of killed builds
(.building-*) and of a killed gc (.deleting-*), what killed layer unpacks left in
ROOT/layers/tmp (a ROOT that is also a layer store, layertar.py), and the store's garbage
(store.garbage). Objects an unpacked layer links have more than one link: they stay.

Why nothing in use goes, without trusting any file a dead process may have left:
- A sandbox holds a shared flock(2) on its snapshot dir for as long as its daemon runs
  (sandbox.hold_snapshot); gc takes it exclusively without waiting, and a snapshot it cannot
  lock is in use: kept and reported. The kernel drops a lock when its daemon dies, however.
- Holding that lock, gc renames the snapshot to .deleting-<id> and only then empties it. A
  sandbox, once it holds its lock, checks that the path it resolved still names the dir it
  locked: a mount racing with gc either locks first (gc keeps the snapshot) or finds the path
  gone (and resolves ROOT/current again, or refuses a snapshot dir that no longer exists).
- gc holds ROOT's lock exclusively for its whole run (store.root_lock), builds, pulls and layer
  unpacks hold it shared: so an object with st_nlink 1 is not one about to be linked, a
  .building-* dir is a killed build's, a layers/tmp entry a killed unpack's, and `current` does
  not move under gc.
"""
from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from . import layertar, manifest, snapshot, store
from .config import UsageError

DELETING_PREFIX = ".deleting-"


@dataclass
class Collected:
    removed: list[str] = field(default_factory=list)  # names under ROOT/snapshots
    in_use: list[str] = field(default_factory=list)
    kept: int = 0  # current and the newest, not counting those in use
    objects: int = 0
    bytes: int = 0


def _check_root(root: str) -> str:
    """ROOT's absolute path, or UsageError if it is not a snapshot root."""
    if not os.path.isdir(root):
        raise UsageError(f"snapshot root {root} does not exist" if not os.path.lexists(root)
                         else f"snapshot root {root} is not a directory")
    for name, ok in ((snapshot.CURRENT, os.path.islink), (snapshot.SNAPSHOTS, os.path.isdir)):
        if not ok(os.path.join(root, name)):
            raise UsageError(f"{root} is not a snapshot root (no {name})")
    if not os.access(os.path.join(root, snapshot.SNAPSHOTS), os.W_OK | os.X_OK):
        raise UsageError(f"{root}/{snapshot.SNAPSHOTS} is not writable (run gc as its builder)")
    return os.path.abspath(root)


def _current(root: str) -> str:
    """The name under ROOT/snapshots that `current` points at (read under ROOT's lock)."""
    link = os.path.join(root, snapshot.CURRENT)
    target = os.path.realpath(link)
    if (os.path.dirname(target) != os.path.realpath(os.path.join(root, snapshot.SNAPSHOTS))
            or not os.path.isfile(os.path.join(target, manifest.MANIFEST))):
        raise UsageError(f"{link} points to {os.readlink(link)}, which is not a snapshot under "
                         f"{root}/{snapshot.SNAPSHOTS}")
    return os.path.basename(target)


def collect(root: str, keep: int, say: Callable[[str], None] = print) -> Collected:
    """Remove what ROOT no longer needs (module docstring); SAY one line per removed dir."""
    if keep < 1:
        raise UsageError(f"--keep {keep}: keep at least 1 snapshot")
    root = _check_root(root)
    snapshots = os.path.join(root, snapshot.SNAPSHOTS)
    done = Collected()
    with store.root_lock(root, exclusive=True,
                         waiting=lambda: say("gc: waiting for a build or pull to finish")):
        current = _current(root)
        with os.scandir(snapshots) as it:
            dirs = sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
        ids = sorted((n for n in dirs if not n.startswith(".")
                      and os.path.isfile(os.path.join(snapshots, n, manifest.MANIFEST))),
                     key=lambda n: _age(snapshots, n))
        wanted = set(ids[-keep:]) | {current}
        done.kept = len(wanted)
        leftovers = [n for n in dirs if n.startswith((snapshot.BUILDING_PREFIX, DELETING_PREFIX))]
        for name in leftovers + [n for n in ids if n not in wanted]:
            freed = _remove(snapshots, name)
            if freed is None:
                done.in_use.append(name)
                say(f"gc: in use, kept {snapshot.SNAPSHOTS}/{name}")
            else:
                done.removed.append(name)
                done.bytes += freed
                say(f"gc: removed {snapshot.SNAPSHOTS}/{name}")
        for path in layertar.leftovers(root):
            layertar.remove_tree(path)
            say(f"gc: removed {os.path.relpath(path, root)}")
        for path, size in store.garbage(root):
            os.unlink(path)
            done.objects += 1
            done.bytes += size
    return done


def _age(snapshots: str, name: str) -> tuple[str, int]:
    """Sorts snapshots oldest first: by the build time their id starts with, then (two built in
    one second) by the time their dir was last written, when their MANIFEST was."""
    return name.rsplit("-", 1)[0], os.stat(os.path.join(snapshots, name)).st_mtime_ns


def _remove(snapshots: str, name: str) -> int | None:
    """Remove snapshots/NAME unless a sandbox holds its lock (None); returns the bytes freed."""
    path = os.path.join(snapshots, name)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        if not name.startswith(DELETING_PREFIX):
            # renamed while locked: a sandbox that locks it after us finds its path gone
            gone = os.path.join(snapshots, DELETING_PREFIX + name)
            os.rename(path, gone)
            path = gone
        return snapshot.remove_tree(path)
    finally:
        os.close(fd)

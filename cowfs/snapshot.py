"""Shared cache snapshots: building one (pip, npm: kinds/), sealing it, publishing it atomically.

Layout under ROOT (the sandbox mounts rely on it):

    ROOT/snapshots/<id>/pip/ wheels/ ...  what the pip kind owns (kinds/pip.py)
    ROOT/snapshots/<id>/npm/ ...          what the npm kind owns (kinds/npm.py)
    ROOT/snapshots/<id>/MANIFEST          every file: hash, size, mode, path (see manifest.py)
    ROOT/snapshots/<id>/MANIFEST.xxh3     the hash of MANIFEST
    ROOT/current -> snapshots/<id>        relative symlink
    ROOT/store/                           every file of every snapshot once (store.py): a
                                          snapshot's files are hard links into it

<id> is the UTC build time and the first 8 hex digits of the MANIFEST's hash, so snapshots with
the same suffix hold the same bytes. A build fills ROOT/snapshots/.building-<time>-<random>,
seals it (read-only, then MANIFEST), renames it to <id>, and renames a fresh symlink over
`current`: a reader sees the old snapshot or the new one, never a partial one. Old snapshots
stay (mounts on them keep working) until `cowfs snapshot gc` (collect.py); a failed build
removes its directory and leaves `current`. A build holds ROOT's lock shared (store.root_lock)
from its .building dir to `current`, so gc never sees it half done.

A build fills one kind and starts from the current snapshot's entries of the other kinds (hard
links), so ROOT/current holds them all. Builds into one ROOT run one after the other (an
exclusive flock on ROOT/snapshots): two at once would each start from the same `current`, and
the later one's snapshot would lack what the earlier one built.
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import xxhash

from . import kinds, manifest, popular, store
from .config import UsageError

SNAPSHOTS = "snapshots"
CURRENT = "current"
BUILDING_PREFIX = ".building-"
#: <id>: the UTC build time, then the first 8 hex digits of the MANIFEST's hash
_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}")


class SnapshotError(Exception):
    """A snapshot command that failed after its input was checked (pip failed, a full disk, a
    registry transfer): exit 1."""


@dataclass(frozen=True)
class Built:
    path: str
    files: int
    bytes: int
    seconds: float


def resolve(target: str) -> str:
    """The snapshot dir that `target` names: a snapshot dir itself, or a ROOT (its `current`)."""
    if not os.path.lexists(target):
        raise UsageError(f"{target} does not exist")
    if not os.path.isdir(target):
        raise UsageError(f"{target} is not a directory")
    if os.path.lexists(os.path.join(target, manifest.MANIFEST)):
        return target
    current = os.path.join(target, CURRENT)
    if os.path.islink(current):
        snap = os.path.realpath(current)
        if not os.path.isfile(os.path.join(snap, manifest.MANIFEST)):
            raise UsageError(f"{current} points to {os.readlink(current)}, which is not a snapshot")
        return snap
    raise UsageError(f"{target} is not a snapshot (no {manifest.MANIFEST}) nor a snapshot root "
                     f"(no {CURRENT})")


def build(root: str, kind: kinds.Kind, requirements: str | None = None,
          say: Callable[[str], None] = print, top: int | None = None,
          stats: str | None = None) -> Built:
    """Build a snapshot of one kind (kinds/) under root and point root/current at it (module
    docstring): of the list in requirements (default: the kind's own), or with top and stats of
    the `top` most downloaded projects (popular.py)."""
    started = time.monotonic()
    root = os.path.abspath(root)
    check_root(root)
    if top is None and stats is None:
        fill = functools.partial(_fill_from_list, kind=kind, wanted=_read_list(kind, requirements),
                                 requirements=requirements, say=say)
    else:
        fill = functools.partial(_fill_top, kind=kind,
                                 projects=popular.ranked(stats, top, requirements, kind.names),
                                 top=top, stats=stats, say=say)
    say(f"snapshot: {kind.check()}")

    snapshots = os.path.join(root, SNAPSHOTS)
    try:
        os.makedirs(snapshots, exist_ok=True)
    except OSError as e:
        raise SnapshotError(f"snapshot build failed: {e}") from None
    # one build at a time: each starts from `current` (the other kinds' entries) and ends by
    # replacing it; gc waits while this build adds links to store objects and publishes
    with _build_lock(snapshots, say), \
            store.root_lock(root, waiting=lambda: say("snapshot: waiting for cowfs snapshot gc")):
        built = _build(root, snapshots, kind, fill, say, started)
    say(f"snapshot: sandboxes: {kind.usage(root)}")
    return built


def _build_lock(snapshots: str, say: Callable[[str], None]):
    """flock(2) on ROOT/snapshots, exclusive, held by a build for its whole run."""
    fd = os.open(snapshots, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return store.locked(fd, exclusive=True,
                        waiting=lambda: say(f"snapshot: waiting for another build in {snapshots}"))


def _build(root: str, snapshots: str, kind: kinds.Kind, fill: Callable[[str], None],
           say: Callable[[str], None], started: float) -> Built:
    """build() under the ROOT lock; FILL(building) runs the kind's tool into the building
    snapshot, which starts with the other kinds' entries of the current one."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    try:
        building = tempfile.mkdtemp(prefix=f"{BUILDING_PREFIX}{stamp}-", dir=snapshots)
    except OSError as e:
        raise SnapshotError(f"snapshot build failed: {e}") from None
    remove_on_failure: str | None = building
    try:
        _carry_over(root, building, kind, say)
        kind.prepare(building)
        fill(building)
        sealed = _seal(root, building)
        say(f"snapshot: sealed {sealed.files} files, {sealed.bytes} bytes")
        final = os.path.join(snapshots, f"{stamp}-{_manifest_hash(building)[:8]}")
        remove_on_failure = None  # publish cleans up after itself
        publish(root, building, final, say)
    except BaseException as e:
        if remove_on_failure:
            remove_tree(remove_on_failure)
        if isinstance(e, OSError):
            raise SnapshotError(f"snapshot build failed: {e}") from None
        raise
    return Built(final, sealed.files, sealed.bytes, time.monotonic() - started)


def _carry_over(root: str, building: str, kind: kinds.Kind, say: Callable[[str], None]) -> None:
    """Hard link every top-level entry of the current snapshot that this kind does not own into
    building: one root holds every kind, and a build of one leaves the others as they were (their
    files are store objects already, so nothing is copied)."""
    current = os.path.join(root, CURRENT)
    if not os.path.islink(current):
        return
    snap = os.path.realpath(current)
    kept = sorted(set(os.listdir(snap)) - set(kind.owns) - {manifest.MANIFEST, manifest.SEAL})
    for name in kept:
        src, dst = os.path.join(snap, name), os.path.join(building, name)
        if os.path.isdir(src) and not os.path.islink(src):
            shutil.copytree(src, dst, symlinks=True, copy_function=os.link)
        else:
            os.link(src, dst, follow_symlinks=False)
    if kept:
        say(f"snapshot: kept {', '.join(kept)} of {os.path.relpath(snap, root)}")


def publish(root: str, building: str, final: str, say: Callable[[str], None]) -> None:
    """Rename the sealed snapshot dir building to final and switch root/current to it. If final
    exists (built in the same second from the same input, or pulled before: the same bytes),
    building goes and current switches to final. On failure this call leaves nothing behind."""
    try:
        if os.path.lexists(final):
            remove_tree(building)
        else:
            os.sync()  # the data is on disk before a name points at it
            os.rename(building, final)
            building = final
        _switch_current(root, os.path.relpath(final, root))
    except BaseException:
        if os.path.lexists(building):
            remove_tree(building)
        raise
    say(f"snapshot: {CURRENT} -> {os.path.relpath(final, root)}")


def _read_list(kind: kinds.Kind, requirements: str | None) -> bytes:
    if requirements is None:
        return kind.default_list()
    try:
        with open(requirements, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"cannot read requirements file {requirements}: {e.strerror}") from None


def check_root(root: str) -> None:
    """UsageError unless root is missing or a directory that may be a snapshot root."""
    if os.path.lexists(root) and not os.path.isdir(root):
        raise UsageError(f"snapshot root {root} is not a directory")
    current = os.path.join(root, CURRENT)
    if os.path.lexists(current) and not os.path.islink(current):
        raise UsageError(f"{current} is not a symlink: not a snapshot root")


def _fill_from_list(building: str, kind: kinds.Kind, wanted: bytes, requirements: str | None,
                    say: Callable[[str], None]) -> None:
    copy = os.path.join(building, kind.pins)
    with open(copy, "wb") as f:
        f.write(wanted)
    count = sum(1 for line in wanted.splitlines() if line.strip()[:1] not in (b"", b"#"))
    # the original file, not the copy: a tool resolves relative lines from it
    kind.fill(building, os.path.abspath(requirements) if requirements else copy, count, say)


def _fill_top(building: str, kind: kinds.Kind, projects: list[popular.Project], top: int,
              stats: str, say: Callable[[str], None]) -> None:
    say(f"snapshot: {kind.tool} of the {top} most downloaded of the {len(projects)} projects in "
        f"{stats} that build, one at a time, into {building}")
    record = popular.fill(building, projects, top, kind, say)
    if not record.included:
        raise SnapshotError("snapshot build failed: no project could be built")
    say(f"snapshot: {len(record.included)} projects in, {len(record.excluded)} left out "
        f"({kind.record})")


def _seal(root: str, top: str) -> manifest.Report:
    """Make everything read-only first, so that the MANIFEST written next records the modes
    `cowfs verify` will check, each file a link into ROOT's store (store.py); then the top
    directory, MANIFEST's own."""
    scanned = manifest.scan(top)
    for path, st in scanned.items():
        if stat.S_ISREG(st.st_mode):
            full = os.path.join(os.fsencode(top), path)
            os.chmod(full, 0o555 if st.st_mode & 0o111 else 0o444)
            store.ingest(root, full)
    for path, st in scanned.items():
        if stat.S_ISDIR(st.st_mode):
            os.chmod(os.path.join(os.fsencode(top), path), 0o555)
    try:
        report = manifest.write(top)
    except manifest.ManifestError as e:
        raise SnapshotError(f"snapshot build failed: {e}") from None
    os.chmod(top, 0o555)
    return report


def is_id_of(name: str, manifest_data: bytes) -> bool:
    """Whether name is the <id> a build gives the snapshot whose MANIFEST holds manifest_data."""
    return bool(_ID.fullmatch(name)) and \
        name.endswith("-" + xxhash.xxh3_128_hexdigest(manifest_data)[:8])


def _manifest_hash(top: str) -> str:
    with open(os.path.join(top, manifest.SEAL), "rb") as f:
        return f.read().split(b" ")[0].decode("ascii")


def _switch_current(root: str, target: str) -> None:
    """Point root/current at target with one rename(2): never missing, never half-written."""
    tmp = os.path.join(root, f".{CURRENT}-{os.getpid()}-{time.monotonic_ns()}")
    os.symlink(target, tmp)
    try:
        os.rename(tmp, os.path.join(root, CURRENT))
    except BaseException:
        os.unlink(tmp)
        raise


def remove_tree(top: str) -> int:
    """rm -rf of a tree that _seal may have made read-only (a non-root builder needs its
    directories writable to empty them). Returns the bytes it frees: the sizes of the files
    whose last link it removes (a file linked into the store leaves its object behind)."""
    os.chmod(top, 0o700)
    found = manifest.scan(top)
    for name in (manifest.MANIFEST, manifest.SEAL):  # the files scan leaves out
        with contextlib.suppress(FileNotFoundError):
            found[name.encode()] = os.lstat(os.path.join(top, name))
    freed = 0
    for path, st in found.items():
        if stat.S_ISDIR(st.st_mode):
            os.chmod(os.path.join(os.fsencode(top), path), 0o700)
        elif stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            freed += st.st_size
    shutil.rmtree(top)
    return freed

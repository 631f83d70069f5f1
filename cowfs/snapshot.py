"""Shared cache snapshots: building one with pip, sealing it, and publishing it atomically.

Layout under ROOT (the sandbox mounts rely on it):

    ROOT/snapshots/<id>/pip/              pip's cache dir, filled by pip itself
    ROOT/snapshots/<id>/wheels/           the wheelhouse (pip install --no-index --find-links)
    ROOT/snapshots/<id>/requirements.txt  the input list (--top: what went in, pinned)
    ROOT/snapshots/<id>/BUILD.json        --top only: what went in, what was left out and why
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
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import xxhash

from . import manifest, popular, store
from .config import UsageError

SNAPSHOTS = "snapshots"
CURRENT = "current"
BUILDING_PREFIX = ".building-"
REQUIREMENTS = "requirements.txt"
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


def default_requirements() -> bytes:
    # beside this module (package data); not importlib.resources, 30 ms to import
    with open(os.path.join(os.path.dirname(__file__), "default-requirements.txt"), "rb") as f:
        return f.read()


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


def build(root: str, requirements: str | None = None, find_links: Sequence[str] = (),
          no_index: bool = False, python: str = sys.executable,
          say: Callable[[str], None] = print, top: int | None = None,
          stats: str | None = None) -> Built:
    """Build a snapshot under root and point root/current at it (module docstring): of the
    requirements, or with top and stats of the `top` most downloaded projects (popular.py)."""
    started = time.monotonic()
    root = os.path.abspath(root)
    _check_input(root, find_links, python)
    if top is None and stats is None:
        fill = functools.partial(_fill_from_requirements, wanted=_read_requirements(requirements),
                                 requirements=requirements, say=say)
    else:
        fill = functools.partial(_fill_top, projects=popular.ranked(stats, top, requirements),
                                 top=top, stats=stats, say=say)
    say(f"snapshot: {_pip_version(python)}")

    snapshots = os.path.join(root, SNAPSHOTS)
    try:
        os.makedirs(snapshots, exist_ok=True)
    except OSError as e:
        raise SnapshotError(f"snapshot build failed: {e}") from None
    # gc waits while this build adds links to store objects and publishes its snapshot
    with store.root_lock(root, waiting=lambda: say("snapshot: waiting for cowfs snapshot gc")):
        return _build(root, snapshots, fill, find_links, no_index, python, say, started)


def _build(root: str, snapshots: str, fill: Callable[[_Pip], None], find_links: Sequence[str],
           no_index: bool, python: str, say: Callable[[str], None], started: float) -> Built:
    """build() under the ROOT lock; FILL(pip) runs pip into the building snapshot."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    try:
        building = tempfile.mkdtemp(prefix=f"{BUILDING_PREFIX}{stamp}-", dir=snapshots)
    except OSError as e:
        raise SnapshotError(f"snapshot build failed: {e}") from None
    remove_on_failure: str | None = building
    try:
        os.mkdir(os.path.join(building, "pip"))
        pip = _Pip(python, building, tuple(find_links), no_index)
        fill(pip)
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


def _check_input(root: str, find_links: Sequence[str], python: str) -> None:
    """UsageError for bad input, before anything is created."""
    check_root(root)
    for d in find_links:
        if not os.path.isdir(d):
            raise UsageError(f"--find-links {d} is not a directory")
    if shutil.which(python) is None:
        raise UsageError(f"--python {python} is not an executable")


def _read_requirements(requirements: str | None) -> bytes:
    if requirements is None:
        return default_requirements()
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


def _pip_version(python: str) -> str:
    # importing pip tells the same as `-m pip --version`, a second faster (pip's CLI is big)
    probe = "import pip, sys; print(f'pip {pip.__version__}, python {sys.version.split()[0]}')"
    res = subprocess.run([python, "-c", probe], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        lines = res.stderr.strip().splitlines() or ["?"]
        raise UsageError(f"--python {python} has no pip: {lines[-1]}")
    return f"{res.stdout.strip()} ({python})"


@dataclass(frozen=True)
class _Pip:
    """`python -m pip wheel` with its cache in building/pip: pip writes its own cache entries
    (HTTP responses, wheels it built from sdists), so a later pip on this cache finds them."""
    python: str
    building: str
    find_links: tuple[str, ...]
    no_index: bool

    def wheel(self, wheel_dir: str, requirement: list[str],
              capture: bool) -> subprocess.CompletedProcess:
        """A captured stderr (the reason for a failure is in it) is passed on as well."""
        env = dict(os.environ, PIP_CACHE_DIR=os.path.join(self.building, "pip"))
        env.pop("PIP_NO_CACHE_DIR", None)
        cmd = [self.python, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
               "--no-input", "--wheel-dir", wheel_dir, *requirement]
        for d in self.find_links:
            cmd += ["--find-links", os.path.abspath(d)]
        if self.no_index:
            cmd.append("--no-index")
        res = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, text=True, errors="replace",
                             stderr=subprocess.PIPE if capture else None)
        if capture:
            sys.stderr.write(res.stderr)
            sys.stderr.flush()
        return res


def _fill_from_requirements(pip: _Pip, wanted: bytes, requirements: str | None,
                            say: Callable[[str], None]) -> None:
    copy = os.path.join(pip.building, REQUIREMENTS)
    with open(copy, "wb") as f:
        f.write(wanted)
    count = sum(1 for line in wanted.splitlines() if line.strip()[:1] not in (b"", b"#"))
    say(f"snapshot: pip wheel of {count} requirement{'s' * (count != 1)} into {pip.building}")
    # the original file, not the copy: pip resolves `-r other.txt` and `./dir` lines from it
    req = os.path.abspath(requirements) if requirements else copy
    status = pip.wheel(os.path.join(pip.building, "wheels"), ["--requirement", req],
                       capture=False).returncode
    if status != 0:
        raise SnapshotError(f"snapshot build failed: pip wheel exited with status {status}")


def _fill_top(pip: _Pip, projects: list[popular.Project], top: int, stats: str,
              say: Callable[[str], None]) -> None:
    say(f"snapshot: pip wheel of the {top} most downloaded of the {len(projects)} projects in "
        f"{stats} that build, one at a time, into {pip.building}")
    record = popular.fill(pip.building, projects, top,
                          lambda scratch, name: pip.wheel(scratch, [name], capture=True), say)
    if not record.included:
        raise SnapshotError("snapshot build failed: no project could be built")
    say(f"snapshot: {len(record.included)} projects in, {len(record.excluded)} left out "
        f"({popular.RECORD})")


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

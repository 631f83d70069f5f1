"""The content-addressed store of a snapshot root: every regular file of every snapshot, once.

    ROOT/store/sha256/<64 hex>      content whose sha256 is that, mode 0444
    ROOT/store/sha256/<64 hex>.x    the same content, mode 0555 (hard links share one mode)
    ROOT/store/sha256/<64 hex>.m<16 hex>  the same content with an image layer file's mode,
                                    owner, mtime and xattrs (their hash: layertar.py)
    ROOT/store/tmp/                 objects being written; linked into place when checked
    ROOT (the directory itself)     flock(2)ed: shared by builds, pulls and layer unpacks,
                                    exclusive by gc

A snapshot's regular files are hard links to these objects, so a weekly rebuild in which few
packages changed adds only their bytes, and a pull fetches only the blobs the store lacks. The
digest is the one an OCI registry names a blob by. An object's name is a promise about its
content: it is written under tmp/ (a layer's: in the layer being unpacked), synced, and linked
into place. An object that no snapshot or layer links (st_nlink 1) is garbage (`cowfs snapshot gc`), but only while nothing adds links: a build
or pull holds ROOT's lock shared from its first object to its published snapshot (an unpack:
to its layer renamed into place), gc holds it exclusively (root_lock).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterator

STORE = "store"
ALGO = "sha256"
_CHUNK = 1 << 20


def objects_dir(root: str) -> str:
    return os.path.join(root, STORE, ALGO)


def object_path(root: str, digest: str, executable: bool) -> str:
    """Where the object of DIGEST (64 hex digits) and mode lives under ROOT."""
    return os.path.join(objects_dir(root), digest + (".x" if executable else ""))


def sha256_of(path: str | bytes) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def ensure(root: str) -> str:
    """The tmp dir, created with the objects dir on first use."""
    tmp = os.path.join(root, STORE, "tmp")
    os.makedirs(objects_dir(root), exist_ok=True)
    os.makedirs(tmp, exist_ok=True)
    return tmp


def ingest(root: str, path: str | bytes) -> str:
    """Make the regular file PATH (below ROOT, read-only already) a hard link to its store
    object, adding the object if the store lacks it; returns its sha256. Mode 0555 or 0444."""
    st = os.lstat(path)
    executable = bool(st.st_mode & 0o111)
    digest = sha256_of(path)
    ensure(root)
    obj = object_path(root, digest, executable)
    try:
        os.link(path, obj)  # the first of its content: the file becomes the object
    except FileExistsError:
        if not os.path.samestat(os.stat(obj), st):
            tmp = os.fsencode(path) + b".cowfs-link"
            os.link(obj, tmp)
            os.rename(tmp, path)
    return digest


def link_out(root: str, digest: str, executable: bool, dest: str | bytes) -> None:
    """Hard link the object of DIGEST to DEST (which must not exist)."""
    os.link(object_path(root, digest, executable), dest)


def add_object(root: str, digest: str, executable: bool, write) -> str:
    """Write a new object with WRITE(w), which calls w.write(bytes) with its content in order;
    check that the content has DIGEST (hashed as it is written: no second read), and link it
    into place; returns its path. ValueError (nothing left behind) if the content differs: a
    truncated or tampered download never gets a name. An object that appeared meanwhile is
    kept (link, not rename: snapshots may already link it)."""
    tmp_dir = ensure(root)
    fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix=digest[:16] + "-")
    try:
        with os.fdopen(fd, "wb") as f:
            w = _HashingWriter(f)
            write(w)
            f.flush()
            os.fsync(f.fileno())  # durable before it has a name that promises its content
        got = w.sha256.hexdigest()
        if got != digest:
            raise ValueError(f"content has sha256 {got}, not {digest}")
        os.chmod(tmp, 0o555 if executable else 0o444)
        obj = object_path(root, digest, executable)
        try:
            os.link(tmp, obj)
        except FileExistsError:
            pass
        return obj
    finally:
        os.unlink(tmp)


class _HashingWriter:
    def __init__(self, f) -> None:
        self.file, self.sha256 = f, hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.sha256.update(data)
        self.file.write(data)


def root_lock(root: str, exclusive: bool = False,
              waiting: Callable[[], None] | None = None):
    """Hold flock(2) on the ROOT directory: shared while a build or pull adds objects and links
    and publishes its snapshot (an object with st_nlink 1 may be about to get its first link),
    exclusive while gc runs."""
    return locked(os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), exclusive,
                  waiting)


@contextlib.contextmanager
def locked(fd: int, exclusive: bool = False,
           waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold flock(2) on FD, then close it. Calls WAITING once if it has to wait. The kernel
    drops the lock when the holder dies, so a killed build or pull never blocks for good."""
    try:
        how = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, how | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                waiting()
            fcntl.flock(fd, how)
        yield
    finally:
        os.close(fd)


def garbage(root: str) -> list[tuple[str, int]]:
    """(path, size) of the objects no snapshot links (regular files with st_nlink 1) and of the
    leftovers in tmp/ (a killed add_object's). Only true under root_lock(root, exclusive=True):
    otherwise a build may be about to link an object, or a pull still writing a tmp file."""
    out = []
    tmp = os.path.join(root, STORE, "tmp")
    for base in (objects_dir(root), tmp):
        try:
            entries = list(os.scandir(base))
        except FileNotFoundError:
            continue
        for e in entries:
            st = e.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and (st.st_nlink == 1 or base == tmp):
                out.append((e.path, st.st_size))
    return out

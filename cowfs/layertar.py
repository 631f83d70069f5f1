"""Image layers as lowers: an OCI layer tarball (gzip, zstd or plain tar) given to --lower is
unpacked once into a layer store, and the unpacked directory is the lower.

    STORE/layers/sha256/<digest>/        a layer; <digest> is the sha256 of the tarball's bytes
                                         (its OCI blob digest). Complete once it has this name.
    STORE/layers/tmp/<digest>-XXXXXXXX/  a layer being unpacked (or a killed unpack's leftover:
                                         removed by the next unpack, or by gc)
    STORE/layers                         flock(2)ed while a layer is unpacked: one at a time, and
                                         a mount that waited finds its layer done
    STORE/store/sha256/<sha256>.m<key>   every regular file of every layer (store.py)

A regular file is a hard link to a store object, so a file in many layers (or many times in
one) takes its disk once. Hard links share mode, owner, mtime and xattrs, so an object is named
by its content AND those (<key>: a hash of them); the snapshots' objects (<sha256>, .x) are
0444/0555 with any mtime and are shared only where a layer file has exactly their metadata.

The unpacked tree is what the layer says, `.wh.` markers included as the empty files the
tarball holds: cowfs reads them on lowers (namei.py), which gives the OCI image spec's
"applying changesets" result; only a whiteout next to an entry of its name in the same layer is
rewritten (own_whiteouts). Unpacking never
leaves the layer's directory: absolute names, `..`, entries below a symlink or a non-directory
the archive made, and hard links to anything the archive did not make are refused.

Rootless, what the kernel would not let the user make is dropped: owners (every object is the
user's), setuid/setgid bits, device nodes other than 0/0 (a warning says how many) and xattrs
outside user.*. user.overlay.* and trusted.overlay.* xattrs are always dropped: a layer must
not forge overlay markers. As root everything is kept.
"""
from __future__ import annotations

import contextlib
import ctypes
import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import queue
import tempfile
import threading
import time
import zlib
from collections.abc import Callable

from . import store
from .config import UsageError

LAYERS = "layers"
_CHUNK = 1 << 20
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"))
_UNSUPPORTED = ((b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"\x04\x22\x4d\x18", "lz4"))
_XATTR = "SCHILY.xattr."


def default_store() -> str:
    """$XDG_CACHE_HOME/cowfs, else ~/.cache/cowfs."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "cowfs")


def compression(path: str, shown: str) -> str:
    """"gzip", "zstd" or "tar" by the file's first bytes; UsageError for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        raise UsageError(f"lower {shown}: {e.strerror}") from None
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    for magic, name in _UNSUPPORTED:
        if head.startswith(magic):
            raise UsageError(f"layer tarball {shown} is {name}-compressed: only gzip, zstd "
                             "and plain tar are supported")
    if len(head) == 512 and head[257:262] == b"ustar":
        return "tar"
    raise UsageError(f"lower directory {shown} is not a directory nor a layer tarball "
                     "(gzip, zstd or tar)")


def check_store(path: str) -> str:
    """Absolute path of a layer store that exists and is writable, or can be created."""
    real = os.path.realpath(os.path.abspath(os.path.expanduser(path)))
    probe = real
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise UsageError(f"layer store {path}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"layer store {path}: {probe} is not writable")
    return real


def layer_dir(root: str, digest: str) -> str:
    return os.path.join(root, LAYERS, store.ALGO, digest)


def unpacked(root: str, tarball: str) -> str:
    """The layer dir of TARBALL in the store ROOT; UsageError if it was never unpacked there."""
    compression(tarball, tarball)
    dest = layer_dir(root, store.sha256_of(tarball))
    if not os.path.isdir(dest):
        raise UsageError(f"layer tarball {tarball} is not unpacked in layer store {root} "
                         "(a cowfs mount of it unpacks it)")
    return dest


def leftovers(root: str) -> list[str]:
    """What killed unpacks left in STORE/layers/tmp: garbage only while no unpack runs (under
    store.root_lock(root, exclusive=True), which every unpack holds shared)."""
    tmp = os.path.join(root, LAYERS, "tmp")
    try:
        return sorted(os.path.join(tmp, n) for n in os.listdir(tmp))
    except FileNotFoundError:
        return []


def unpack(root: str, tarball: str, say: Callable[[str], None]) -> str:
    """The unpacked layer of TARBALL in the store ROOT, unpacked now unless it is there.
    UsageError for a corrupt or unsafe archive, OSError for a failure of the disk: either way
    the store is left as it was (dirs this call made are removed again)."""
    kind = compression(tarball, tarball)
    digest = store.sha256_of(tarball)
    dest = layer_dir(root, digest)
    if os.path.isdir(dest):
        return dest
    layers = os.path.join(root, LAYERS)
    tmp_dir = os.path.join(layers, "tmp")
    made = [d for d in (root, layers, os.path.dirname(dest), tmp_dir,
                        os.path.join(root, store.STORE), store.objects_dir(root),
                        os.path.join(root, store.STORE, "tmp"))
            if not os.path.isdir(d)]
    try:
        for d in made:
            os.makedirs(d, mode=0o700 if d == root else 0o755, exist_ok=True)
        with store.locked(os.open(layers, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), True,
                          lambda: say(f"layer {tarball}: waiting for another unpack")):
            if os.path.isdir(dest):  # the mount we waited for unpacked it
                return dest
            for name in os.listdir(tmp_dir):
                remove_tree(os.path.join(tmp_dir, name))  # a killed unpack's (we hold the lock)
            started = time.monotonic()
            # shared: gc (exclusive) never sees an object of ours before its layer links it
            with store.root_lock(root):
                tmp_st = os.stat(tmp_dir)
                work = tempfile.mkdtemp(dir=tmp_dir, prefix=digest + "-")
                try:
                    count = _Unpacker(root, work, tarball, say).run(kind, digest)
                    os.rename(work, dest)
                except BaseException:
                    remove_tree(work)
                    remove_tree(work + ".link")
                    # a refused layer leaves no trace, not even in the scratch dir's times
                    os.utime(tmp_dir, ns=(tmp_st.st_atime_ns, tmp_st.st_mtime_ns))
                    raise
                _fsync_dir(os.path.dirname(dest))
    except BaseException:
        for d in reversed(made):
            with contextlib.suppress(OSError):
                os.rmdir(d)
        raise
    say(f"layer {tarball}: unpacked sha256:{digest} ({count} entries, "
        f"{time.monotonic() - started:.2f} s)")
    return dest


def remove_tree(top: str) -> None:
    """rm -rf of an unpacked (or half unpacked) layer, whose directories may be read-only."""
    if not os.path.isdir(top) or os.path.islink(top):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(top)
        return
    with contextlib.suppress(FileNotFoundError):
        for d, _dirs, _files in os.walk(top):
            os.chmod(d, 0o700)
        shutil.rmtree(top)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(path: str) -> None:
    """The unpacked files are on disk before store names promise their content."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if ctypes.CDLL(None, use_errno=True).syncfs(fd) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e), path)
    finally:
        os.close(fd)


class _HashingReader:
    """The tarball's bytes as they are read: the layer is the one its digest names."""

    def __init__(self, f) -> None:
        self.file, self.sha256 = f, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.file.read(n)
        self.sha256.update(data)
        return data

    def drain(self) -> str:
        while self.read(_CHUNK):
            pass
        return self.sha256.hexdigest()


class _ReadAhead:
    """STREAM read (and hashed, and decompressed) by a thread, while the unpacking waits for
    the disk: sha256, zlib and zstd let go of the GIL as they work. An error of the stream
    is raised by the read that reaches it."""

    def __init__(self, stream) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize=8)
        self.buf, self.eof, self.stopped = b"", False, False
        self.thread = threading.Thread(target=self._fill, args=(stream,), daemon=True)

    def __enter__(self) -> _ReadAhead:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped = True
        while self.thread.is_alive():  # unblock its put
            with contextlib.suppress(queue.Empty):
                self.queue.get(timeout=0.05)
        self.thread.join()

    def _fill(self, stream) -> None:
        try:
            while chunk := stream.read(_CHUNK):
                self._put(chunk)
            self._put(b"")
        except BaseException as e:  # noqa: BLE001 - handed to the reader
            self._put(e)

    def _put(self, item) -> None:
        while not self.stopped:
            with contextlib.suppress(queue.Full):
                self.queue.put(item, timeout=0.05)
                return

    def read(self, n: int = -1) -> bytes:
        while not self.eof and (n < 0 or len(self.buf) < n):
            item = self.queue.get()
            if isinstance(item, BaseException):
                self.eof = True
                raise item
            self.eof = not item
            self.buf = item if not self.buf else self.buf + item
        if n < 0 or len(self.buf) <= n:
            out, self.buf = self.buf, b""
        else:
            out, self.buf = self.buf[:n], self.buf[n:]
        return out


class _Unsafe(Exception):
    pass


class _Unpacker:
    def __init__(self, root: str, work: str, tarball: str, say: Callable[[str], None]) -> None:
        self.root, self.work, self.tarball, self.say = root, work, tarball, say
        self.is_root = os.geteuid() == 0
        self.kinds: dict[str, str] = {"": "d"}  # rel -> "d" "f" "l" "o" (other), "x" (dropped)
        self.files: dict[str, tuple[str, str]] = {}  # regular file -> (sha256, metadata key)
        self.first: dict[tuple[str, str], str] = {}  # (sha256, key) -> its first file here
        self.dirs: dict[str, tarfile.TarInfo | None] = {"": None}  # None: made implicitly
        self.dropped = {"device nodes": 0, "xattrs": 0, "setuid/setgid bits": 0}

    def full(self, rel: str) -> str:
        return os.path.join(self.work, rel) if rel else self.work

    def run(self, kind: str, digest: str) -> int:
        count = 0
        with open(self.tarball, "rb") as raw:
            reader = _HashingReader(raw)
            try:
                with _decompressed(reader, kind) as stream, _ReadAhead(stream) as ahead, \
                        tarfile.open(fileobj=ahead, mode="r|", bufsize=_CHUNK) as tf:
                    for m in tf:
                        self.entry(m, tf)
                        count += 1
                    while ahead.read(_CHUNK):  # to the end: a compressed stream is checked
                        pass
            except _Unsafe as e:
                raise UsageError(f"layer tarball {self.tarball}: {e}; refused") from None
            except (tarfile.TarError, EOFError, zlib.error, _zstd_error()) as e:
                raise UsageError(f"layer tarball {self.tarball} is corrupt or truncated: "
                                 f"{e or type(e).__name__}") from None
            if reader.drain() != digest:
                raise UsageError(f"layer tarball {self.tarball} changed while it was unpacked")
        self.own_whiteouts()
        self.link_files()
        self.finish_dirs()
        dropped = [f"{n} {what}" for what, n in self.dropped.items() if n]
        if dropped:
            self.say(f"layer {self.tarball}: dropped " + ", ".join(dropped)
                     + " (see README: image layers as lowers)")
        return count

    # --- entries

    def name(self, raw: str) -> str:
        if raw.startswith("/"):
            raise _Unsafe(f"entry {raw!r} has an absolute path")
        parts = [p for p in raw.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise _Unsafe(f"entry {raw!r} has '..' in its path")
        return "/".join(parts)

    def parents(self, rel: str) -> None:
        """Every directory above REL is one the archive made (made now if missing)."""
        cur = ""
        for part in rel.split("/")[:-1]:
            cur = f"{cur}/{part}" if cur else part
            k = self.kinds.get(cur)
            if k is None:
                os.mkdir(self.full(cur), 0o700)
                self.kinds[cur], self.dirs[cur] = "d", None
            elif k != "d":
                what = "a symlink" if k == "l" else "a non-directory"
                raise _Unsafe(f"entry {rel!r} lies below {what}, {cur!r}")

    def clear(self, rel: str, new_is_dir: bool) -> None:
        """An earlier entry of the name goes (a directory stays for a directory: merged)."""
        k = self.kinds.get(rel)
        if k is None or (k == "d" and new_is_dir):
            return
        if k == "d":
            remove_tree(self.full(rel))
        elif k != "x":  # a dropped entry is not on disk
            os.unlink(self.full(rel))
        under = rel + "/"
        for table in (self.kinds, self.files, self.dirs):
            for p in [p for p in table if p == rel or p.startswith(under)]:
                del table[p]

    def entry(self, m: tarfile.TarInfo, tf: tarfile.TarFile) -> None:
        rel = self.name(m.name)
        if rel == "":
            if not m.isdir():
                raise _Unsafe(f"entry {m.name!r} names the layer's root but is no directory")
            self.dirs[""] = m
            return
        self.parents(rel)
        self.clear(rel, m.isdir())
        path = self.full(rel)
        if m.isdir():
            if rel not in self.kinds:
                os.mkdir(path, 0o700)
            self.kinds[rel], self.dirs[rel] = "d", m
        elif m.isreg():
            self.regular(rel, path, m, tf)
        elif m.islnk():
            self.hardlink(rel, path, m)
        elif m.issym():
            os.symlink(m.linkname, path)
            self.kinds[rel] = "l"
            self.meta(path, m, symlink=True)
        elif m.isfifo():
            os.mkfifo(path, 0o600)
            self.kinds[rel] = "o"
            self.meta(path, m)
        elif m.ischr() or m.isblk():
            if not self.is_root and not (m.ischr() and m.devmajor == 0 and m.devminor == 0):
                self.dropped["device nodes"] += 1  # only the 0/0 whiteout is the user's to make
                self.kinds[rel] = "x"  # dropped: so are hard links to it
                return
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(path, 0o600 | kind, os.makedev(m.devmajor, m.devminor))
            self.kinds[rel] = "o"
            self.meta(path, m)
        else:
            raise _Unsafe(f"entry {m.name!r} is of unknown type {m.type!r}")

    def regular(self, rel: str, path: str, m: tarfile.TarInfo, tf: tarfile.TarFile) -> None:
        src = tf.extractfile(m)
        self.kinds[rel] = "f"
        if m.size <= _CHUNK:  # small: its object may exist, then nothing is written
            data = src.read()
            if len(data) != m.size:
                raise tarfile.ReadError(f"entry {m.name!r} is short")
            digest = hashlib.sha256(data).hexdigest()
            wanted = self.wanted(m)
            want = (digest, self.key(m, *wanted))
            have = self.first.get(want)  # a file of this layer, with that content and metadata
            if have is not None and self.files.get(have) == want:
                os.link(self.full(have), path)
                self.files[rel] = want
                self.note_drops(m, wanted)
                return
            with contextlib.suppress(FileNotFoundError):  # in the store: complete, synced
                os.link(os.path.join(store.objects_dir(self.root), _object_name(*want)), path)
                self.files[rel] = want
                self.note_drops(m, wanted)
                return
            chunks = [data]
        else:
            chunks = iter(lambda: src.read(_CHUNK), b"")
        h = hashlib.sha256()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                h.update(chunk)
                f.write(chunk)
            if f.tell() != m.size:
                raise tarfile.ReadError(f"entry {m.name!r} is short")
        got = (h.hexdigest(), self.meta(path, m))
        self.files[rel] = got
        self.first.setdefault(got, rel)

    def hardlink(self, rel: str, path: str, m: tarfile.TarInfo) -> None:
        target = self.name(m.linkname)
        k = self.kinds.get(target)
        if k == "x":
            self.dropped["device nodes"] += 1
            self.kinds[rel] = "x"
            return
        if k is None or k == "d":
            raise _Unsafe(f"hard link {m.name!r} points to {m.linkname!r}, "
                          "which is no file of the layer")
        os.link(self.full(target), path, follow_symlinks=False)
        self.kinds[rel] = k
        if target in self.files:
            self.files[rel] = self.files[target]

    def wanted(self, m: tarfile.TarInfo, symlink: bool = False):
        """(xattrs, uid, gid, mode) of M that this unpack may set, and what it must drop."""
        xattrs, dropped = [], 0
        for key, value in sorted(m.pax_headers.items()):
            if not key.startswith(_XATTR):
                continue
            name = key[len(_XATTR):]
            if (".overlay." in name or symlink
                    or (not self.is_root and not name.startswith("user."))):
                dropped += 1
            else:
                xattrs.append((name, value.encode("utf-8", "surrogateescape")))
        uid, gid = (m.uid, m.gid) if self.is_root else (os.geteuid(), os.getegid())
        mode = m.mode & 0o7777 if self.is_root else m.mode & 0o1777
        return xattrs, uid, gid, mode, dropped

    @staticmethod
    def key(m: tarfile.TarInfo, xattrs, uid: int, gid: int, mode: int, _dropped=0) -> str:
        """What hard links share, hashed: a regular file's object is named by it."""
        h = hashlib.sha256(f"{mode:o} {uid} {gid} {int(m.mtime * 1e9)}".encode())
        for name, data in xattrs:
            h.update(b"\0" + name.encode() + b"\0" + data)
        return h.hexdigest()[:16]

    def note_drops(self, m: tarfile.TarInfo, wanted) -> None:
        self.dropped["xattrs"] += wanted[4]
        if wanted[3] != m.mode & 0o7777:
            self.dropped["setuid/setgid bits"] += 1

    def meta(self, path: str, m: tarfile.TarInfo, symlink: bool = False) -> str:
        """xattrs, owner, mode, mtime of PATH as M says (what rootless may); returns the key
        of what was set."""
        wanted, uid, gid, mode, dropped = w = self.wanted(m, symlink)
        self.note_drops(m, w)
        xattrs = []
        for name, data in wanted:
            try:
                os.setxattr(path, name, data, follow_symlinks=False)
            except OSError:  # e.g. user.* on a FIFO, a filesystem without xattrs
                self.dropped["xattrs"] += 1
                continue
            xattrs.append((name, data))
        if self.is_root:
            os.chown(path, uid, gid, follow_symlinks=False)
        if not symlink:
            os.chmod(path, mode)
        mtime_ns = int(m.mtime * 1e9)
        os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
        return self.key(m, xattrs, uid, gid, mode)

    # --- after the last entry

    def own_whiteouts(self) -> None:
        """A whiteout hides only what the layers below hold (OCI: "files that are present in
        the same layer as a whiteout file can only be hidden by whiteout files in subsequent
        layers"), where cowfs's reading of `.wh.NAME` would hide this layer's NAME too. So
        `.wh.NAME` next to a NAME of the layer goes: a non-directory hides what is below
        anyway, a directory is made opaque (`.wh..wh..opq` in it) instead."""
        for rel in [r for r in self.kinds if os.path.basename(r).startswith(".wh.")]:
            parent, base = os.path.split(rel)
            name = os.path.join(parent, base[len(".wh."):])
            if base == ".wh..wh..opq" or self.kinds.get(name, "x") == "x":
                continue
            self.clear(rel, False)
            opq = os.path.join(name, ".wh..wh..opq")
            if self.kinds[name] == "d" and opq not in self.kinds:
                with open(self.full(opq), "xb"):
                    pass
                self.kinds[opq] = "f"
                self.files[opq] = (hashlib.sha256(b"").hexdigest(), self.meta(
                    self.full(opq), tarfile.TarInfo(opq)))

    def link_files(self) -> None:
        """Each regular file becomes its store object: the first of its content and metadata
        is linked into the store, a later one (bigger than a chunk, or an object another
        unpack added meanwhile) is replaced by a link to it."""
        _syncfs(self.work)
        by_inode: dict[int, list[str]] = {}
        for rel in self.files:
            by_inode.setdefault(os.lstat(self.full(rel)).st_ino, []).append(rel)
        scratch = self.work + ".link"
        for rels in by_inode.values():
            obj = os.path.join(store.objects_dir(self.root), _object_name(*self.files[rels[0]]))
            try:
                os.link(self.full(rels[0]), obj)
            except FileExistsError:
                if os.path.samestat(os.stat(obj), os.lstat(self.full(rels[0]))):
                    continue  # linked from the store as it was unpacked
                for rel in rels:
                    os.link(obj, scratch)
                    os.rename(scratch, self.full(rel))

    def finish_dirs(self) -> None:
        """Directories get their metadata last, deepest first: entries made in them moved
        their mtimes, and they stayed writable until now."""
        for rel in sorted(self.dirs, key=lambda p: p.count("/") + bool(p), reverse=True):
            m = self.dirs[rel]
            if m is None:
                os.chmod(self.full(rel), 0o755)
            else:
                self.meta(self.full(rel), m)


def _object_name(digest: str, key: str) -> str:
    return f"{digest}.m{key}"


@contextlib.contextmanager
def _decompressed(reader: _HashingReader, kind: str):
    if kind == "gzip":
        with gzip.GzipFile(fileobj=reader, mode="rb") as f:
            yield f
    elif kind == "zstd":
        import zstandard  # noqa: PLC0415 - only zstd layers need it

        with zstandard.ZstdDecompressor().stream_reader(reader, read_across_frames=True,
                                                        closefd=False) as f:
            yield f
    else:
        yield reader


def _zstd_error() -> type[Exception]:
    try:
        import zstandard  # noqa: PLC0415
    except ImportError:
        return ValueError
    return zstandard.ZstdError

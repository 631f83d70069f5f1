"""Real directories behind the overlay, reached only through directory descriptors.

Every syscall here is relative to a layer's root fd (the *at family) and never follows a symlink
in the last component, so nothing escapes a layer. A path may be longer than PATH_MAX (a 4095-byte
path relative to a directory inside the mount is one): the kernel refuses such a path in one
syscall, so it is reached through descriptors of the directories on the way (`Layer.at`).
Only `UpperLayer` has methods that change anything: a write to a lower is a type error.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import stat

from . import claim, markers

log = logging.getLogger(__name__)

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
RENAME_WHITEOUT = 4
WHITEOUT = -1  # the kind listdir gives a whiteout
_PATH_MAX = 4096
_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

_libc = ctypes.CDLL(None, use_errno=True)
_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                            ctypes.c_uint]


def renameat2(olddirfd: int, old: bytes, newdirfd: int, new: bytes, flags: int = 0) -> None:
    if _libc.renameat2(olddirfd, old, newdirfd, new, flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), old)


class Layer:
    """A read-only view of one directory tree."""

    # the lower is never written, not even its atimes where we may avoid it
    NOATIME = os.O_NOATIME
    # its regular files are links to a content store (hardlinks.deduplicated): files of equal
    # content share an inode without being one file
    deduplicated = False

    def __init__(self, path: str, index: int):
        self.path = path
        self.index = index
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._proc = b"/proc/self/fd/%d/" % self.fd
        self.dev = os.fstat(self.fd).st_dev

    def close(self) -> None:
        os.close(self.fd)

    def _at(self, call, rel: bytes, *args, **kwargs):
        """CALL(REL, *ARGS, dir_fd=...): relative to the layer root, or below PATH_MAX (`at`)."""
        if len(rel) < _PATH_MAX:
            return call(rel, *args, dir_fd=self.fd, **kwargs)
        fd, tail = self._descend(rel)
        try:
            return call(tail, *args, dir_fd=fd, **kwargs)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def at(self, rel: bytes):
        """(dir fd, path) that name REL in one *at syscall, whatever the length of REL."""
        if len(rel) < _PATH_MAX:
            yield self.fd, rel
            return
        fd, tail = self._descend(rel)
        try:
            yield fd, tail
        finally:
            os.close(fd)

    def _descend(self, rel: bytes) -> tuple[int, bytes]:
        """An O_PATH fd of a directory on the way to REL (the caller closes it) and the rest of
        REL, shorter than PATH_MAX: the directories are opened a PATH_MAX-sized part at a time."""
        fd = self.fd
        try:
            while len(rel) >= _PATH_MAX:
                cut = rel.rfind(b"/", 0, _PATH_MAX)
                if cut <= 0:
                    raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), rel)
                part = os.open(rel[:cut], _DIR_PATH, dir_fd=fd)
                if fd != self.fd:
                    os.close(fd)
                fd, rel = part, rel[cut + 1:]
        except BaseException:
            if fd != self.fd:
                os.close(fd)
            raise
        return fd, rel

    def lstat(self, rel: bytes) -> os.stat_result:
        return self._at(os.stat, rel, follow_symlinks=False)

    def try_lstat(self, rel: bytes) -> os.stat_result | None:
        """lstat, with a missing entry (or a non-directory on the way) as None."""
        try:
            return self._at(os.stat, rel, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def open(self, rel: bytes, flags: int, mode: int = 0o600) -> int:
        return self._at(os.open, rel, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)

    def open_read(self, rel: bytes, flags: int = 0) -> int:
        """Open for reading without touching atime where the kernel lets us (O_NOATIME: only
        for the owner)."""
        if not self.NOATIME:
            return self.open(rel, flags | os.O_RDONLY)
        try:
            return self.open(rel, flags | os.O_RDONLY | self.NOATIME)
        except PermissionError:
            return self.open(rel, flags | os.O_RDONLY)

    def listdir(self, rel: bytes) -> list[tuple[bytes, int]]:
        """(name, S_IFMT kind, or WHITEOUT) for every entry of a directory; only entries that
        could be whiteouts (not dirs, files or symlinks by d_type) cost a stat."""
        fd = self.open_read(rel, os.O_DIRECTORY)
        try:
            with os.scandir(fd) as it:
                out = []
                for e in it:
                    if e.is_symlink():
                        kind = stat.S_IFLNK
                    elif e.is_dir(follow_symlinks=False):
                        kind = stat.S_IFDIR
                    elif e.is_file(follow_symlinks=False):
                        kind = stat.S_IFREG
                    else:
                        st = e.stat(follow_symlinks=False)
                        kind = WHITEOUT if markers.is_whiteout(st) else stat.S_IFMT(st.st_mode)
                    out.append((os.fsencode(e.name), kind))
                return out
        finally:
            os.close(fd)

    def oci_marks(self, dirpath: bytes) -> frozenset[bytes] | None:
        """The `.wh.*` names in a directory ("" or "a/b/"); None where the directory cannot
        be listed."""
        try:
            fd = self.open_read(dirpath or b".", os.O_DIRECTORY)
        except OSError:
            return None
        try:
            names = [os.fsencode(n) for n in os.listdir(fd)]
        finally:
            os.close(fd)
        return frozenset(n for n in names if n.startswith(markers.OCI_PREFIX))

    def readlink(self, rel: bytes) -> bytes:
        return self._at(os.readlink, rel)

    def _xattr(self, call, rel: bytes, *args):
        # No *at form of the xattr calls: the layer root's /proc/self/fd link stands in for the
        # dir fd (one syscall, last component not followed); a path too long to go after it
        # takes an O_PATH fd of the object itself (the passthrough_hp way).
        if len(rel) + len(self._proc) < _PATH_MAX:
            return call(self._proc + rel, *args, follow_symlinks=False)
        fd = self.open(rel, os.O_PATH)
        try:
            return call(f"/proc/self/fd/{fd}", *args)
        finally:
            os.close(fd)

    def getxattr(self, rel: bytes, name: bytes) -> bytes:
        return self._xattr(os.getxattr, rel, name)

    def try_getxattr(self, rel: bytes, name: bytes) -> bytes | None:
        """A marker xattr, or None where there is none (or no xattrs on this object)."""
        try:
            return self.getxattr(rel, name)
        except OSError as e:
            if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
                return None
            if e.errno == errno.EACCES:
                return self._unreadable_marker(rel, name)
            raise

    def _unreadable_marker(self, rel: bytes, name: bytes) -> bytes | None:
        # Reading a user.* xattr needs read permission, which the kernel's overlay has by
        # privilege; a rootless daemon cannot read it on another user's lower object.
        return None

    def listxattr(self, rel: bytes) -> list[bytes]:
        try:
            return [os.fsencode(n) for n in self._xattr(os.listxattr, rel)]
        except OSError as e:
            if e.errno == errno.ENOTSUP:
                return []
            raise

    def statvfs(self) -> os.statvfs_result:
        return os.fstatvfs(self.fd)


class UpperLayer(Layer):
    """The writable layer, and its work dir (same filesystem) where new objects are built."""

    NOATIME = 0  # reading through the mount updates upper atimes, as on the kernel

    def __init__(self, path: str, work: str):
        super().__init__(path, -1)
        scratch = os.path.join(work, "work")
        os.makedirs(scratch, mode=0o700, exist_ok=True)
        self.work_fd = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            claim.take(self.fd, "upper", path)
            claim.take(self.work_fd, "work", work)
        except claim.InUse:
            self.close()
            raise
        self._seq = 0
        self.clear_work()  # only now: another mount's copy-ups may be under way there

    def close(self) -> None:
        os.close(self.work_fd)
        super().close()

    def clear_work(self) -> None:
        """Leftovers of interrupted copy-ups are garbage: nothing refers to them. Notes of
        modes lent when the daemon was killed are carried out first (latest first)."""
        names = [os.fsencode(n) for n in os.listdir(self.work_fd)]
        for name in notes_latest_first(names):
            try:
                put_back_mode(self, self.work_fd, name)
            except OSError as e:  # not ours any more, a dir on the way lost search permission
                log.warning("work dir note %r: mode not given back: %s", name, e)
        for name in names:
            remove_tree(self.work_fd, name)

    def temp_name(self) -> bytes:
        self._seq += 1
        return b"#cowfs-%x-%x" % (os.getpid(), self._seq)

    # namespace changes in upper
    def mkdir(self, rel: bytes, mode: int) -> None:
        self._at(os.mkdir, rel, mode)

    def mknod(self, rel: bytes, mode: int, rdev: int = 0) -> None:
        self._at(os.mknod, rel, mode, rdev)

    def symlink(self, target: bytes, rel: bytes) -> None:
        with self.at(rel) as (fd, tail):
            os.symlink(target, tail, dir_fd=fd)

    def link(self, src: bytes, dst: bytes) -> None:
        with self.at(src) as (sfd, stail), self.at(dst) as (dfd, dtail):
            os.link(stail, dtail, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)

    def unlink(self, rel: bytes) -> None:
        self._at(os.unlink, rel)

    def rmdir(self, rel: bytes) -> None:
        self._at(os.rmdir, rel)

    def rename(self, old: bytes, new: bytes, flags: int = 0) -> None:
        with self.at(old) as (ofd, otail), self.at(new) as (nfd, ntail):
            renameat2(ofd, otail, nfd, ntail, flags)

    @contextlib.contextmanager
    def granted(self, rel: bytes, bits: int, st: os.stat_result | None = None):
        """Let the daemon, for a moment, do what its own object's mode says no to: the kernel's
        overlay works on upper with privileges (a 0555 lower dir copied up still takes
        copy-ups, a chmod-000 file still has its markers read); a rootless daemon has only
        ownership, which lets it add the permission bits and put them back. A kill meanwhile
        leaves a note that makes the next mount put them back (`mode_noted`)."""
        st = st or self.lstat(rel)
        if st.st_mode & bits == bits or st.st_uid != os.geteuid() or os.geteuid() == 0:
            yield
            return
        with self.mode_noted(rel, stat.S_IMODE(st.st_mode), stat.S_ISDIR(st.st_mode)):
            self.chmod(rel, stat.S_IMODE(st.st_mode) | bits)
            try:
                yield
            finally:
                self.chmod(rel, stat.S_IMODE(st.st_mode))

    @contextlib.contextmanager
    def mode_noted(self, rel: bytes, mode: int, is_dir: bool):
        """For the time REL's mode is not MODE (lent bits, a dir placed before its chmod): a
        note in the work dir, a symlink made in one syscall, "<d|f><octal mode>:<path>". A
        kill meanwhile leaves it there, and the next mount (or `cowfs fsck --repair`) gives
        REL its MODE back (put_back_mode) before it clears the work dir."""
        note = None
        if len(rel) < _PATH_MAX - 16:
            self._seq += 1
            note = b"%s%x-%x" % (NOTE_PREFIX, os.getpid(), self._seq)
            os.symlink(b"%s%o:%s" % (b"d" if is_dir else b"f", mode, rel), note,
                       dir_fd=self.work_fd)
        try:
            yield
        finally:
            if note is not None:
                os.unlink(note, dir_fd=self.work_fd)

    @contextlib.contextmanager
    def searchable(self, rel: bytes):
        """Let the daemon reach into REL through directories of its own that lost search
        permission, REL included: the kernel lists an open directory through the real
        directory it holds, whatever happened to the modes above it since."""
        with contextlib.ExitStack() as stack:
            parts = rel.split(b"/") if rel else []
            for i in range(1, len(parts) + 1):  # outermost first; restored in reverse
                stack.enter_context(self.granted(b"/".join(parts[:i]), stat.S_IXUSR))
            yield

    def _unreadable_marker(self, rel: bytes, name: bytes) -> bytes | None:
        with self.granted(rel, stat.S_IRUSR):
            return self.try_getxattr(rel, name)

    def listdir(self, rel: bytes) -> list[tuple[bytes, int]]:
        try:
            return super().listdir(rel)
        except PermissionError:
            with self.granted(rel, stat.S_IRUSR | stat.S_IXUSR):
                return super().listdir(rel)

    def from_work(self, tmp: bytes, rel: bytes, flags: int = 0) -> None:
        with self.at(rel) as (fd, tail):
            renameat2(self.work_fd, tmp, fd, tail, flags)

    def remove_in_work(self, tmp: bytes) -> None:
        remove_tree(self.work_fd, tmp)

    # metadata
    def chmod(self, rel: bytes, mode: int) -> None:
        self._at(os.chmod, rel, mode)

    def chown(self, rel: bytes, uid: int, gid: int) -> None:
        self._at(os.chown, rel, uid, gid, follow_symlinks=False)

    def utime(self, rel: bytes, ns: tuple[int, int]) -> None:
        self._at(os.utime, rel, ns=ns, follow_symlinks=False)

    def setxattr(self, rel: bytes, name: bytes, value: bytes) -> None:
        self._xattr(os.setxattr, rel, name, value)

    def removexattr(self, rel: bytes, name: bytes) -> None:
        self._xattr(os.removexattr, rel, name)


NOTE_PREFIX = b"#cowfs-mode-"


def notes_latest_first(names: list[bytes]) -> list[bytes]:
    """The mode notes among the work dir's NAMES in the order they are undone: a daemon's
    latest first (by pid, then sequence)."""
    def order(name: bytes) -> tuple[int, int]:
        try:
            pid, seq = name[len(NOTE_PREFIX):].split(b"-")
            return int(pid, 16), int(seq, 16)
        except ValueError:
            return 0, 0
    return sorted((n for n in names if n.startswith(NOTE_PREFIX)), key=order, reverse=True)


def read_note(dirfd: int, name: bytes) -> tuple[bytes, int, bool] | None:
    """(path, mode, is_dir) of a mode note (UpperLayer.mode_noted), None if malformed."""
    try:
        text = os.readlink(name, dir_fd=dirfd)
        kind, rest = text[:1], text[1:]
        mode, rel = rest.split(b":", 1)
        if kind not in (b"d", b"f") or not rel:
            return None
        return rel, int(mode, 8), kind == b"d"
    except (OSError, ValueError):
        return None


def put_back_mode(layer: Layer, dirfd: int, name: bytes) -> bytes | None:
    """Give the object a mode note names its mode back, if it is still there and of the
    noted kind (a whiteout now in a dir's place keeps its own); the path, or None."""
    note = read_note(dirfd, name)
    if note is None:
        return None
    rel, mode, is_dir = note
    st = layer.try_lstat(rel)
    if st is None or stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode) != is_dir \
            or markers.is_whiteout(st):
        return None
    layer._at(os.chmod, rel, mode)
    return rel


def remove_tree(dirfd: int, name: bytes) -> None:
    try:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o700 != 0o700:
            os.chmod(name, 0o700, dir_fd=dirfd)  # garbage of ours, maybe a 0555 dir
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dirfd)
        try:
            for child in os.listdir(fd):
                remove_tree(fd, os.fsencode(child))
        finally:
            os.close(fd)
        if mode & 0o700 != 0o700:
            os.chmod(name, mode, dir_fd=dirfd)  # as it was, for a descriptor still open on it
        os.rmdir(name, dir_fd=dirfd)
    else:
        os.unlink(name, dir_fd=dirfd)

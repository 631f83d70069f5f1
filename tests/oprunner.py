#!/usr/bin/env python3
"""Run a JSON list of filesystem operations below ROOT and print their results as JSON.

Usage: python3 oprunner.py ROOT < ops.json > results.json

Stdlib only: the differential harness (tests/overlay.py) runs this script as the unprivileged
test user against a kernel overlay mount and against the filesystem under test, then compares the
two result lists. It runs fine by hand too, on any directory:

    echo '[["write_file","x","hi"],["stat","x"]]' | python3 tests/oprunner.py /tmp/d

Input: a JSON list of ops; each op is a list ``[NAME, ARG, ...]`` (trailing args optional).
Output: a JSON list with one result per op, either ``{"ok": VALUE}`` or ``{"errno": "ENOENT"}``.
A malformed op (unknown name, wrong arguments) gives ``{"error": "..."}``; the harness treats
that as a bug in the test, never as a result to compare.

Paths are relative to ROOT (absolute paths are refused). File descriptors live in a table keyed
by a name the ops choose, so a scenario can open, write, read and close across ops. Using a name
that is not open (e.g. its open failed) gives EBADF, like fd -1; opening a name that is already
open closes the old descriptor first.

Data arguments (write, pwrite, write_file, setxattr, mmap_write) are a str (UTF-8), or
``{"hex": "00ff"}``, or ``{"pattern": SEED, "size": N}`` (N deterministic pseudo-random bytes).
Data results (read, pread, read_file, getxattr, mmap_read) are a str when the bytes are at most
4096 long and valid UTF-8, else ``{"size": N, "blake2b": HEX}``.

Stat results (stat, lstat, fstat) are a dict: type ("f" "d" "l" "c" "b" "p" "s"), mode
(permission bits as an octal string, "0644"), size (None for directories: ext4 directory sizes
depend on history, not on semantics), nlink, uid, gid, rdev ([major, minor] for devices, else
None) and ino. ``ino`` is NORMALIZED over the whole run: each distinct st_ino is replaced by the
label of its first appearance: "op3" (the result of op 3), "op5/name" (entry NAME of scandir op
5). So identity relations (same file? did it survive copy-up?) compare across filesystems while
raw numbers never do, and one extra or missing inode early in a run does not renumber every
later result. st_dev, blocks and times are left out.
Times only come from the explicit ops stat_times/lstat_times/fstat_times, normalized: a time
within the run's own wall-clock window (2 s slack) is reported as "now", any other time as its
exact nanosecond value (trees built by the harness carry fixed times in the past).

Ops (arguments in order; [x] = optional, default shown):
  open FD PATH [FLAGS=["O_RDONLY"]] [MODE=0o644]   FLAGS: list of os.O_* names
  close FD | read FD N | pread FD N OFF | write FD DATA -> n | pwrite FD DATA OFF -> n
  lseek FD OFF [WHENCE="SEEK_SET"] [KEEP=false] -> pos (SEEK_SET/CUR/END/DATA/HOLE); KEEP:
      put the offset back afterwards (a probe that leaves the descriptor as it was)
  ftruncate FD SIZE | fallocate FD OFF LEN | fsync FD | fdatasync FD | fstat FD | fstat_times FD
  fchmod FD MODE | fchown FD UID GID
  mmap_read FD OFF N | mmap_write FD OFF DATA      (MAP_SHARED over the whole file)
  stat PATH | lstat PATH | stat_times PATH | lstat_times PATH
  mkdir PATH [MODE=0o755] | rmdir PATH | unlink PATH
  rename OLD NEW [FLAGS=""]       FLAGS: "" | "NOREPLACE" | "EXCHANGE" | "WHITEOUT" (renameat2)
  link SRC DST | symlink TARGET PATH | readlink PATH
  mkfifo PATH [MODE=0o644] | mknod PATH [MODE=0o644] [KIND="c"] [MAJOR=0] [MINOR=0]
                                  KIND: "c" "b" "p" "f" "s" (socket)
  chmod PATH MODE | chown PATH UID GID | lchown PATH UID GID   (UID/GID: int, "user", "root", -1)
  truncate PATH SIZE | utime PATH [ATIME_NS MTIME_NS]  (no times: now)
  utimensat PATH ATIME MTIME [FOLLOW=true]   each time: ns (int) | "NOW" | "OMIT"
  times_mark TAG PATH | times_cmp TAG PATH [FIELDS=["atime","mtime","ctime"]]  (stat,
      following symlinks) times_cmp compares the FIELDS with those recorded by times_mark TAG:
      {"mtime": "same"|"later"|"earlier", ...}: relations compare across mounts, times cannot
      (null after a failed times_mark); "mode" among FIELDS adds the mode as it is now
  umask MASK -> previous mask (applies to the creates of the later ops of this run)
  setxattr PATH NAME VALUE [FLAGS=""] ("" | "CREATE" | "REPLACE") | getxattr PATH NAME
  listxattr PATH (sorted) | removexattr PATH NAME
  lsetxattr / lgetxattr / llistxattr / lremovexattr: the same without following a symlink
  listdir PATH (sorted names) | scandir PATH (sorted [name, d_type, ino, nlink], d_ino
      normalized; nlink from an lstat of the entry after the listing, None if it failed)
  statvfs PATH -> {"namemax": N} | access PATH [MODES=["F_OK"]] -> true (or errno)
  write_file PATH DATA [MODE=0o644] (O_WRONLY|O_CREAT|O_TRUNC) -> n | read_file PATH
  exists PATH -> bool (lstat) | sleep SECONDS | tree [PATH="."]
  chdir PATH: later paths are relative to PATH (pjdfstest works in a directory of the mount,
      so a path up to PATH_MAX long starts below the root)
  opendir D PATH | readdir D [N=-1] | rewinddir D | closedir D   (libc DIR streams, own names)
    readdir reads up to N entries (-1: to the end) and returns them SORTED (the order entries
    come in is not semantics) as [name, d_type, ino, nlink], "." and ".." included; ino
    normalized like scandir's ("op5/name").
tree returns the dump described in tree_dump() below.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import mmap
import os
import random
import stat
import sys
import time

SLACK_NS = 2_000_000_000
MAX_TEXT = 4096

_libc = ctypes.CDLL(None, use_errno=True)


class _Dirent(ctypes.Structure):  # glibc struct dirent on 64-bit Linux
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64),
                ("d_reclen", ctypes.c_ushort), ("d_type", ctypes.c_ubyte),
                ("d_name", ctypes.c_char * 256)]


_libc.opendir.restype = ctypes.c_void_p
_libc.opendir.argtypes = [ctypes.c_char_p]
_libc.readdir.restype = ctypes.POINTER(_Dirent)
_libc.readdir.argtypes = [ctypes.c_void_p]
_libc.rewinddir.argtypes = [ctypes.c_void_p]
_libc.closedir.argtypes = [ctypes.c_void_p]
_libc.dirfd.argtypes = [ctypes.c_void_p]
_DT = {1: "p", 2: "c", 4: "d", 6: "b", 8: "f", 10: "l", 12: "s", 0: "?"}

_OPEN_FLAGS = {
    name: getattr(os, name)
    for name in (
        "O_RDONLY", "O_WRONLY", "O_RDWR", "O_CREAT", "O_EXCL", "O_TRUNC", "O_APPEND",
        "O_DIRECTORY", "O_NOFOLLOW", "O_NONBLOCK", "O_SYNC", "O_DSYNC", "O_NOATIME", "O_PATH",
        "O_TMPFILE", "O_NOCTTY", "O_DIRECT",
    )
    if hasattr(os, name)
}
_RENAME_FLAGS = {"": 0, "NOREPLACE": 1, "EXCHANGE": 2, "WHITEOUT": 4}
_XATTR_FLAGS = {"": 0, "CREATE": os.XATTR_CREATE, "REPLACE": os.XATTR_REPLACE}
_ACCESS = {"F_OK": os.F_OK, "R_OK": os.R_OK, "W_OK": os.W_OK, "X_OK": os.X_OK}
_WHENCE = {"SEEK_SET": os.SEEK_SET, "SEEK_CUR": os.SEEK_CUR, "SEEK_END": os.SEEK_END,
           "SEEK_DATA": getattr(os, "SEEK_DATA", 3), "SEEK_HOLE": getattr(os, "SEEK_HOLE", 4)}
AT_FDCWD = -100


class BadOp(Exception):
    """The op itself is malformed: a test bug, reported as {"error": ...}."""


def _type_char(mode: int) -> str:
    for test, ch in ((stat.S_ISREG, "f"), (stat.S_ISDIR, "d"), (stat.S_ISLNK, "l"),
                     (stat.S_ISCHR, "c"), (stat.S_ISBLK, "b"), (stat.S_ISFIFO, "p"),
                     (stat.S_ISSOCK, "s")):
        if test(mode):
            return ch
    return "?"


def _encode(data: bytes):
    if len(data) <= MAX_TEXT:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {"size": len(data), "blake2b": hashlib.blake2b(data, digest_size=16).hexdigest()}


def decode_data(data) -> bytes:
    """The bytes a data argument stands for (see module docstring)."""
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, dict) and "hex" in data:
        return bytes.fromhex(data["hex"])
    if isinstance(data, dict) and "pattern" in data:
        return random.Random(data["pattern"]).randbytes(int(data["size"]))
    raise BadOp(f"bad data argument {data!r}")


def _id(value, kind: str) -> int:
    if isinstance(value, int):
        return value
    if value == "user":
        return os.getuid() if kind == "uid" else os.getgid()
    if value == "root":
        return 0
    raise BadOp(f"bad {kind} {value!r}")


class Runner:
    def __init__(self) -> None:
        self.fds: dict[str, int] = {}
        self.dirs: dict[str, int] = {}  # DIR * of opendir
        self.inos: dict[int, str] = {}
        self.label = "op0"
        self.start_ns = time.time_ns()
        self.marks: dict[str, os.stat_result] = {}

    # --- helpers -------------------------------------------------------------------------
    def path(self, p) -> str:
        if not isinstance(p, str) or not p or p.startswith("/"):
            raise BadOp(f"path must be relative and non-empty: {p!r}")
        return p

    def fd(self, name) -> int:
        if not isinstance(name, str):
            raise BadOp(f"fd names are strings: {name!r}")
        if name not in self.fds:
            raise OSError(errno.EBADF, "not open")
        return self.fds[name]

    def ino(self, st_ino: int, label: str | None = None,
            table: dict[int, str] | None = None) -> str:
        table = self.inos if table is None else table
        return table.setdefault(st_ino, label or self.label)

    def statdict(self, st: os.stat_result, label: str | None = None,
                 table: dict[int, str] | None = None) -> dict:
        kind = _type_char(st.st_mode)
        return {
            "type": kind,
            "mode": format(stat.S_IMODE(st.st_mode), "04o"),
            "size": None if kind == "d" else st.st_size,
            "nlink": st.st_nlink,
            "uid": st.st_uid,
            "gid": st.st_gid,
            "rdev": [os.major(st.st_rdev), os.minor(st.st_rdev)] if kind in "cb" else None,
            "ino": self.ino(st.st_ino, label, table),
        }

    def time(self, ns: int):
        if self.start_ns - SLACK_NS <= ns <= time.time_ns() + SLACK_NS:
            return "now"
        return ns

    def times(self, st: os.stat_result) -> dict:
        return {"atime": self.time(st.st_atime_ns), "mtime": self.time(st.st_mtime_ns)}

    @staticmethod
    def check(ret: int) -> int:
        if ret < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return ret

    # --- fds -----------------------------------------------------------------------------
    def op_open(self, fd, path, flags=("O_RDONLY",), mode=0o644):
        if not isinstance(fd, str):
            raise BadOp(f"fd names are strings: {fd!r}")
        if fd in self.fds:
            os.close(self.fds.pop(fd))
        bits = os.O_CLOEXEC
        for f in flags:
            if f not in _OPEN_FLAGS:
                raise BadOp(f"unknown open flag {f!r}")
            bits |= _OPEN_FLAGS[f]
        self.fds[fd] = os.open(self.path(path), bits, mode)

    def op_close(self, fd):
        self.fd(fd)
        os.close(self.fds.pop(fd))

    def op_read(self, fd, n):
        return _encode(os.read(self.fd(fd), n))

    def op_pread(self, fd, n, off):
        return _encode(os.pread(self.fd(fd), n, off))

    def op_write(self, fd, data):
        return os.write(self.fd(fd), decode_data(data))

    def op_pwrite(self, fd, data, off):
        return os.pwrite(self.fd(fd), decode_data(data), off)

    def op_lseek(self, fd, off, whence="SEEK_SET", keep=False):
        if whence not in _WHENCE:
            raise BadOp(f"unknown whence {whence!r}")
        fd = self.fd(fd)
        was = os.lseek(fd, 0, os.SEEK_CUR) if keep else None
        pos = os.lseek(fd, off, _WHENCE[whence])
        if was is not None:
            os.lseek(fd, was, os.SEEK_SET)
        return pos

    def op_ftruncate(self, fd, size):
        os.ftruncate(self.fd(fd), size)

    def op_fallocate(self, fd, off, length):
        os.posix_fallocate(self.fd(fd), off, length)

    def op_fsync(self, fd):
        os.fsync(self.fd(fd))

    def op_fdatasync(self, fd):
        os.fdatasync(self.fd(fd))

    def op_fstat(self, fd):
        return self.statdict(os.fstat(self.fd(fd)))

    def op_fstat_times(self, fd):
        return self.times(os.fstat(self.fd(fd)))

    def op_fchmod(self, fd, mode):
        os.fchmod(self.fd(fd), mode)

    def op_fchown(self, fd, uid, gid):
        os.fchown(self.fd(fd), _id(uid, "uid"), _id(gid, "gid"))

    def op_mmap_read(self, fd, off, n):
        with mmap.mmap(self.fd(fd), 0, mmap.MAP_SHARED, mmap.PROT_READ) as m:
            return _encode(m[off:off + n])

    def op_mmap_write(self, fd, off, data):
        raw = decode_data(data)
        with mmap.mmap(self.fd(fd), 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
            if off + len(raw) > len(m):
                raise BadOp("mmap_write past the end of the file")
            m[off:off + len(raw)] = raw
            m.flush()
        return len(raw)

    # --- directory streams -------------------------------------------------------------
    def dirp(self, name) -> int:
        if not isinstance(name, str):
            raise BadOp(f"dir stream names are strings: {name!r}")
        if name not in self.dirs:
            raise OSError(errno.EBADF, "not open")
        return self.dirs[name]

    def op_opendir(self, d, path):
        if not isinstance(d, str):
            raise BadOp(f"dir stream names are strings: {d!r}")
        if d in self.dirs:
            _libc.closedir(self.dirs.pop(d))
        dirp = _libc.opendir(os.fsencode(self.path(path)))
        if not dirp:
            self.check(-1)
        self.dirs[d] = dirp

    def op_readdir(self, d, n=-1):
        dirp, out = self.dirp(d), []
        while n < 0 or len(out) < n:
            ctypes.set_errno(0)
            ent = _libc.readdir(dirp)
            if not ent:
                if ctypes.get_errno():
                    self.check(-1)
                break
            e = ent.contents
            out.append([os.fsdecode(e.d_name), _DT.get(e.d_type, "?"), e.d_ino])
        out.sort()
        return self.entries(out, _libc.dirfd(dirp))

    def op_rewinddir(self, d):
        _libc.rewinddir(self.dirp(d))

    def op_closedir(self, d):
        self.dirp(d)
        _libc.closedir(self.dirs.pop(d))

    # --- paths ---------------------------------------------------------------------------
    def op_chdir(self, path):
        os.chdir(self.path(path))

    def op_stat(self, path):
        return self.statdict(os.stat(self.path(path)))

    def op_lstat(self, path):
        return self.statdict(os.lstat(self.path(path)))

    def op_stat_times(self, path):
        return self.times(os.stat(self.path(path)))

    def op_lstat_times(self, path):
        return self.times(os.lstat(self.path(path)))

    def op_exists(self, path):
        try:
            os.lstat(self.path(path))
        except FileNotFoundError:
            return False
        return True

    def op_mkdir(self, path, mode=0o755):
        os.mkdir(self.path(path), mode)

    def op_rmdir(self, path):
        os.rmdir(self.path(path))

    def op_unlink(self, path):
        os.unlink(self.path(path))

    def op_rename(self, old, new, flags=""):
        if flags not in _RENAME_FLAGS:
            raise BadOp(f"unknown rename flags {flags!r}")
        if not flags:
            os.rename(self.path(old), self.path(new))
            return
        self.check(_libc.renameat2(AT_FDCWD, os.fsencode(self.path(old)), AT_FDCWD,
                                   os.fsencode(self.path(new)), _RENAME_FLAGS[flags]))

    def op_link(self, src, dst):
        os.link(self.path(src), self.path(dst), follow_symlinks=False)

    def op_symlink(self, target, path):
        os.symlink(target, self.path(path))

    def op_readlink(self, path):
        return os.readlink(self.path(path))

    def op_mkfifo(self, path, mode=0o644):
        os.mkfifo(self.path(path), mode)

    def op_mknod(self, path, mode=0o644, kind="c", major=0, minor=0):
        fmt = {"c": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO, "f": stat.S_IFREG,
               "s": stat.S_IFSOCK}
        if kind not in fmt:
            raise BadOp(f"unknown mknod kind {kind!r}")
        os.mknod(self.path(path), fmt[kind] | mode, os.makedev(major, minor))

    def op_chmod(self, path, mode):
        os.chmod(self.path(path), mode)

    def op_chown(self, path, uid, gid):
        os.chown(self.path(path), _id(uid, "uid"), _id(gid, "gid"))

    def op_lchown(self, path, uid, gid):
        os.lchown(self.path(path), _id(uid, "uid"), _id(gid, "gid"))

    def op_truncate(self, path, size):
        os.truncate(self.path(path), size)

    def op_utime(self, path, atime_ns=None, mtime_ns=None):
        if atime_ns is None and mtime_ns is None:
            os.utime(self.path(path))
        else:
            os.utime(self.path(path), ns=(atime_ns, mtime_ns))

    def op_utimensat(self, path, atime, mtime, follow=True):
        special = {"NOW": (1 << 30) - 1, "OMIT": (1 << 30) - 2}  # UTIME_NOW, UTIME_OMIT

        def ts(v):
            if isinstance(v, str):
                if v not in special:
                    raise BadOp(f"bad time {v!r}")
                return (0, special[v])
            if not isinstance(v, int):
                raise BadOp(f"bad time {v!r}")
            return divmod(v, 1_000_000_000)

        times = (ctypes.c_long * 4)(*ts(atime), *ts(mtime))
        self.check(_libc.utimensat(AT_FDCWD, os.fsencode(self.path(path)), times,
                                   0 if follow else 0x100))  # AT_SYMLINK_NOFOLLOW

    def op_times_mark(self, tag, path):
        self.marks[tag] = None  # a failed mark (its errno is its result) compares to nothing
        self.marks[tag] = os.stat(self.path(path))

    def op_times_cmp(self, tag, path, fields=("atime", "mtime", "ctime")):
        if tag not in self.marks:
            raise BadOp(f"no times_mark {tag!r} before")
        if not set(fields) <= {"atime", "mtime", "ctime", "mode"}:
            raise BadOp(f"bad time fields {fields!r}")
        old, new = self.marks[tag], os.stat(self.path(path))
        if old is None:
            return None

        def rel(a, b):
            return "same" if a == b else ("later" if b > a else "earlier")
        out = {k: rel(getattr(old, f"st_{k}_ns"), getattr(new, f"st_{k}_ns"))
               for k in fields if k != "mode"}
        if "mode" in fields:  # the mode now, for context
            out["mode"] = format(stat.S_IMODE(new.st_mode), "04o")
        return out

    def op_umask(self, mask):
        return os.umask(mask)

    def op_setxattr(self, path, name, value, flags=""):
        if flags not in _XATTR_FLAGS:
            raise BadOp(f"unknown xattr flags {flags!r}")
        os.setxattr(self.path(path), name, decode_data(value), _XATTR_FLAGS[flags])

    def op_getxattr(self, path, name):
        return _encode(os.getxattr(self.path(path), name))

    def op_listxattr(self, path):
        return sorted(os.listxattr(self.path(path)))

    def op_removexattr(self, path, name):
        os.removexattr(self.path(path), name)

    def op_lsetxattr(self, path, name, value, flags=""):
        if flags not in _XATTR_FLAGS:
            raise BadOp(f"unknown xattr flags {flags!r}")
        os.setxattr(self.path(path), name, decode_data(value), _XATTR_FLAGS[flags],
                    follow_symlinks=False)

    def op_lgetxattr(self, path, name):
        return _encode(os.getxattr(self.path(path), name, follow_symlinks=False))

    def op_llistxattr(self, path):
        return sorted(os.listxattr(self.path(path), follow_symlinks=False))

    def op_lremovexattr(self, path, name):
        os.removexattr(self.path(path), name, follow_symlinks=False)

    def op_listdir(self, path):
        return sorted(os.listdir(self.path(path)))

    def op_scandir(self, path):
        out = []
        with os.scandir(self.path(path)) as it:
            for e in it:
                if e.is_symlink():
                    kind = "l"
                elif e.is_dir(follow_symlinks=False):
                    kind = "d"
                elif e.is_file(follow_symlinks=False):
                    kind = "f"
                else:
                    kind = "other"  # scandir only tells the three above without a stat
                out.append([e.name, kind, e.inode()])
        out.sort()
        with self.opendir_fd(path) as dirfd:
            return self.entries(out, dirfd)

    @contextlib.contextmanager
    def opendir_fd(self, path):
        try:
            fd = os.open(self.path(path), os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            fd = None
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)

    def entries(self, out, dirfd):
        """[name, type, d_ino label, st_nlink] for each (name, type, d_ino): the link count (an
        lstat, after the listing) tells the harness which entries are hard links."""
        def nlink(name):
            if dirfd is None or name in (".", ".."):
                return None
            try:
                return os.lstat(name, dir_fd=dirfd).st_nlink
            except OSError:
                return None
        return [[name, kind, self.ino(ino, f"{self.label}/{name}"), nlink(name)]
                for name, kind, ino in out]

    def op_statvfs(self, path):
        return {"namemax": os.statvfs(self.path(path)).f_namemax}

    def op_access(self, path, modes=("F_OK",)):
        bits = 0
        for m in modes:
            if m not in _ACCESS:
                raise BadOp(f"unknown access mode {m!r}")
            bits |= _ACCESS[m]
        self.check(_libc.access(os.fsencode(self.path(path)), bits))
        return True

    def op_write_file(self, path, data, mode=0o644):
        raw = decode_data(data)
        fd = os.open(self.path(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            n = 0
            while n < len(raw):
                n += os.write(fd, raw[n:])
            return n
        finally:
            os.close(fd)

    def op_read_file(self, path):
        with open(self.path(path), "rb") as f:
            return _encode(f.read())

    def op_sleep(self, seconds):
        time.sleep(seconds)

    def op_tree(self, path="."):
        return tree_dump(self.path(path))

    # --- driver --------------------------------------------------------------------------
    def run(self, ops: list) -> list:
        results = []
        for i, op in enumerate(ops):
            self.label = f"op{i}"
            results.append(self.run_one(op))
        return results

    def run_one(self, op) -> dict:
        if not isinstance(op, list) or not op or not isinstance(op[0], str):
            return {"error": f"op must be a non-empty list [NAME, ...]: {op!r}"}
        fn = getattr(self, "op_" + op[0], None)
        if fn is None:
            return {"error": f"unknown op {op[0]!r}"}
        try:
            return {"ok": fn(*op[1:])}
        except OSError as e:
            if e.errno is None:
                return {"error": f"{op[0]}: OSError without errno: {e}"}
            return {"errno": errno.errorcode.get(e.errno, str(e.errno))}
        except (BadOp, TypeError, ValueError, KeyError, OverflowError) as e:
            return {"error": f"{op[0]}: {type(e).__name__}: {e}"}


def _xattrs(path: str) -> dict:
    names = sorted(n for n in os.listxattr(path, follow_symlinks=False) if n.startswith("user."))
    out = {}
    for n in names:
        try:
            out[n] = _encode(os.getxattr(path, n, follow_symlinks=False))
        except OSError as e:
            out[n] = {"errno": errno.errorcode.get(e.errno, str(e.errno))}
    return out


def tree_dump(root: str) -> dict:
    """Everything visible below ROOT as {relpath: entry}, walked in sorted order.

    entry: type, mode, uid, gid, ino (the path where the walk first met that inode: the entry's
    own path, or the first path of its hardlink set),
    xattrs (user.* only, name -> value); non-directories also nlink and size; regular files
    "content" (blake2b of the data, or {"errno": ...} if unreadable); symlinks "target";
    devices "rdev". A directory that cannot be listed gets "entries": {"errno": ...}. Each
    failing step is recorded as an errno instead of aborting the walk.
    """
    runner = Runner()
    table: dict[int, str] = {}
    out: dict[str, dict] = {}

    def err(e: OSError) -> dict:
        return {"errno": errno.errorcode.get(e.errno, str(e.errno))}

    def visit(rel: str, full: str) -> None:
        try:
            st = os.lstat(full)
        except OSError as e:
            out[rel] = err(e)
            return
        d = runner.statdict(st, rel, table)
        if d["type"] == "d":
            del d["size"], d["nlink"]
        if d["rdev"] is None:
            del d["rdev"]
        try:
            d["xattrs"] = _xattrs(full)
        except OSError as e:
            d["xattrs"] = err(e)
        if d["type"] == "f":
            try:
                h = hashlib.blake2b(digest_size=16)
                with open(full, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                d["content"] = h.hexdigest()
            except OSError as e:
                d["content"] = err(e)
        elif d["type"] == "l":
            d["target"] = os.readlink(full)
        out[rel] = d
        if d["type"] == "d":
            try:
                names = sorted(os.listdir(full))
            except OSError as e:
                d["entries"] = err(e)
                return
            for name in names:
                visit(name if rel == "." else f"{rel}/{name}", os.path.join(full, name))

    visit(".", root)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: oprunner.py ROOT < ops.json", file=sys.stderr)
        return 2
    ops = json.load(sys.stdin)
    os.chdir(argv[1])
    results = Runner().run(ops)
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

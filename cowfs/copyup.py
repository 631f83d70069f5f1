"""Copy-up: make a lower object writable by copying it into upper, parents first.

Everything is assembled in the work dir (data, xattrs, owner, mode, times), fsync'ed, then renamed
into place: a reader never sees a half-copied file, and a crash leaves only work-dir garbage.
The data copy runs in a worker thread so a large file does not stall other requests; the node's
lock serialises it against other changes of the same object.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import time

import trio

from . import hardlinks, markers, metacopy
from .inodes import Node
from .layers import RENAME_NOREPLACE, Layer, UpperLayer
from .overlay import Overlay

log = logging.getLogger(__name__)

_CHUNK = 1 << 30


def ensure_upper_dir(ov: Overlay, node: Node) -> None:
    """Copy up a directory and its missing ancestors (fast: no data, done inline)."""
    if node.upper:
        return
    with _reachable(ov, node):
        _ensure_upper_dir(ov, node)


@contextlib.contextmanager
def _reachable(ov: Overlay, node: Node):
    """The kernel copies up with privileges, through upper dirs whatever their modes (a
    descriptor opened before its dir lost search permission still gets its file copied up); a
    rootless daemon lends itself search permission on its own dirs for the time, when the
    nearest upper ancestor cannot be searched (one lstat to know)."""
    anc = node
    while anc is not None and not anc.upper:
        anc = anc.aliases[0][0] if anc.aliases else None
    if anc is None:
        yield
        return
    path = anc.path()
    try:
        ov.writable.lstat(path + b"/." if path else b".")
    except PermissionError:
        with ov.writable.searchable(path):
            yield
        return
    yield


def _ensure_upper_dir(ov: Overlay, node: Node) -> None:
    upper = ov.writable
    parent = node.aliases[0][0] if node.aliases else None
    if parent is None:
        raise OSError(errno.ENOENT, "unlinked")
    if not parent.upper:
        _ensure_upper_dir(ov, parent)
    lower = ov.lowers[node.lowers[0]]
    path = node.path()
    lpath = ov.lower_path(node)
    st = lower.lstat(lpath)
    mode = stat.S_IMODE(ov.owned_mode(st.st_mode))
    # Everything in the work dir, then one rename: a kill leaves no half-copied dir. But moving
    # a dir to another parent needs write permission on it (its ".." changes): one its mode
    # keeps from its owner gets mode and times once in place, the mode noted (a kill before
    # the chmod: the next mount puts it right).
    movable = ov.am_root or bool(mode & stat.S_IWUSR)
    tmp = upper.temp_name()
    os.mkdir(tmp, 0o700, dir_fd=upper.work_fd)
    try:
        _copy_meta(ov, lower, lpath, tmp, st, final=movable)
        if movable:
            _place(ov, upper, tmp, path, parent)
        else:
            with upper.mode_noted(path, mode, True):
                _place(ov, upper, tmp, path, parent)
                upper.chmod(path, mode)
            upper.utime(path, (st.st_atime_ns, st.st_mtime_ns))
    except BaseException:
        upper.remove_in_work(tmp)
        raise
    node.upper = True
    node.listing = None
    ov.attrs_changed(node)  # now merged: its link count reads 1


async def copy_up(ov: Overlay, node: Node, data: bool = True, meta: bool = False) -> None:
    """Copy up a non-directory (data=False: as if truncated to size 0, for O_TRUNC). META: only
    its metadata is about to change: with -o metacopy=on a lower regular file gets a metadata-only
    copy, and a metacopy file stays one; otherwise a metacopy file gets its data now."""
    if node.upper and (node.data is None or meta):
        return
    if node.is_dir:
        ensure_upper_dir(ov, node)
        return
    async with node.lock:
        if node.upper and (node.data is None or meta):
            return  # another request did it while we waited
        if not node.aliases:
            raise OSError(errno.ENOENT, "unlinked")
        if node.upper:
            with _reachable(ov, node.aliases[0][0]):  # the metacopy file's dir
                await _copy_up_data(ov, node, data)
            return
        with _reachable(ov, node):
            await _copy_up_file(ov, node, data, meta and ov.metacopy)


async def _copy_up_file(ov: Overlay, node: Node, data: bool, meta: bool) -> None:
    upper = ov.writable
    _ensure_parent(ov, node)
    lower = ov.lowers[node.lowers[0]]
    path = ov.lower_path(node)
    st = lower.lstat(path)
    names = await ov.lower_links.names(lower, st)  # a lower hard link's, to link them all
    tmp = upper.temp_name()
    metacopied = False
    try:
        if stat.S_ISREG(st.st_mode):
            size = st.st_size if data else 0
            # a lower hard link's names are linked to a copy with its data (README)
            metacopied = meta and size > 0 and not names
            await _copy_file(upper, lower, path, tmp, size, with_data=not metacopied)
            if metacopied and not metacopy.mark(tmp, upper):
                metacopied = False  # no user xattrs on the upper: the data, then
                os.unlink(tmp, dir_fd=upper.work_fd)
                await _copy_file(upper, lower, path, tmp, size, with_data=True)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(lower.readlink(path), tmp, dir_fd=upper.work_fd)
        else:
            os.mknod(tmp, st.st_mode, st.st_rdev, dir_fd=upper.work_fd)
        # Without the data it is the file as the truncate that follows makes it: placed with
        # the lower's mtime, a kill before that truncate would show old times on new content.
        mtime = time.time_ns() if not data and st.st_size else None
        _copy_meta(ov, lower, path, tmp, st, origin=node.key, mtime_ns=mtime)
        # A rename while the data was copied moved the object: place it where it is now.
        if not node.aliases:
            raise OSError(errno.ENOENT, "unlinked during copy-up")
        _ensure_parent(ov, node)
        path = node.path()
        if names:  # a lower hard link: its names in the view become links of the copy
            hardlinks.place(ov, node, tmp, path, names)
        else:
            _place(ov, upper, tmp, path, node.aliases[0][0])
    except BaseException:
        upper.remove_in_work(tmp)
        raise
    node.upper = True
    if metacopied:
        # open handles keep reading the lower data, at its lower path (below a moved dir too)
        node.data = (node.lowers[0], ov.lower_path(node))
    else:
        if not stat.S_ISREG(st.st_mode) and not names:
            ov.note_origin(upper.lstat(path), node.key)
        reopen_handles(ov, node)
    ov.attrs_changed(node)  # the copy's link count: the names the view shows


async def _copy_up_data(ov: Overlay, node: Node, data: bool) -> None:
    """A metacopy file gets its data (DATA=False: none, for O_TRUNC), assembled in the work dir
    with the metadata of the metacopy file (not the lower's) and renamed over it: a kill leaves
    the metacopy file as it was."""
    upper = ov.writable
    index, src = node.data
    path = node.path()
    st = upper.lstat(path)
    tmp = upper.temp_name()
    try:
        await _copy_file(upper, ov.lowers[index], src, tmp, st.st_size if data else 0)
        mtime = time.time_ns() if not data and st.st_size else None
        _copy_meta(ov, upper, path, tmp, st, origin=node.key, mtime_ns=mtime)
        if not node.aliases:
            raise OSError(errno.ENOENT, "unlinked during copy-up")
        path = node.path()  # a rename meanwhile moved it
        _place(ov, upper, tmp, path, node.aliases[0][0], replace=True)
    except BaseException:
        upper.remove_in_work(tmp)
        raise
    node.data = None
    reopen_handles(ov, node)
    ov.attrs_changed(node)  # its blocks are its own now


def _ensure_parent(ov: Overlay, node: Node) -> None:
    parent = node.aliases[0][0]
    if not parent.upper:
        _ensure_upper_dir(ov, parent)  # inside _reachable already


async def _copy_file(upper: UpperLayer, lower: Layer, path: bytes, tmp: bytes, size: int,
                     with_data: bool = True) -> None:
    """TMP in the work dir with PATH's first SIZE bytes (WITH_DATA=False: a hole of that size)."""
    src = lower.open_read(path)
    try:
        dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600,
                      dir_fd=upper.work_fd)
        try:
            if size and with_data:
                await trio.to_thread.run_sync(copy_data, src, dst, size)
            elif size:
                os.ftruncate(dst, size)
            await trio.to_thread.run_sync(os.fsync, dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def copy_data(src: int, dst: int, size: int) -> None:
    """Copy `size` bytes keeping holes: only the data extents are copied (SEEK_DATA/SEEK_HOLE)."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(src, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
            break  # only a hole is left
        end = min(os.lseek(src, start, os.SEEK_HOLE), size)
        _copy_range(src, dst, start, end)
        pos = end
    os.ftruncate(dst, size)


def _copy_range(src: int, dst: int, start: int, end: int) -> None:
    pos = start
    while pos < end:
        try:
            n = os.copy_file_range(src, dst, min(end - pos, _CHUNK), pos, pos)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            n = _copy_plain(src, dst, pos, min(end, pos + _CHUNK))
        if n == 0:
            break  # the source shrank under us
        pos += n


def _copy_plain(src: int, dst: int, start: int, end: int) -> int:
    pos = start
    while pos < end:
        buf = os.pread(src, min(end - pos, 1 << 20), pos)
        if not buf:
            break
        os.pwrite(dst, buf, pos)
        pos += len(buf)
    return pos - start


def _copy_meta(ov: Overlay, lower: Layer, path: bytes, tmp: bytes, st: os.stat_result,
               origin: bytes | None = None, final: bool = True,
               mtime_ns: int | None = None) -> None:
    """xattrs first (a later chown would drop security.capability), then owner, mode, times
    (own_lowers: the copy is the mounting user's, owner-writable, as the view showed it)."""
    wfd = ov.writable.work_fd
    if not stat.S_ISLNK(st.st_mode):
        fd = os.open(tmp, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=wfd)
        proc = f"/proc/self/fd/{fd}"
        try:
            for name in lower.listxattr(path):
                if markers.copyable_xattr(name):
                    _try_xattr(proc, name, lower.getxattr(path, name))
            if origin is not None and stat.S_ISREG(st.st_mode):
                _try_xattr(proc, markers.ORIGIN, origin)
        finally:
            os.close(fd)
    try:
        if not ov.own_lowers:
            os.chown(tmp, st.st_uid, st.st_gid, dir_fd=wfd, follow_symlinks=False)
    except PermissionError:
        pass  # rootless: the copy belongs to the mounting user, as on a rootless kernel overlay
    if not final:
        return
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(tmp, stat.S_IMODE(ov.owned_mode(st.st_mode)), dir_fd=wfd)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns if mtime_ns is None else mtime_ns),
             dir_fd=wfd, follow_symlinks=False)


def _try_xattr(proc: str, name: bytes, value: bytes) -> None:
    try:
        os.setxattr(proc, name, value)
    except OSError as e:
        # a trusted./security. name an unprivileged user may not set, or no xattrs on upper
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EACCES):
            raise
        log.debug("copy-up: xattr %r not kept: %s", name, e)


def _place(ov: Overlay, upper: UpperLayer, tmp: bytes, path: bytes, parent: Node,
           replace: bool = False) -> None:
    """Rename from work into upper (REPLACE: over the object there), leaving the parent's times
    as they were (as the kernel)."""
    ppath = parent.path()
    pst = upper.lstat(ppath)
    with upper.granted(ppath, stat.S_IWUSR | stat.S_IXUSR, pst):
        upper.from_work(tmp, path, 0 if replace else RENAME_NOREPLACE)
    upper.utime(ppath, (pst.st_atime_ns, pst.st_mtime_ns))
    ov.attrs_changed(parent)  # its ctime moved: the kernel's cached copy is stale


def reopen_handles(ov: Overlay, node: Node) -> None:
    """Descriptors opened before the copy-up read the upper copy from now on."""
    for handle in node.handles:
        if handle.upper:
            continue
        fd = ov.upper.open(node.path(), os.O_RDONLY)
        old, handle.fd, handle.upper = handle.fd, fd, True
        os.close(old)
        if handle.touch is not None:  # it was a metacopy file's
            os.close(handle.touch)
            handle.touch = None

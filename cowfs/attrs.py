"""Attributes: setattr (chmod, chown, truncate, utimens), xattrs, statfs, access.

Any change to a lower object copies it up first. Private overlay xattrs are invisible; a user's
own user.overlay.X is stored escaped as user.overlay.overlay.X, as the kernel does. The root
answers one virtual, read-only xattr, user.cowfs.layers (markers.LAYERS): the mount's layers.
"""
from __future__ import annotations

import errno
import os
import stat

import pyfuse3

from . import markers
from .copyup import copy_up
from .inodes import Node
from .overlay import Overlay


async def apply_setattr(ov: Overlay, node: Node, attr: pyfuse3.EntryAttributes,
                  fields: pyfuse3.SetattrFields, handle) -> os.stat_result:
    ov.writable  # EROFS on a read-only view, before anything else
    # ftruncate(2) or open(O_TRUNC), not truncate(2); a copy-up that skipped the data (a lower
    # file truncated to 0 needs none) makes the size change itself: times as ftruncate sets them
    named = handle is not None
    if fields.update_size and attr.st_size == 0 and (not node.upper or node.data is not None):
        named = named or ov.stat(node).st_size != 0
        await copy_up(ov, node, data=False)
    else:
        await copy_up(ov, node, meta=not fields.update_size)
    if handle is None or not handle.upper:
        # the kernel names a handle for ftruncate only: fchmod, futimens, a write clearing
        # setuid come without one. Any of the object's descriptors will do, and needs no path
        # walk (the file may be unlinked, its directory may have lost search permission); not
        # one of a metacopy file's lower data.
        handle = next((h for h in node.handles if h.fd is not None and h.upper), None)
    fd = handle.fd if handle is not None else None  # read after copy-up: it may reopen it
    if fd is None and not node.aliases and node.pin is not None:
        # unlinked, and not a file of ours open (a fifo, a removed dir): its O_PATH pin
        _setattr_at(b"/proc/self/fd/%d" % node.pin, ov, node, attr, fields)
        return ov.stat(node)
    # f*() calls act through the descriptor: no path walk, and unlinked files work too
    if fd is None:  # by path (a FIFO's fchmod too), reaching it as an fd would
        path = ov.path_of(node)
        ov.reaching(path.rpartition(b"/")[0], _setattr, ov, node, attr, fields, path, None,
                    named)
    else:
        _setattr(ov, node, attr, fields, None, fd, named)
    return ov.stat(node)


def _setattr(ov: Overlay, node: Node, attr: pyfuse3.EntryAttributes,
             fields: pyfuse3.SetattrFields, path: bytes | None, fd: int | None,
             named: bool) -> None:
    """By PATH or through FD (NAMED: the caller's own handle, as for ftruncate)."""
    upper = ov.writable
    if fields.update_uid or fields.update_gid or _ctime_only(fields):
        # chown(-1, -1) arrives with no field set: the upper's own chown(-1, -1) then changes
        # the ctime alone, as the kernel's overlay passing the call on does
        uid = attr.st_uid if fields.update_uid else -1
        gid = attr.st_gid if fields.update_gid else -1
        if path is not None:
            upper.chown(path, uid, gid)
        else:
            os.fchown(fd, uid, gid)
    if fields.update_mode:
        mode = stat.S_IMODE(attr.st_mode)
        if path is not None:
            upper.chmod(path, mode)
        else:
            os.fchmod(fd, mode)
    if fields.update_size:
        _truncate(ov, path, fd, attr.st_size, named)
    if fields.update_atime or fields.update_mtime:
        ns = _times(ov, node, attr, fields)
        if path is not None:
            upper.utime(path, ns)
        else:
            os.utime(fd, ns=ns)


def _ctime_only(fields: pyfuse3.SetattrFields) -> bool:
    return not (fields.update_uid or fields.update_gid or fields.update_mode
                or fields.update_size or fields.update_atime or fields.update_mtime)


def _setattr_at(proc: bytes, ov: Overlay, node: Node, attr: pyfuse3.EntryAttributes,
                fields: pyfuse3.SetattrFields) -> None:
    """setattr through a /proc/self/fd link, which the calls follow to the object itself."""
    if fields.update_uid or fields.update_gid or _ctime_only(fields):
        os.chown(proc, attr.st_uid if fields.update_uid else -1,
                 attr.st_gid if fields.update_gid else -1)
    if fields.update_mode:
        os.chmod(proc, stat.S_IMODE(attr.st_mode))
    if fields.update_size:
        os.truncate(proc, attr.st_size)
    if fields.update_atime or fields.update_mtime:
        os.utime(proc, ns=_times(ov, node, attr, fields))


def _times(ov: Overlay, node: Node, attr: pyfuse3.EntryAttributes,
           fields: pyfuse3.SetattrFields) -> tuple[int, int]:
    st = ov.stat(node)
    return (attr.st_atime_ns if fields.update_atime else st.st_atime_ns,
            attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns)


def _truncate(ov: Overlay, path: bytes | None, fd: int | None, size: int,
              as_ftruncate: bool) -> None:
    """Through FD (a descriptor of the file: it may be unlinked) or PATH, as ftruncate(2) or
    as truncate(2). The two differ: ftruncate sets the times even when the size stays,
    truncate(2) leaves that to the filesystem (tmpfs does not, ext4 does), and the kernel's
    overlay passes the caller's call on to the upper."""
    if not as_ftruncate:
        opath = ov.upper.open(path, os.O_PATH) if fd is None else None
        try:
            os.truncate(f"/proc/self/fd/{fd if opath is None else opath}", size)
        finally:
            if opath is not None:
                os.close(opath)
        return
    if fd is not None:
        try:
            os.ftruncate(fd, size)
            return
        except OSError as e:
            if e.errno not in (errno.EBADF, errno.EINVAL):
                raise
        # not open for writing (open(O_RDONLY | O_TRUNC), another reader): the same file
        # again, writable, through /proc (it may be unlinked: no path would do)
        wfd = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_CLOEXEC)
    else:
        wfd = ov.upper.open(path, os.O_WRONLY)
    try:
        os.ftruncate(wfd, size)
    finally:
        os.close(wfd)


def _virtual(ov: Overlay, node: Node, name: bytes) -> bool:
    """markers.LAYERS on the root: answered from the config, whatever the disk holds there."""
    return name == markers.LAYERS and node is ov.table.root


def getxattr(ov: Overlay, node: Node, name: bytes) -> bytes:
    if _virtual(ov, node, name):
        return ov.layers_xattr
    if markers.from_disk_xattr(markers.to_disk_xattr(name)) is None:
        raise OSError(errno.ENODATA, "no such attribute")
    return ov.layer_of(node).getxattr(ov.path_of(node), markers.to_disk_xattr(name))


def listxattr(ov: Overlay, node: Node) -> list[bytes]:
    on_disk = ov.layer_of(node).listxattr(ov.path_of(node))
    names = (markers.from_disk_xattr(n) for n in on_disk)
    # the virtual name stays unlisted, so that tools copying xattrs (cp -a, tar) never meet it
    return [n for n in names if n is not None and not _virtual(ov, node, n)]


async def setxattr(ov: Overlay, node: Node, name: bytes, value: bytes) -> None:
    if _virtual(ov, node, name):
        raise OSError(errno.EPERM, "read-only attribute")
    await copy_up(ov, node, meta=True)
    ov.writable.setxattr(ov.path_of(node), markers.to_disk_xattr(name), value)


async def removexattr(ov: Overlay, node: Node, name: bytes) -> None:
    if _virtual(ov, node, name):
        raise OSError(errno.EPERM, "read-only attribute")
    # a name that is not there gives ENODATA without a copy-up, as in the kernel
    getxattr(ov, node, name)
    await copy_up(ov, node, meta=True)
    ov.writable.removexattr(ov.path_of(node), markers.to_disk_xattr(name))


def statfs(ov: Overlay) -> pyfuse3.StatvfsData:
    sv = (ov.upper or ov.lowers[0]).statvfs()
    out = pyfuse3.StatvfsData()
    for field in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                  "f_ffree", "f_favail"):
        setattr(out, field, getattr(sv, field))
    out.f_namemax = max(layer.statvfs().f_namemax for layer in [*ov.lowers, ov.upper] if layer)
    return out


def access(ov: Overlay, node: Node, mode: int, uid: int, groups: set[int]) -> bool:
    """The permission check the kernel makes with default_permissions (root passes, but execute
    needs some x bit on a non-directory)."""
    if mode & os.W_OK and ov.upper is None:
        raise OSError(errno.EROFS, "read-only overlay")
    st = ov.stat(node)
    if uid == 0:
        return not (mode & os.X_OK) or stat.S_ISDIR(st.st_mode) or bool(st.st_mode & 0o111)
    if uid == st.st_uid:
        bits = (st.st_mode >> 6) & 7
    elif st.st_gid in groups:
        bits = (st.st_mode >> 3) & 7
    else:
        bits = st.st_mode & 7
    return (bits & mode) == mode

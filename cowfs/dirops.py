"""Namespace changes: create, mkdir, mknod, symlink, link, unlink, rmdir, rename.

A name that still exists in a lower is removed by putting a whiteout in its place; a new object
over a whiteout is built in the work dir and renamed over it (a new directory is made opaque
first, so nothing of the lower shows through). Renaming a merged or lower directory answers
EXDEV, as kernel overlayfs does in userxattr mode (mv(1) then copies); with redirect_dir=on
the dir alone is copied up and moved, its redirect xattr saying where its lower dirs are.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import Callable

from . import hardlinks, markers, metacopy
from .copyup import copy_up, ensure_upper_dir
from .files import DROP_FLAGS
from .inodes import ROOT, Node
from .layers import RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT, WHITEOUT, UpperLayer
from .overlay import Overlay
from .readdir import is_empty


class Creds:
    """Who a new object belongs to: only a daemon started by root can (and must) give it away."""

    def __init__(self, uid: int, gid: int):
        self.uid = uid
        self.gid = gid


def _owner(ov: Overlay, parent_path: bytes, creds: Creds) -> tuple[int, int] | None:
    if not ov.am_root:
        return None
    pst = ov.upper.lstat(parent_path)
    gid = pst.st_gid if pst.st_mode & stat.S_ISGID else creds.gid
    return creds.uid, gid


def make(ov: Overlay, parent: Node, name: bytes, creds: Creds | None,
         build: Callable[[int, bytes], int | None]) -> int | None:
    """Create a new entry with `build(dir_fd, name)` (returns an fd or None); creds None keeps
    the owner build gave it (a hard link)."""
    upper = ov.writable
    if ov.resolve(parent, name) is not None:
        raise FileExistsError(errno.EEXIST, "exists")
    ensure_upper_dir(ov, parent)
    path = parent.child_path(name)
    old = upper.try_lstat(path)
    over_whiteout = old is not None and markers.is_whiteout(old)
    with contextlib.ExitStack() as stack:
        if over_whiteout:
            dirfd, rel = upper.work_fd, upper.temp_name()
        else:
            dirfd, rel = stack.enter_context(upper.at(path))
        fd = build(dirfd, rel)
        try:
            owner = _owner(ov, parent.path(), creds) if creds is not None else None
            if owner is not None:
                os.chown(rel, *owner, dir_fd=dirfd, follow_symlinks=False)
            if over_whiteout:
                # all of it in the work dir: one rename puts it in place, whole
                _inherit_setgid(upper, parent.path(), dirfd, rel)
                _replace_whiteout(upper, rel, path)
        except BaseException:
            if fd is not None:
                os.close(fd)
            if over_whiteout:
                upper.remove_in_work(rel)
            else:
                _remove_new(upper, path)
            raise
    return fd


def _replace_whiteout(upper: UpperLayer, tmp: bytes, path: bytes) -> None:
    st = os.stat(tmp, dir_fd=upper.work_fd, follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        # A directory cannot be renamed over a device: mark it opaque, swap, drop the whiteout.
        # Both need write permission on the new dir, which its mode may not give (mkdir 0555).
        mode = stat.S_IMODE(st.st_mode)
        os.chmod(tmp, mode | stat.S_IRWXU, dir_fd=upper.work_fd)
        _set_opaque_in_work(upper, tmp)
        with upper.mode_noted(path, mode, True):  # a kill before the chmod: put right at mount
            upper.from_work(tmp, path, RENAME_EXCHANGE)
            upper.remove_in_work(tmp)
            upper.chmod(path, mode)
    else:
        upper.from_work(tmp, path)


def _inherit_setgid(upper: UpperLayer, parent_path: bytes, dirfd: int,
                    rel: bytes) -> None:
    """What the filesystem does for an object made in a setgid dir, for one built in the work
    dir (REL in DIRFD), before it goes in place: the dir's group, and S_ISGID on a directory."""
    pst = upper.lstat(parent_path)
    if not pst.st_mode & stat.S_ISGID:
        return
    st = os.stat(rel, dir_fd=dirfd, follow_symlinks=False)
    try:
        os.chown(rel, -1, pst.st_gid, dir_fd=dirfd, follow_symlinks=False)
    except PermissionError:
        return  # rootless, not in that group: the group stays the user's
    if stat.S_ISDIR(st.st_mode):
        os.chmod(rel, stat.S_IMODE(st.st_mode) | stat.S_ISGID, dir_fd=dirfd)


def _set_opaque_in_work(upper: UpperLayer, tmp: bytes) -> None:
    fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=upper.work_fd)
    try:
        os.setxattr(fd, markers.OPAQUE, b"y")
    finally:
        os.close(fd)


def _remove_new(upper: UpperLayer, path: bytes) -> None:
    try:
        if stat.S_ISDIR(upper.lstat(path).st_mode):
            upper.rmdir(path)
        else:
            upper.unlink(path)
    except OSError:
        pass


def create_file(ov: Overlay, parent: Node, name: bytes, mode: int, flags: int,
                creds: Creds) -> tuple[Node, int]:
    flags = (flags & ~DROP_FLAGS) | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = make(ov, parent, name, creds, lambda d, n: os.open(n, flags, mode, dir_fd=d))
    try:
        return ov.lookup(parent, name)[0], fd
    except BaseException:
        os.close(fd)
        raise


def mkdir(ov: Overlay, parent: Node, name: bytes, mode: int, creds: Creds) -> Node:
    make(ov, parent, name, creds, lambda d, n: os.mkdir(n, mode, dir_fd=d))
    return ov.lookup(parent, name)[0]


def mknod(ov: Overlay, parent: Node, name: bytes, mode: int, rdev: int, creds: Creds) -> Node:
    if stat.S_ISCHR(mode) and rdev == 0:
        raise PermissionError(errno.EPERM, "whiteouts cannot be created through the overlay")
    make(ov, parent, name, creds, lambda d, n: os.mknod(n, mode, rdev, dir_fd=d))
    return ov.lookup(parent, name)[0]


def symlink(ov: Overlay, parent: Node, name: bytes, target: bytes, creds: Creds) -> Node:
    make(ov, parent, name, creds, lambda d, n: os.symlink(target, n, dir_fd=d))
    return ov.lookup(parent, name)[0]


async def link(ov: Overlay, node: Node, parent: Node, name: bytes) -> Node:
    if node.is_dir:
        raise PermissionError(errno.EPERM, "hard link to a directory")
    if ov.resolve(parent, name) is not None:
        raise FileExistsError(errno.EEXIST, "exists")
    await copy_up(ov, node)
    src = ov.path_of(node)
    with ov.upper.at(src) as (sfd, stail):
        make(ov, parent, name, None, lambda d, n: os.link(
            stail, n, src_dir_fd=sfd, dst_dir_fd=d, follow_symlinks=False))
    ov.table.attach(node, parent, name)
    return node


async def unlink(ov: Overlay, parent: Node, name: bytes) -> None:
    node = await _settled(ov, parent, name)
    if node.is_dir:
        raise IsADirectoryError(errno.EISDIR, "is a directory")
    if await _copied_for_link_count(ov, node):
        node = await _settled(ov, parent, name)
    _remove(ov, parent, name, node)


async def _copied_for_link_count(ov: Overlay, node: Node) -> bool:
    """Copy up a lower hard link one of whose names is going (hardlinks.has_other_names).
    One the mounting user cannot read is left below (its names show the lower's count)."""
    if not await hardlinks.has_other_names(ov, node):
        return False
    with contextlib.suppress(PermissionError):
        await copy_up(ov, node)
    return True


async def rmdir(ov: Overlay, parent: Node, name: bytes) -> None:
    node = await _settled(ov, parent, name)
    if not node.is_dir:
        raise NotADirectoryError(errno.ENOTDIR, "not a directory")
    if not is_empty(ov, node):
        raise OSError(errno.ENOTEMPTY, "directory not empty")
    _remove(ov, parent, name, node)


async def _settled(ov: Overlay, parent: Node, name: bytes) -> Node:
    """The node at parent/name once no copy-up of it is running (then no await until done)."""
    ov.writable  # EROFS on a read-only view, before anything else
    while True:
        node = ov.child(parent, name)
        if node is None:
            raise FileNotFoundError(errno.ENOENT, "no such entry")
        if not node.busy():
            return node
        async with node.lock:
            pass


def _remove(ov: Overlay, parent: Node, name: bytes, node: Node) -> None:
    upper = ov.writable
    path = parent.child_path(name)
    old = upper.try_lstat(path) if parent.upper else None
    ov.forget_origin(old)
    gone = not _other_links(old if node.upper else _lower_st(ov, node))
    with ov.pinned(node, gone):
        if ov.lower_positive(parent, name):
            ensure_upper_dir(ov, parent)
            _put_whiteout(upper, path, old)
        elif node.is_dir:
            _clear_whiteouts(upper, path)
            upper.rmdir(path)
        else:
            upper.unlink(path)
    ov.table.detach(node, parent, name, gone=gone)


def _other_links(st: os.stat_result | None) -> bool:
    """A non-directory that other hard links keep alive after this name goes."""
    return st is not None and not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1


def _lower_st(ov: Overlay, node: Node | None) -> os.stat_result | None:
    """A lower object's stat: its other names stay in the view once one is whited out."""
    if node is None or node.is_dir:
        return None
    return ov.lowers[node.lowers[0]].try_lstat(ov.lower_path(node))


def _put_whiteout(upper: UpperLayer, path: bytes, old: os.stat_result | None) -> None:
    if old is None:  # a free name: mknod is as atomic as a rename from the work dir
        upper.mknod(path, markers.WHITEOUT_MODE, 0)
        return
    tmp = upper.temp_name()
    os.mknod(tmp, markers.WHITEOUT_MODE, 0, dir_fd=upper.work_fd)
    try:
        if stat.S_ISDIR(old.st_mode):
            mode = stat.S_IMODE(old.st_mode)
            if mode & stat.S_IRWXU != stat.S_IRWXU:
                # moving a dir to another parent needs write permission on it; it goes anyway,
                # and gets its mode back for a descriptor still open on it (a kill before the
                # exchange: the next mount gives it back, see mode_noted)
                with upper.mode_noted(path, mode, True):
                    upper.chmod(path, mode | stat.S_IRWXU)
                    upper.from_work(tmp, path, RENAME_EXCHANGE)
                os.chmod(tmp, mode, dir_fd=upper.work_fd)
            else:
                upper.from_work(tmp, path, RENAME_EXCHANGE)  # the old dir (whiteouts only) is tmp
        else:
            upper.from_work(tmp, path)
    finally:
        upper.remove_in_work(tmp)


def _clear_whiteouts(upper: UpperLayer, path: bytes) -> None:
    """An upper dir that is empty in the merged view may still hold whiteouts: drop them (the
    kernel does so with privileges, whatever the dir's mode: the owner's bits are lent)."""
    with upper.granted(path, stat.S_IRWXU):
        for name, kind in upper.listdir(path):
            if kind == WHITEOUT:
                upper.unlink(path + b"/" + name)


async def rename(ov: Overlay, pold: Node, nold: bytes, pnew: Node, nnew: bytes,
                 flags: int) -> None:
    upper = ov.writable
    exchange = bool(flags & RENAME_EXCHANGE)
    counted = None  # the replaced lower hard link copied up for its other names' link count
    while True:
        src = ov.child(pold, nold)
        dst = ov.child(pnew, nnew)
        _check_rename(ov, src, dst, flags)
        if src is dst:
            return  # two names of one object: POSIX says do nothing
        # copy-ups may wait: afterwards look again, and act only on a settled state. A lock
        # may be held by a waiter that has not run yet: wait on it (copy_up of an object
        # already up returns at once, without yielding, and this loop would spin).
        if not src.upper:
            await copy_up(ov, src, meta=True)
        elif src.busy():
            await _wait(src)
        elif dst is not None and exchange and not dst.upper:
            await copy_up(ov, dst, meta=True)
        elif dst is not None and not dst.upper and dst is not counted:
            counted = dst
            await _copied_for_link_count(ov, dst)
        elif dst is not None and dst.busy():
            await _wait(dst)
        else:
            break
    for moved in (src, dst if exchange else None):
        if moved is not None and moved.data is not None:
            metacopy.redirect_before_move(ov, moved)
    ensure_upper_dir(ov, pnew)
    old_path, new_path = pold.child_path(nold), pnew.child_path(nnew)
    if exchange:
        _opaque_if_merged(upper, src, pnew)
        _opaque_if_merged(upper, dst, pold)
        moved = _redirect(ov, src, pold, nold, pnew), _redirect(ov, dst, pnew, nnew, pold)
        upper.rename(old_path, new_path, RENAME_EXCHANGE)
        src.lpaths, dst.lpaths = moved
        ov.moved_dirs = ov.moved_dirs or moved != (None, None)
        ov.table.move(src, (pold, nold), (pnew, nnew))
        ov.table.move(dst, (pnew, nnew), (pold, nold))
        return
    whiteout_old = ov.lower_positive(pold, nold)
    _opaque_if_merged(upper, src, pnew)
    moved = _redirect(ov, src, pold, nold, pnew)
    target = upper.try_lstat(new_path)
    ov.forget_origin(target)
    gone = not _other_links(target if dst is None or dst.upper else _lower_st(ov, dst))
    with ov.pinned(dst, gone):
        if target is not None and stat.S_ISDIR(target.st_mode):
            if dst is not None and dst.lowers and not dst.opaque:
                # its whiteouts hide lower entries: opaque first (the view of an empty dir
                # does not change), so that a kill while they go shows nothing new
                with upper.granted(new_path, stat.S_IWUSR):
                    upper.setxattr(new_path, markers.OPAQUE, b"y")
                dst.opaque = True
            _clear_whiteouts(upper, new_path)
        if src.is_dir and target is not None and markers.is_whiteout(target):
            # a directory cannot replace a device: swap, then the old name holds the whiteout
            upper.rename(old_path, new_path, RENAME_EXCHANGE)
            if not whiteout_old:
                upper.unlink(old_path)
        elif whiteout_old:
            _rename_leaving_whiteout(upper, old_path, new_path)
        else:
            upper.rename(old_path, new_path)
    if dst is not None:
        ov.table.detach(dst, pnew, nnew, gone=gone)
    ov.table.move(src, (pold, nold), (pnew, nnew))
    src.lpaths = moved
    ov.moved_dirs = ov.moved_dirs or moved is not None


def _rename_leaving_whiteout(upper: UpperLayer, old: bytes, new: bytes) -> None:
    """Rename OLD to NEW and leave a whiteout at OLD, all or nothing as the kernel does
    (RENAME_WHITEOUT, which Linux allows the unprivileged since 5.8): a kill never shows the
    lower object again at OLD beside the renamed one, and with no room for the whiteout
    (ENOSPC: no inode left) nothing moves. A filesystem without RENAME_WHITEOUT gets the
    whiteout made in the work dir first, so that only the last rename, which needs no new
    inode, comes after the move."""
    try:
        upper.rename(old, new, RENAME_WHITEOUT)
        return
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
    tmp = upper.temp_name()
    os.mknod(tmp, markers.WHITEOUT_MODE, 0, dir_fd=upper.work_fd)
    try:
        upper.rename(old, new)
        upper.from_work(tmp, old, RENAME_NOREPLACE)
    finally:
        upper.remove_in_work(tmp)


async def _wait(node: Node) -> None:
    async with node.lock:
        pass


def _check_rename(ov: Overlay, src: Node | None, dst: Node | None, flags: int) -> None:
    """The kernel's order: what the VFS checks (existence, flags, types), then EXDEV for a
    directory that cannot move, then emptiness of a directory replaced."""
    if src is None:
        raise FileNotFoundError(errno.ENOENT, "no such entry")
    if flags & RENAME_NOREPLACE and dst is not None:
        raise FileExistsError(errno.EEXIST, "exists")
    exchange = bool(flags & RENAME_EXCHANGE)
    if exchange and dst is None:
        raise FileNotFoundError(errno.ENOENT, "no such entry")
    replaced = dst if dst is not None and dst is not src and not exchange else None
    if replaced is not None:
        if src.is_dir and not replaced.is_dir:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory")
        if replaced.is_dir and not src.is_dir:
            raise IsADirectoryError(errno.EISDIR, "is a directory")
    for node in (src, dst) if exchange else (src,):
        if node.is_dir and node.lowers and not ov.redirect_dir:
            raise OSError(errno.EXDEV, "a merged or lower directory cannot move")
    if replaced is not None and replaced.is_dir and not is_empty(ov, replaced):
        raise OSError(errno.ENOTEMPTY, "directory not empty")


def _redirect(ov: Overlay, node: Node, parent: Node, name: bytes,
              to: Node) -> tuple[bytes, ...] | None:
    """A merged or lower directory (copied up: the dir alone) about to move from parent/name
    into TO: its redirect xattr says where its lower dirs are, as the kernel's
    ovl_set_redirect writes it: its old name when it stays in its dir, else the absolute
    path from the root, made of the names (or relative redirects) of the dirs above; one it
    has already is kept when it stays in its dir or is absolute. Returns the Node.lpaths it
    has once moved (its lower paths stay where they are); a dir with no lower: its own."""
    if not node.is_dir or not node.lowers:
        return node.lpaths
    upper = ov.writable
    path = parent.child_path(name)
    lpaths = ov.lower_paths(node)
    moved = tuple(path if lpaths is None else lpaths[i] for i in node.lowers)
    samedir = parent is to
    have = upper.try_getxattr(path, markers.REDIRECT)
    if have is not None and (samedir or have.startswith(b"/")):
        return moved
    if samedir:
        value = name
    else:
        parts = [name if have is None else have]
        at = parent
        while at.ino != ROOT and not parts[-1].startswith(b"/"):
            up, up_name = at.aliases[0]
            parts.append(upper.try_getxattr(at.path(), markers.REDIRECT) or up_name)
            at = up
        value = b"/".join(reversed(parts))
        if not value.startswith(b"/"):
            value = b"/" + value
    ov.note_redirects()
    with upper.granted(path, stat.S_IWUSR):  # the kernel marks a chmod-000 dir too
        upper.setxattr(path, markers.REDIRECT, value)
    return moved


def _opaque_if_merged(upper: UpperLayer, node: Node, parent: Node) -> None:
    """A directory with no lower (others get a redirect) that lands in a merged directory is
    made opaque, so a lower directory of that name can never show through (the kernel's
    rule)."""
    if node.is_dir and not node.opaque and parent.lowers and not node.lowers:
        path = node.path()
        with upper.granted(path, stat.S_IWUSR):  # the kernel marks a chmod-000 dir too
            upper.setxattr(path, markers.OPAQUE, b"y")
        node.opaque = True

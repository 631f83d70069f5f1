"""The pyfuse3 request handlers: thin glue to the overlay modules, alphabetical.

This is the only place that speaks pyfuse3 request types and the only place lookup counts are
taken: once per entry the kernel receives (lookup, create, mkdir, mknod, symlink, link, and each
readdirplus entry that fits).
"""
from __future__ import annotations

import errno
import os

import pyfuse3

from . import attrs, dirops
from .config import MountConfig
from .errors import fuse_op
from .files import Handles
from .overlay import Overlay
from .readdir import DirHandles


class CowOperations(pyfuse3.Operations):
    supports_dot_lookup = False

    def __init__(self, cfg: MountConfig):
        super().__init__()
        os.umask(0)  # the kernel has applied the caller's umask already
        self.ov = Overlay(cfg)
        self.ov.attrs_changed = self._invalidate_attrs
        self.table = self.ov.table
        self.files = Handles(self.ov)
        self.dirs = DirHandles(self.ov)

    @staticmethod
    def _invalidate_attrs(node) -> None:
        if node.nlookup:
            try:
                pyfuse3.invalidate_inode(node.ino, attr_only=True)
            except OSError:
                pass  # the kernel dropped it meanwhile: nothing cached

    def _entry(self, node) -> pyfuse3.EntryAttributes:
        a = self.ov.attrs(node)
        self.table.ref(node)
        return a

    @fuse_op
    async def access(self, inode, mode, ctx):
        groups = pyfuse3.get_sup_groups(ctx.pid) | {ctx.gid}
        return attrs.access(self.ov, self.table[inode], mode, ctx.uid, groups)

    @fuse_op
    async def create(self, parent_inode, name, mode, flags, ctx):
        node, fd = dirops.create_file(self.ov, self.table[parent_inode], name, mode, flags,
                                      dirops.Creds(ctx.uid, ctx.gid))
        h = self.files.add(node, fd)
        return pyfuse3.FileInfo(fh=h.fh, keep_cache=True), self._entry(node)

    @fuse_op
    async def forget(self, inode_list):
        for inode, n in inode_list:
            self.table.forget(inode, n)
        self.table.forgotten()

    @fuse_op
    async def fsync(self, fh, datasync):
        await self.files.fsync(fh, datasync)

    @fuse_op
    async def fsyncdir(self, fh, datasync):
        # Directory changes are renames and creates the underlying fs orders itself: nothing
        # to do. ENOSYS says so once for all: the kernel answers this and every later
        # fsync(2) of a directory with success itself, without a request.
        raise pyfuse3.FUSEError(errno.ENOSYS)

    @fuse_op
    async def getattr(self, inode, ctx):
        return self.ov.getattr(self.table[inode])

    @fuse_op
    async def getxattr(self, inode, name, ctx):
        return attrs.getxattr(self.ov, self.table[inode], name)

    @fuse_op
    async def link(self, inode, new_parent_inode, new_name, ctx):
        node = await dirops.link(self.ov, self.table[inode], self.table[new_parent_inode],
                                 new_name)
        return self._entry(node)

    @fuse_op
    async def listxattr(self, inode, ctx):
        return attrs.listxattr(self.ov, self.table[inode])

    @fuse_op
    async def lookup(self, parent_inode, name, ctx):
        try:
            node, a = self.ov.lookup_attrs(self.table[parent_inode], name)
        except FileNotFoundError:
            return self.ov.negative_entry()
        node.nlookup += 1
        return a

    @fuse_op
    async def mkdir(self, parent_inode, name, mode, ctx):
        return self._entry(dirops.mkdir(self.ov, self.table[parent_inode], name, mode,
                                        dirops.Creds(ctx.uid, ctx.gid)))

    @fuse_op
    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        return self._entry(dirops.mknod(self.ov, self.table[parent_inode], name, mode, rdev,
                                        dirops.Creds(ctx.uid, ctx.gid)))

    @fuse_op
    async def open(self, inode, flags, ctx):
        h = await self.files.open(self.table[inode], flags)
        # the page cache stays valid across opens: every change to the data comes through it
        return pyfuse3.FileInfo(fh=h.fh, keep_cache=True)

    @fuse_op
    async def opendir(self, inode, ctx):
        return self.dirs.open(self.table[inode]).fh

    @fuse_op
    async def read(self, fh, off, size):
        return self.files.read(fh, off, size)

    @fuse_op
    async def readdir(self, fh, start_id, token):
        reply = pyfuse3.readdir_reply
        for i, name, attrs, node in self.dirs.entries(fh, start_id):
            if not reply(token, name, attrs, i + 1):
                if node is not None:
                    self.table.maybe_drop(node)  # attached for nothing: the kernel has not got it
                break
            if node is not None:
                node.nlookup += 1

    @fuse_op
    async def readlink(self, inode, ctx):
        node = self.table[inode]
        return self.ov.layer_of(node).readlink(self.ov.path_of(node))

    @fuse_op
    async def release(self, fh):
        self.files.release(fh)

    @fuse_op
    async def releasedir(self, fh):
        self.dirs.release(fh)

    @fuse_op
    async def removexattr(self, inode, name, ctx):
        await attrs.removexattr(self.ov, self.table[inode], name)

    @fuse_op
    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        await dirops.rename(self.ov, self.table[parent_inode_old], name_old,
                            self.table[parent_inode_new], name_new, flags)

    @fuse_op
    async def rmdir(self, parent_inode, name, ctx):
        await dirops.rmdir(self.ov, self.table[parent_inode], name)

    @fuse_op
    async def setattr(self, inode, attr, fields, fh, ctx):
        handle = self.files[fh] if fh is not None else None
        node = self.table[inode]
        return self.ov.attrs(node, await attrs.apply_setattr(self.ov, node, attr, fields, handle))

    @fuse_op
    async def setxattr(self, inode, name, value, ctx):
        await attrs.setxattr(self.ov, self.table[inode], name, value)

    @fuse_op
    async def statfs(self, ctx):
        return attrs.statfs(self.ov)

    @fuse_op
    async def symlink(self, parent_inode, name, target, ctx):
        return self._entry(dirops.symlink(self.ov, self.table[parent_inode], name, target,
                                          dirops.Creds(ctx.uid, ctx.gid)))

    @fuse_op
    async def unlink(self, parent_inode, name, ctx):
        await dirops.unlink(self.ov, self.table[parent_inode], name)

    @fuse_op
    async def write(self, fh, off, buf):
        return self.files.write(fh, off, buf)

"""The trivial pyfuse3 filesystem of bench/perreq.py: the floor a pyfuse3+trio daemon costs per request.

    python bench/trivialfs.py [--debug] LOWER MOUNTPOINT

Serves a copy of LOWER's tree held in memory: names and attributes are read once at startup,
every handler answers from dicts, and changes (create, mkdir, unlink, rename, chmod) stay in
memory. File data is read from LOWER's files (os.pread on a descriptor opened by `open`), so a
cold read pays the disk as an overlay does. Replies carry what cowfs's do: entry and attribute
timeouts of a day, cached negative lookups, keep_cache on open; the same mount options
(default_permissions, fsname, subtype). No flush, getxattr or access handler (ENOSYS: the
kernel stops asking). --debug adds libfuse's per-request trace on stderr (for counting).
Runs in the foreground until unmounted (fusermount3 -u).
"""
import errno
import os
import stat
import sys

import pyfuse3
import trio

TIMEOUT = 86400.0
STAT_FIELDS = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_rdev", "st_size", "st_blksize",
               "st_blocks", "st_atime_ns", "st_mtime_ns", "st_ctime_ns")


class Node:
    __slots__ = ("attr", "children", "path", "listing")

    def __init__(self, attr, path=None):
        self.attr, self.path = attr, path
        self.children = {} if stat.S_ISDIR(attr.st_mode) else None
        self.listing = None  # a directory's sorted (name, ino), built on first readdir


class Trivial(pyfuse3.Operations):
    def __init__(self, lower):
        super().__init__()
        self.nodes, self.next_ino = {}, pyfuse3.ROOT_INODE
        self.negative = pyfuse3.EntryAttributes()
        self.negative.st_ino, self.negative.entry_timeout = 0, TIMEOUT
        self._scan(os.fsencode(lower))

    def _new(self, fields, path=None):
        a = pyfuse3.EntryAttributes()
        a.st_ino, a.generation = self.next_ino, 0
        a.entry_timeout = a.attr_timeout = TIMEOUT
        for f, v in fields.items():
            setattr(a, f, v)
        self.nodes[self.next_ino] = Node(a, path)
        self.next_ino += 1
        return a.st_ino

    def _scan(self, path):
        st = os.lstat(path)
        ino = self._new({f: getattr(st, f) for f in STAT_FIELDS}, path)
        node = self.nodes[ino]
        if node.children is not None:
            with os.scandir(path) as it:
                for e in it:
                    node.children[os.fsencode(e.name)] = self._scan(e.path)
        return ino

    def _made(self, parent, name, mode, ctx):
        node = self.nodes[parent]
        if name in node.children:
            raise pyfuse3.FUSEError(errno.EEXIST)
        t = node.attr.st_mtime_ns
        ino = self._new({"st_mode": mode, "st_nlink": 2 if stat.S_ISDIR(mode) else 1,
                         "st_uid": ctx.uid, "st_gid": ctx.gid, "st_blksize": 4096,
                         "st_atime_ns": t, "st_mtime_ns": t, "st_ctime_ns": t})
        node.children[name] = ino
        node.listing = None
        return ino

    async def lookup(self, parent_inode, name, ctx=None):
        ino = self.nodes[parent_inode].children.get(name)
        return self.negative if ino is None else self.nodes[ino].attr

    async def getattr(self, inode, ctx=None):
        return self.nodes[inode].attr

    async def setattr(self, inode, attr, fields, fh, ctx):
        a = self.nodes[inode].attr
        if fields.update_mode:
            a.st_mode = (a.st_mode & ~0o7777) | (attr.st_mode & 0o7777)
        if fields.update_uid:
            a.st_uid = attr.st_uid
        if fields.update_gid:
            a.st_gid = attr.st_gid
        if fields.update_size:
            a.st_size = attr.st_size
        if fields.update_atime:
            a.st_atime_ns = attr.st_atime_ns
        if fields.update_mtime:
            a.st_mtime_ns = attr.st_mtime_ns
        return a

    async def opendir(self, inode, ctx):
        return inode

    async def readdir(self, fh, start_id, token):
        node = self.nodes[fh]
        if node.listing is None:
            node.listing = sorted(node.children.items())
        ents = node.listing
        for i in range(start_id, len(ents)):
            name, ino = ents[i]
            if not pyfuse3.readdir_reply(token, name, self.nodes[ino].attr, i + 1):
                return

    async def open(self, inode, flags, ctx):
        path = self.nodes[inode].path
        fd = os.open(path, os.O_RDONLY) if path is not None else 0  # 0: in memory, empty
        return pyfuse3.FileInfo(fh=fd, keep_cache=True)

    async def read(self, fh, off, size):
        return os.pread(fh, size, off) if fh else b""

    async def write(self, fh, off, buf):
        return len(buf)

    async def release(self, fh):
        if fh:
            os.close(fh)

    async def create(self, parent_inode, name, mode, flags, ctx):
        ino = self._made(parent_inode, name, mode, ctx)
        return pyfuse3.FileInfo(fh=0, keep_cache=True), self.nodes[ino].attr

    async def mkdir(self, parent_inode, name, mode, ctx):
        return self.nodes[self._made(parent_inode, name, mode | stat.S_IFDIR, ctx)].attr

    async def _remove(self, parent_inode, name):
        node = self.nodes[parent_inode]
        if node.children.pop(name, None) is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        node.listing = None

    async def unlink(self, parent_inode, name, ctx):
        await self._remove(parent_inode, name)

    async def rmdir(self, parent_inode, name, ctx):
        await self._remove(parent_inode, name)

    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        old, new = self.nodes[parent_inode_old], self.nodes[parent_inode_new]
        ino = old.children.pop(name_old, None)
        if ino is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        new.children[name_new] = ino
        old.listing = new.listing = None


def main(argv):
    debug = argv[:1] == ["--debug"]
    lower, mnt = argv[debug:]
    opts = {"default_permissions", "fsname=trivial", "subtype=trivial"}
    if debug:
        opts.add("debug")
    pyfuse3.init(Trivial(lower), mnt, opts)
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Open files: the handle table, and data I/O on the real file behind each handle."""
from __future__ import annotations

import itertools
import os

import trio

from .copyup import copy_up
from .inodes import Node
from .overlay import Overlay

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC
# the kernel has handled these by the time open reaches us; O_DIRECT is the kernel's business
# too (our buffers are not aligned for the real file)
DROP_FLAGS = os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_DIRECT


class FileHandle:
    __slots__ = ("fh", "node", "fd", "upper", "touch")

    def __init__(self, fh: int, node: Node, fd: int | None, upper: bool):
        self.fh = fh
        self.node = node
        self.fd = fd
        self.upper = upper
        # a metacopy file's upper, read with its lower data so that its atime moves as the
        # kernel's overlay moves it (it touches the upper inode); None otherwise
        self.touch: int | None = None


class Handles:
    def __init__(self, ov: Overlay):
        self.ov = ov
        self.by_fh: dict[int, FileHandle] = {}
        self._next = itertools.count(1)

    def __getitem__(self, fh: int) -> FileHandle:
        return self.by_fh[fh]

    def add(self, node: Node, fd: int | None, upper: bool = True) -> FileHandle:
        h = FileHandle(next(self._next), node, fd, upper)
        self.by_fh[h.fh] = h
        node.add_handle(h)
        return h

    async def open(self, node: Node, flags: int) -> FileHandle:
        flags &= ~DROP_FLAGS
        if flags & _WRITE_FLAGS or (flags & os.O_ACCMODE) != os.O_RDONLY:
            await copy_up(self.ov, node, data=not flags & os.O_TRUNC)
        path = self.ov.path_of(node)
        if node.data is not None:  # a metacopy file, read: its lower's data
            index, src = node.data
            h = self.add(node, self.ov.lowers[index].open_read(src), upper=False)
            try:
                h.touch = self.ov.upper.open(path, os.O_RDONLY)
            except PermissionError:
                pass  # mode 0: the daemon may not read it either (the atime stays)
            return h
        if node.upper:
            return self.add(node, self.ov.upper.open(path, flags))
        return self.add(node, self.ov.layer_of(node).open_read(path), upper=False)

    def release(self, fh: int) -> None:
        h = self.by_fh.pop(fh)
        h.node.drop_handle(h)
        if h.fd is not None:
            os.close(h.fd)
        if h.touch is not None:
            os.close(h.touch)
        self.ov.table.maybe_drop(h.node)

    def read(self, fh: int, off: int, size: int) -> bytes:
        h = self.by_fh[fh]
        if h.touch is not None:
            os.pread(h.touch, 1, 0)  # a hole: no I/O, only the atime (relatime rules)
        return os.pread(h.fd, size, off)

    def write(self, fh: int, off: int, buf: bytes) -> int:
        return os.pwrite(self.by_fh[fh].fd, buf, off)

    async def fsync(self, fh: int, datasync: bool) -> None:
        fd = self.by_fh[fh].fd
        await trio.to_thread.run_sync(os.fdatasync if datasync else os.fsync, fd)

"""The origins of copied-up symlinks and special files, kept across mounts.

A copied-up regular file carries its origin's key in the ORIGIN xattr, so its st_ino survives a
remount. A symlink, fifo, socket or device cannot carry a user.* xattr: their origins are kept
in WORK/cowfs-origins, next to the scratch dir WORK/work (which the kernel and cowfs clear at
mount; neither touches anything else in WORK, and fsck does not look there). The file is a log,
one record a line, appended with one write, after a first line naming the upper it is for:

    =INO          the inode number of the upper dir (another upper: the file is ignored)
    +INO HEX      the upper object with inode number INO has the origin key HEX (hex)
    -INO          it went away (its number may be reused)

Read at mount, later records winning; a torn or malformed line is skipped. It is rewritten
compacted (in WORK/work, fsynced, renamed over) when it holds many more records than live
entries. Records are not fsynced: a crash may lose the last ones, and those objects then show
their upper inode's number, as the kernel does. The file is made with the first record.
"""
from __future__ import annotations

import logging
import os

from .config import ORIGINS_FILE

log = logging.getLogger(__name__)


class OriginMap:
    def __init__(self, work: str, work_fd: int, upper_ino: int):
        self.path = os.path.join(work, ORIGINS_FILE)
        self.header = b"=%d\n" % upper_ino
        self.work_fd = work_fd  # WORK/work: where the compacted copy is written
        self.fd: int | None = None
        self.live = 0
        self.records = 0

    def load(self) -> dict[int, bytes]:
        """Upper inode number -> origin key, as the records leave it."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return {}
        except OSError as e:
            log.warning("%s: not read (%s): copied-up symlinks and special files get new "
                        "inode numbers", self.path, e)
            return {}
        found: dict[int, bytes] = {}
        if data and not data.startswith(self.header):
            log.warning("%s: made for another upper dir: ignored", self.path)
            self._rewrite(found)
            return found
        lines = data.split(b"\n")[1:-1]  # the header; the last is torn, or empty
        for line in lines:
            try:
                if line[:1] == b"+":
                    ino, origin = line[1:].split(b" ")
                    found[int(ino)] = bytes.fromhex(origin.decode())
                elif line[:1] == b"-":
                    found.pop(int(line[1:]), None)
            except ValueError:
                continue
        self.live, self.records = len(found), len(lines)
        if self.records > 2 * self.live + 64 or len(data) and not data.endswith(b"\n"):
            self._rewrite(found)
        return found

    def _rewrite(self, found: dict[int, bytes]) -> None:
        tmp = "#cowfs-origins-%d" % os.getpid()
        body = self.header + b"".join(
            b"+%d %s\n" % (ino, o.hex().encode()) for ino, o in found.items())
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600,
                         dir_fd=self.work_fd)
            try:
                os.write(fd, body)  # one write: a regular file takes it whole or fails
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.path, src_dir_fd=self.work_fd)
        except OSError as e:
            log.warning("%s: not compacted: %s", self.path, e)
            return
        self.records = self.live = len(found)

    def add(self, ino: int, origin: bytes) -> None:
        self._append(b"+%d %s\n" % (ino, origin.hex().encode()))
        self.live += 1

    def drop(self, ino: int) -> None:
        self._append(b"-%d\n" % ino)
        self.live -= 1

    def _append(self, record: bytes) -> None:
        try:
            if self.fd is None:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                             0o600)
                if os.fstat(fd).st_size == 0:
                    os.write(fd, self.header)
                self.fd = fd
            os.write(self.fd, record)
        except OSError as e:  # the change itself is made: only the number is not kept
            log.warning("%s: record not written (%s): %r", self.path, e, record)
            return
        self.records += 1

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

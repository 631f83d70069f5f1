#!/usr/bin/env python3
"""One worker of the concurrency test (tests/test_concurrency.py), and the final-tree verifier.

Usage:
    python3 concworker.py run ROOT --wid W0 --seed N --seconds S [--start-at EPOCH] [--log F]
    python3 concworker.py verify ROOT

Stdlib only: the test runs several of these at once as the unprivileged test user on one mount
(a cowfs mount without allow_other serves only that user), the same workload on a kernel
overlay mount, and compares.

Every regular file the workload makes is a self-describing VERSION: a 64-byte header
"COWV <writer> <seq> <body length> <blake2b-64 of the body>" (space padded, "\\n" last) and the
body. A file that is anything else (a mix of two versions, a half copy-up, zeros) fails
validation. Files in the lowers and the upper are versions of writers "L" and "U".

Whole-file writes of the named files (FILE_PATHS) are made atomic for readers in three ways:
  replace   write a private temp file (O_CREAT|O_EXCL), rename(2) it over the name
  create    write a private temp file, link(2) it to the name (EEXIST if taken), unlink the temp
  inplace   open O_RDWR, flock(LOCK_EX), ftruncate + pwrite (or + a MAP_SHARED mapping, msync),
            unlock: readers of named files take flock(LOCK_SH), so they see whole versions only
The big lower files (BIG) never change content: several workers trigger their copy-up at once
(pwrite of the same header bytes, truncate to the same size, chmod, setxattr, link, rename away
and back) while others read them WITHOUT a lock: a reader must see the whole lower version
before, during and after the copy-up, never a half copy. START_BIG are copied up by the first
ops of every worker at once; the others whenever the random ops get to them.
Namespace ops run on overlapping paths: rename (files over files, directories over
directories), unlink, link, mkdir, rmdir, chmod, setxattr/getxattr/listxattr/removexattr, stat,
listdir. The first ops, at --start-at, are the simultaneous big-file copy-ups and reads.

`run` prints one JSON object: {"wid", "ops", "counts": {op: n}, "errnos": {syscall label:
{ERRNO: n}}, "versions": [[writer, seq, length, sha]...] (every version it wrote), "failures":
[...] (integrity violations it saw)}. Every syscall failure is counted under a label naming the
syscall and the kind of object (rename_file, rename_dir, open_rdwr, ...); none aborts the worker.
`verify` prints {path: [writer, seq, length, sha] | {"invalid": why}} for every regular file.
"""
from __future__ import annotations

import argparse
import collections
import errno
import fcntl
import hashlib
import json
import mmap
import os
import random
import stat
import sys
import time

HEADER = 64
STATIC_DIRS = ["a", "a/x", "b", "n", "big"]  # never removed: a, a/x, b, big lower; n upper
DYN_DIRS = ["a/d0", "a/d1", "b/d2", "n/d3", "n/d4", "a/x/d5"]  # mkdir/rmdir/rename among these
FILE_DIRS = ["a", "a/x", "b", "n", "a/d0", "b/d2", "n/d3"]
FILE_PATHS = [f"{d}/f{i}" for d in FILE_DIRS for i in range(4)]
# big lower files: path -> (random body bytes, zero tail bytes: a sparse tail in the lower)
BIG = {"big/big1": (6 << 20, 0), "big/big2": (4 << 20, 0), "big/big3": (1 << 20, 4 << 20),
       "big/big4": (3 << 20, 0), "big/big5": (2 << 20, 2 << 20)}
START_BIG = ["big/big1", "big/big2", "big/big3"]  # copied up by the simultaneous first ops
LOWER_FILES = [f"{d}/f{i}" for d in ("a", "a/x", "b", "a/d0") for i in range(4)] + ["b/d2/f0"]
UPPER_FILES = ["n/f0", "n/f1", "n/d3/f0"]

WEIGHTS = {
    "replace": 10, "inplace": 7, "mapwrite": 4, "create": 4, "read": 12, "mapread": 5,
    "readbig": 3, "touchbig": 3, "rename_file": 6, "unlink": 4, "link": 3, "mkdir": 3,
    "rmdir": 3, "rename_dir": 3, "chmod": 3, "setxattr": 3, "getxattr": 2, "removexattr": 1,
    "stat": 3, "listdir": 3,
}


class Invalid(Exception):
    pass


FAIL = object()  # what Worker.call returns for a failed syscall


def body_of(writer: str, seq: int, size: int, zero_tail: int = 0) -> bytes:
    return random.Random(f"{writer}:{seq}").randbytes(size - zero_tail) + bytes(zero_tail)


def make_version(writer: str, seq: int, size: int, zero_tail: int = 0) -> tuple[bytes, list]:
    body = body_of(writer, seq, size, zero_tail)
    sha = hashlib.blake2b(body, digest_size=8).hexdigest()
    head = f"COWV {writer} {seq} {size} {sha}".encode()
    assert len(head) < HEADER
    return head.ljust(HEADER - 1) + b"\n" + body, [writer, seq, size, sha]


def validate(data: bytes) -> list:
    """[writer, seq, length, sha] of a whole version; raises Invalid otherwise."""
    if len(data) < HEADER:
        raise Invalid(f"{len(data)} bytes: shorter than a header "
                      f"({'all zero' if not any(data) else data[:32]!r})")
    head = data[:HEADER]
    try:
        magic, writer, seq, size, sha = head.decode("ascii").split()
        if magic != "COWV":
            raise ValueError
        seq, size = int(seq), int(size)
    except ValueError:
        raise Invalid(f"bad header {head[:40]!r}") from None
    if len(data) != HEADER + size:
        raise Invalid(f"version {writer}/{seq} should have {HEADER + size} bytes, has "
                      f"{len(data)}")
    if hashlib.blake2b(data[HEADER:], digest_size=8).hexdigest() != sha:
        want = body_of(writer, seq, size, BIG_ZERO_TAIL.get((writer, seq), 0))
        bad = next((i for i in range(size) if data[HEADER + i] != want[i]), None)
        raise Invalid(f"version {writer}/{seq}: body checksum mismatch, first wrong byte at "
                      f"offset {HEADER + bad if bad is not None else '?'}")
    return [writer, seq, size, sha]


def initial_versions() -> dict[str, tuple[bytes, int | None, list]]:
    """path -> (data, size for a sparse tail or None, version) of every file of the layers."""
    out = {}
    for i, p in enumerate(sorted(BIG)):
        size, tail = BIG[p]
        data, v = make_version("L", 1000 + i, size + tail, tail)
        out[p] = (data[:HEADER + size], HEADER + size + tail, v) if tail else (data, None, v)
    for i, p in enumerate(LOWER_FILES):
        data, v = make_version("L", i, 100 + 997 * i)
        out[p] = (data, None, v)
    for i, p in enumerate(UPPER_FILES):
        data, v = make_version("U", i, 50 + 1999 * i)
        out[p] = (data, None, v)
    return out


BIG_ZERO_TAIL = {("L", 1000 + i): BIG[p][1] for i, p in enumerate(sorted(BIG))}


def lower_spec() -> dict:
    """{path: (data, size)} of the lower files (directories implied), for the harness."""
    init = initial_versions()
    spec = {p: init[p][:2] for p in [*BIG, *LOWER_FILES]}
    return spec


def upper_spec() -> dict:
    init = initial_versions()
    return {p: init[p][:2] for p in UPPER_FILES}


def read_all(fd: int) -> bytes:
    chunks = []
    pos = 0
    while True:
        b = os.pread(fd, 1 << 20, pos)
        if not b:
            return b"".join(chunks)
        chunks.append(b)
        pos += len(b)


class Worker:
    def __init__(self, root: str, wid: str, seed: int, log_fd: int | None):
        self.root = root
        self.wid = wid
        self.rng = random.Random(seed)
        self.seq = 0
        self.counts: collections.Counter[str] = collections.Counter()
        self.errnos: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter)
        self.versions: list[list] = []
        self.failures: list[str] = []
        self.log_fd = log_fd
        self.names = sorted(WEIGHTS)
        self.weights = [WEIGHTS[n] for n in self.names]

    def p(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def note(self, msg: str) -> None:
        if self.log_fd is not None:
            os.write(self.log_fd, f"{time.monotonic():.6f} {self.wid} {msg}\n".encode())

    def call(self, label: str, fn, *args):
        """fn(*args), or FAIL after counting its errno under LABEL."""
        try:
            return fn(*args)
        except OSError as e:
            name = errno.errorcode.get(e.errno, str(e.errno))
            self.errnos[label][name] += 1
            shown = tuple(a.replace(self.root + "/", "") if isinstance(a, str) else a
                          for a in args if not isinstance(a, bytes))
            self.note(f"  {label}{shown!r}: {name}")
            return FAIL

    def fail(self, msg: str) -> None:
        self.note(f"FAILURE {msg}")
        if len(self.failures) < 20:
            self.failures.append(f"{self.wid}: {msg}")

    def new_version(self) -> tuple[bytes, list]:
        self.seq += 1
        r = self.rng.random()
        size = (self.rng.randint(0, 4096) if r < 0.7 else self.rng.randint(4096, 262144)
                if r < 0.95 else self.rng.randint(262144, 1536 * 1024))
        data, v = make_version(self.wid, self.seq, size)
        self.versions.append(v)
        return data, v

    def file(self) -> str:
        return self.rng.choice(FILE_PATHS)

    def write_temp(self, d: str) -> str | None:
        """A private temp file in D holding a new version (None if D is gone)."""
        data, v = self.new_version()
        tmp = f"{d}/.t-{self.wid}-{self.seq}"
        fd = self.call("open_create_excl", os.open, self.p(tmp),
                       os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        if fd is FAIL:
            return None
        try:
            n = self.call("write", os.write, fd, data)
            if n is not FAIL and n != len(data):
                self.fail(f"short write {n} of {len(data)} to {tmp}")
            if self.rng.random() < 0.05:
                self.call("fsync", os.fsync, fd)
        finally:
            os.close(fd)
        return tmp

    # --- writes -------------------------------------------------------------------------------
    def op_replace(self) -> None:
        target = self.file()
        tmp = self.write_temp(os.path.dirname(target))
        if tmp is None:
            return
        self.note(f"replace {tmp} -> {target}")
        if self.call("rename_file", os.rename, self.p(tmp), self.p(target)) is FAIL:
            self.call("unlink_tmp", os.unlink, self.p(tmp))

    def op_create(self) -> None:
        target = self.file()
        tmp = self.write_temp(os.path.dirname(target))
        if tmp is None:
            return
        self.note(f"create {tmp} -> link {target}")
        self.call("link", os.link, self.p(tmp), self.p(target))
        self.call("unlink_tmp", os.unlink, self.p(tmp))

    def _inplace(self, use_map: bool) -> None:
        target = self.file()
        fd = self.call("open_rdwr", os.open, self.p(target), os.O_RDWR | os.O_CLOEXEC)
        if fd is FAIL:
            return
        try:
            if self.call("flock", fcntl.flock, fd, fcntl.LOCK_EX) is FAIL:
                return
            data, v = self.new_version()
            self.note(f"{'mapwrite' if use_map else 'inplace'} {target} {v[:3]}")
            if self.call("ftruncate", os.ftruncate, fd, len(data)) is FAIL:
                return
            if use_map:
                with mmap.mmap(fd, len(data), mmap.MAP_SHARED,
                               mmap.PROT_READ | mmap.PROT_WRITE) as m:
                    m[:] = data
                    m.flush()
            else:
                n = self.call("pwrite", os.pwrite, fd, data, 0)
                if n is not FAIL and n != len(data):
                    self.fail(f"short pwrite {n} of {len(data)} to {target}")
            if self.rng.random() < 0.05:
                self.call("fsync", os.fsync, fd)
        finally:
            os.close(fd)  # also drops the lock

    def op_inplace(self) -> None:
        self._inplace(False)

    def op_mapwrite(self) -> None:
        self._inplace(True)

    # --- reads --------------------------------------------------------------------------------
    def _read(self, path: str, use_map: bool, lock: bool) -> None:
        fd = self.call("open_rdonly", os.open, self.p(path), os.O_RDONLY | os.O_CLOEXEC)
        if fd is FAIL:
            return
        try:
            if lock and self.call("flock", fcntl.flock, fd, fcntl.LOCK_SH) is FAIL:
                return
            what = f"{'mapread' if use_map else 'read'} {path}{'' if lock else ' (unlocked)'}"
            if use_map:
                size = os.fstat(fd).st_size
                if size == 0:
                    return self.fail(f"{what}: fstat says 0 bytes; {self.describe(fd, path)}")
                with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ) as m:
                    data = m[:]
            else:
                data = self.call("read", read_all, fd)
                if data is FAIL:
                    return
            try:
                v = validate(data)
                self.note(f"{'mapread' if use_map else 'read'} {path}: {v[:3]}")
            except Invalid as e:
                self.fail(f"{what}: {e}; {self.describe(fd, path)}")
        finally:
            os.close(fd)

    def describe(self, fd: int, path: str) -> str:
        """What the descriptor and the path show now, and 0.2 s later (for the report)."""
        out = []
        for when in ("now", "0.2 s later"):
            if when != "now":
                time.sleep(0.2)
            parts = []
            try:
                st = os.fstat(fd)
                parts.append(f"fstat ino {st.st_ino} size {st.st_size} nlink {st.st_nlink}")
                data = read_all(fd)
                try:
                    parts.append(f"read {validate(data)[:3]}")
                except Invalid as e:
                    parts.append(f"read: {e}")
            except OSError as e:
                parts.append(f"fd: {errno.errorcode.get(e.errno, e.errno)}")
            try:
                st = os.stat(self.p(path))
                parts.append(f"stat(path) ino {st.st_ino} size {st.st_size} nlink {st.st_nlink}")
            except OSError as e:
                parts.append(f"stat(path): {errno.errorcode.get(e.errno, e.errno)}")
            out.append(f"{when}: " + ", ".join(parts))
        return "; ".join(out)

    def op_read(self) -> None:
        self._read(self.file(), False, True)

    def op_mapread(self) -> None:
        self._read(self.file(), True, True)

    def op_readbig(self, path: str | None = None) -> None:
        self._read(path or self.rng.choice(sorted(BIG)), self.rng.random() < 0.3, False)

    def op_touchbig(self, path: str | None = None, how: str | None = None) -> None:
        path = path or self.rng.choice(sorted(BIG))
        how = how or self.rng.choice(["pwrite", "pwrite", "truncate", "chmod", "setxattr",
                                      "link", "rename"])
        full = self.p(path)
        self.note(f"touchbig {path} {how}")
        if how == "pwrite":
            fd = self.call("open_rdwr", os.open, full, os.O_RDWR | os.O_CLOEXEC)
            if fd is FAIL:
                return
            try:
                head = self.call("read", os.pread, fd, HEADER, 0)
                if head is not FAIL:
                    self.call("pwrite", os.pwrite, fd, head, 0)  # the same bytes
            finally:
                os.close(fd)
        elif how == "truncate":
            size, tail = BIG[path]
            self.call("truncate", os.truncate, full, HEADER + size + tail)
        elif how == "chmod":
            self.call("chmod_file", os.chmod, full, self.rng.choice([0o644, 0o664]))
        elif how == "setxattr":
            self.call("setxattr_file", os.setxattr, full, f"user.{self.wid}", b"t")
        elif how == "link":
            name = f"{path}.l-{self.wid}"
            if self.call("link", os.link, full, self.p(name)) is not FAIL:
                self._read(name, False, False)
                self.call("unlink", os.unlink, self.p(name))
        else:  # away and back: readers meanwhile get ENOENT, never a partial file
            name = f"{path}.r-{self.wid}"
            if self.call("rename_file", os.rename, full, self.p(name)) is not FAIL:
                self.call("rename_file", os.rename, self.p(name), full)

    # --- namespace ----------------------------------------------------------------------------
    def op_rename_file(self) -> None:
        a, b = self.file(), self.file()
        self.call("rename_file", os.rename, self.p(a), self.p(b))

    def op_unlink(self) -> None:
        self.call("unlink", os.unlink, self.p(self.file()))

    def op_link(self) -> None:
        self.call("link", os.link, self.p(self.file()), self.p(self.file()))

    def op_mkdir(self) -> None:
        self.call("mkdir", os.mkdir, self.p(self.rng.choice(DYN_DIRS)),
                  self.rng.choice([0o755, 0o775]))

    def op_rmdir(self) -> None:
        self.call("rmdir", os.rmdir, self.p(self.rng.choice(DYN_DIRS)))

    def op_rename_dir(self) -> None:
        a, b = self.rng.choice(DYN_DIRS), self.rng.choice(DYN_DIRS)
        self.call("rename_dir", os.rename, self.p(a), self.p(b))

    def any_path(self) -> tuple[str, str]:
        if self.rng.random() < 0.7:
            return "file", self.file()
        return "dir", self.rng.choice(DYN_DIRS + STATIC_DIRS)

    def op_chmod(self) -> None:
        kind, path = self.any_path()
        mode = self.rng.choice([0o644, 0o664] if kind == "file" else [0o755, 0o775])
        self.call(f"chmod_{kind}", os.chmod, self.p(path), mode)

    def op_setxattr(self) -> None:
        kind, path = self.any_path()
        self.call(f"setxattr_{kind}", os.setxattr, self.p(path),
                  f"user.{self.rng.choice('xyz')}", f"{self.wid}-{self.seq}".encode())

    def op_getxattr(self) -> None:
        kind, path = self.any_path()
        names = self.call(f"listxattr_{kind}", os.listxattr, self.p(path))
        if names is not FAIL and names:
            self.call(f"getxattr_{kind}", os.getxattr, self.p(path), self.rng.choice(names))

    def op_removexattr(self) -> None:
        kind, path = self.any_path()
        self.call(f"removexattr_{kind}", os.removexattr, self.p(path),
                  f"user.{self.rng.choice('xyz')}")

    def op_stat(self) -> None:
        kind, path = self.any_path()
        self.call(f"stat_{kind}", os.stat, self.p(path))

    def op_listdir(self) -> None:
        self.call("listdir", os.listdir, self.p(self.rng.choice(DYN_DIRS + STATIC_DIRS)))

    # --- driver -------------------------------------------------------------------------------
    def run(self, seconds: float, start_at: float | None, index: int) -> int:
        if start_at is not None:
            time.sleep(max(0.0, start_at - time.time()))
        deadline = time.monotonic() + seconds
        n = 0
        # first: simultaneous copy-ups of each big lower file (even workers) while the odd
        # workers read it without a lock
        for path in START_BIG:
            if index % 2 == 0:
                self.counts["touchbig"] += 1
                self.op_touchbig(path, "pwrite")
            else:
                self.counts["readbig"] += 1
                self.op_readbig(path)
            n += 1
        while time.monotonic() < deadline:
            name = self.rng.choices(self.names, self.weights)[0]
            self.counts[name] += 1
            self.note(f"op {name}")
            getattr(self, f"op_{name}")()
            n += 1
        return n


def verify(root: str) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if not stat.S_ISREG(st.st_mode):
                continue
            try:
                with open(full, "rb") as f:
                    out[rel] = validate(f.read())
            except Invalid as e:
                out[rel] = {"invalid": str(e)}
            except OSError as e:
                out[rel] = {"invalid": f"cannot read: {errno.errorcode.get(e.errno, e.errno)}"}
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("cmd", choices=["run", "verify"])
    ap.add_argument("root")
    ap.add_argument("--wid", default="w0")
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--start-at", type=float)
    ap.add_argument("--log")
    a = ap.parse_args(argv)
    if a.cmd == "verify":
        print(json.dumps(verify(a.root)))
        return 0
    log_fd = None
    if a.log:
        log_fd = os.open(a.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    w = Worker(a.root, a.wid, a.seed, log_fd)
    t0 = time.monotonic()
    n = w.run(a.seconds, a.start_at, a.index)
    print(json.dumps({"wid": a.wid, "ops": n, "seconds": round(time.monotonic() - t0, 2),
                      "counts": dict(sorted(w.counts.items())),
                      "errnos": {k: dict(v) for k, v in sorted(w.errnos.items())},
                      "versions": w.versions, "failures": w.failures}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

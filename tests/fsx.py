#!/usr/bin/env python3
"""fsx-style data integrity driver: random I/O on a few files, checked against a model.

Usage: python3 fsx.py ROOT --seed N [--ops N] [--seconds S] [--reopen-every-step] [--populate]
                      [--log FILE]

Stdlib only, so the test user can run it (tests/test_fsx.py copies it next to the harness's op
runner and runs it as that user against a kernel overlay mount and against a cowfs mount). It
runs on any directory: ``--populate`` first creates the files that would come from the lowers
and the upper, so ``python3 tests/fsx.py /tmp/fsx-x --seed 1 --populate`` checks the driver on
a plain filesystem.

The files (FILES below) start in a lower ("lower"), in the upper ("upper") or do not exist yet
("new": created with O_EXCL by the driver). Each has an in-memory model (a bytearray). Every
step picks a file and one operation:

  write      pwrite at a random offset: inside the file, near or at EOF, or far past it (a hole)
  append     write on an O_APPEND descriptor
  pathwrite  open(PATH, O_WRONLY) + pwrite + close (a copy-up by open, for a lower file)
  read       pread on any descriptor, also past EOF
  truncate   ftruncate or truncate(PATH): shrink, extend (sparse), to 0, to the same size
  mapread    MAP_SHARED read mapping of the whole file, random range compared
  mapwrite   MAP_SHARED read/write mapping (the file extended by ftruncate first when the
             range ends past EOF, as fsx does), msync (whole or range) or none, munmap
  fsync      fsync / fdatasync
  dontneed   posix_fadvise(DONTNEED): later reads come from the filesystem, not the page cache
  reopen     close a read/write descriptor and open a new one (sometimes O_TRUNC)
  openro     one more read-only descriptor (kept across later writes)

Several descriptors are open on one file at once (up to three read/write, one O_APPEND, up to
three read-only); each file also has an "early" read-only descriptor opened before anything was
written, so for a lower file before its copy-up: it must see every later write (SEMANTICS.md,
Copy-up). Mappings are only made on read/write descriptors (opened after the copy-up: the
kernel's pre-copy-up mapping is stale by design). With --reopen-every-step every descriptor but
the early one is closed after each step.

After EVERY step: stat(PATH) and fstat(early) give the model's size, and the whole file read
through the early descriptor equals the model (one check in ten first drops the file's clean
cached pages, so it reads what the filesystem has). At the end every descriptor is closed and each
file is read once more through a fresh open.

Written bytes encode their writer: the byte at offset P written by step K is
``(P + 7 * (P >> 8) + 101 * K) & 0xff``, so a wrong byte names (mod 256) the step that wrote it.
Initial contents use K = 0x100 + file index.

Output: on success one JSON line on stdout: {"ops", "seconds", "counts", "files": {name:
{"size", "sha256", "blake2b"}}}. On a mismatch or an unexpected error: exit status 1 and a
report on stdout with the seed, the failing check, the bytes around the first difference and
the op log tail.
The run is a pure function of the seed and the option values: the same command replays it.
"""
from __future__ import annotations

import argparse
import collections
import errno
import faulthandler
import hashlib
import json
import mmap
import os
import random
import sys
import time

MAX_LEN = 1 << 20  # no file grows past this (writes far past EOF stay below it)
PAGE = mmap.PAGESIZE

# name, origin, data bytes at the start, total size (sparse tail) or None
FILES = [
    ("lower_small", "lower", 3000, None),
    ("lower_big", "lower", 200_000, None),
    ("sub/deep/lower_sparse", "lower", 8192, 700_000),
    ("lower_empty", "lower", 0, None),
    ("upper_file", "upper", 50_000, None),
    ("upper_sparse", "upper", 4096, 300_000),
    ("new_a", "new", 0, None),
    ("sub/new_b", "new", 0, None),  # in a lower dir: its parent is copied up by the create
]

WEIGHTS = {
    "write": 20, "append": 4, "pathwrite": 3, "read": 12, "truncate": 8, "mapread": 8,
    "mapwrite": 10, "fsync": 2, "dontneed": 4, "reopen": 5, "openro": 2,
}

_BASE = bytes((p + 7 * (p >> 8)) & 0xff for p in range(MAX_LEN + (1 << 18)))
_SHIFT = [bytes((i + c) & 0xff for i in range(256)) for c in range(256)]
_INV101 = pow(101, -1, 256)


def pattern(off: int, n: int, k: int) -> bytes:
    """The bytes step K writes at [OFF, OFF+N)."""
    return _BASE[off:off + n].translate(_SHIFT[(101 * k) & 0xff])


def writer_of(off: int, value: int) -> int:
    """The step number (mod 256) whose pattern has VALUE at OFF."""
    return ((value - _BASE[off]) * _INV101) & 0xff


def initial_content(index: int) -> bytes:
    name, origin, data_len, size = FILES[index]
    data = pattern(0, data_len, 0x100 + index)
    if size is not None and size > data_len:
        data += bytes(size - data_len)
    return data


def spec(origin: str) -> dict[str, tuple[bytes, int | None]]:
    """{name: (data, size)} of the files starting in ORIGIN ("lower" or "upper")."""
    return {name: (pattern(0, dlen, 0x100 + i), size)
            for i, (name, o, dlen, size) in enumerate(FILES) if o == origin}


class Failure(Exception):
    pass


class FileState:
    def __init__(self, index: int, root: str):
        self.index = index
        self.name, self.origin, _, _ = FILES[index]
        self.path = os.path.join(root, self.name)
        self.model = bytearray(initial_content(index)) if self.origin != "new" else bytearray()
        self.early: int | None = None
        self.rw: list[int] = []
        self.ro: list[int] = []
        self.app: int | None = None

    def all_fds(self) -> list[int]:
        return [fd for fd in [self.early, *self.rw, *self.ro, self.app] if fd is not None]


class Fsx:
    def __init__(self, root: str, seed: int, reopen_every_step: bool,
                 log_fd: int | None = None):
        self.log_fd = log_fd
        self.root = root
        self.seed = seed
        self.rng = random.Random(seed)
        self.reopen_every_step = reopen_every_step
        self.files = [FileState(i, root) for i in range(len(FILES))]
        self.log: collections.deque[str] = collections.deque(maxlen=60)
        self.step = 0
        self.counts: collections.Counter[str] = collections.Counter()
        names = sorted(WEIGHTS)
        self.op_names = names
        self.op_weights = [WEIGHTS[n] for n in names]

    # --- helpers ------------------------------------------------------------------------------
    def note(self, msg: str) -> None:
        line = f"[{self.step}] {msg}"
        self.log.append(line)
        if self.log_fd is not None:  # unbuffered: survives a SIGBUS in a mapping
            os.write(self.log_fd, line.encode() + b"\n")

    def open(self, f: FileState, flags: int, what: str) -> int:
        fd = os.open(f.path, flags | os.O_CLOEXEC, 0o644)
        self.note(f"  open {f.name} {what} -> fd {fd}")
        return fd

    def close(self, f: FileState, fd: int) -> None:
        os.close(fd)
        self.note(f"  close {f.name} fd {fd}")

    def rw_fd(self, f: FileState) -> int:
        if not f.rw:
            f.rw.append(self.open(f, os.O_RDWR, "O_RDWR"))
        return self.rng.choice(f.rw)

    def any_fd(self, f: FileState) -> int:
        return self.rng.choice(f.all_fds())

    def length(self, limit: int) -> int:
        r = self.rng.random()
        top = 16 if r < 0.2 else 4096 if r < 0.6 else 65536 if r < 0.9 else 262144
        return max(1, min(limit, self.rng.randint(1, top)))

    def write_offset(self, size: int) -> int:
        r = self.rng.random()
        if r < 0.5 and size:
            off = self.rng.randrange(size)
        elif r < 0.7:
            off = max(0, size - self.rng.randint(0, 4096))
        elif r < 0.85:
            off = size
        else:  # far past EOF: a hole
            off = size + self.rng.randint(1, max(1, MAX_LEN - size))
        return off if off < MAX_LEN else self.rng.randrange(MAX_LEN)

    def model_write(self, f: FileState, off: int, data: bytes) -> None:
        m = f.model
        if off > len(m):
            m.extend(bytes(off - len(m)))
        m[off:off + len(data)] = data

    def model_truncate(self, f: FileState, size: int) -> None:
        m = f.model
        if size < len(m):
            del m[size:]
        else:
            m.extend(bytes(size - len(m)))

    def pread_all(self, fd: int, size: int) -> bytes:
        chunks, pos = [], 0
        while True:
            b = os.pread(fd, max(size + 1 - pos, 1), pos)
            if not b:
                break
            chunks.append(b)
            pos += len(b)
            if pos > size:
                break
        return b"".join(chunks)

    # --- checks -------------------------------------------------------------------------------
    def compare(self, f: FileState, off: int, got: bytes, want: bytes, what: str) -> None:
        if got == want:
            return
        lines = [f"{what}: {f.name} [{off}, {off + len(want)}): got {len(got)} bytes, "
                 f"expected {len(want)}"]
        n = min(len(got), len(want))
        first = next((i for i in range(n) if got[i] != want[i]), n)
        if first < n:
            end = first
            while end < n and got[end] != want[end]:
                end += 1
            p = off + first
            lines.append(f"first difference at file offset {p} (0x{p:x}), {end - first} bytes "
                         f"differ from there (run ends at {off + end})")
            lo = max(0, first - 8)
            lines.append(f"  expected {want[lo:first + 24].hex(' ')}")
            lines.append(f"  got      {got[lo:first + 24].hex(' ')}")
            w = want[first]
            lines.append(f"  got byte 0x{got[first]:02x} is step {writer_of(p, got[first])} "
                         f"(mod 256)'s pattern at that offset; expected 0x{w:02x} "
                         f"({'zero/hole' if w == 0 else f'step {writer_of(p, w)} (mod 256)'})")
            if got[first] == 0:
                lines.append("  got a zero byte: a hole, a lost write or stale truncation")
        else:
            lines.append(f"common prefix of {n} bytes is equal; lengths differ")
        raise Failure("\n".join(lines))

    def check(self, f: FileState) -> None:
        if self.rng.random() < 0.1:  # this time compare what the filesystem has, not the cache
            self.note(f"  check: fadvise DONTNEED {f.name} fd {f.early}")
            os.posix_fadvise(f.early, 0, 0, os.POSIX_FADV_DONTNEED)
        size = len(f.model)
        st = os.stat(f.path)
        if st.st_size != size:
            raise Failure(f"stat({f.name}).st_size = {st.st_size}, model size {size}")
        fst = os.fstat(f.early)
        if fst.st_size != size:
            raise Failure(f"fstat(early fd of {f.name}).st_size = {fst.st_size}, model {size}")
        self.compare(f, 0, self.pread_all(f.early, size), bytes(f.model),
                     "read of the whole file through the early read-only fd")

    # --- operations ---------------------------------------------------------------------------
    def op_write(self, f: FileState) -> None:
        off = self.write_offset(len(f.model))
        n = self.length(MAX_LEN - off)
        fd = self.rw_fd(f)
        data = pattern(off, n, self.step)
        self.note(f"write {f.name} fd {fd} off {off} len {n} (size {len(f.model)})")
        got = os.pwrite(fd, data, off)
        if got != n:
            raise Failure(f"pwrite returned {got}, expected {n}")
        self.model_write(f, off, data)

    def op_append(self, f: FileState) -> None:
        size = len(f.model)
        if size >= MAX_LEN:
            return self.op_truncate(f)
        if f.app is None:
            f.app = self.open(f, os.O_WRONLY | os.O_APPEND, "O_WRONLY|O_APPEND")
        n = self.length(MAX_LEN - size)
        data = pattern(size, n, self.step)
        self.note(f"append {f.name} fd {f.app} len {n} (size {size})")
        got = os.write(f.app, data)
        if got != n:
            raise Failure(f"write (O_APPEND) returned {got}, expected {n}")
        self.model_write(f, size, data)

    def op_pathwrite(self, f: FileState) -> None:
        off = self.write_offset(len(f.model))
        n = self.length(MAX_LEN - off)
        data = pattern(off, n, self.step)
        how = self.rng.choice(["O_WRONLY", "O_RDWR", "O_WRONLY", "O_RDWR", "O_WRONLY|O_TRUNC"])
        flags = os.O_WRONLY if how.startswith("O_WRONLY") else os.O_RDWR
        if how.endswith("O_TRUNC"):
            flags |= os.O_TRUNC
        self.note(f"pathwrite {f.name} {how} off {off} len {n} (size {len(f.model)})")
        fd = os.open(f.path, flags | os.O_CLOEXEC)
        try:
            if flags & os.O_TRUNC:
                self.model_truncate(f, 0)
            got = os.pwrite(fd, data, off)
        finally:
            os.close(fd)
        if got != n:
            raise Failure(f"pwrite returned {got}, expected {n}")
        self.model_write(f, off, data)

    def op_read(self, f: FileState) -> None:
        size = len(f.model)
        off = self.rng.randrange(size + 100)
        n = self.length(size + 200)
        fd = self.any_fd(f)
        if fd == f.app:
            fd = f.early
        self.note(f"read {f.name} fd {fd} off {off} len {n} (size {size})")
        self.compare(f, off, os.pread(fd, n, off), bytes(f.model[off:off + n]), "pread")

    def op_truncate(self, f: FileState) -> None:
        size = len(f.model)
        r = self.rng.random()
        if r < 0.1:
            new = 0
        elif r < 0.5 and size:
            new = self.rng.randrange(size)
        elif r < 0.9:
            new = min(MAX_LEN, size + self.rng.randint(1, max(1, (MAX_LEN - size) // 2)))
        else:
            new = size
        if self.rng.random() < 0.3:
            self.note(f"truncate(path) {f.name} {size} -> {new}")
            os.truncate(f.path, new)
        else:
            fd = self.rw_fd(f)
            self.note(f"ftruncate {f.name} fd {fd} {size} -> {new}")
            os.ftruncate(fd, new)
        self.model_truncate(f, new)

    def op_mapread(self, f: FileState) -> None:
        size = len(f.model)
        if not size:
            return self.op_write(f)
        fd = self.rw_fd(f)
        off = self.rng.randrange(size)
        n = self.length(size - off)
        self.note(f"mapread {f.name} fd {fd} off {off} len {n} (size {size})")
        with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ) as m:
            got = m[off:off + n]
        self.compare(f, off, got, bytes(f.model[off:off + n]), "read through a shared mapping")

    def op_mapwrite(self, f: FileState) -> None:
        size = len(f.model)
        r = self.rng.random()
        if r < 0.7 and size:
            off = self.rng.randrange(size)
        else:  # past EOF: extend first (mmap cannot)
            off = min(size + self.rng.randint(0, 65536), MAX_LEN - 1)
        n = self.length(MAX_LEN - off)
        fd = self.rw_fd(f)
        data = pattern(off, n, self.step)
        sync = self.rng.choice(["msync", "msync-range", "msync-range", "none"])
        if off + n > size:
            self.note(f"mapwrite: ftruncate {f.name} fd {fd} {size} -> {off + n}")
            os.ftruncate(fd, off + n)
            self.model_truncate(f, off + n)
        self.note(f"mapwrite {f.name} fd {fd} off {off} len {n} (size {size}) {sync}")
        with mmap.mmap(fd, len(f.model), mmap.MAP_SHARED,
                       mmap.PROT_READ | mmap.PROT_WRITE) as m:
            m[off:off + n] = data
            if sync == "msync":
                m.flush()
            elif sync == "msync-range":
                start = off - off % PAGE
                m.flush(start, off + n - start)
        self.model_write(f, off, data)

    def op_fsync(self, f: FileState) -> None:
        fd = self.rng.choice([self.rw_fd(f), f.early])
        how = self.rng.choice(["fsync", "fdatasync"])
        self.note(f"{how} {f.name} fd {fd}")
        (os.fsync if how == "fsync" else os.fdatasync)(fd)

    def op_dontneed(self, f: FileState) -> None:
        fd = self.any_fd(f)
        self.note(f"fadvise DONTNEED {f.name} fd {fd}")
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def op_reopen(self, f: FileState) -> None:
        self.note(f"reopen {f.name}")
        if f.rw and self.rng.random() < 0.7:
            self.close(f, f.rw.pop(self.rng.randrange(len(f.rw))))
        if self.rng.random() < 0.08:
            fd = self.open(f, os.O_RDWR | os.O_TRUNC, "O_RDWR|O_TRUNC")
            self.model_truncate(f, 0)
        else:
            fd = self.open(f, os.O_RDWR, "O_RDWR")
        f.rw.append(fd)
        while len(f.rw) > 3:
            self.close(f, f.rw.pop(0))

    def op_openro(self, f: FileState) -> None:
        self.note(f"openro {f.name}")
        f.ro.append(self.open(f, os.O_RDONLY, "O_RDONLY"))
        while len(f.ro) > 3:
            self.close(f, f.ro.pop(0))

    # --- driver -------------------------------------------------------------------------------
    def close_all(self, f: FileState, keep_early: bool) -> None:
        for fd in [*f.rw, *f.ro] + ([f.app] if f.app is not None else []):
            os.close(fd)
        f.rw, f.ro, f.app = [], [], None
        if not keep_early and f.early is not None:
            os.close(f.early)
            f.early = None

    def setup(self) -> None:
        self.note(f"setup: seed {self.seed}")
        for f in self.files:
            if f.origin == "new":
                fd = os.open(f.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
                f.rw.append(fd)
                self.note(f"  create {f.name} -> fd {fd}")
            f.early = self.open(f, os.O_RDONLY, "O_RDONLY (early)")
        for f in self.files:
            self.check(f)

    def run(self, nops: int, seconds: float) -> None:
        self.setup()
        deadline = time.monotonic() + seconds
        for self.step in range(1, nops + 1):
            if time.monotonic() > deadline:
                self.step -= 1
                self.note(f"time limit of {seconds} s reached")
                break
            f = self.files[self.rng.randrange(len(self.files))]
            name = self.rng.choices(self.op_names, self.op_weights)[0]
            self.counts[name] += 1
            getattr(self, f"op_{name}")(f)
            if self.reopen_every_step:
                self.close_all(f, keep_early=True)
            self.check(f)
        self.nsteps = self.step
        self.step += 1
        self.note("final: close everything, reopen, read back")
        for f in self.files:
            self.close_all(f, keep_early=False)
            f.early = os.open(f.path, os.O_RDONLY | os.O_CLOEXEC)
            self.check(f)
            os.close(f.early)
            f.early = None

    def report(self, what: str) -> str:
        lines = [f"FSX FAILED at step {self.step} (seed {self.seed}): {what}",
                 f"op log tail (last {len(self.log)} entries, newest last):"]
        lines += [f"  {e}" for e in self.log]
        return "\n".join(lines)


def populate(root: str) -> None:
    for origin in ("lower", "upper"):
        for name, (data, size) in spec(origin).items():
            p = os.path.join(root, name)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as fh:
                fh.write(data)
                if size is not None:
                    fh.truncate(size)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("root")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--ops", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=3600.0,
                    help="stop early (successfully) after this long")
    ap.add_argument("--reopen-every-step", action="store_true")
    ap.add_argument("--populate", action="store_true",
                    help="create the lower/upper files first (to run on a plain directory)")
    ap.add_argument("--log", help="also write every op log line to this file, unbuffered")
    a = ap.parse_args(argv)
    faulthandler.enable()
    if a.populate:
        populate(a.root)
    log_fd = None
    if a.log:
        log_fd = os.open(a.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    fsx = Fsx(a.root, a.seed, a.reopen_every_step, log_fd)
    t0 = time.monotonic()
    try:
        fsx.run(a.ops, a.seconds)
    except Failure as e:
        print(fsx.report(str(e)))
        return 1
    except OSError as e:
        name = errno.errorcode.get(e.errno, str(e.errno))
        print(fsx.report(f"unexpected error {name}: {e}"))
        return 1
    except (ValueError, BufferError) as e:  # e.g. mmap of a file that shrank under us
        print(fsx.report(f"unexpected {type(e).__name__}: {e}"))
        return 1
    files = {}
    for f in fsx.files:
        files[f.name] = {"size": len(f.model), "sha256": hashlib.sha256(f.model).hexdigest(),
                         "blake2b": hashlib.blake2b(f.model, digest_size=16).hexdigest()}
    print(json.dumps({"ops": fsx.nsteps, "seconds": round(time.monotonic() - t0, 2),
                      "counts": dict(sorted(fsx.counts.items())), "files": files}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The MANIFEST of a snapshot: its format, writing it, and checking a tree against it.

MANIFEST is ASCII text: a header line, then one line per directory and file below the snapshot
dir (MANIFEST and MANIFEST.xxh3 themselves excluded), sorted by the bytes of the path:

    # cowfs manifest v1: XXH3-128 SIZE MODE PATH
    - - 040555 pip
    518193fe80f73f4203bd73a51856e98d 10 100444 requirements.txt

- XXH3-128: xxhash.xxh3_128_hexdigest of the content (32 hex digits); "-" for a directory.
- SIZE: the size in bytes; "-" for a directory (its st_size depends on the filesystem).
- MODE: st_mode in octal, file type included (100444, 100555, 040555: as git writes modes).
- PATH: relative to the snapshot dir, "/" between names. Every byte outside "!".."~", and "%"
  itself, is written %XX (uppercase hex), so any name survives byte for byte on one line.

MANIFEST.xxh3 seals it: one line "XXH3-128  MANIFEST" with the hash of the MANIFEST file.

Hashing reads each file through one reused page-aligned buffer, in worker processes when the
tree is big enough to repay starting them (xxhash holds the GIL, so threads would not hash in
parallel; README "Snapshots" has the measurements).
"""
from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import xxhash

MANIFEST = "MANIFEST"
SEAL = "MANIFEST.xxh3"
HEADER = "# cowfs manifest v1: XXH3-128 SIZE MODE PATH\n"
#: Printable ASCII but "%": kept as is in a path; every other byte is written %XX.
_SAFE_BYTES = bytes(c for c in range(0x21, 0x7F) if c != ord("%"))

#: Bytes per read(2): most files take one call.
_READ_SIZE = 1 << 20
#: A batch sent to a worker: about this many bytes or files, whichever comes first. Small
#: enough that the progress bar moves and the workers finish together.
_BATCH_BYTES = 32 << 20
_BATCH_FILES = 512
#: Below this many bytes one process beats starting workers (~15 ms). Measured on 2 CPUs, warm
#: cache: 255 MiB 42 ms with one process, 55 ms with two; 511 MiB 103 ms and 94 ms.
_PARALLEL_MIN_BYTES = 384 << 20
_MAX_JOBS = 8


class ManifestError(Exception):
    """A MANIFEST that cannot be written or read (message names the path)."""


class Entry(NamedTuple):
    """One MANIFEST line. digest and size are None for a directory."""

    mode: int
    size: int | None
    digest: str | None


@dataclass(frozen=True)
class Difference:
    kind: str  # "missing", "extra" or "changed"
    path: bytes
    detail: str = ""

    def __str__(self) -> str:
        text = f"{self.kind} {encode_path(self.path)}"
        return f"{text} ({self.detail})" if self.detail else text


@dataclass(frozen=True)
class Report:
    differences: list[Difference]
    files: int  # regular files in the manifest
    bytes: int  # their size, by the manifest


def encode_path(path: bytes) -> str:
    if not path.translate(None, _SAFE_BYTES):  # the usual case, at C speed
        return path.decode("ascii")
    return "".join(chr(c) if c in _SAFE_BYTES else f"%{c:02X}" for c in path)


def decode_path(text: str) -> bytes:
    """The inverse of encode_path; ValueError on a bad %XX."""
    first, *rest = text.split("%")
    out = bytearray(first.encode("ascii"))
    for part in rest:
        if len(part) < 2:
            raise ValueError(text)
        out += bytes.fromhex(part[:2]) + part[2:].encode("ascii")
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# the tree and its hashes


def scan(top: str) -> dict[bytes, os.stat_result]:
    """lstat of everything below top, by relative path; the MANIFEST files are left out."""
    found: dict[bytes, os.stat_result] = {}
    pending = [b""]
    base = os.fsencode(top)
    while pending:
        rel = pending.pop()
        with os.scandir(os.path.join(base, rel) if rel else base) as it:
            for e in it:
                path = rel + b"/" + e.name if rel else e.name
                if not rel and e.name in (MANIFEST.encode(), SEAL.encode()):
                    continue
                st = e.stat(follow_symlinks=False)
                found[path] = st
                if stat.S_ISDIR(st.st_mode):
                    pending.append(path)
    return found


def hash_file(path: bytes, buf: mmap.mmap, view: memoryview) -> str:
    """xxh3-128 of a file, read through buf (view: a memoryview of it)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        h = xxhash.xxh3_128()
        while n := os.readv(fd, [buf]):
            h.update(view[:n])
        return h.hexdigest()
    finally:
        os.close(fd)


#: This process's read buffer. Page-aligned on purpose: read(2) into a buffer at offset 16 of
#: its page (where a bytearray's data lands) runs ~3.5x slower on AMD EPYC. MAP_PRIVATE, so a
#: forked worker gets its own copy.
_buffer: tuple[mmap.mmap, memoryview] | None = None


def _hash_batch(batch: tuple[int, list[bytes]]) -> tuple[int, list[str | OSError]]:
    global _buffer
    if _buffer is None:
        buf = mmap.mmap(-1, _READ_SIZE, flags=mmap.MAP_PRIVATE)
        _buffer = buf, memoryview(buf)
    start, paths = batch
    digests: list[str | OSError] = []
    for p in paths:
        try:
            digests.append(hash_file(p, *_buffer))
        except OSError as e:
            digests.append(e)
    return start, digests


def _batches(sizes: list[int]) -> Iterator[tuple[int, int, int]]:
    """(start, end, bytes) slices of about _BATCH_BYTES or _BATCH_FILES."""
    start, nbytes = 0, 0
    for i, size in enumerate(sizes):
        nbytes += size
        if nbytes >= _BATCH_BYTES or i + 1 - start >= _BATCH_FILES:
            yield start, i + 1, nbytes
            start, nbytes = i + 1, 0
    if start < len(sizes):
        yield start, len(sizes), nbytes


def default_jobs(total_bytes: int) -> int:
    if total_bytes < _PARALLEL_MIN_BYTES:
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), _MAX_JOBS))


def hash_files(paths: list[bytes], sizes: list[int], jobs: int | None = None,
               progress: Callable[[int], None] | None = None,
               meanwhile: Callable[[], None] | None = None) -> list[str | OSError]:
    """The xxh3-128 hex digest of each file, or the OSError that stopped reading it.

    sizes (expected ones will do) shape the batches and feed progress(bytes hashed so far);
    jobs is the number of processes (default: default_jobs); meanwhile() runs in this process
    while the workers hash (before hashing, with one process)."""
    batches = list(_batches(sizes))
    batch_bytes = {start: nbytes for start, _, nbytes in batches}
    work = [(start, paths[start:end]) for start, end, _ in batches]
    jobs = default_jobs(sum(sizes)) if jobs is None else jobs
    results: list[str | OSError] = [""] * len(paths)
    done = 0

    def collect(outcomes: Iterable[tuple[int, list[str | OSError]]]) -> None:
        nonlocal done
        for start, digests in outcomes:
            results[start : start + len(digests)] = digests
            done += batch_bytes[start]
            if progress:
                progress(done)

    if jobs <= 1:
        if meanwhile:
            meanwhile()
        collect(map(_hash_batch, work))
        return results
    # imported here: 40 ms that a small tree does not need
    import multiprocessing  # noqa: PLC0415
    from concurrent.futures import ProcessPoolExecutor, as_completed  # noqa: PLC0415

    # fork: the workers need nothing but this module and start in milliseconds. Not
    # multiprocessing.Pool: it waits forever for the batch of a worker that was killed.
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(_hash_batch, batch) for batch in work]
        if meanwhile:
            meanwhile()
        collect(f.result() for f in as_completed(futures))
    return results


# ---------------------------------------------------------------------------------------------
# writing and reading


def write(top: str, jobs: int | None = None) -> Report:
    """Write MANIFEST and MANIFEST.xxh3 for the tree below top, which may hold only directories
    and regular files; modes are recorded as they are now."""
    tree = scan(top)
    base = os.fsencode(top)
    for path, st in tree.items():
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            raise ManifestError(f"{os.fsdecode(os.path.join(base, path))} is neither a regular "
                                "file nor a directory")
    paths = sorted(tree)
    files = [p for p in paths if stat.S_ISREG(tree[p].st_mode)]
    sizes = [tree[p].st_size for p in files]
    digests = dict(zip(files, hash_files([os.path.join(base, p) for p in files], sizes, jobs),
                       strict=True))
    lines = [HEADER]
    for p in paths:
        mode = tree[p].st_mode
        if p not in digests:
            lines.append(f"- - {mode:06o} {encode_path(p)}\n")
            continue
        digest = digests[p]
        if isinstance(digest, OSError):
            raise ManifestError(f"cannot read {os.fsdecode(os.path.join(base, p))}: "
                                f"{digest.strerror}")
        lines.append(f"{digest} {tree[p].st_size} {mode:06o} {encode_path(p)}\n")
    data = "".join(lines).encode("ascii")
    create(os.path.join(top, MANIFEST), data)
    create(os.path.join(top, SEAL), f"{xxhash.xxh3_128_hexdigest(data)}  {MANIFEST}\n".encode())
    return Report([], len(files), sum(sizes))


def create(path: str, data: bytes) -> None:
    """A new read-only file (0444) holding data; FileExistsError if path exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    with open(fd, "wb") as f:
        f.write(data)


def parse(data: bytes) -> dict[bytes, Entry]:
    """The entries of a MANIFEST; ManifestError names the first bad line."""
    lines = data.split(b"\n")
    if lines[0] + b"\n" != HEADER.encode() or lines[-1] != b"":
        raise ManifestError("MANIFEST: not a cowfs manifest v1")
    entries: dict[bytes, Entry] = {}
    for number, line in enumerate(lines[1:-1], start=2):
        try:
            digest, size, mode, path = line.decode("ascii").split(" ")
            entry = Entry(int(mode, 8), None if size == "-" else int(size),
                          None if digest == "-" else digest)
            if (entry.digest is None) != stat.S_ISDIR(entry.mode) or \
                    (entry.size is None) != (entry.digest is None):
                raise ValueError(line)
        except ValueError:
            raise ManifestError(f"MANIFEST line {number} is malformed") from None
        entries[decode_path(path)] = entry
    return entries


# ---------------------------------------------------------------------------------------------
# verifying


def verify(top: str, jobs: int | None = None,
           progress: Callable[[int, int], None] | None = None) -> Report:
    """Compare the tree below top with its MANIFEST, after checking MANIFEST against
    MANIFEST.xxh3 (if that fails, the files are not checked: the manifest cannot be trusted).
    progress(done, total) gets the bytes hashed."""
    with open(os.path.join(top, MANIFEST), "rb") as f:
        data = f.read()
    try:
        with open(os.path.join(top, SEAL), "rb") as f:
            sealed = f.read().split(b" ")[0].decode("ascii", "replace")
    except FileNotFoundError:
        return Report([Difference("missing", SEAL.encode())], 0, 0)
    if xxhash.xxh3_128_hexdigest(data) != sealed:
        return Report([Difference("changed", MANIFEST.encode(),
                                  "its hash is not the one in MANIFEST.xxh3: files not checked")],
                      0, 0)
    try:
        entries = parse(data)
    except ManifestError as e:
        return Report([Difference("changed", MANIFEST.encode(), str(e))], 0, 0)

    # Hash what the manifest lists while this process walks the tree: the walk is free when
    # workers hash. A hash of a file the walk finds missing or changed in type or size is moot.
    files = sorted(p for p, e in entries.items() if e.size is not None)
    sizes = [entries[p].size or 0 for p in files]
    total = sum(sizes)
    base = os.fsencode(top)
    tree: dict[bytes, os.stat_result] = {}
    digests = hash_files([os.path.join(base, p) for p in files], sizes, jobs,
                         (lambda done: progress(done, total)) if progress else None,
                         meanwhile=lambda: tree.update(scan(top)))
    digest_of = dict(zip(files, digests, strict=True))

    differences = []
    for path in sorted(entries.keys() | tree.keys()):
        want, st = entries.get(path), tree.get(path)
        if st is None or want is None:
            differences.append(Difference("missing" if st is None else "extra", path))
            continue
        notes = []
        if st.st_mode != want.mode:
            notes.append(f"mode {st.st_mode:06o}, manifest {want.mode:06o}")
        if stat.S_ISREG(st.st_mode) and path in digest_of:
            digest = digest_of[path]
            if st.st_size != want.size:
                notes.append(f"size {st.st_size}, manifest {want.size}")
            elif isinstance(digest, OSError):
                notes.append(f"unreadable: {digest.strerror}")
            elif digest != want.digest:
                notes.append("content")
        if notes:
            differences.append(Difference("changed", path, "; ".join(notes)))
    return Report(differences, len(files), total)

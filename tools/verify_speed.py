#!/usr/bin/env python3
"""How fast `cowfs verify` is next to reading the bytes alone (README "Snapshots").

    python3 tools/verify_speed.py [--gib 1] [--rounds 7] [--keep DIR]

Makes a tree shaped like a pip cache (GiB of random bytes: mostly files of a few KiB to 100
KiB, some of a few MiB, a few of tens of MiB, in 256x16 directories), writes its MANIFEST, reads
it once so the page cache is warm, then times, interleaved round by round so that machine drift
hits all alike, whole commands:

  read       a python process that walks the tree and reads every file (os.read, 1 MiB):
             reading the bytes alone
  cat        find TREE -type f -print0 | xargs -0 cat > /dev/null
  verify     cowfs verify TREE (process start, manifest, walk, hash, compare)

and, in this process, over the list of files (no walk, no start-up):

  read/list  every file read with os.read (1 MiB)
  hash/1     manifest.hash_files, one process
  hash/N     manifest.hash_files, N worker processes (what verify uses from 384 MiB on)
  threads/N  manifest.hash_file in N threads (measured, not used: xxhash holds the GIL)

It prints the best and median time of each, and the ratio of the best to `read` (commands) or
`read/list` (in-process). Needs cowfs installed for this python (make venv; run it with
.venv/bin/python).
"""
from __future__ import annotations

import argparse
import mmap
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from cowfs import manifest


def make_tree(top: str, total: int) -> None:
    rnd = random.Random(5)
    done = i = 0
    while done < total:
        r = rnd.random()
        if r < 0.9:
            size = rnd.randint(200, 100 << 10)
        elif r < 0.995:
            size = rnd.randint(100 << 10, 5 << 20)
        else:
            size = rnd.randint(5 << 20, 50 << 20)
        size = min(size, total - done)
        d = os.path.join(top, f"{rnd.randrange(256):02x}", f"{rnd.randrange(16):x}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
            f.write(os.urandom(size))
        done += size
        i += 1


def files_of(top: str) -> tuple[list[bytes], list[int]]:
    tree = manifest.scan(top)
    paths = sorted(p for p, st in tree.items() if st.st_size and not os.path.isdir(
        os.path.join(os.fsencode(top), p)))
    return ([os.path.join(os.fsencode(top), p) for p in paths],
            [tree[p].st_size for p in paths])


def read_all(paths: list[bytes]) -> None:
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            while os.read(fd, 1 << 20):
                pass
        finally:
            os.close(fd)


def hash_threads(paths: list[bytes], n: int) -> None:
    local = threading.local()

    def one(p: bytes) -> str:
        if not hasattr(local, "buf"):
            local.buf = mmap.mmap(-1, 1 << 20, flags=mmap.MAP_PRIVATE)
            local.view = memoryview(local.buf)
        return manifest.hash_file(p, local.buf, local.view)

    with ThreadPoolExecutor(n) as pool:
        list(pool.map(one, paths))


READ_TREE = """
import os, sys
for d, _, names in os.walk(sys.argv[1]):
    for name in names:
        fd = os.open(os.path.join(d, name), os.O_RDONLY)
        while os.read(fd, 1 << 20):
            pass
        os.close(fd)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=1.0, help="size of the tree (default 1)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--keep", metavar="DIR", help="build the tree in DIR and keep it (reused "
                    "when it already has a MANIFEST)")
    args = ap.parse_args()

    top = args.keep or tempfile.mkdtemp(prefix="cowfs-verify-speed-", dir="/var/tmp")
    if not os.path.exists(os.path.join(top, manifest.MANIFEST)):
        make_tree(top, int(args.gib * (1 << 30)))
        manifest.write(top)
    paths, sizes = files_of(top)
    cowfs = os.path.join(os.path.dirname(sys.executable), "cowfs")
    jobs = max(2, manifest.default_jobs(1 << 62))
    runs = {
        "read": lambda: subprocess.run([sys.executable, "-c", READ_TREE, top], check=True),
        "cat": lambda: subprocess.run("find . -type f -print0 | xargs -0 cat > /dev/null",
                                      shell=True, cwd=top, check=True),
        "verify": lambda: subprocess.run([cowfs, "verify", top], check=True,
                                         stderr=subprocess.DEVNULL),
        "read/list": lambda: read_all(paths),
        "hash/1": lambda: manifest.hash_files(paths, sizes, jobs=1),
        f"hash/{jobs}": lambda: manifest.hash_files(paths, sizes, jobs=jobs),
        f"threads/{jobs}": lambda: hash_threads(paths, jobs),
    }
    read_all(paths)  # warm cache
    times: dict[str, list[float]] = {name: [] for name in runs}
    try:
        for _ in range(args.rounds):
            for name, run in runs.items():
                t = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t)
    finally:
        if not args.keep:
            shutil.rmtree(top)
    total = sum(sizes)
    print(f"{len(paths)} files, {total / (1 << 20):.0f} MiB, warm page cache, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
          f"best and median of {args.rounds} interleaved rounds")
    for name, ts in times.items():
        best = min(ts)
        base = min(times["read" if name in ("read", "cat", "verify") else "read/list"])
        print(f"  {name:10s} best {best:6.3f} s ({total / best / 1e9:5.2f} GB/s, "
              f"{best / base:4.2f}x read)   median {statistics.median(ts):6.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

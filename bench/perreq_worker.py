"""One micro-operation of bench/perreq.py, run as the unprivileged user on a fresh mount.

Standalone (standard library only): it runs under the system python as the bench user.

    perreq_worker.py OP MNT N

Prepares (the warm-up pass of a warm operation), prints "ready", waits for a line on stdin (the
parent drops caches or marks the daemon's request trace meanwhile), then times N calls of the
operation alone and prints {"seconds": ..., "calls": ..., "entries": ...}. OP is one of OPS; the
paths are those of the lower perreq.py builds.
"""
import json
import os
import sys
import time

MIB = 1 << 20


def read_file(path: str, buf: bytearray) -> int:
    """open + read until EOF + close; returns the number of read calls."""
    n = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        with memoryview(buf) as view:
            while True:
                n += 1
                if not os.readv(fd, [view]):
                    return n
    finally:
        os.close(fd)


def small(mnt: str, i: int) -> str:
    return os.path.join(mnt, "small", f"f{i:04d}")


def prepare_read_warm(mnt: str, n: int) -> None:
    buf = bytearray(64 * 1024)
    for i in range(n):
        read_file(small(mnt, i), buf)


def prepare_listdir(mnt: str, n: int) -> None:
    for _ in range(2):
        os.listdir(os.path.join(mnt, "list"))


def timed_listdir(mnt: str, n: int) -> dict:
    d = os.path.join(mnt, "list")
    t = time.perf_counter()
    for _ in range(n):
        entries = len(os.listdir(d))
    return {"seconds": time.perf_counter() - t, "calls": n, "entries": entries}


def timed_read_small(mnt: str, n: int) -> dict:
    buf = bytearray(64 * 1024)   # 4 KiB files: one read with data, one at EOF
    paths = [small(mnt, i) for i in range(n)]
    t = time.perf_counter()
    for p in paths:
        read_file(p, buf)
    return {"seconds": time.perf_counter() - t, "calls": n}


def timed_seqread(mnt: str, n: int) -> dict:
    buf = bytearray(MIB)
    t = time.perf_counter()
    calls = read_file(os.path.join(mnt, "big"), buf)
    return {"seconds": time.perf_counter() - t, "calls": calls}


def loop(fn, paths):
    def run(mnt: str, n: int) -> dict:
        args = [paths(mnt, i) for i in range(n)]
        t = time.perf_counter()
        for a in args:
            fn(*a)
        return {"seconds": time.perf_counter() - t, "calls": n}
    return run


def create_close(path: str) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))


def lower_file(sub):
    return lambda mnt, i: os.path.join(mnt, sub, f"f{i:04d}")


# op -> (prepare or None, timed loop)
OPS = {
    "listdir-warm": (prepare_listdir, timed_listdir),
    "read-warm": (prepare_read_warm, timed_read_small),
    "read-cold": (None, timed_read_small),
    "stat-cold": (None, loop(os.stat, lambda mnt, i: (small(mnt, i),))),
    "unlink": (None, loop(os.unlink, lambda mnt, i: (lower_file("unlink")(mnt, i),))),
    "create": (None, loop(create_close, lambda mnt, i: (os.path.join(mnt, "create", f"c{i:04d}"),))),
    "mkdir": (None, loop(os.mkdir, lambda mnt, i: (os.path.join(mnt, "mkdir", f"d{i:04d}"),))),
    "rename": (None, loop(os.rename, lambda mnt, i: (lower_file("rename")(mnt, i),
                                                      lower_file("rename")(mnt, i) + "r"))),
    "chmod": (None, loop(os.chmod, lambda mnt, i: (lower_file("chmod")(mnt, i), 0o600))),
    "seqread-cold": (None, timed_seqread),
}


def main(argv: list[str]) -> None:
    op, mnt, n = argv[0], argv[1], int(argv[2])
    prepare, timed = OPS[op]
    if prepare:
        prepare(mnt, n)
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps(timed(mnt, n)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

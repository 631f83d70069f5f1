"""Timed file operations, run as the unprivileged user inside a mount; prints {phase: seconds}.

Standalone (standard library only, no import of the bench package): it runs under the system
python as cowfs-test. Timing happens here, around the operations alone, so python startup and
setpriv do not blur sub-second figures.

    worker.py read PATH                    read a file whole, 1 MiB at a time, or every file below
                                           a directory (the walk is timed too)
    worker.py firstwrite FILE...           open O_WRONLY, write 1 byte at 0, fsync: a phase per file
    worker.py smallfiles DIR COUNT         make DIR; create+write, stat, delete COUNT files in it
    worker.py churn DIR                    chmod DIR/chmod/*, rename DIR/rename/*, unlink DIR/unlink/*
"""
import json
import os
import sys
import time


def files_below(top: str) -> list[str]:
    return sorted(os.path.join(d, f) for d, _, names in os.walk(top) for f in names)


def timed(fn, items) -> float:
    t = time.perf_counter()
    for item in items:
        fn(item)
    return time.perf_counter() - t


def read_all(path: str) -> None:
    buf = bytearray(1 << 20)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def first_write(path: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b"x", 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def smallfiles(top: str, count: int) -> dict:
    # 100 files a directory: a realistic fan-out, not one huge directory
    dirs = [os.path.join(top, f"d{i:03d}") for i in range((count + 99) // 100)]
    paths = [os.path.join(dirs[i // 100], f"f{i:05d}") for i in range(count)]
    data = b"s" * 1024

    def create(p):
        with open(p, "wb") as f:
            f.write(data)

    os.mkdir(top)
    t = time.perf_counter()
    for d in dirs:
        os.mkdir(d)
    for p in paths:
        create(p)
    out = {"create": time.perf_counter() - t}
    out["stat"] = timed(os.lstat, paths)
    t = time.perf_counter()
    for p in paths:
        os.unlink(p)
    for d in dirs:
        os.rmdir(d)
    out["delete"] = time.perf_counter() - t
    return out


def churn(top: str) -> dict:
    return {
        "chmod": timed(lambda p: os.chmod(p, 0o600), files_below(os.path.join(top, "chmod"))),
        "rename": timed(lambda p: os.rename(p, p + ".renamed"),
                        files_below(os.path.join(top, "rename"))),
        "unlink": timed(os.unlink, files_below(os.path.join(top, "unlink"))),
    }


def main(argv: list[str]) -> dict:
    op, args = argv[0], argv[1:]
    if op == "read":
        t = time.perf_counter()
        for path in files_below(args[0]) if os.path.isdir(args[0]) else args:
            read_all(path)
        return {"read": time.perf_counter() - t}
    if op == "firstwrite":
        return {os.path.basename(p): timed(first_write, [p]) for p in args}
    if op == "smallfiles":
        return smallfiles(args[0], int(args[1]))
    if op == "churn":
        return churn(args[0])
    raise SystemExit(f"worker: unknown op {op!r}")


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))

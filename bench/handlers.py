"""cowfs's own cost per request, without the kernel or pyfuse3's loop: the request handlers
called directly (no mount), best of several repeats, so that a loaded machine does not hide a
change of a microsecond. What bench/reqs.py measures end to end, this splits by handler.

    .venv/bin/python bench/handlers.py [--src SRC]   # SRC/cowfs instead of this checkout's
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

N_MANY = 1000


def drive(coro):
    """Run a coroutine that never suspends (the handlers timed here do not)."""
    try:
        coro.send(None)
    except StopIteration as e:
        return e.value
    raise RuntimeError("handler suspended")


class Ctx:
    uid, gid, pid, umask = 0, 0, 0, 0


def best(fn, n, repeat=7):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(n)
        times.append(time.perf_counter() - t0)
    return min(times) / n * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    args = ap.parse_args()
    sys.path.insert(0, args.src)
    import pyfuse3

    from cowfs.config import MountConfig
    from cowfs.operations import CowOperations

    root = tempfile.mkdtemp(prefix="handlers-", dir="/tmp")
    try:
        lower, upper, work = (os.path.join(root, x) for x in ("lower", "upper", "work"))
        os.makedirs(os.path.join(lower, "many"))
        os.makedirs(os.path.join(lower, "d"))
        os.makedirs(upper)
        os.makedirs(os.path.join(work, "work"))
        for i in range(N_MANY):
            with open(os.path.join(lower, "many", f"e{i:04d}"), "w") as f:
                f.write("x")
        os.makedirs(os.path.join(upper, "a", "b", "up"))
        for i in range(N_MANY):
            with open(os.path.join(upper, "a", "b", "up", f"e{i:04d}"), "w") as f:
                f.write("x")
        with open(os.path.join(lower, "d", "f"), "w") as f:
            f.write("hello")
        cfg = MountConfig((lower,), upper, work, os.path.join(root, "mnt"),
                          fuse_options=frozenset({"default_permissions"}))
        ops = CowOperations(cfg)
        if hasattr(ops, "init"):
            ops.init()
        ctx = Ctx()
        R = pyfuse3.ROOT_INODE
        d = drive(ops.lookup(R, b"d", ctx)).st_ino
        many = drive(ops.lookup(R, b"many", ctx)).st_ino
        f = drive(ops.lookup(d, b"f", ctx)).st_ino
        names = [b"e%04d" % i for i in range(N_MANY)]

        def lookup_unlisted(n):  # the kernel forgets in between: a node made each time
            for _ in range(n):
                a = drive(ops.lookup(d, b"f", ctx))
                drive(ops.forget([(a.st_ino, 1)]))

        def getattr_(n):
            for _ in range(n):
                drive(ops.getattr(f, ctx))

        e0 = drive(ops.lookup(many, b"e0000", ctx)).st_ino

        def getattr_listed(n):
            for _ in range(n):
                drive(ops.getattr(e0, ctx))

        def open_read_release(n):
            for _ in range(n):
                fi = drive(ops.open(f, os.O_RDONLY, ctx))
                drive(ops.read(fi.fh, 0, 4096))
                drive(ops.release(fi.fh))

        def listing(n):  # entries of a kept lower-only listing, counted as readdir does
            for _ in range(n):
                fh = drive(ops.opendir(many, ctx))
                for i, name, a, node in ops.dirs.entries(fh, 0):
                    if node is not None:
                        node.nlookup += 1
                drive(ops.releasedir(fh))

        def listing_small(n):  # a whole listing of a kept 1-entry lower dir, per opendir
            for _ in range(n):
                fh = drive(ops.opendir(d, ctx))
                for i, name, a, node in ops.dirs.entries(fh, 0):
                    if node is not None:
                        node.nlookup += 1
                drive(ops.releasedir(fh))

        a_ = drive(ops.lookup(R, b"a", ctx)).st_ino
        b_ = drive(ops.lookup(a_, b"b", ctx)).st_ino
        up = drive(ops.lookup(b_, b"up", ctx)).st_ino

        def listing_upper(n):  # an upper dir: resolved afresh at every listing
            for _ in range(n):
                fh = drive(ops.opendir(up, ctx))
                for i, name, a, node in ops.dirs.entries(fh, 0):
                    if node is not None:
                        node.nlookup += 1
                drive(ops.releasedir(fh))

        def lookup_listed(n):
            for _ in range(n // N_MANY):
                for name in names:
                    drive(ops.lookup(many, name, ctx))

        def statfs(n):
            for _ in range(n):
                drive(ops.statfs(ctx))

        # a fresh mount's own upper and work: the first one's are claimed (cowfs/claim.py)
        os.makedirs(os.path.join(root, "upper2"))
        os.makedirs(os.path.join(root, "work2", "work"))
        cfg2 = MountConfig((lower,), os.path.join(root, "upper2"), os.path.join(root, "work2"),
                           os.path.join(root, "mnt"),
                           fuse_options=frozenset({"default_permissions"}))

        def first_listing(n):  # on a fresh mount: the listing is taken, entries resolved
            for _ in range(n // N_MANY):
                fresh = CowOperations(cfg2)
                many = drive(fresh.lookup(R, b"many", ctx)).st_ino
                fh = drive(fresh.opendir(many, ctx))
                for i, name, a, node in fresh.dirs.entries(fh, 0):
                    if node is not None:
                        node.nlookup += 1
                drive(fresh.releasedir(fh))
                fresh.ov.close()

        listing(1)
        listing_small(1)
        print(f"cowfs from {args.src}: us per handler call, best of 7")
        for label, fn, n in (("lookup (dir not listed)", lookup_unlisted, 5000),
                             ("lookup (listed lower dir)", lookup_listed, 20000),
                             ("getattr", getattr_, 20000),
                             ("getattr (file of a listed lower dir)", getattr_listed, 20000),
                             ("open+read+release", open_read_release, 5000),
                             ("statfs", statfs, 5000),
                             ("readdirplus entry (1000-entry listing)", lambda n: listing(n // N_MANY), 20000),
                             ("opendir..releasedir, 1-entry listed dir", listing_small, 5000),
                             ("readdirplus entry, first listing", first_listing, 5000),
                             ("readdirplus entry, upper dir a/b/up", lambda n: listing_upper(n // N_MANY), 5000)):
            print(f"  {label:40s} {best(fn, n):7.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

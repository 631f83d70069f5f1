"""Requests and microseconds per syscall: cowfs beside the trivial pyfuse3 filesystem (floor.py).

Each micro-operation runs on a fresh mount of each filesystem, the two interleaved round by
round; medians over the rounds. Both daemons run in child processes with the same counting
wrapper around every pyfuse3 handler (the defaults included: an ENOSYS answer is counted too).
Both answer with cowfs's timeouts, so the kernel sends both the same requests: the ratio is
cowfs's own cost per syscall over the bare pyfuse3 + trio round trips.

    unshare -m --propagation private .venv/bin/python bench/reqs.py [--rounds N] [--only OP,..]
    .venv/bin/python bench/reqs.py --profile listdir   # cProfile of the cowfs daemon
"""
from __future__ import annotations

import argparse
import inspect
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

N_MANY = 1000
BASE = None
N = 300  # objects per round for the per-object ops
TIMEOUT = 86400.0  # the floor's, as cowfs's: both get the same requests


def _counted(cls, counts, names):
    def wrap(i, fn):
        async def wrapper(self, *a):
            counts[i] += 1
            return await fn(self, *a)
        wrapper.__name__ = fn.__name__
        return wrapper
    for i, n in enumerate(names):
        setattr(cls, n, wrap(i, getattr(cls, n)))


def handler_names():
    import pyfuse3
    return sorted(n for n in dir(pyfuse3.Operations)
                  if not n.startswith("_") and inspect.iscoroutinefunction(getattr(pyfuse3.Operations, n)))


def serve_cowfs(lower, upper, work, mnt, counts, ready, profile, src=None):
    import signal

    if src:  # another cowfs source tree (a checkout, or a copy of its cowfs/ under SRC/cowfs)
        sys.path.insert(0, src)

    import pyfuse3
    import trio

    from cowfs.config import MountConfig
    from cowfs.operations import CowOperations

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    names = handler_names()

    class Counted(CowOperations):
        pass
    _counted(Counted, counts, names)
    os.makedirs(os.path.join(work, "work"), exist_ok=True)
    cfg = MountConfig((lower,), upper, work, mnt,
                      fuse_options=frozenset({"default_permissions", "fsname=cowfs", "subtype=cowfs"}))
    ops = Counted(cfg)
    ready.put(names)
    pyfuse3.init(ops, mnt, set(cfg.fuse_options))
    prof = None
    if profile:
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
    try:
        trio.run(pyfuse3.main)
    finally:
        if prof is not None:
            prof.disable()
            prof.dump_stats(profile)
        pyfuse3.close(unmount=True)


def serve_floor(tree, mnt, counts, ready):
    """A trivial pyfuse3 fs mirroring `tree` (name -> dict or None) in memory, zero timeouts."""
    import errno
    import signal

    import pyfuse3
    import trio

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    names = handler_names()

    class Floor(pyfuse3.Operations):
        def __init__(self):
            super().__init__()
            self.dirs, self.attrs, self.next = {}, {}, 2
            self._build(pyfuse3.ROOT_INODE, tree)
            self.listing = {}
            self.fh = 0

        def _build(self, ino, sub):
            self.dirs[ino] = {}
            self.attr(ino, True)
            for name, child in sub.items():
                self.next += 1
                self.dirs[ino][name] = self.next
                if child is None:
                    self.attr(self.next, False)
                else:
                    self._build(self.next, child)

        def attr(self, ino, isdir=None):
            a = self.attrs.get(ino)
            if a is None:
                a = self.attrs[ino] = pyfuse3.EntryAttributes()
                a.st_ino, a.st_uid, a.st_gid, a.st_blksize = ino, os.getuid(), os.getgid(), 4096
                a.st_mode, a.st_nlink = (0o40755, 2) if isdir else (0o100644, 1)
                a.st_size = 0 if isdir else 5
                a.entry_timeout = a.attr_timeout = TIMEOUT
            return a

        async def lookup(self, parent, name, ctx=None):
            ino = self.dirs.get(parent, {}).get(name)
            if ino is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            return self.attr(ino)

        async def getattr(self, ino, ctx=None):
            return self.attr(ino)

        async def setattr(self, ino, attr, fields, fh, ctx):
            return self.attr(ino)

        async def opendir(self, ino, ctx):
            self.listing[ino] = sorted(self.dirs[ino].items())
            return ino

        async def readdir(self, fh, start, token):
            ents = self.listing[fh]
            for i in range(start, len(ents)):
                if not pyfuse3.readdir_reply(token, ents[i][0], self.attr(ents[i][1]), i + 1):
                    return

        async def open(self, ino, flags, ctx):
            self.fh += 1
            return pyfuse3.FileInfo(fh=ino)

        async def read(self, fh, off, size):
            return b"hello"[off:off + size]

        async def write(self, fh, off, buf):
            return len(buf)

        async def getxattr(self, ino, name, ctx):
            raise pyfuse3.FUSEError(errno.ENODATA)  # as a real fs: the kernel keeps asking

        async def release(self, fh):
            pass

        async def releasedir(self, fh):
            pass

        async def fsyncdir(self, fh, datasync):
            pass

        def _new(self, parent, name, isdir):
            self.next += 1
            self.dirs[parent][name] = self.next
            if isdir:
                self.dirs[self.next] = {}
            return self.attr(self.next, isdir)

        async def create(self, parent, name, mode, flags, ctx):
            a = self._new(parent, name, False)
            return pyfuse3.FileInfo(fh=a.st_ino), a

        async def mkdir(self, parent, name, mode, ctx):
            return self._new(parent, name, True)

        async def unlink(self, parent, name, ctx):
            del self.dirs[parent][name]

        async def rename(self, p_old, n_old, p_new, n_new, flags, ctx):
            self.dirs[p_new][n_new] = self.dirs[p_old].pop(n_old)

    _counted(Floor, counts, names)
    ready.put(names)
    pyfuse3.init(Floor(), mnt, {"default_permissions", "fsname=floor"})
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=True)


# ---------------------------------------------------------------------------------------------

def make_lower(root):
    """The lower tree on disk, and the same shape for the floor."""
    lower = os.path.join(root, "lower")
    tree = {}
    many = tree[b"many"] = {}
    os.makedirs(os.path.join(lower, "many"))
    for i in range(N_MANY):
        open(os.path.join(lower, "many", f"e{i:04d}"), "w").close()
        many[f"e{i:04d}".encode()] = None
    for d in ("files", "unl", "ren", "chm", "st", "new"):
        os.makedirs(os.path.join(lower, d))
        sub = tree[d.encode()] = {}
        if d == "new":
            continue
        for i in range(N):
            with open(os.path.join(lower, d, f"f{i:04d}"), "w") as f:
                f.write("hello")
            sub[f"f{i:04d}".encode()] = None
    return lower, tree


def listdir(m, mark):
    p = os.path.join(m, "many")
    os.listdir(p)  # the first listing builds what is kept; time the warm ones
    mark()
    t0 = time.perf_counter()
    for _ in range(20):
        os.listdir(p)
    return (time.perf_counter() - t0) / 20, 20


def per_file(fn, sub):
    def run(m, mark):
        paths = [os.path.join(m, sub, f"f{i:04d}") for i in range(N)]
        mark()
        t0 = time.perf_counter()
        for p in paths:
            fn(p)
        return (time.perf_counter() - t0) / N, N
    return run


def _read(p):
    with open(p, "rb") as f:
        f.read()


def read_warm_listed(m, mark):
    os.listdir(os.path.join(m, "files"))  # as an import system's path finder does
    return read_warm(m, mark)


def read_warm(m, mark):
    paths = [os.path.join(m, "files", f"f{i:04d}") for i in range(N)]
    for p in paths:
        _read(p)
    mark()
    t0 = time.perf_counter()
    for p in paths:
        _read(p)
    return (time.perf_counter() - t0) / N, N


def _create(p):
    os.close(os.open(p, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644))


def _write(p):
    fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
    os.write(fd, b"x" * 4096)
    os.write(fd, b"y" * 4096)
    os.close(fd)


def rename_(m, mark):
    src = [os.path.join(m, "ren", f"f{i:04d}") for i in range(N)]
    mark()
    t0 = time.perf_counter()
    for p in src:
        os.rename(p, p + "r")
    return (time.perf_counter() - t0) / N, N


def _fsync_dir(p):
    fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsyncdir(m, mark):
    p = os.path.join(m, "new")
    _fsync_dir(p)  # the first reaches every daemon
    mark()
    t0 = time.perf_counter()
    for _ in range(N):
        _fsync_dir(p)
    return (time.perf_counter() - t0) / N, N


OPS = {
    "listdir": listdir,
    "stat": per_file(os.lstat, "st"),
    "read-cold": per_file(_read, "files"),
    "read-warm": read_warm,
    "read-listed": read_warm_listed,
    "unlink": per_file(os.unlink, "unl"),
    "create": per_file(_create, "new"),
    "write": per_file(_write, "new"),
    "mkdir": per_file(os.mkdir, "new"),
    "rename": rename_,
    "chmod": per_file(lambda p: os.chmod(p, 0o600), "chm"),
    "fsyncdir": fsyncdir,
}


def mount_and_run(kind, root, lower, tree, r, op, profile=None):
    ctx = mp.get_context("fork")
    counts, ready = ctx.Array("q", 64, lock=False), ctx.Queue()
    mnt = os.path.join(root, f"m-{kind}-{op}-{r}")
    os.makedirs(mnt)
    if kind.startswith("cowfs"):
        up, wk = (os.path.join(root, f"{x}-{kind}-{op}-{r}") for x in ("u", "w"))
        os.makedirs(up)
        os.makedirs(wk)
        child = ctx.Process(target=serve_cowfs, args=(lower, up, wk, mnt, counts, ready, profile,
                                                          BASE if kind == "cowfs-base" else None))
    else:
        child = ctx.Process(target=serve_floor, args=(tree, mnt, counts, ready))
    child.start()
    names = ready.get(timeout=20)
    for _ in range(2000):
        if os.path.ismount(mnt):
            break
        time.sleep(0.005)
    try:
        before, cpu0 = [], []
        per, n = OPS[op](mnt, lambda: (before.extend(counts), cpu0.append(cpu_ns(child.pid))))
        cpu = (cpu_ns(child.pid) - cpu0[0]) / n / 1e9
        delta = [(a - b) / n for a, b in zip(counts, before)]
    finally:
        subprocess.run(["fusermount3", "-u", mnt], check=False)
        child.join(20)
        if child.is_alive():
            child.kill()
            subprocess.run(["fusermount3", "-uz", mnt], check=False)
    return per, cpu, {names[i]: c for i, c in enumerate(delta[:len(names)]) if c}


def cpu_ns(pid):
    """CPU time of every thread of the daemon so far (schedstat: ns, unlike /proc/PID/stat)."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default=",".join(OPS))
    ap.add_argument("--profile", metavar="OP")
    ap.add_argument("--out", default="/tmp/cowfs-reqs.prof")
    ap.add_argument("--base", metavar="SRC", help="also run cowfs imported from SRC (SRC/cowfs): "
                    "before/after in one interleaved run")
    args = ap.parse_args()
    global BASE
    BASE = args.base
    root = tempfile.mkdtemp(prefix="reqs-", dir="/tmp")
    try:
        lower, tree = make_lower(root)
        if args.profile:
            per, cpu, req = mount_and_run("cowfs", root, lower, tree, 0, args.profile, profile=args.out)
            print(f"{args.profile}: {per * 1e6:.1f} us, profile in {args.out}")
            return
        print(f"kernel {os.uname().release}, load {os.getloadavg()[0]:.1f}, {args.rounds} rounds "
              f"interleaved, medians; us per syscall (listdir: per listing of {N_MANY}): wall "
              f"clock of the caller, and CPU time of the daemon (all its threads)")
        for op in args.only.split(","):
            kinds = ("floor", "cowfs-base", "cowfs") if BASE else ("floor", "cowfs")
            res = {k: [] for k in kinds}
            cpus = {k: [] for k in kinds}
            reqs = {}
            for r in range(args.rounds):
                for kind in kinds if r % 2 == 0 else kinds[::-1]:
                    per, cpu, req = mount_and_run(kind, root, lower, tree, r, op)
                    res[kind].append(per)
                    cpus[kind].append(cpu)
                    reqs[kind] = req
            for label, d in (("wall", res), ("daemon cpu", cpus)):
                med = {k: statistics.median(v) * 1e6 for k, v in d.items()}
                f = med["floor"]
                print(f"{op:10s} {label:10s} " + "  ".join(f"{k} {v:8.1f}" for k, v in med.items())
                      + "   ratio to floor " + " ".join(f"{med[k] / f:5.2f}" for k in kinds[1:]))
            for kind in kinds:
                print(f"{'':10s}   {kind:6s} {sum(reqs[kind].values()):6.2f} req: " +
                      " ".join(f"{k}={v:.2f}" for k, v in sorted(reqs[kind].items())))
            sys.stdout.flush()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

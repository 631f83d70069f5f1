"""The per-request floor of pyfuse3+trio on this machine: cowfs cannot be cheaper than this per request.

A trivial in-memory pyfuse3 filesystem (constant attributes, zero entry/attr timeouts so every
request reaches the daemon) runs in a child process; the parent times syscalls against it, counts
the requests the daemon received per handler, and compares with a plain directory and (as root)
kernel overlayfs.

    /work/main/.venv/bin/python bench/floor.py [N_STAT]

bench/perreq.py measures the per-request costs of cowfs, fuse-overlayfs and kernel overlay beside
a trivial filesystem (bench/trivialfs.py) that, unlike this one, caches as cowfs does.
"""

import errno, inspect, json, multiprocessing as mp, os, shutil, signal, statistics, subprocess, sys, tempfile, time

ROUNDS, N_STAT, N_UNLINK, N_LIST, N_MANY = 5, 5000, 2000, 200, 1000
ROOT, D, F, MANY, MANY2 = 1, 2, 3, 4, 5
MANY_NAMES = [b"e%04d" % i for i in range(N_MANY)]
UNLINK_NAMES = [b"u%04d" % i for i in range(N_UNLINK)]


def serve(mnt, counts, ready):
    import pyfuse3, trio

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent unmounts; that ends main()

    ops_names = sorted(n for n in dir(pyfuse3.Operations)
                       if not n.startswith("_") and inspect.iscoroutinefunction(getattr(pyfuse3.Operations, n)))

    class Floor(pyfuse3.Operations):
        def __init__(self):
            super().__init__()
            self.many2 = set(UNLINK_NAMES)
            self.dirs = {ROOT: {b"d": D, b"many": MANY, b"many2": MANY2}, D: {b"f": F},
                         MANY: {n: 1000 + i for i, n in enumerate(MANY_NAMES)}}
            self.listing = {k: sorted(v.items()) for k, v in self.dirs.items()}
            self.attrs = {}

        def attr(self, ino):  # constant per inode, built once
            a = self.attrs.get(ino)
            if a is None:
                a = self.attrs[ino] = pyfuse3.EntryAttributes()
                a.st_ino, a.st_uid, a.st_gid, a.st_blksize = ino, os.getuid(), os.getgid(), 4096
                a.st_mode, a.st_nlink = (0o40755, 2) if ino in (ROOT, D, MANY, MANY2) else (0o100644, 1)
                a.entry_timeout = a.attr_timeout = 0
            return a

        async def lookup(self, parent, name, ctx=None):
            if parent == MANY2:
                if name == b".reset":  # control: refill many2
                    self.many2 = set(UNLINK_NAMES)
                if name not in self.many2:
                    raise pyfuse3.FUSEError(errno.ENOENT)
                return self.attr(10000 + int(name[1:]))
            ino = self.dirs.get(parent, {}).get(name)
            if ino is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            return self.attr(ino)

        async def getattr(self, ino, ctx=None):
            return self.attr(ino)

        async def opendir(self, ino, ctx):
            return ino

        async def readdir(self, fh, start, token):
            ents = self.listing.get(fh, ())  # many2 is never listed
            for i in range(start, len(ents)):
                if not pyfuse3.readdir_reply(token, ents[i][0], self.attr(ents[i][1]), i + 1):
                    return

        async def unlink(self, parent, name, ctx):
            if parent != MANY2:
                raise pyfuse3.FUSEError(errno.EPERM)
            if name not in self.many2:
                raise pyfuse3.FUSEError(errno.ENOENT)
            self.many2.discard(name)

    def counted(i, fn):  # wrap each async handler with a shared-memory counter
        async def wrapper(self, *a):
            counts[i] += 1
            return await fn(self, *a)
        return wrapper

    for i, n in enumerate(ops_names):
        setattr(Floor, n, counted(i, getattr(Floor, n)))
    ready.put(ops_names)
    pyfuse3.init(Floor(), mnt, {"default_permissions", "fsname=floor"})
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=True)


def bench(n, loop, pre=None, counts=None):
    """Median seconds per op over ROUNDS; per-op count deltas per handler index."""
    times, delta = [], [0] * (len(counts) if counts else 0)
    for _ in range(ROUNDS):
        if pre:
            pre()
        before = list(counts) if counts else None
        t0 = time.perf_counter()
        loop()
        times.append(time.perf_counter() - t0)
        if counts:
            delta = [d + a - b for d, a, b in zip(delta, counts, before)]
    return statistics.median(times) / n, [d / (ROUNDS * n) for d in delta]


def line(label, per_op, per_handler=None, names=()):
    us = per_op * 1e6
    if per_handler is None:
        print(f"{label:34s} {us:9.2f} us/syscall")
        return us
    req = sum(per_handler)
    detail = " ".join(f"{names[i]}={c:.2f}" for i, c in enumerate(per_handler) if c)
    print(f"{label:34s} {us:9.2f} us/syscall {req:6.2f} req/syscall {us / req:7.2f} us/req  [{detail}]")
    return us


def overlay_child(root):  # runs inside `unshare -m`: mounts die with the namespace
    L = os.path.join(root, "L")
    os.mkdir(L)
    for n in UNLINK_NAMES:
        open(os.path.join(L, n.decode()), "w").close()
    times = []
    for r in range(ROUNDS):
        U, W, M = (os.path.join(root, f"{x}{r}") for x in "UWM")
        for p in (U, W, M):
            os.mkdir(p)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"userxattr,lowerdir={L},upperdir={U},workdir={W}", M], check=True)
        try:
            paths = [os.path.join(M, n.decode()) for n in UNLINK_NAMES]
            t0 = time.perf_counter()
            for p in paths:
                os.unlink(p)
            times.append(time.perf_counter() - t0)
        finally:
            subprocess.run(["umount", M], check=True)
    print(json.dumps(statistics.median(times) / N_UNLINK))


def interrupted(signum, frame):
    raise KeyboardInterrupt


def main():
    signal.signal(signal.SIGTERM, interrupted)
    n_stat = int(sys.argv[1]) if len(sys.argv) > 1 else N_STAT
    tmp = tempfile.mkdtemp(prefix="floor-", dir="/tmp")
    mnt, plain, child = os.path.join(tmp, "mnt"), os.path.join(tmp, "plain"), None
    try:
        os.makedirs(mnt)
        for sub in ("d", "many"):
            os.makedirs(os.path.join(plain, sub))
        open(os.path.join(plain, "d", "f"), "w").close()
        for n in MANY_NAMES:
            open(os.path.join(plain, "many", n.decode()), "w").close()
        ctx = mp.get_context("fork")
        counts, ready = ctx.Array("q", 64, lock=False), ctx.Queue()
        child = ctx.Process(target=serve, args=(mnt, counts, ready))
        child.start()
        names = ready.get(timeout=10)
        for _ in range(1000):
            if os.path.ismount(mnt) or not child.is_alive():
                break
            time.sleep(0.01)
        if not os.path.ismount(mnt):
            sys.exit("floor: the pyfuse3 filesystem did not mount")
        fstype = subprocess.run(["stat", "-f", "-c", "%T", plain], capture_output=True, text=True).stdout.strip()
        print(f"pyfuse3 {__import__('pyfuse3').__version__}, trio {__import__('trio').__version__}, "
              f"kernel {os.uname().release}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}, "
              f"{ROUNDS} rounds, median; plain dir on {fstype}")

        def vs_plain(label, n, op, fuse_path, plain_path):
            fuse = line(f"{label} x{n}  pyfuse3", *bench(n, lambda: [op(fuse_path) for _ in range(n)], counts=counts), names)
            ref = line(f"{label} x{n}  {fstype}", bench(n, lambda: [op(plain_path) for _ in range(n)])[0])
            print(f"{'':34s} pyfuse3/{fstype} = {fuse / ref:.1f}x")

        vs_plain("os.stat(d/f)", n_stat, os.stat, os.path.join(mnt, "d", "f"), os.path.join(plain, "d", "f"))
        vs_plain(f"os.listdir({N_MANY})", N_LIST, os.listdir, os.path.join(mnt, "many"), os.path.join(plain, "many"))
        m2 = os.path.join(mnt, "many2")
        paths = [os.path.join(m2, n.decode()) for n in UNLINK_NAMES]
        fuse = line(f"os.unlink x{N_UNLINK}  pyfuse3",
                    *bench(N_UNLINK, lambda: [os.unlink(p) for p in paths],
                           pre=lambda: os.path.exists(os.path.join(m2, ".reset")), counts=counts), names)
        if os.geteuid() == 0 and shutil.which("unshare"):
            r = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                                os.path.abspath(__file__), "--overlay-child", tmp], capture_output=True, text=True)
            if r.returncode == 0:
                ref = line(f"os.unlink x{N_UNLINK}  kernel overlayfs", json.loads(r.stdout))
                print(f"{'':34s} pyfuse3 floor/kernel overlay = {fuse / ref:.1f}x")
            else:
                print(f"kernel overlayfs: skipped ({r.stderr.strip().splitlines()[-1:]})")
        else:
            print("kernel overlayfs: skipped (needs root and unshare)")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # cleanup must not be interrupted
            signal.signal(sig, signal.SIG_IGN)
        if os.path.ismount(mnt):
            subprocess.run(["fusermount3", "-u", mnt], check=False)
        if child is not None and child.pid is not None:
            child.join(10)
            if child.is_alive():
                child.kill()
                child.join()
        if os.path.ismount(mnt):
            subprocess.run(["fusermount3", "-u", "-z", mnt], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--overlay-child"]:
        overlay_child(sys.argv[2])
    else:
        main()

"""Mount time and memory footprint of cowfs daemons (issue 13, "Mount time and footprint").

    .venv/bin/python bench/footprint.py [--rounds 15] [--mounts 50] [--files 20000] [--json F]

Run as root (it enters a private mount namespace by itself); every mount is made rootless by the
test user (`make testenv` creates cowfs-test, /dev/fuse 0666), as a sandbox host would. Reports:

- mount: median wall time of `cowfs mount --lower L --upper U MNT` (until it returns with the
  mount live) against `python -c "import trio, pyfuse3"` with the same interpreter, the two
  interleaved round by round (order alternating), each as the test user;
- idle: RSS and PSS (/proc/PID/smaps_rollup) of a daemon right after its mount, median;
- walk: RSS of a daemon after a walk + lstat of a FILES-file lower tree, again after
  `echo 2 > /proc/sys/vm/drop_caches` (the kernel forgets its dentries: FORGET for each node;
  once RSS has stopped falling), and after a second walk;
- many: MOUNTS idle mounts at once: summed RSS and summed PSS, and summed PSS / (MOUNTS x the
  idle RSS of one `cowfs mount`); with --many-walk FILES each is walked once first (a daemon
  that has worked: allocated, collected garbage).

`--via parent` mounts through one ready parent (`cowfs serve`, README "Many mounts") instead of
a `cowfs mount` per mount: the mount time is then the request's round trip.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
USER = os.environ.get("COWFS_TEST_USER", "cowfs-test")
NS_MARK = "COWFS_FOOTPRINT_NS"
TIMEOUT = 60


def as_user(cmd: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups", *cmd]


def user_env() -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/",
            "PYTHONDONTWRITEBYTECODE": "1"}


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("timeout", TIMEOUT)
    res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                         cwd="/", check=False, **kw)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {res.returncode}: {res.stderr.strip()}")
    return res


def chown_user(path: str) -> None:
    import pwd  # noqa: PLC0415

    pw = pwd.getpwnam(USER)
    os.chown(path, pw.pw_uid, pw.pw_gid)


def fstype_at(path: str) -> str | None:
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if parts[4] == path:
                found = parts[parts.index("-") + 1]
    return found


def kib(pid: int, field: str, source: str) -> int:
    with open(f"/proc/{pid}/{source}") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/{source}")


def rss(pid: int) -> float:
    return kib(pid, "VmRSS", "status") / 1024


def settled_rss(pid: int, limit: float = 30.0) -> float:
    """RSS once it has not fallen for 2 s: forgets arrive in batches, and the daemon gives
    their memory back a second after a burst (NodeTable.compact)."""
    deadline = time.monotonic() + limit
    last = rss(pid)
    while time.monotonic() < deadline:
        time.sleep(2)
        now = rss(pid)
        if now > last - 0.5:
            break
        last = now
    return now


def pss(pid: int) -> float:
    return kib(pid, "Pss", "smaps_rollup") / 1024


def daemon_of(mnt: str) -> int:
    """The pid of the `cowfs mount` daemon serving MNT (its command line names MNT)."""
    want = os.fsencode(mnt)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if want in argv and b"mount" in argv:
            return int(name)
    raise RuntimeError(f"no daemon found for {mnt}")


# ---------------------------------------------------------------------------------------------
# ways to mount


class ViaCli:
    """One `cowfs mount` per mount, as the test user."""

    name = "cowfs mount"

    def __init__(self, cowfs: str):
        self.cowfs = cowfs

    def mount(self, lower: str, upper: str, mnt: str) -> int:
        run(as_user([self.cowfs, "mount", "--lower", lower, "--upper", upper, mnt]),
            env=user_env())
        return daemon_of(mnt)

    def close(self) -> None:
        pass


class ViaParent:
    """One ready parent (`cowfs serve SOCKET`, run as the test user) forks every mount."""

    name = "cowfs serve (ready parent)"

    def __init__(self, cowfs: str, base: str):
        self.sock = os.path.join(base, "serve.sock")
        self.proc = subprocess.Popen(as_user([cowfs, "serve", self.sock]), env=user_env(),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd="/", text=True)
        line = self.proc.stdout.readline()  # "ready" once it listens
        if not line.startswith("ready"):
            raise RuntimeError(f"cowfs serve did not start: {line!r} {self.proc.stderr.read()}")
        self.pid = self.proc.pid

    def mount(self, lower: str, upper: str, mnt: str) -> int:
        # the client is the caller's own process: here this one (root), talking to the parent
        # the test user runs; what a host does from its own code (cowfs.serve.request)
        from cowfs.serve import request  # noqa: PLC0415

        return request(self.sock, ["mount", "--lower", lower, "--upper", upper, mnt])

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def unmount(mnt: str) -> None:
    subprocess.run(["fusermount3", "-u", mnt], capture_output=True, timeout=TIMEOUT, check=False)
    if fstype_at(mnt) is not None:
        subprocess.run(["fusermount3", "-uz", mnt], capture_output=True, timeout=TIMEOUT,
                       check=False)


def wait_gone(pid: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except OSError:
            return
        time.sleep(0.01)


class Lab:
    def __init__(self, base: str, via, ways: dict):
        self.base, self.via, self.ways, self.n = base, via, ways, 0

    def fresh(self) -> tuple[str, str]:
        self.n += 1
        d = os.path.join(self.base, f"m{self.n}")
        os.mkdir(d)
        for sub in ("upper", "mnt"):
            os.mkdir(os.path.join(d, sub))
        for p in (d, os.path.join(d, "upper"), os.path.join(d, "mnt")):
            chown_user(p)
        return os.path.join(d, "upper"), os.path.join(d, "mnt")

    def mount(self, lower: str, via=None) -> tuple[str, int, float]:
        upper, mnt = self.fresh()
        t0 = time.perf_counter()
        pid = (via or self.via).mount(lower, upper, mnt)
        took = time.perf_counter() - t0
        if fstype_at(mnt) != "fuse.cowfs":
            raise RuntimeError(f"{mnt} is not mounted after the mount returned")
        return mnt, pid, took

    def unmount(self, mnt: str, pid: int) -> None:
        unmount(mnt)
        wait_gone(pid)


# ---------------------------------------------------------------------------------------------
# the figures


def build_tree(path: str, files: int) -> None:
    """FILES small files in directories of 200 (built once, reused while the count matches)."""
    stamp = path + ".files"
    try:
        with open(stamp) as f:
            if int(f.read()) == files:
                return
    except (OSError, ValueError):
        pass
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    for i in range(files):
        d = os.path.join(path, f"pkg{i // 200:03d}")
        if i % 200 == 0:
            os.mkdir(d)
        with open(os.path.join(d, f"module_{i:05d}.py"), "w") as f:
            f.write("x = 1\n")
    for root, dirs, names in os.walk(path):
        os.chmod(root, 0o755)
    with open(stamp, "w") as f:
        f.write(str(files))


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def measure_mount(lab: Lab, lower: str, py: str, rounds: int) -> dict:
    """Every way of mounting and the bare import, interleaved (the order rotates each round)."""
    names = ["bare", *lab.ways]
    took: dict[str, list[float]] = {n: [] for n in names}
    idle: dict[str, list[tuple[float, float]]] = {n: [] for n in lab.ways}
    cmd_bare = as_user([py, "-c", "import trio, pyfuse3"])
    for i in range(rounds):
        for what in names[i % len(names):] + names[:i % len(names)]:
            if what == "bare":
                t0 = time.perf_counter()
                run(cmd_bare, env=user_env())
                took[what].append(time.perf_counter() - t0)
            else:
                mnt, pid, t = lab.mount(lower, lab.ways[what])
                took[what].append(t)
                time.sleep(0.2)  # idle: whatever the start left settles
                idle[what].append((rss(pid), pss(pid)))
                lab.unmount(mnt, pid)
    bare = median(took["bare"])
    out = {"rounds": rounds, "bare_import_s": bare}
    for n in lab.ways:
        m = took[n]
        out[n] = {"mount_s": median(m), "mount_over_bare": median(m) / bare,
                  "mount_min_s": min(m), "mount_max_s": max(m),
                  "idle_rss_mib": median([r for r, _ in idle[n]]),
                  "idle_pss_mib": median([p for _, p in idle[n]])}
    return out


WALK = """
import os, sys
n = 0
for root, dirs, files in os.walk(sys.argv[1]):
    for name in files:
        os.lstat(os.path.join(root, name))
        n += 1
print(n)
"""


def drop_caches() -> None:
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2\n")


def measure_walk(lab: Lab, tree: str, py: str, files: int) -> dict:
    mnt, pid, _ = lab.mount(tree)
    try:
        before = rss(pid)
        t0 = time.perf_counter()
        res = run(as_user([py, "-c", WALK, mnt]), env=user_env(), timeout=600)
        took = time.perf_counter() - t0
        if int(res.stdout) != files:
            raise RuntimeError(f"walk saw {res.stdout.strip()} files, not {files}")
        after = rss(pid)
        drop_caches()
        forgotten = settled_rss(pid)
        run(as_user([py, "-c", WALK, mnt]), env=user_env(), timeout=600)
        again = rss(pid)
        return {"files": files, "walk_s": took, "rss_before_mib": before,
                "rss_after_walk_mib": after, "rss_after_forget_mib": forgotten,
                "rss_after_second_walk_mib": again,
                "hwm_mib": kib(pid, "VmHWM", "status") / 1024}
    finally:
        lab.unmount(mnt, pid)


def measure_many(lab: Lab, lower: str, mounts: int, one_rss: float, py: str,
                 walk: int) -> dict:
    """MOUNTS mounts at once; ONE_RSS: the idle RSS of one `cowfs mount` daemon. WALK: each
    mount is walked once (its daemon has worked: allocated, collected garbage) before the count,
    else they are idle."""
    live: list[tuple[str, int]] = []
    try:
        times = []
        for _ in range(mounts):
            mnt, pid, took = lab.mount(lower)
            live.append((mnt, pid))
            times.append(took)
        if walk:
            for mnt, _ in live:
                run(as_user([py, "-c", WALK, mnt]), env=user_env(), timeout=600)
        time.sleep(0.5)
        rsss = [rss(pid) for _, pid in live]
        psss = [pss(pid) for _, pid in live]
        extra = {}
        parent = getattr(lab.via, "pid", None)
        if parent is not None:  # the ready parent's own share counts too
            extra = {"parent_rss_mib": rss(parent), "parent_pss_mib": pss(parent)}
            psss.append(extra["parent_pss_mib"])
        return {"mounts": mounts, "walked_files": walk, "mount_s_median": median(times),
                "sum_rss_mib": sum(rsss),
                "sum_pss_mib": sum(psss), "pss_over_n_rss": sum(psss) / (mounts * one_rss),
                **extra}
    finally:
        for mnt, pid in live:
            lab.unmount(mnt, pid)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=15, help="mount/import rounds (median)")
    ap.add_argument("--mounts", type=int, default=50, help="idle mounts at once")
    ap.add_argument("--files", type=int, default=20000, help="files in the walked tree")
    ap.add_argument("--many-walk", type=int, default=0, metavar="FILES",
                    help="walk each of the many mounts once, over a tree of FILES files, before "
                    "counting (default: idle mounts over a 1-file lower)")
    ap.add_argument("--via", choices=("cli", "parent"), default="cli")
    ap.add_argument("--only", action="append", choices=("mount", "walk", "many"), default=[])
    ap.add_argument("--python", default=os.path.join(os.path.dirname(sys.executable), "python"),
                    help="interpreter (venv) whose cowfs is measured")
    ap.add_argument("--cache", default="/var/tmp/cowfs-footprint",
                    help="where the walked tree is kept between runs")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("footprint.py: run as root (the mounts are made by the test user)")
    if os.environ.get(NS_MARK) != "1":  # every mount dies with the namespace
        os.execvpe("unshare", ["unshare", "-m", "--propagation", "private", sys.executable,
                               *sys.argv], os.environ | {NS_MARK: "1"})
    only = set(args.only or ("mount", "walk", "many"))
    py = args.python
    cowfs = os.path.join(os.path.dirname(py), "cowfs")
    os.makedirs(args.cache, exist_ok=True)
    os.chmod(args.cache, 0o755)
    tree = os.path.join(args.cache, f"tree{args.files}")
    if "walk" in only:
        build_tree(tree, args.files)
    base = tempfile.mkdtemp(prefix="cowfs-footprint-", dir="/tmp")
    os.chmod(base, 0o755)
    small = os.path.join(base, "lower")
    os.makedirs(os.path.join(small, "d"))
    with open(os.path.join(small, "d", "f"), "w") as f:
        f.write("x\n")
    if args.via == "parent":
        chown_user(base)  # the parent's socket lives there
    ways = {"cli": ViaCli(cowfs)}
    if args.via == "parent":
        ways["parent"] = ViaParent(cowfs, base)
    via = ways[args.via]
    lab = Lab(base, via, ways)
    out: dict = {"via": via.name, "python": py, "load": os.getloadavg()[0]}
    try:
        if "mount" in only or "many" in only:
            out["mount"] = measure_mount(lab, small, py, args.rounds)
            print(json.dumps({"mount": out["mount"]}), flush=True)
        if "walk" in only:
            out["walk"] = measure_walk(lab, tree, py, args.files)
            print(json.dumps({"walk": out["walk"]}), flush=True)
        if "many" in only:
            many_lower = small
            if args.many_walk:
                many_lower = os.path.join(args.cache, f"tree{args.many_walk}")
                build_tree(many_lower, args.many_walk)
            out["many"] = measure_many(lab, many_lower, args.mounts,
                                       out["mount"]["cli"]["idle_rss_mib"], py, args.many_walk)
            print(json.dumps({"many": out["many"]}), flush=True)
    finally:
        for way in ways.values():
            way.close()
        shutil.rmtree(base, ignore_errors=True)
    out["load_end"] = os.getloadavg()[0]
    print(report(out))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


def report(out: dict) -> str:
    lines = [f"footprint ({out['via']}; load {out['load']:.1f} -> {out['load_end']:.1f})"]
    m = out.get("mount")
    if m:
        lines.append(f"  import trio, pyfuse3 {m['bare_import_s']:.3f} s (bare interpreter)")
        for n in ("cli", "parent"):
            if n in m:
                x = m[n]
                lines += [f"  mount ({n:6})  {x['mount_s']:.3f} s (min {x['mount_min_s']:.3f}, "
                          f"max {x['mount_max_s']:.3f}); {x['mount_over_bare']:.2f} x the import;"
                          f" idle daemon RSS {x['idle_rss_mib']:.1f} MiB, PSS "
                          f"{x['idle_pss_mib']:.1f} MiB"]
    w = out.get("walk")
    if w:
        lines.append(f"  {w['files']} files walk {w['walk_s']:.2f} s: RSS "
                     f"{w['rss_before_mib']:.1f} -> {w['rss_after_walk_mib']:.1f} MiB (peak "
                     f"{w['hwm_mib']:.1f}), after drop_caches {w['rss_after_forget_mib']:.1f} MiB,"
                     f" after a second walk {w['rss_after_second_walk_mib']:.1f} MiB")
    n = out.get("many")
    if n:
        state = f"walked ({n['walked_files']} files)" if n.get("walked_files") else "idle"
        lines.append(f"  {n['mounts']} {state} mounts: sum RSS {n['sum_rss_mib']:.0f} MiB, sum PSS "
                     f"{n['sum_pss_mib']:.0f} MiB = {n['pss_over_n_rss']:.0%} of {n['mounts']} x "
                     f"the RSS of one `cowfs mount`; mount {n['mount_s_median']:.3f} s each")
        if "parent_rss_mib" in n:
            lines.append(f"  ready parent    RSS {n['parent_rss_mib']:.1f} MiB, PSS "
                         f"{n['parent_pss_mib']:.1f} MiB (in the sum)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Kill at any point: SIGKILL the cowfs daemon at every change it makes to the disk during one
multi-step operation, remount, and check that nothing is half done.

How
- tests/crashkill.c (an LD_PRELOAD shim, built here with gcc) counts the daemon's changes to
  files below the scenario's directory (creates, mkdir/mknod/rename/link/unlink, xattrs, chmod,
  chown, times, truncate, writes, copy_file_range, fsync; one counter for all threads) and
  SIGKILLs the daemon just before change number N. cowfs itself has no fault-injection code.
  (strace --inject counts per syscall and per thread: it cannot say "the Nth change".)
- A scenario is: lower tree, setup ops (run through a normal mount, then unmounted: the upper
  copied as it is then is the starting point of every run), and the ops under test.
- A recording run (no kill) lists the changes the ops make: the kill points. The legal states
  come from uninterrupted runs: S_i is the merged tree after the first i ops (remounted).
- For every kill point N: a fresh copy of the starting upper, mount with the shim armed at N, run
  the ops (those after the kill fail with ENOTCONN), `fusermount3 -uz`, `cowfs fsck` (work-dir
  leftovers are expected there, nothing else), remount normally, dump the merged tree (plus the
  mtime of every non-directory), check the work dir is empty, unmount, `cowfs fsck` clean.
  If the first j ops returned (op j+1 was interrupted), the tree must be S_j or S_{j+1}: the old
  or the new state of the interrupted op, and everything acknowledged before it (an fsync'ed
  write included) is there.

Usage (root; `make crash` runs every kill point of every scenario):
    python tests/crash.py [--scenario NAME ...] [--sample K] [--seed S] [-v]
tests/test_crash.py runs a bounded sample of the kill points in CI.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import overlay  # noqa: E402
from overlay import Dir, File, Hardlink, Symlink  # noqa: E402

MiB = 1 << 20
RECENT_NS = 10 ** 9 * 3600  # a time this close to now is "recent" (made during the test)
DAEMON_TIMEOUT = 20.0


# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------
@dataclass
class Scenario:
    name: str
    what: str
    lower: dict
    ops: list
    setup: list = field(default_factory=list)
    opts: list = field(default_factory=list)  # cowfs mount options of every mount


def _open_append(fd: str, path: str) -> list:
    return ["open", fd, path, ["O_WRONLY", "O_APPEND"]]


SCENARIOS = [
    Scenario(
        "copyup-data", "copy-up of a multi-MiB sparse file by an append",
        {"big": File(random.Random(1).randbytes(3 * MiB), size=5 * MiB),
         "small": File("small\n", xattrs={"user.k": "v"})},
        [_open_append("f", "big"), ["write", "f", "tail"], ["close", "f"],
         ["truncate", "small", 2]]),
    Scenario(
        "metacopy", "-o metacopy=on: metadata-only copy-ups (chmod, rename), then the data "
        "copied in by an append, a truncate and an O_TRUNC open",
        {"big": File(random.Random(2).randbytes(3 * MiB)), "m": File("m\n" * 999),
         "t": "t\n", "r": "r\n"},
        [["chmod", "big", 0o600], _open_append("f", "big"), ["write", "f", "tail"],
         ["close", "f"], ["truncate", "m", 5], ["open", "t", "t", ["O_WRONLY", "O_TRUNC"]],
         ["close", "t"], ["rename", "r", "r2"], _open_append("r", "r2"), ["write", "r", "2"],
         ["close", "r"]],
        setup=[["chmod", "m", 0o640], ["setxattr", "t", "user.t", "1"]],
        opts=["--metacopy"]),
    Scenario(
        "copyup-meta", "copy-up by chmod, chown, utime, setxattr, and of a symlink",
        {"a": File("a\n", xattrs={"user.x": "1"}), "b": "b\n", "c": "c\n", "d": "d\n",
         "ln": Symlink("a")},
        [["chmod", "a", 0o600], ["chown", "b", "user", "user"],
         ["utime", "c", 1_700_000_000_000_000_000, 1_700_000_000_000_000_000],
         ["setxattr", "d", "user.new", "v"], ["lchown", "ln", "user", "user"]]),
    Scenario(
        "copyup-parents", "copy-up of a deep file: its parents first (one of them 0555)",
        {"p": Dir({"q": Dir({"r": Dir({"deep": "deep\n"}, xattrs={"user.r": "r"})},
                            mode=0o555)}, mode=0o750)},
        [_open_append("f", "p/q/r/deep"), ["write", "f", "more\n"], ["close", "f"]]),
    Scenario(
        "whiteout-over-upper", "unlink of copied-up files that have a lower (file, symlink)",
        {"f": "f\n", "s": Symlink("f"), "g": "g\n"},
        [["unlink", "f"], ["unlink", "s"], ["unlink", "g"]],
        setup=[["chmod", "f", 0o600], ["lchown", "s", "user", "user"]]),
    Scenario(
        "opaque-dir", "rmdir of a merged dir, mkdir of the same name (opaque), a file over a "
        "whiteout",
        {"o": Dir({"x": "x\n", "y": "y\n"}, mode=0o700), "w": "w\n"},
        [["rmdir", "o"], ["mkdir", "o", 0o555], ["unlink", "w"],
         ["open", "f", "w", ["O_WRONLY", "O_CREAT", "O_EXCL"], 0o600], ["write", "f", "new\n"],
         ["close", "f"]],
        setup=[["unlink", "o/x"], ["unlink", "o/y"]]),
    Scenario(
        "setgid-dir", "new objects over whiteouts in a setgid dir (group and S_ISGID inherited)",
        {"sg": Dir({"f": "f\n", "g": "g\n", "s": "s\n"}, mode=0o2775)},
        [["mkdir", "sg/f", 0o750], ["open", "n", "sg/g", ["O_WRONLY", "O_CREAT"], 0o640],
         ["close", "n"], ["symlink", "f", "sg/s"]],
        setup=[["unlink", "sg/f"], ["unlink", "sg/g"], ["unlink", "sg/s"]]),
    Scenario(
        "copyup-hardlinked", "copy-up of lower files with hard links: every name the view shows "
        "linked to the one copy (one name written, another chmod'ed, one renamed; a symlink)",
        {"a": "linked\n", "b": Hardlink("a"), "c": Hardlink("a"), "d": "d\n",
         "sub/e": Hardlink("a"), "s": Symlink("d"), "t/s2": Hardlink("s")},
        [_open_append("f", "a"), ["write", "f", "more\n"], ["close", "f"], ["chmod", "b", 0o600],
         ["rename", "c", "c2"], ["lchown", "t/s2", "user", "user"]]),
    Scenario(
        "rename-whiteout", "rename of lower entries (leaves whiteouts), over a lower target",
        {"a": "a\n", "b": "b\n", "t": "t\n", "sl": Symlink("a"), "m": Dir({"z": "z\n"})},
        [["rename", "a", "a2"], ["rename", "b", "t"], ["rename", "sl", "m/sl2"],
         ["rename", "m/z", "z"]]),
    Scenario(
        "rename-over-dir", "rename of an upper dir over an empty merged dir (whiteouts inside) "
        "and over an empty upper dir",
        {"md": Dir({"a": "a\n", "b": "b\n"}), "ld": Dir({"x": "x\n"})},
        [["rename", "ud", "md"], ["rename", "ud2", "ld/sub"], ["rename", "ld/x", "ld/sub/x"]],
        setup=[["mkdir", "ud"], ["write_file", "ud/in", "in\n"], ["unlink", "md/a"],
               ["unlink", "md/b"], ["mkdir", "ud2"], ["mkdir", "ld/sub"]]),
    Scenario(
        "rename-exchange", "RENAME_EXCHANGE of upper and lower entries",
        {"l": "lower\n", "m": Dir({"lf": "lf\n"}), "l2": "l2\n"},
        [["rename", "l", "u", "EXCHANGE"], ["rename", "ud", "m/lf", "EXCHANGE"],
         ["rename", "l2", "u", "EXCHANGE"]],
        setup=[["write_file", "u", "upper\n"], ["mkdir", "ud"], ["write_file", "ud/in", "in\n"]]),
    Scenario(
        "rmdir-merged", "rmdir of merged dirs holding whiteouts (one 0555)",
        {"md": Dir({"a": "a\n", "b": "b\n"}), "ro": Dir({"c": "c\n"}, mode=0o755)},
        [["rmdir", "md"], ["rmdir", "ro"]],
        setup=[["unlink", "md/a"], ["unlink", "md/b"], ["unlink", "ro/c"], ["chmod", "ro", 0o555]]),
    Scenario(
        "link-lower", "link of lower files (copy-up, then link; into a lower dir)",
        {"src": File("src\n", xattrs={"user.s": "1"}), "sub": Dir({"o": "o\n"}), "s2": "s2\n"},
        [["link", "src", "dst"], ["link", "src", "sub/dst2"], ["link", "s2", "sub/o2"]]),
    Scenario(
        "xattr", "setxattr/removexattr on lower files and dirs",
        {"f": File("f\n", xattrs={"user.a": "1", "user.b": "2"}),
         "d": Dir({"in": "in\n"}, xattrs={"user.d": "d"})},
        [["setxattr", "f", "user.c", "3"], ["removexattr", "f", "user.a"],
         ["removexattr", "d", "user.d"], ["setxattr", "d", "user.e", "5"]]),
    Scenario(
        "fsync", "writes and fsync: what an fsync acknowledged is there after a kill",
        {"j": "journal\n", "keep": "keep\n", "keep2": File("keep2\n" * 1000)},
        [_open_append("f", "j"), ["write", "f", "one\n"], ["fsync", "f"],
         ["write", "f", "two\n"], ["fsync", "f"], ["close", "f"],
         ["open", "n", "new", ["O_WRONLY", "O_CREAT", "O_EXCL"], 0o640],
         ["write", "n", {"pattern": 7, "size": MiB}], ["fdatasync", "n"], ["close", "n"],
         ["truncate", "keep", 0], ["open", "t", "keep2", ["O_WRONLY", "O_TRUNC"]],
         ["write", "t", "k2"], ["close", "t"]]),
]
BY_NAME = {s.name: s for s in SCENARIOS}


# ---------------------------------------------------------------------------------------------
# The shim and the daemon under it
# ---------------------------------------------------------------------------------------------
_shim: list[str] = []


def shim() -> str:
    """tests/crashkill.c built into the session dir (readable by the test user)."""
    if not _shim:
        out = os.path.join(overlay.env().base, "crashkill.so")
        r = subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-o", out,
                            os.path.join(HERE, "crashkill.c"), "-ldl"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise overlay.HarnessError(f"cannot build the crashkill shim:\n{r.stderr}")
        os.chmod(out, 0o755)
        _shim.append(out)
    return _shim[0]


class Daemon:
    """cowfs mount --foreground as the test user, under the shim (kill_at 0: only records)."""

    def __init__(self, lay: overlay.Layers, kill_at: int = 0, record: str | None = None,
                 opts: list | None = None):
        e = overlay.env()
        self.lay = lay
        cmd = [e.cowfs_bin, "mount", "--foreground"]
        for low in lay.lowers:
            cmd += ["--lower", low]
        cmd += ["--upper", lay.upper, "--work", lay.work, *(opts or []), lay.mnt]
        env = overlay.user_env(e) | {"LD_PRELOAD": shim(), "CRASHKILL_PREFIX": lay.base + "/",
                                     "CRASHKILL_AT": str(kill_at)}
        if record:
            env["CRASHKILL_LOG"] = record
        # beside the layers, not below them: its writes are not the changes counted
        self.log = lay.base + "-daemon.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(overlay.as_user(cmd), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, cwd=e.base,
                                         env=env, umask=0o022, start_new_session=True)
        deadline = time.monotonic() + overlay.MOUNT_TIMEOUT
        self.mounted = False
        while time.monotonic() < deadline:
            if overlay.mounted_at(lay.mnt) is not None:
                self.mounted = True
                break
            if self.proc.poll() is not None:
                break  # killed while mounting: a kill point before the ops
            time.sleep(0.005)
        else:
            self.proc.kill()
            raise overlay.HarnessError(f"no mount after {overlay.MOUNT_TIMEOUT} s:\n"
                                       f"{self.tail()}")

    def tail(self) -> str:
        with open(self.log, errors="replace") as f:
            return "".join(f.readlines()[-30:])

    def finish(self) -> bool:
        """Unmount (cleanly if it lives, lazily if it was killed); True if it was killed."""
        if self.proc.poll() is None and overlay.mounted_at(self.lay.mnt) is not None:
            overlay._run(overlay.as_user(["fusermount3", "-u", self.lay.mnt]),
                         timeout=overlay.UMOUNT_TIMEOUT, cwd=overlay.env().base,
                         env=overlay.user_env(overlay.env()))
        try:
            rc = self.proc.wait(timeout=DAEMON_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(timeout=DAEMON_TIMEOUT)
            raise overlay.HarnessError(f"daemon still running after unmount:\n{self.tail()}")
        if overlay.mounted_at(self.lay.mnt) is not None:
            overlay._run(overlay.as_user(["fusermount3", "-uz", self.lay.mnt]),
                         timeout=overlay.UMOUNT_TIMEOUT, cwd=overlay.env().base,
                         env=overlay.user_env(overlay.env()))
            if overlay.mounted_at(self.lay.mnt) is not None:
                overlay._run(["umount", "-l", self.lay.mnt])
        if rc == -9:
            return True
        if rc != 0:
            raise overlay.HarnessError(f"daemon exited with {rc}:\n{self.tail()}")
        return False


# ---------------------------------------------------------------------------------------------
# Trees and checks
# ---------------------------------------------------------------------------------------------
def _time(v) -> object:
    if v == "now" or (isinstance(v, int) and abs(time.time_ns() - v) < RECENT_NS):
        return "recent"
    return v


def snapshot(mnt: str) -> dict:
    """The merged tree (oprunner.tree_dump) plus every non-directory's mtime."""
    tree = overlay.dump_tree(mnt)
    paths = [p for p, d in tree.items() if d.get("type") not in ("d", None)]
    if paths:
        res = overlay.run_ops(mnt, [["lstat_times", p] for p in paths])
        for p, r in zip(paths, res, strict=True):
            tree[p]["mtime"] = _time(r["ok"]["mtime"]) if "ok" in r else r
    return tree


def fsck_problems(lay: overlay.Layers) -> list[str]:
    """`cowfs fsck UPPER --work WORK` as lines (run in-process: the venv has cowfs)."""
    from cowfs import fsck
    lines: list[bytes] = []
    fsck.fsck(lay.upper, lay.work, False, lines.append, list(lay.lowers))
    return [ln.decode(errors="replace").rstrip("\n") for ln in lines]


def work_entries(lay: overlay.Layers) -> list[str]:
    scratch = os.path.join(lay.work, "work")
    return sorted(os.listdir(scratch)) if os.path.isdir(scratch) else []


def same_state(tree: dict, legal: dict) -> bool:
    """TREE is LEGAL: every path, its contents and attributes, and which paths are one object
    (a lower hard link's names stay one across a kill during its copy-up, cowfs/hardlinks.py)."""
    return tree == legal


def tree_diff(a: dict, b: dict, limit: int = 12) -> list[str]:
    out = []
    for p in sorted(set(a) | set(b)):
        if a.get(p) != b.get(p):
            out.append(f"  {p}: {json.dumps(a.get(p), sort_keys=True)}\n"
                       f"  {' ' * len(p)}  vs {json.dumps(b.get(p), sort_keys=True)}")
    return out[:limit]


# ---------------------------------------------------------------------------------------------
# One scenario
# ---------------------------------------------------------------------------------------------
@dataclass
class Point:
    n: int  # kill before change n (counted from the daemon's start)
    what: str  # "renameat2 /path" from the recording


@dataclass
class KillResult:
    point: Point
    ok: bool
    done: int  # ops that returned before the kill
    message: str = ""


class Runner:
    """A scenario's layers, its starting upper, its kill points and legal states."""

    def __init__(self, sc: Scenario):
        self.sc = sc
        self.lay = overlay.make_layers(f"crash-{sc.name}", [sc.lower])
        self.start_upper = os.path.join(self.lay.base, "upper.start")
        self._n = 0
        # setup through a plain mount; what it leaves is where every run starts
        if sc.setup:
            with overlay.mount("cowfs", self.lay, self.sc.opts):
                res = overlay.run_ops(self.lay.mnt, sc.setup)
            bad = [(op, r) for op, r in zip(sc.setup, res, strict=True) if "ok" not in r]
            if bad:
                raise overlay.HarnessError(f"{sc.name}: setup failed: {bad}")
        self._copy(self.lay.upper, self.start_upper)
        self.points = self._record()
        self._states: dict[int, dict] = {}

    def _copy(self, src: str, dst: str) -> None:
        r = overlay._run(["cp", "-a", "--", src, dst], timeout=120)
        if r.returncode != 0:
            raise overlay.HarnessError(f"cp -a {src} {dst}: {r.stderr}")

    def fresh(self) -> None:
        """A new upper (a copy of the starting one) and an empty work dir."""
        self._n += 1
        up = os.path.join(self.lay.base, f"upper{self._n}")
        self._copy(self.start_upper, up)
        old_up, old_work = self.lay.upper, self.lay.work
        self.lay.upper = up
        self.lay.new_work()
        for d in (old_up, old_work):
            if d and d != self.start_upper:
                shutil.rmtree(d, ignore_errors=True)

    def _record(self) -> list[Point]:
        self.fresh()
        log = os.path.join(self.lay.base, "record.log")
        with open(log, "w"):
            pass
        os.chown(log, overlay.env().uid, overlay.env().gid)
        d = Daemon(self.lay, record=log, opts=self.sc.opts)
        if not d.mounted:
            raise overlay.HarnessError(f"recording mount failed:\n{d.tail()}")
        t0 = time.monotonic_ns()
        res = overlay.run_ops(self.lay.mnt, self.sc.ops)
        t1 = time.monotonic_ns()
        if d.finish():
            raise overlay.HarnessError("the recording daemon was killed")
        self.expected_results = res
        points = []
        with open(log) as f:
            for line in f:
                n, ts, name, path = line.rstrip("\n").split(" ", 3)
                what = f"{name} {self._short(path)}"
                if t0 <= int(ts) <= t1:
                    points.append(Point(int(n), what))
                elif int(ts) > t1:  # after the ops (unmount): a kill there must be harmless too
                    points.append(Point(int(n), what + " (unmount)"))
        if not points:
            raise overlay.HarnessError(f"{self.sc.name}: the ops changed nothing on disk")
        return points

    def _short(self, path: str) -> str:
        """/upper/a, /work/#tmp: the same for every run of the scenario (selectors match it)."""
        rel = path[len(self.lay.base):]
        rel = re.sub(r"^/upper\d+", "/upper", rel)
        rel = re.sub(r"^/work\d+/work/#cowfs-[0-9a-f]+-[0-9a-f]+", "/work/#tmp", rel)
        return re.sub(r"^/work\d+/work/#cowfs-mode-[0-9a-f]+-[0-9a-f]+", "/work/#mode-note", rel)

    def state(self, i: int) -> dict:
        """S_i: the merged tree after the first i ops, uninterrupted (computed once)."""
        if i not in self._states:
            self._states[i] = self._state(i)
        return self._states[i]

    def _state(self, i: int) -> dict:
        self.fresh()
        with overlay.mount("cowfs", self.lay, self.sc.opts):
            overlay.run_ops(self.lay.mnt, self.sc.ops[:i])
            if i < len(self.sc.ops):
                return snapshot(self.lay.mnt)
        with overlay.mount("cowfs", self.lay, self.sc.opts):  # the last one also as a remount sees it
            return snapshot(self.lay.mnt)

    def kill(self, point: Point) -> KillResult:
        self.fresh()
        d = Daemon(self.lay, kill_at=point.n, opts=self.sc.opts)
        res = []
        if d.mounted:
            res = overlay.run_ops(self.lay.mnt, self.sc.ops)
        killed = d.finish()
        done = 0
        for r in res:
            if r.get("errno") in ("ENOTCONN", "ECONNABORTED"):
                break  # the daemon was gone
            done += 1
        msgs = []
        if not killed:
            msgs.append(f"the daemon was not killed at change {point.n} ({point.what})")
        # before the remount: leftovers in the work dir are expected, nothing else
        msgs += [p for p in fsck_problems(self.lay) if "leftover of an interrupted" not in p]
        with overlay.mount("cowfs", self.lay, self.sc.opts):
            tree = snapshot(self.lay.mnt)
            if left := work_entries(self.lay):
                msgs.append(f"work dir not emptied by the remount: {left}")
        msgs += fsck_problems(self.lay)
        legal = [self.state(i) for i in range(done, min(done + 2, len(self.sc.ops) + 1))]
        if not any(same_state(tree, s) for s in legal):
            msgs.append(f"merged tree is neither S{done} (before op {done}: "
                        f"{json.dumps(self.sc.ops[done] if done < len(self.sc.ops) else None)}) "
                        f"nor S{done + 1}; against S{done}:\n"
                        + "\n".join(tree_diff(legal[0], tree)))
        return KillResult(point, not msgs, done, "\n".join(msgs))

    def close(self) -> None:
        mine = self.lay.lowers
        try:
            overlay.check_lowers(mine)
        finally:
            overlay.LOWERS[:] = [e for e in overlay.LOWERS if e[0] not in mine]
        if not overlay.KEEP:
            shutil.rmtree(self.lay.base, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.lay.base + "-daemon.log")


def describe(sc: Scenario, r: KillResult) -> str:
    return (f"{sc.name}: kill before change {r.point.n} ({r.point.what}), {r.done} ops done:\n"
            f"{r.message}\n  replay: make crash CRASH_ARGS='--scenario {sc.name} --point "
            f"{r.point.n}'")


def run_scenario(sc: Scenario, *, sample: int | None = None, seed: int = 0,
                 only: list[int] | None = None, select: list[str] = (),
                 log=print) -> tuple[int, list[str]]:
    """Kill at every point, or at a sample of SAMPLE of them plus, for every regex of SELECT,
    the points whose change matches it and the point after each; (kills, failure reports)."""
    run = Runner(sc)
    try:
        points = run.points
        if only:
            points = [p for p in points if p.n in only]
        elif sample is not None:
            rng = random.Random(f"{seed}-{sc.name}")
            chosen = set(rng.sample(range(len(points)), min(sample, len(points))))
            for rx in select:
                hits = [i for i, p in enumerate(points) if re.search(rx, p.what)]
                if not hits:
                    raise overlay.HarnessError(f"{sc.name}: no change matches {rx!r}: "
                                               f"{[p.what for p in points]}")
                chosen |= {j for i in hits for j in (i, i + 1) if j < len(points)}
            points = [points[i] for i in sorted(chosen)]
        fails = []
        for p in points:
            r = run.kill(p)
            log(f"  {sc.name} #{p.n} {p.what}: {'ok' if r.ok else 'FAIL'} ({r.done} ops done)")
            if not r.ok:
                fails.append(describe(sc, r))
        return len(points), fails
    finally:
        run.close()


# ---------------------------------------------------------------------------------------------
# make crash
# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", action="append", choices=sorted(BY_NAME),
                    help="only these scenarios (default: all)")
    ap.add_argument("--point", type=int, action="append", help="only these kill points")
    ap.add_argument("--sample", type=int, default=None, help="kill points per scenario")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--list", action="store_true", help="list the scenarios")
    args = ap.parse_args(argv)
    if args.list:
        for sc in SCENARIOS:
            print(f"{sc.name}: {sc.what}")
        return 0
    if os.geteuid() != 0:
        print("crash: must run as root (`make crash`)", file=sys.stderr)
        return 2
    _private_mount_ns()
    if not os.environ.get("COWFS_TEST_TMP"):
        scratch = tempfile.mkdtemp(prefix="crash-", dir="/tmp")
        os.chmod(scratch, 0o755)
        os.environ["COWFS_TEST_TMP"] = scratch
    total, fails, start = 0, [], time.monotonic()
    try:
        overlay.env()
        overlay.set_scratch("crash")
        for sc in [BY_NAME[n] for n in args.scenario] if args.scenario else SCENARIOS:
            t = time.monotonic()
            n, f = run_scenario(sc, sample=args.sample, seed=args.seed, only=args.point,
                                log=print if args.verbose else (lambda m: None))
            total += n
            fails += f
            print(f"crash: {sc.name}: {n} kills, {len(f)} failed, {time.monotonic() - t:.0f} s",
                  flush=True)
    except overlay.HarnessError as e:
        print(f"crash: harness problem: {e}", file=sys.stderr)
        return 2
    finally:
        with contextlib.suppress(Exception):
            overlay.cleanup_session()
    for f in fails:
        print(f)
    print(f"crash: {total} kills, {len(fails)} failed, {time.monotonic() - start:.0f} s")
    return 1 if fails else 0


def _private_mount_ns() -> None:
    with open("/proc/self/mountinfo") as f:
        shared = any(ln.split()[4] == "/" and "shared:" in ln.split(" - ")[0] for ln in f)
    if not shared:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x00020000) != 0 or libc.mount(b"none", b"/", None, 0x4000 | 0x40000,
                                                   None) != 0:
        raise SystemExit("crash: cannot enter a private mount namespace: use `make crash`")


if __name__ == "__main__":
    sys.exit(main())

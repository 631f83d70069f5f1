#!/usr/bin/env python3
"""Soak: several processes mixing every operation on one cowfs mount for a bounded time, with
daemon kills and clean remounts in between; at the end the merged tree must equal a model.

How
- A lower of a few hundred entries (files of 0 to 256 KiB, some sparse, dirs of several modes
  (0555, 0700 ...), xattrs, symlinks, FIFOs, hard links) is built and hashed (hash_tree). One
  subtree w<i> per worker, plus a shared part no worker changes.
- The model is the same tree built a second time, as a plain directory, hard links and all (the
  names of a lower hard link are one object through cowfs, before and after a copy-up; see
  tests/soakworker.py for the place cowfs must differ from a plain dir).
- P workers (tests/soakworker.py) run as the unprivileged test user, each a seeded random mix of
  write/append/overwrite/truncate (some fsync'ed), create, save-by-rename, unlink, mkdir, rmdir,
  rename (over existing names too), link, symlink, mkfifo, chmod, utime, setxattr/removexattr
  and the reads that compare (read, stat, listdir, readlink, getxattr, listxattr), each op on
  the mount and then on the model, results compared at once. A worker only touches its own
  subtree, so the final tree does not depend on how the workers interleave.
- Every INTERVAL seconds (random, 10-20 s by default) the driver pauses every worker between two
  operations, then either SIGKILLs the daemon (`fusermount3 -uz`, `cowfs fsck` of the upper:
  nothing but work-dir leftovers allowed) or unmounts it cleanly, mounts the same upper and work
  dir again; every worker then compares its whole subtree (stat, content, listing, symlink
  target, xattrs) with the model, and goes on. A SIGKILL loses nothing here: every write went to
  the upper file before it returned (no write-back cache), which the compares after the remount
  check.
- At the end: the merged tree (oprunner.tree_dump as the test user) equals the model's (type,
  mode, owner, size, content, symlink target, user.* xattrs, link count, hard-link identity; the
  mtime of every non-directory whose mtime is older than the soak: built so, or set by utime).
  Not compared: other times (both sides set "now" at different instants; directories' mtimes
  also move with every entry) and raw inode numbers (tree_dump labels each inode by the first
  path it was met at: identity still compares).
  Then: clean unmount, the work dir empty, `cowfs fsck` clean; the upper mounted by kernel
  overlayfs (userxattr, a fresh work dir) shows the same tree (a lower hard link copied up by
  cowfs is linked under every name in the upper, which the kernel reads as one inode too); the
  lower's hash unchanged.

Usage (root; `make soak SECONDS=N [SEED=S]` runs it in a private mount namespace):
    python tests/soak.py --seconds N [--seed S] [--procs P] [--interval MIN MAX] [-v]
Prints `soak: N ops, K kills, U clean remounts, F failures, seed S, T s`; exit 1 on a failure.
tests/test_soak.py runs a 2-minute soak with a fixed seed in CI.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import random
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import overlay  # noqa: E402
from overlay import Dir, Fifo, File, Hardlink, Symlink  # noqa: E402
from soakworker import KINDS  # noqa: E402,F401  (the op kinds, for tests/test_soak.py)

PAUSE_TIMEOUT = 120.0  # a worker that does not reach a pause by then is stuck (hung mount?)
KiB = 1024


# ---------------------------------------------------------------------------------------------
# The lower and the model
# ---------------------------------------------------------------------------------------------
def _file(r: random.Random) -> File:
    size = r.choice([0, 1, 50, 700, 4 * KiB, 9 * KiB, 64 * KiB, 256 * KiB])
    data = r.randbytes(min(size, 64 * KiB)) if r.random() < 0.7 else b"x" * min(size, 3000)
    xattrs = {"user.soak.a": r.randbytes(8)} if r.random() < 0.2 else {}
    return File(data, mode=r.choice([0o644, 0o644, 0o600, 0o755, 0o444]), xattrs=xattrs,
                size=size if size > len(data) else None)


def _dir(r: random.Random, prefix: str, depth: int, links: list) -> Dir:
    kids: dict = {}
    for i in range(r.randint(3, 6)):
        kids[f"f{i}"] = _file(r)
    if r.random() < 0.6:
        kids["s0"] = Symlink(r.choice(["f0", "../f1", "nowhere", "/etc/hostname"]))
    if r.random() < 0.15:
        kids["p0"] = Fifo()
    if r.random() < 0.5:
        links.append((f"{prefix}/h0", f"{prefix}/f0"))
    if depth > 0:
        for i in range(r.randint(1, 3)):
            kids[f"d{i}"] = _dir(r, f"{prefix}/d{i}", depth - 1, links)
    mode = 0o755 if depth == 0 or r.random() < 0.8 else r.choice([0o555, 0o700, 0o775])
    xattrs = {"user.soak.d": b"dir"} if r.random() < 0.2 else {}
    return Dir(kids, mode=mode, xattrs=xattrs)


def make_spec(seed, procs: int) -> tuple[dict, dict, dict[str, list[str]]]:
    """(lower spec, model spec, {worker root: [its lower dirs]}) for SEED."""
    r = random.Random(f"soak-lower-{seed}")
    links: list[tuple[str, str]] = []
    spec: dict = {}
    for w in range(procs):
        spec[f"w{w}"] = Dir({f"d{i}": _dir(r, f"w{w}/d{i}", 2, links) for i in range(3)}
                            | {"top": _file(r)})
    spec["shared"] = _dir(r, "shared", 2, [])  # read through the mount only: no worker changes it
    lower = model = _with_links(spec, links)
    dirs: dict[str, list[str]] = {}
    for w in range(procs):
        dirs[f"w{w}"] = [p for p, e in _walk(spec[f"w{w}"], f"w{w}") if isinstance(e, Dir)]
    return lower, model, dirs


def _walk(d: Dir, prefix: str):
    yield prefix, d
    for name, e in d.children.items():
        if isinstance(e, Dir):
            yield from _walk(e, f"{prefix}/{name}")
        else:
            yield f"{prefix}/{name}", e


def _lookup(spec: dict, path: str):
    parts = path.split("/")
    e = spec[parts[0]]
    for p in parts[1:]:
        e = e.children[p]
    return e


def _with_links(spec: dict, links: list) -> dict:
    """SPEC (a deep copy) with each (name, target) of LINKS as a hard link."""
    import copy
    out = copy.deepcopy(spec)
    for name, target in links:
        parent, _, base = name.rpartition("/")
        _lookup(out, parent).children[base] = Hardlink(target)
    return out


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
@dataclass
class Result:
    seed: str
    seconds: float = 0.0
    ops: int = 0
    kills: int = 0
    remounts: int = 0
    counts: collections.Counter = field(default_factory=collections.Counter)
    errnos: collections.Counter = field(default_factory=collections.Counter)  # "op:ERRNO" -> n
    failures: list[str] = field(default_factory=list)
    entries: int = 0
    checks: int = 0  # compares of whole subtrees after remounts

    def summary(self) -> str:
        return (f"soak: {self.ops} ops, {self.kills} kills, {self.remounts} clean remounts, "
                f"{len(self.failures)} failures, seed {self.seed}, {self.entries} lower "
                f"entries, {self.checks} compares of whole subtrees after remounts, "
                f"{self.seconds:.0f} s")


class WorkerProc:
    def __init__(self, cfg: dict, script: str):
        e = overlay.env()
        self.wid = cfg["wid"]
        self.proc = subprocess.Popen(overlay.as_user([e.python, script, json.dumps(cfg)]),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                                     cwd="/", env=overlay.user_env(e))
        self.ops = 0
        self.fails = 0

    def send(self, cmd: str) -> None:
        self.proc.stdin.write(cmd.encode() + b"\n")

    def reply(self, timeout: float = PAUSE_TIMEOUT) -> str:
        buf = b""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise overlay.HarnessError(f"worker {self.wid}: no answer after {timeout:.0f} s "
                                           "(stuck in an operation on the mount?)")
            c = os.read(fd, 65536)
            if not c:
                raise overlay.HarnessError(f"worker {self.wid} exited "
                                           f"({self.proc.wait()}) without answering")
            buf += c
        return buf.decode().strip()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Soak:
    def __init__(self, seconds: float, seed, procs: int = 3, interval=(10.0, 20.0),
                 kill_ratio: float = 0.7, log=print, tamper=None):
        self.seconds, self.procs, self.interval = seconds, procs, interval
        self.kill_ratio, self.log = kill_ratio, log
        self.res = Result(str(seed))
        self.rng = random.Random(f"soak-driver-{seed}")
        self.lay: overlay.Layers | None = None
        self.mount: overlay.Mount | None = None
        self.workers: list[WorkerProc] = []
        # the harness's own check (tests/test_soak.py): called with the layers while nothing is
        # mounted, between two mounts, to change the upper behind the daemon's back
        self.tamper = tamper

    # --- mounts -------------------------------------------------------------------------------
    def _mount(self) -> None:
        self.mount = overlay.mount("cowfs", self.lay)

    def _fusermount_uz(self) -> None:
        e = overlay.env()
        overlay._run(overlay.as_user(["fusermount3", "-uz", self.lay.mnt]),
                     timeout=overlay.UMOUNT_TIMEOUT, cwd=e.base, env=overlay.user_env(e))
        if overlay.mounted_at(self.lay.mnt) is not None:
            overlay._run(["umount", "-l", self.lay.mnt])

    def _restart(self) -> None:
        m = self.mount
        if not m.alive():
            raise overlay.HarnessError(f"the daemon died by itself (exit {m.proc.returncode}):\n"
                                       + m.log_tail())
        if self.rng.random() < self.kill_ratio:
            m.proc.kill()
            m.proc.wait(timeout=30)
            self._fusermount_uz()
            self.res.kills += 1
            from crash import fsck_problems
            bad = [p for p in fsck_problems(self.lay) if "leftover of an interrupted" not in p]
            if bad:
                self.res.failures.append("cowfs fsck after a kill between operations:\n  "
                                         + "\n  ".join(bad))
            how = "killed"
        else:
            m.unmount()
            self.res.remounts += 1
            how = "unmounted"
        if self.tamper is not None:
            self.tamper(self.lay)
        self._mount()
        self.log(f"soak: {time.monotonic() - self.t0:.0f} s: daemon {how}, remounted "
                 f"({sum(w.ops for w in self.workers)} ops so far)")

    # --- workers ------------------------------------------------------------------------------
    def _pause_all(self) -> None:
        for w in self.workers:
            w.send("P")
        for w in self.workers:
            ans = w.reply().split()
            if ans[0] != "paused":
                raise overlay.HarnessError(f"worker {w.wid}: unexpected answer {ans}")
            w.ops, w.fails = int(ans[1]), int(ans[2])

    def _check_all(self) -> None:
        """Every worker compares its whole subtree, mount against model (after a remount)."""
        for w in self.workers:
            w.send("C")
        for w in self.workers:
            ans = w.reply().split()
            if ans[0] != "checked":
                raise overlay.HarnessError(f"worker {w.wid}: unexpected answer {ans}")
            self.res.checks += int(ans[1])
            w.fails = int(ans[2])

    def _resume_all(self) -> None:
        for w in self.workers:
            w.send("R")

    def _stop_all(self) -> list[dict]:
        reports = []
        for w in self.workers:
            w.send("S")
        for w in self.workers:
            ans = w.reply()
            if not ans.startswith("done "):
                raise overlay.HarnessError(f"worker {w.wid}: unexpected answer {ans[:200]}")
            reports.append(json.loads(ans[5:]))
            w.proc.wait(timeout=30)
        return reports

    # --- the whole run ------------------------------------------------------------------------
    def run(self) -> Result:
        e = overlay.env()
        self.t0 = time.monotonic()
        self.start_ns = time.time_ns() - 10 ** 9
        lower_spec, model_spec, lower_dirs = make_spec(self.res.seed, self.procs)
        self.lay = lay = overlay.make_layers("soak", [lower_spec])
        lower = lay.lowers[0]
        model = os.path.join(lay.base, "model")
        overlay.build_tree(model_spec, model)
        before = overlay.hash_tree(lower)
        self.res.entries = sum(len(fs) + len(ds) for _, ds, fs in os.walk(lower))
        script = os.path.join(lay.base, "soakworker.py")
        shutil.copyfile(os.path.join(HERE, "soakworker.py"), script)
        os.chmod(script, 0o644)
        logs = os.path.join(lay.base, "logs")
        os.mkdir(logs, 0o755)
        os.chown(logs, e.uid, e.gid)
        self.log(f"soak: seed {self.res.seed}, {self.procs} workers, {self.seconds:.0f} s, "
                 f"{self.res.entries} lower entries, in {lay.base}")
        try:
            self._mount()
            for w in range(self.procs):
                cfg = {"wid": f"w{w}", "seed": self.res.seed, "mnt": lay.mnt, "model": model,
                       "roots": [f"w{w}"], "lower_dirs": lower_dirs[f"w{w}"],
                       "log": f"{logs}/w{w}.ops",
                       "start_ns": self.start_ns}
                self.workers.append(WorkerProc(cfg, script))
            end = self.t0 + self.seconds
            while True:
                nxt = time.monotonic() + self.rng.uniform(*self.interval)
                time.sleep(max(0.0, min(nxt, end) - time.monotonic()))
                self._pause_all()
                if time.monotonic() >= end - 1 or any(w.fails for w in self.workers):
                    break
                self._restart()
                self._check_all()
                if any(w.fails for w in self.workers):
                    break
                self._resume_all()
            reports = self._stop_all()
            self._final(reports, model, lower, before)
        except overlay.HarnessError as ex:
            self.res.failures.append(f"harness: {ex}")
        finally:
            for w in self.workers:
                w.kill()
            if self.mount is not None and overlay.mounted_at(lay.mnt) is not None:
                with contextlib.suppress(Exception):
                    self.mount.unmount()
                if overlay.mounted_at(lay.mnt) is not None:
                    self._fusermount_uz()
            if self.mount is not None and self.mount.proc and self.mount.proc.poll() is None:
                self.mount.proc.kill()
            self.res.seconds = time.monotonic() - self.t0
            self._close(lower)
        return self.res

    def _final(self, reports: list[dict], model: str, lower: str, before: str) -> None:
        res = self.res
        for r in reports:
            res.ops += r["ops"]
            res.counts.update(r["counts"])
            res.errnos.update(r["errnos"])
            for f in r["failures"]:
                res.failures.append(f"worker {f['wid']} op {f['op_number']}: "
                                    f"{json.dumps(f['op'])[:300]}\n  cowfs: "
                                    f"{json.dumps(f['cowfs'])[:300]}\n  model: "
                                    f"{json.dumps(f['model'])[:300]}\n  ops before it:\n    "
                                    + "\n    ".join(json.dumps(o)[:200]
                                                    for o in f["ops_before"][-12:]))
        lay = self.lay
        # one more kill or clean remount before the final look: the end state must survive it
        self._restart()
        want = overlay.dump_tree(model)
        merged = overlay.dump_tree(lay.mnt)
        old = self._old_mtimes(want, merged, model, lay.mnt)
        diffs = tree_diffs(want, merged)
        if diffs:
            res.failures.append(f"merged tree differs from the model ({len(diffs)} entries):\n"
                                + "\n".join(diffs[:20]))
        self.mount.unmount()
        self.mount = None
        from crash import fsck_problems, work_entries
        if left := work_entries(lay):
            res.failures.append(f"work dir not empty after the final unmount: {left}")
        if bad := fsck_problems(lay):
            res.failures.append("cowfs fsck after the final unmount:\n  " + "\n  ".join(bad))
        # the upper cowfs wrote, mounted by kernel overlayfs (userxattr): the same tree
        lay.new_work()
        with overlay.mount("kernel", lay) as km:
            want = overlay.dump_tree(model)
            kernel = overlay.dump_tree(km.mnt)
            self._old_mtimes(want, kernel, model, km.mnt)
            diffs = tree_diffs(want, kernel)
        if diffs:
            res.failures.append(f"the upper mounted by kernel overlayfs differs from the model "
                                f"({len(diffs)} entries):\n" + "\n".join(diffs[:20]))
        if overlay.hash_tree(lower) != before:
            res.failures.append("the lower's hash changed: a lower was written")
        self.log(f"soak: final tree: {len(merged)} entries, {old} old mtimes compared; the same "
                 "through a kernel overlay mount of the upper")

    def _old_mtimes(self, want: dict, got: dict, model: str, mnt: str) -> int:
        """Add the mtime of every non-directory to WANT and GOT where the model's is older than
        the soak (built, or set by utime); a newer one is "now" at two different instants on the
        two sides. Returns how many."""
        files = sorted(p for p, d in want.items() if d.get("type") not in ("d", None))
        ops = [["lstat_times", p] for p in files]
        old = 0
        for p, a, b in zip(files, overlay.run_ops(mnt, ops), overlay.run_ops(model, ops),
                           strict=True):
            mt = b.get("ok", {}).get("mtime")
            if isinstance(mt, int) and mt < self.start_ns and p in got:
                want[p]["mtime"] = mt
                got[p]["mtime"] = a.get("ok", a).get("mtime", a)
                old += 1
        return old

    def _close(self, lower: str) -> None:
        try:
            overlay.check_lowers([lower])
        except AssertionError as ex:
            self.res.failures.append(str(ex))
        finally:
            overlay.LOWERS[:] = [x for x in overlay.LOWERS if x[0] != lower]
        if self.res.failures:
            self.log(f"soak: scratch kept in {self.lay.base} (op logs in logs/)")
        elif not overlay.KEEP and overlay.mounted_at(self.lay.mnt) is None:
            shutil.rmtree(self.lay.base, ignore_errors=True)


def tree_diffs(model: dict, merged: dict) -> list[str]:
    """Entries of MERGED that differ from MODEL."""
    return [f"  {p}:\n    model  {json.dumps(model.get(p), sort_keys=True)}\n"
            f"    cowfs  {json.dumps(merged.get(p), sort_keys=True)}"
            for p in sorted(set(model) | set(merged)) if model.get(p) != merged.get(p)]


# ---------------------------------------------------------------------------------------------
# make soak
# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--seed", default=None, help="default: a fresh one (printed)")
    ap.add_argument("--procs", type=int, default=3, help="worker processes")
    ap.add_argument("--interval", type=float, nargs=2, default=(10.0, 20.0),
                    metavar=("MIN", "MAX"), help="seconds between two kills/remounts")
    ap.add_argument("--kill-ratio", type=float, default=0.7,
                    help="share of the restarts that SIGKILL the daemon (the rest unmount)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("soak: must run as root (`make soak`)", file=sys.stderr)
        return 2
    from crash import _private_mount_ns
    _private_mount_ns()
    scratch = None
    if not os.environ.get("COWFS_TEST_TMP"):
        scratch = tempfile.mkdtemp(prefix="soak-", dir="/tmp")
        os.chmod(scratch, 0o755)
        os.environ["COWFS_TEST_TMP"] = scratch
    seed = args.seed if args.seed is not None else str(random.SystemRandom().randrange(1 << 32))
    try:
        overlay.env()
    except overlay.HarnessError as e:
        print(f"soak: harness problem: {e}", file=sys.stderr)
        return 2
    res = Soak(args.seconds, seed, args.procs, tuple(args.interval), args.kill_ratio,
               log=print if args.verbose else (lambda m: None)).run()
    for f in res.failures:
        print(f"FAIL {f}")
    print("soak: ops by kind (of which failed with the same errno on both sides): " + ", ".join(
        f"{k} {v} ({sum(n for e, n in res.errnos.items() if e.startswith(k + ':'))})"
        for k, v in sorted(res.counts.items())))
    if args.verbose:
        print("soak: errnos: " + ", ".join(f"{e} {n}" for e, n in res.errnos.most_common()))
    print(res.summary(), flush=True)
    if not res.failures:
        with contextlib.suppress(Exception):
            overlay.cleanup_session()
            if scratch:
                os.rmdir(scratch)
    return 1 if res.failures else 0


if __name__ == "__main__":
    sys.exit(main())

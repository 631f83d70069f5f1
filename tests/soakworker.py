#!/usr/bin/env python3
"""One worker of the soak (tests/soak.py): a seeded random mix of every operation, each run on
the cowfs mount and then, the same, on the model (a plain directory), results compared.

Stdlib only: it runs as the unprivileged test user (a cowfs mount without allow_other serves only
the mounting user). Usage (the driver starts it):

    python3 soakworker.py CONFIG_JSON

CONFIG: {"wid", "seed", "mnt", "model", "upper", "lower", "roots": [subtree paths it owns],
"lower_dirs": [directories of the lower below its roots], "log": op log file, "start_ns": the
soak's start (a non-directory's mtime older than that, built or set by utime, must be the same
on both sides; a newer one is "now" at two different instants and is not compared)}.

A worker touches only its own subtrees, so the final state of each is the same whatever the
interleaving with other workers. Control, one line on stdin between two operations (no
descriptor of the mount is open then): "P" pause -> it answers "paused OPS FAILURES" and waits;
"C" check -> it compares every entry of its subtrees (stat, content, listing, symlink target,
xattrs) and answers "checked COMPARES FAILURES"; "R" resume; "S" stop -> it answers "done {json
report}" and exits. The driver kills or unmounts the daemon only while every worker is paused: a
kill in the middle of an operation is tests/crash.py's job.

Where cowfs must differ from a plain directory (kernel overlayfs semantics):
- renaming a directory that has a lower (a lower or merged one) gives EXDEV (README,
  "Differences"): the worker knows which directories came from the lower and expects it;
A first divergence is reported with the ops before it and the worker stops making changes.
"""
from __future__ import annotations

import collections
import errno
import hashlib
import json
import os
import random
import select
import stat
import sys

FILE_MODES = [0o644, 0o600, 0o640, 0o755, 0o444, 0o664]
DIR_MODES = [0o755, 0o700, 0o750, 0o775, 0o555]
NAMES = [f"n{i}" for i in range(10)] + ["f0", "f1", "d0", "s0"]
XNAMES = ["user.soak.a", "user.soak.b", "user.soak.c", "user.x"]
WEIGHTS = {
    "write": 10, "append": 6, "overwrite": 4, "truncate": 4, "create": 8, "replace": 3,
    "unlink": 5, "mkdir": 4, "rmdir": 3, "rename": 8, "link": 3, "symlink": 3, "mkfifo": 1,
    "chmod": 4, "utime": 3, "setxattr": 4, "removexattr": 2,
    "read": 12, "stat": 8, "listdir": 5, "readlink": 2, "getxattr": 3, "listxattr": 2,
}
KINDS = list(WEIGHTS)
GROWS = {"create", "mkdir", "link", "symlink", "mkfifo", "replace"}
MAX_ENTRIES = 400  # per worker: past it, most ops that add an entry remove one instead
MAX_DEPTH = 7  # path components of a new entry's parent
# every open: a FIFO answers ENXIO instead of blocking, a symlink ELOOP instead of being followed
# (a worker stays in its own subtree)
SAFE = os.O_NONBLOCK | os.O_NOFOLLOW
CUM = list(WEIGHTS.values())


def data_of(dseed: int, n: int) -> bytes:
    r = random.Random(dseed)
    if dseed % 3 == 0:  # compressible runs as well as random bytes
        return bytes([r.randrange(256)]) * n
    return r.randbytes(n)


def errname(e: OSError) -> str:
    return errno.errorcode.get(e.errno, str(e.errno))


class Worker:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.wid = cfg["wid"]
        self.rng = random.Random(f"{cfg['seed']}-{self.wid}")
        self.roots = cfg["roots"]
        self.lower_dirs = set(cfg["lower_dirs"])
        self.ops = 0
        self.counts: collections.Counter = collections.Counter()
        self.errnos: collections.Counter = collections.Counter()
        self.failures: list[dict] = []
        self.recent: collections.deque = collections.deque(maxlen=25)
        self.log = open(cfg["log"], "a", buffering=1)
        self.ents: list[tuple[str, str]] | None = None

    # --- the model's entries ------------------------------------------------------------------
    def entries(self) -> list[tuple[str, str]]:
        """(path, type char) of everything in the worker's subtrees, per the model."""
        if self.ents is None:
            out = []
            model = self.cfg["model"]
            for root in self.roots:
                stack = [root]
                while stack:
                    p = stack.pop()
                    try:
                        st = os.lstat(os.path.join(model, p))
                    except OSError:
                        continue
                    t = ("d" if stat.S_ISDIR(st.st_mode) else "f" if stat.S_ISREG(st.st_mode)
                         else "l" if stat.S_ISLNK(st.st_mode) else "p")
                    out.append((p, t))
                    if t == "d":
                        try:
                            names = sorted(os.listdir(os.path.join(model, p)))
                        except OSError:
                            continue
                        stack.extend(f"{p}/{n}" for n in reversed(names))
            self.ents = out
        return self.ents

    def pick(self, types: str = "dflp", root_ok: bool = True) -> str:
        cands = [p for p, t in self.entries() if t in types and (root_ok or p not in self.roots)]
        if not cands:
            return self.rng.choice(self.roots) + "/" + self.rng.choice(NAMES)
        return self.rng.choice(cands)

    def new_name(self) -> str:
        """A name in one of the worker's dirs (at most MAX_DEPTH deep): often an existing one."""
        if self.rng.random() < 0.3:
            return self.pick(root_ok=False)
        dirs = [p for p, t in self.entries() if t == "d" and p.count("/") < MAX_DEPTH]
        return self.rng.choice(dirs or self.roots) + "/" + self.rng.choice(NAMES)

    def prune(self) -> list:
        """An op that removes an entry: the tree stays near MAX_ENTRIES per worker."""
        ents = self.entries()
        full = {p.rpartition("/")[0] for p, _ in ents}
        empty = [p for p, t in ents if t == "d" and p not in full and p not in self.roots]
        if empty and self.rng.random() < 0.4:
            return ["rmdir", self.rng.choice(empty)]
        return ["unlink", self.pick("flp", root_ok=False)]

    # --- generating ---------------------------------------------------------------------------
    def gen(self) -> list:
        r = self.rng
        k = r.choices(KINDS, weights=CUM)[0]
        if k in GROWS and len(self.entries()) > MAX_ENTRIES and r.random() < 0.7:
            return self.prune()
        size = r.choice([0, 1, 100, 4096, 5000, 65536, 200_000])
        n = r.randint(0, size) if size else 0
        dseed = r.randrange(1 << 30)
        if k in ("write", "append", "overwrite", "read"):
            p = self.pick("f")
            if k == "write":
                return [k, p, r.choice([0, r.randrange(300_000), r.randrange(5000)]), n, dseed,
                        r.random() < 0.2]
            if k == "read":
                return [k, p]
            return [k, p, n, dseed, r.random() < 0.2]
        if k == "truncate":
            return [k, self.pick("f"), r.choice([0, r.randrange(4096), r.randrange(300_000)])]
        if k == "create":
            return [k, self.new_name(), r.choice(FILE_MODES), n, dseed, r.random() < 0.5]
        if k == "replace":
            return [k, self.pick("f") if r.random() < 0.7 else self.new_name(), n, dseed]
        if k == "unlink":
            return [k, self.pick("flp")]
        if k == "mkdir":
            return [k, self.new_name(), r.choice(DIR_MODES[:4])]
        if k == "rmdir":
            return [k, self.pick("d", root_ok=False)]
        if k == "rename":
            src = self.pick(root_ok=False)
            dst = self.new_name() if r.random() < 0.6 else self.pick(root_ok=False)
            return [k, src, dst]
        if k == "link":
            return [k, self.pick("flp"), self.new_name()]
        if k == "symlink":
            return [k, r.choice(["f0", "../x", "n1/n2", "/etc/passwd", "dangling" * 3]),
                    self.new_name()]
        if k == "mkfifo":
            return [k, self.new_name()]
        if k == "chmod":
            p = self.pick("dfp")
            t = dict(self.entries()).get(p, "f")
            modes = DIR_MODES if t == "d" else FILE_MODES
            if p in self.roots:
                modes = [0o755, 0o775]
            return [k, p, r.choice(modes)]
        if k == "utime":
            return [k, self.pick(), 1_500_000_000_000_000_000 + r.randrange(10 ** 17)]
        if k == "setxattr":
            return [k, self.pick(), r.choice(XNAMES), r.randbytes(r.choice([1, 10, 300]))]
        if k in ("removexattr", "getxattr"):
            return [k, self.pick(), r.choice(XNAMES)]
        if k == "readlink":
            return [k, self.pick("l")]
        if k == "listdir":
            return [k, self.pick("d")]
        return [k, self.pick()]  # stat, listxattr

    # --- running ------------------------------------------------------------------------------
    def do(self, base: str, op: list):
        """Run OP below BASE: ("ok", value) or ("err", ERRNO)."""
        try:
            return "ok", self._do(base, op)
        except OSError as e:
            return "err", errname(e)

    def _do(self, base: str, op: list):
        k = op[0]
        P = lambda rel: os.path.join(base, rel)  # noqa: E731
        if k in ("write", "append", "overwrite"):
            if k == "write":
                _, p, off, n, dseed, sync = op
                flags = os.O_WRONLY
            else:
                _, p, n, dseed, sync = op
                off = None
                flags = os.O_WRONLY | (os.O_APPEND if k == "append" else os.O_TRUNC)
            fd = os.open(P(p), flags | SAFE)
            try:
                data = data_of(dseed, n)
                w = os.pwrite(fd, data, off) if off is not None else os.write(fd, data)
                if sync:
                    os.fsync(fd)
                return w
            finally:
                os.close(fd)
        if k == "truncate":
            fd = os.open(P(op[1]), os.O_WRONLY | SAFE)
            try:
                return os.ftruncate(fd, op[2])
            finally:
                os.close(fd)
        if k == "create":
            _, p, mode, n, dseed, excl = op
            fd = os.open(P(p), os.O_WRONLY | os.O_CREAT | (os.O_EXCL if excl else os.O_TRUNC)
                         | SAFE, mode)
            try:
                return os.write(fd, data_of(dseed, n))
            finally:
                os.close(fd)
        if k == "replace":  # the editor's save: a temp file, renamed over the name
            _, p, n, dseed = op
            tmp = P(p) + ".tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | SAFE, 0o644)
            try:
                os.write(fd, data_of(dseed, n))
                os.fsync(fd)
            finally:
                os.close(fd)
            return os.rename(tmp, P(p))
        if k == "unlink":
            return os.unlink(P(op[1]))
        if k == "mkdir":
            return os.mkdir(P(op[1]), op[2])
        if k == "rmdir":
            return os.rmdir(P(op[1]))
        if k == "rename":
            return os.rename(P(op[1]), P(op[2]))
        if k == "link":
            return os.link(P(op[1]), P(op[2]), follow_symlinks=False)
        if k == "symlink":
            return os.symlink(op[1], P(op[2]))
        if k == "mkfifo":
            return os.mkfifo(P(op[1]), 0o644)
        if k == "chmod":
            return os.chmod(P(op[1]), op[2])
        if k == "utime":
            return os.utime(P(op[1]), ns=(op[2], op[2]), follow_symlinks=False)
        if k == "setxattr":
            return os.setxattr(P(op[1]), op[2], op[3], follow_symlinks=False)
        if k == "removexattr":
            return os.removexattr(P(op[1]), op[2], follow_symlinks=False)
        if k == "getxattr":
            return os.getxattr(P(op[1]), op[2], follow_symlinks=False).hex()
        if k == "listxattr":
            return sorted(n for n in os.listxattr(P(op[1]), follow_symlinks=False)
                          if n.startswith("user."))
        if k == "read":
            with open(os.open(P(op[1]), os.O_RDONLY | SAFE), "rb") as f:
                h = hashlib.blake2b(digest_size=16)
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
                return h.hexdigest()
        if k == "readlink":
            return os.readlink(P(op[1]))
        if k == "listdir":
            return sorted(os.listdir(P(op[1])))
        if k == "stat":
            return os.lstat(P(op[1]))
        raise ValueError(f"unknown op {op!r}")

    def statview(self, st: os.stat_result, model_st: os.stat_result) -> dict:
        d = {"mode": oct(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
        if not stat.S_ISDIR(st.st_mode):
            d["size"] = st.st_size
            d["nlink"] = st.st_nlink
        if model_st.st_mtime_ns < self.cfg["start_ns"] and not stat.S_ISDIR(model_st.st_mode):
            d["mtime"] = st.st_mtime_ns  # built or set by utime: exact on both sides
        return d

    def step(self, op: list) -> None:
        k = op[0]
        expect_exdev = (k == "rename" and op[1] in self.lower_dirs)
        self.log.write(json.dumps([self.ops + 1, _jsonable(op)]) + "\n")
        m = self.do(self.cfg["mnt"], op)
        if expect_exdev and m == ("err", "EXDEV"):
            o = m  # a directory with a lower cannot be renamed (as on kernel overlayfs)
        else:
            o = self.do(self.cfg["model"], op)
        if k == "stat" and m[0] == o[0] == "ok":
            m, o = ("ok", self.statview(m[1], o[1])), ("ok", self.statview(o[1], o[1]))
        self.ops += 1
        self.counts[k] += 1
        if o[0] == "err":
            self.errnos[f"{k}:{o[1]}"] += 1
        self.log.write(json.dumps([self.ops, "->", _jsonable(m)]) + "\n")
        self.recent.append(_jsonable(op))
        if m != o:
            self.failures.append({"wid": self.wid, "op_number": self.ops, "op": _jsonable(op),
                                  "cowfs": _jsonable(m), "model": _jsonable(o),
                                  "ops_before": list(self.recent)[:-1]})
            return
        if o[0] == "ok":
            self.after(op)

    def after(self, op: list) -> None:
        """Bookkeeping of a change done on both sides."""
        k = op[0]
        if k in ("create", "replace", "unlink", "mkdir", "rmdir", "rename", "link", "symlink",
                 "mkfifo"):
            self.ents = None
        if k == "rmdir":
            self.lower_dirs.discard(op[1])
        if k == "rename" and op[1] != op[2]:
            self.lower_dirs.discard(op[2])  # an empty merged dir replaced by an upper one

    # --- control ------------------------------------------------------------------------------
    def control(self, block: bool) -> bool:
        """Handle the driver's commands; False when told to stop."""
        while True:
            if not block:
                r, _, _ = select.select([0], [], [], 0)
                if not r:
                    return True
            line = readline0()
            if line == "P":
                print(f"paused {self.ops} {len(self.failures)}", flush=True)
                block = True
            elif line == "C":
                n = self.check_all()
                print(f"checked {n} {len(self.failures)}", flush=True)
            elif line == "R":
                return True
            elif line in ("S", ""):
                self.ents = None
                report = {"wid": self.wid, "ops": self.ops, "counts": dict(self.counts),
                          "errnos": dict(self.errnos), "failures": self.failures}
                print("done " + json.dumps(report), flush=True)
                return False

    def check_all(self) -> int:
        """Compare every entry of the subtrees, mount against model (after a remount: nothing
        acknowledged before the kill may be lost). Returns the number of compares."""
        self.ents = None
        n = 0
        for p, t in self.entries():
            ops = [["stat", p], ["listxattr", p]]
            ops += {"f": [["read", p]], "l": [["readlink", p]], "d": [["listdir", p]]}.get(t, [])
            try:
                names = os.listxattr(os.path.join(self.cfg["model"], p), follow_symlinks=False)
            except OSError:
                names = []
            ops += [["getxattr", p, x] for x in sorted(names) if x.startswith("user.")]
            for op in ops:
                if self.failures:
                    return n
                self.step(op)
                n += 1
        return n

    def run(self) -> None:
        os.umask(0o022)
        while self.control(block=bool(self.failures)):
            self.step(self.gen())


def readline0() -> str:
    """One line from fd 0, unbuffered (select() must see what is not read yet)."""
    buf = b""
    while not buf.endswith(b"\n"):
        c = os.read(0, 1)
        if not c:
            break
        buf += c
    return buf.decode().strip()


def _jsonable(v):
    if isinstance(v, bytes):
        return {"hex": v.hex()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, os.stat_result):
        return {"mode": oct(v.st_mode), "size": v.st_size, "nlink": v.st_nlink}
    return v


def main(argv: list[str]) -> int:
    os.chdir("/")
    Worker(json.loads(argv[1])).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

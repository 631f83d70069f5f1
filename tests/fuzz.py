#!/usr/bin/env python3
"""Differential random testing of cowfs against kernel overlayfs (userxattr mode).

Usage (as root; `make fuzz` does this inside `unshare -m`):

    python tests/fuzz.py --seconds N [--seed S] [--ops-per-run K] [--runs M] [--first-run I]
                         [--modes all|mild] [--fs tmpfs|disk] [--shrink-seconds T] [-v]
    python tests/fuzz.py --replay CASE.json [--shrink]

Each run draws, from an RNG seeded with (S, run index), one or two lower trees (and sometimes a
pre-populated upper with whiteouts and opaque directories) over a small name pool ("a" "b" "c",
three levels deep, so names collide often), builds them twice (tests/overlay.py: make_layers),
mounts kernel overlay and cowfs (rootless, as the test user) side by side, and runs the same
random op list on both: one oprunner process per side per run, which also closes every
descriptor the ops left open (the "epilogue") and then walks the merged tree. Every op result
(errno included) and the two trees are compared. Then the cross-check: cowfs is unmounted and
kernel overlay is mounted on the upper cowfs wrote (fresh work dir); that tree must equal the one
cowfs showed. Finally the lowers must be untouched. Runs take about half a second.

Ops: open with every flag combination (O_RDONLY/WRONLY/RDWR x O_CREAT/EXCL/TRUNC/APPEND/
DIRECTORY/NOFOLLOW; O_NONBLOCK is always added so that a FIFO never blocks the runner), read,
write and pwrite at offsets, ftruncate/truncate, append, fstat, fchmod, fsync, lseek, mkdir,
rmdir, unlink, rename (plain, NOREPLACE, EXCHANGE), link, symlink, mkfifo, mknod, chmod, chown,
utimensat, setxattr/getxattr/listxattr/removexattr (and the l* forms), listdir, scandir, libc
directory streams (opendir + readdir, rewinddir + readdir), stat, lstat, stat_times, access,
readlink, statvfs, and around a random op the relations (same/later/earlier) of mtime and
ctime of the objects it names and of their parents (times_mark, times_cmp). Paths and
descriptors are aimed with a rough model of the merged namespace (Model: the layers' merged
view, updated by each op as if it succeeded), so about half of the ops
succeed; the rest fail on purpose (a fifth of the paths are any name of the pool, some with a
trailing slash), and their errnos are compared too. Names exist in a lower, the upper, both, or
nowhere.

What the generator leaves out, on purpose (each would only re-find a documented difference or
stop the harness): unreadable lower files (README: rootless copy-up of a file the user cannot
read fails), fallocate (README: no fallocate handler in pyfuse3), mmap, root-owned objects the
test user could get copied up (EXPECTED copyup-owner: the copy belongs to the user, so later
permission checks legitimately differ; root-owned objects do appear, as a lower-only directory
"r" the test user can read but never copy up), whiteouts in directories that do not merge with a
lower one (kernel overlay never makes them and lists them when it meets one), chmod of the mount
root (a root the user cannot search stops every tree walk), symlinks with ".." or "." (renamed
to the top, they would lead out of the mount), and readdir of a stream at any other
moment than right after opendir/rewinddir (when a listing is snapshotted is not semantics), and
atimes before the mtime (relatime would move them on reads that a FUSE daemon never sees).
Some declared differences would carry on into later results, so the generator steers around
their causes: a setxattr with CREATE/REPLACE is preceded by a chown -1 -1 that copies the object
up (a refused one copies up on the kernel only), a case with lower hard links is compared with
the kernel as root with index=on (which keeps them one object across a copy-up, as cowfs does:
see lower_links), FIFOs are not hard-linked (the kernel makes two
pipes of two names, EXPECTED hardlink-ino), a directory's SEEK_END is a probe (EXPECTED
dir-lseek-end), fchmod is not drawn on a descriptor whose name
was since removed or renamed (EXPECTED removed-lower-change), SEEK_DATA/SEEK_HOLE are probes
that put the offset back (EXPECTED lseek-holes), and "now" times on the root-owned directory
follow symlinks (a symlink's own times would copy that directory up). A shrunk case never has a
whiteout the generator would not make.

--modes mild keeps r/w/x for owners (no chmod 000, no 0555 directories): to look past a known
permission divergence. --fs: the layers live on a fresh tmpfs by default (see tmpfs_at: ext4
reuses inode numbers at once, which the harness's inode labels cannot tell from an identity
difference); --fs disk puts them below COWFS_TEST_TMP instead.

Differences declared in EXPECTED_DIFFERENCES (tests/overlay.py) are tolerated and counted by
name; nothing else is filtered. A diverging run is shrunk (delta debugging over the op list,
then over the layer specs; every try on fresh mounts; time-capped; one shrink per signature of a
session) and printed as a replayable JSON case (seed, layer specs, ops) with the command that
replays it; the file goes to --out (/tmp/fuzz-cases). The last line is always

    fuzz: N operations, M runs, D divergences, seed S

and the exit status is 1 if D > 0 (2 if the harness itself could not work).

Library use (tests/test_fuzz.py): `generate_case(seed, run, n_ops)`, `run_case(case)`,
`shrink(case, result)`, `Session`, `tmpfs_at(path)`.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import copy
import ctypes
import dataclasses
import itertools
import json
import os
import random
import shlex
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import overlay  # noqa: E402
from overlay import Dir, Fifo, File, Hardlink, Symlink, Whiteout  # noqa: E402
from oprunner import decode_data  # noqa: E402

# ---------------------------------------------------------------------------------------------
# The name pool
# ---------------------------------------------------------------------------------------------
NAMES = ("a", "b", "c")
DEPTH = 3
ROOT_DIR = "r"  # the root-owned, lower-only directory (only in some runs)
POOL = ["/".join(t) for d in range(1, DEPTH + 1) for t in itertools.product(NAMES, repeat=d)]
FDS = ("f0", "f1", "f2")
DIRSTREAMS = ("D0", "D1")
ACC = ("O_RDONLY", "O_WRONLY", "O_RDWR")
EXTRA_FLAGS = (("O_CREAT", 0.35), ("O_EXCL", 0.15), ("O_TRUNC", 0.2), ("O_APPEND", 0.2),
               ("O_DIRECTORY", 0.1), ("O_NOFOLLOW", 0.1))
FILE_MODES = (0o644,) * 6 + (0o600, 0o755, 0o444, 0o640, 0o664, 0o4755)
DIR_MODES = (0o755,) * 8 + (0o700, 0o555, 0o1777, 0o2755, 0o775)
CHMOD_MODES = (0o644, 0o600, 0o755, 0o700, 0o555, 0o444, 0o000, 0o1777, 0o4755, 0o2755, 0o711)
XATTRS = ("user.a", "user.b", "user.a", "user.b", "user.overlay.x", "trusted.t")
SIZES = (0, 1, 5, 100, 4095, 4096, 10000, 70000)
OFFSETS = (0, 0, 1, 3, 100, 4095, 4096, 10000, 65536)
# utimensat values. mtimes in the past; atimes after mtime and ctime, like the harness's
# FIXED_ATIME_NS, so that relatime never moves them on a read: a read served from the page cache
# never reaches a FUSE daemon, so atime updates by reads are not comparable.
MTIMES = (1_500_000_000_123_456_789, 1_000_000_000, 0, 1_700_000_000_999_999_999)
ATIMES = (4_100_000_000_123_456_789, 4_200_000_000_000_000_001)
OP_TIMEOUT = 30.0


# ---------------------------------------------------------------------------------------------
# Cases: JSON-able layer specs + ops
# ---------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One differential run: layers (JSON spec, see to_spec) and the op list."""
    seed: Any
    run: int
    lowers: list[dict]
    upper: dict
    ops: list[list]
    impl: str = overlay.IMPL

    def to_json(self, **extra) -> dict:
        return {"fuzz": 1, "seed": self.seed, "run": self.run, "impl": self.impl,
                "lowers": self.lowers, "upper": self.upper, "ops": self.ops, **extra}

    @classmethod
    def from_json(cls, d: dict) -> "Case":
        return cls(d.get("seed"), d.get("run", 0), d["lowers"], d.get("upper") or {}, d["ops"],
                   d.get("impl", overlay.IMPL))


def _data(v) -> bytes:
    return decode_data(v) if not isinstance(v, bytes) else v


def _flat(js: dict, prefix: str = "") -> list[tuple[str, dict]]:
    out = []
    for name, e in js.items():
        out.append((prefix + name, e))
        if e["t"] == "d":
            out += _flat(e.get("children", {}), prefix + name + "/")
    return out


def to_spec(js: dict) -> dict:
    """The overlay.py spec for a JSON spec. Entries: {"t": KIND, ...}, KIND one of
    f (data, size, mode, owner, xattrs) | d (children, mode, owner, xattrs, opaque) |
    l (target, owner) | p (mode, owner) | h (target: path of a regular file of the same layer) |
    w (whiteout). Hardlinks whose target is not a regular file of the layer are dropped."""
    files = {p for p, e in _flat(js) if e["t"] == "f"}

    def conv(d: dict) -> dict:
        out = {}
        for name, e in d.items():
            t, owner = e["t"], e.get("owner", "user")
            if t == "f":
                out[name] = File(_data(e.get("data", "")), mode=e.get("mode", 0o644), owner=owner,
                                 xattrs=dict(e.get("xattrs", {})), size=e.get("size"))
            elif t == "d":
                out[name] = Dir(conv(e.get("children", {})), mode=e.get("mode", 0o755),
                                owner=owner, xattrs=dict(e.get("xattrs", {})),
                                opaque=e.get("opaque", False))
            elif t == "l":
                out[name] = Symlink(e["target"], owner=owner)
            elif t == "p":
                out[name] = Fifo(e.get("mode", 0o644), owner=owner)
            elif t == "h":
                if e["target"] in files:
                    out[name] = Hardlink(e["target"])
            elif t == "w":
                out[name] = Whiteout()
            else:
                raise ValueError(f"bad entry kind {t!r}")
        return out

    return conv(js)


# ---------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------
def _text(rng: random.Random, lo: int = 1, hi: int = 24) -> str:
    return "".join(rng.choice("abcdefxyz0123\n") for _ in range(rng.randint(lo, hi)))


def _payload(rng: random.Random):
    if rng.random() < 0.75:
        return _text(rng)
    return {"pattern": rng.randrange(1 << 30), "size": rng.choice((200, 4096, 5000, 9000))}


def _symlink_target(rng: random.Random, path: str) -> str:
    """A target for a link at PATH that stays inside the mount wherever the link is moved: no
    ".." and no "." (a link renamed to the top could reach the mount root or the layer dirs
    around it, and a chmod through it would stop the tree walks or write a lower)."""
    r = rng.random()
    if r < 0.5:
        return rng.choice(NAMES)  # sibling (or itself: ELOOP)
    if r < 0.8:  # a path below the link's directory
        return rng.choice(POOL)
    return rng.choice(("missing", "/nonexistent-cowfs-fuzz", "a/b/"))


def gen_tree(rng: random.Random, *, depth: int = 1, prefix: str = "", special: bool = False,
             owner: str = "user", density: float = 1.0) -> dict:
    """A random JSON spec over the name pool. SPECIAL: whiteouts and opaque dirs allowed (an
    upper, or a lower with another lower below it)."""
    out = {}
    for name in NAMES:
        if rng.random() > density * (0.85, 0.6, 0.45)[depth - 1]:
            continue
        path = prefix + name
        r = rng.random()
        if depth < DEPTH and r < 0.4:
            e = {"t": "d", "children": gen_tree(rng, depth=depth + 1, prefix=path + "/",
                                                special=special, owner=owner, density=density)}
            if rng.random() < 0.15:
                e["mode"] = rng.choice(DIR_MODES) if owner == "user" else 0o755
            if rng.random() < 0.1:
                e["xattrs"] = {"user.a": _text(rng, 1, 6)}
            if special and rng.random() < 0.25:
                e["opaque"] = True
        elif r < 0.78:
            e = {"t": "f", "data": _text(rng, 0, 30) if rng.random() < 0.85 else
                 {"pattern": rng.randrange(1 << 30), "size": rng.choice((5000, 70000))}}
            if rng.random() < 0.25:
                e["mode"] = (rng.choice(FILE_MODES) if owner == "user"
                             else rng.choice((0o644, 0o755, 0o444, 0o600)))
            if rng.random() < 0.1:
                e["size"] = rng.choice((8192, 100000))
            if rng.random() < 0.15:
                e["xattrs"] = {rng.choice(("user.a", "user.b")): _text(rng, 1, 6)}
        elif r < 0.88:
            e = {"t": "l", "target": _symlink_target(rng, path)}
        elif r < 0.91:
            e = {"t": "p"}
        elif r < 0.95 and owner == "user":
            e = {"t": "h", "target": None}  # filled in by _fix_hardlinks
        elif special:
            e = {"t": "w"}
        else:
            e = {"t": "f", "data": _text(rng)}
        if owner != "user" and e["t"] in "fdlp":
            e["owner"] = owner
        out[name] = e
    return out


def _fix_hardlinks(rng: random.Random, js: dict) -> None:
    files = [p for p, e in _flat(js) if e["t"] == "f" and e.get("owner", "user") == "user"]
    for p, e in _flat(js):
        if e["t"] == "h":
            if files:
                e["target"] = rng.choice(files)
            else:
                e.clear()
                e.update({"t": "f", "data": "h"})


def generate_layers(rng: random.Random, modes: str = "all") -> tuple[list[dict], dict, bool]:
    """(lowers top first, upper, has root-owned dir)."""
    n_lowers = 2 if rng.random() < 0.3 else 1
    lowers = []
    for i in range(n_lowers):
        js = gen_tree(rng, special=i < n_lowers - 1)
        _fix_hardlinks(rng, js)
        lowers.append(js)
    upper: dict = {}
    if rng.random() < 0.35:
        upper = gen_tree(rng, special=True, density=0.6)
        _fix_hardlinks(rng, upper)
    rooted = rng.random() < 0.25
    if rooted:  # lower-only, root-owned: readable, never copied up by the test user
        top = rng.randrange(n_lowers)
        lowers[top][ROOT_DIR] = {"t": "d", "owner": "root",
                                 "children": gen_tree(rng, depth=2, prefix=ROOT_DIR + "/",
                                                      owner="root")}
    layers = [upper, *lowers]
    for i, js in enumerate(layers):
        _prune_stray_whiteouts(js, layers[i + 1:])
        if modes == "mild":
            for _, e in _flat(js):
                if e["t"] == "d" and e.get("mode", 0o700) & 0o700 != 0o700:
                    del e["mode"]
    if any(e["t"] == "w" or e.get("opaque") for js in layers for _, e in _flat(js)):
        for js in lowers:  # see lower_links: no reference for both at once
            for _, e in _flat(js):
                if e["t"] == "h":
                    e.clear()
                    e.update({"t": "f", "data": "h"})
    return lowers, upper, rooted


def lower_links(case) -> bool:
    """Whether a lower of CASE has hard links. cowfs keeps them one object across a copy-up,
    as the kernel does as root with index=on, where the rootless kernel breaks them: such a
    case is compared with that kernel (in its trusted.overlay.* format, so the generator gives
    such a case no whiteouts or opaque dirs, markers that reference would not read)."""
    return any(e["t"] == "h" for js in case.lowers for _, e in _flat(js))


def _entry_at(js: dict, path: str) -> dict | None:
    e: dict | None = {"t": "d", "children": js}
    for part in path.split("/") if path else []:
        e = e.get("children", {}).get(part) if e and e["t"] == "d" else None
    return e


def _prune_stray_whiteouts(js: dict, below: list[dict]) -> None:
    """Drop whiteouts whose directory does not merge with a directory of a layer below. Kernel
    overlay never creates them there, and shows them when it meets one (readdir of a directory
    that is not merged lists the whiteout's name; rmdir counts it): cowfs does not, on purpose."""
    def merged(path: str) -> bool:  # every ancestor a non-opaque dir here and a dir below
        parts = path.split("/") if path else []
        for n in range(len(parts) + 1):
            a = "/".join(parts[:n])
            here = _entry_at(js, a)
            if here is None or here["t"] != "d" or (n and here.get("opaque")):
                return False
            # the first layer below with an entry there decides: a non-directory hides the rest
            first = next((b for low in below if (b := _entry_at(low, a)) is not None), None)
            if n and (first is None or first["t"] != "d"):
                return False
        return bool(below)

    for path, e in _flat(js):
        if e["t"] == "w" and not merged(path.rpartition("/")[0]):
            parent = _entry_at(js, path.rpartition("/")[0])
            del parent["children"][path.rpartition("/")[2]]


def _ticks_kept(ops: list) -> bool:
    """Each run of times_mark ops keeps its sleeps before and after (g_times_rel): without
    them, times of events in one tick of the kernel's coarse clock compare by chance."""
    for i, op in enumerate(ops):
        if op[0] != "times_mark":
            continue
        if ops[i - 1][0] not in ("times_mark", "sleep") if i else True:
            return False
        if i + 1 < len(ops) and ops[i + 1][0] not in ("times_mark", "sleep"):
            return False
    return True


def _has_stray_whiteouts(case: "Case") -> bool:
    layers = copy.deepcopy([case.upper, *case.lowers])
    pruned = copy.deepcopy(layers)
    for i, js in enumerate(pruned):
        _prune_stray_whiteouts(js, pruned[i + 1:])
    return pruned != layers


MILD_CHMOD = tuple(m for m in CHMOD_MODES if m & 0o700 == 0o700)
MILD_DIR = tuple(m for m in DIR_MODES if m & 0o700 == 0o700)
MILD_FILE = tuple(m for m in FILE_MODES if m & 0o600 == 0o600)


class Model:
    """A rough model of the merged namespace (path -> kind), to aim ops at things that exist.

    Built from the layer specs with overlay's lookup rules, then updated by every generated op
    that would succeed on a plain POSIX filesystem (permissions, symlinks in paths and such are
    ignored). It only biases the choice of paths and descriptors: a wrong guess just makes an op
    fail, on both sides alike, which is tested too."""

    def __init__(self, layers: list[dict]):  # layers top first (upper, then lowers)
        self.kind: dict[str, str] = {}
        self.movable: set[str] = set()  # dirs only in upper: rename works (else EXDEV)
        self._merge("", list(enumerate(layers)))

    def _merge(self, prefix: str, layers: list[tuple[int, dict]]) -> None:
        """Overlay lookup over LAYERS ((index, children), upper = index 0), recursively."""
        for name in sorted({n for _, js in layers for n in js}):
            path = prefix + name
            dirs: list[tuple[int, dict]] = []
            kind = None
            for i, js in layers:
                e = js.get(name)
                if e is None:
                    continue
                if e["t"] == "w" or (e["t"] != "d" and dirs):
                    break
                if e["t"] != "d":
                    kind = {"h": "f"}.get(e["t"], e["t"])
                    break
                kind = "d"
                dirs.append((i, e.get("children", {})))
                if e.get("opaque"):
                    break
            if kind is None:
                continue
            self.kind[path] = kind
            if kind == "d":
                if [i for i, _ in dirs] == [0]:
                    self.movable.add(path)
                self._merge(path + "/", dirs)

    def parent_ok(self, path: str) -> bool:
        parent = path.rpartition("/")[0]
        if parent.split("/")[0] == ROOT_DIR or path == ROOT_DIR:
            return False  # the root-owned directory: nothing is made or removed in it
        return parent == "" or self.kind.get(parent) == "d"

    def under(self, path: str) -> list[str]:
        return [p for p in self.kind if p == path or p.startswith(path + "/")]

    def remove(self, path: str) -> None:
        for p in self.under(path):
            del self.kind[p]
            self.movable.discard(p)

    def move(self, src: str, dst: str) -> None:
        moved = {dst + p[len(src):]: (self.kind[p], p in self.movable) for p in self.under(src)}
        self.remove(src)
        self.remove(dst)
        for p, (k, mv) in moved.items():
            self.kind[p] = k
            if mv:
                self.movable.add(p)

    def children(self, path: str) -> list[str]:
        return [p for p in self.kind if p.rpartition("/")[0] == path]


class _Gen:
    def __init__(self, rng: random.Random, lowers: list[dict], upper: dict, rooted: bool,
                 modes: str = "all"):
        self.rng = rng
        self.modes = modes
        self.rooted = rooted
        self.model = Model([upper, *lowers])
        self.open_fds: dict[str, str] = {}  # fd name -> kind, for fds the model thinks open
        self.fd_paths: dict[str, str] = {}  # fd name -> the path it was opened with
        # fds whose name (or a parent's) was since removed or renamed: a change through such a
        # descriptor of a lower object is a declared difference whose effects carry on (the
        # kernel brings the deleted name back, EXPECTED removed-lower-change), so none is drawn
        self.orphans: set[str] = set()
        self.open_dirs: set[str] = set()
        self.pool = POOL + ([ROOT_DIR] + [f"{ROOT_DIR}/{p}" for p in POOL if p.count("/") < 2]
                            if rooted else [])

    # --- paths -----------------------------------------------------------------------------
    def _slash(self, p: str) -> str:
        return p + "/" if self.rng.random() < 0.03 else p

    def existing(self, kinds: str | None = None, root_ok: bool = False) -> str:
        """Mostly a path the model has (of one of KINDS), else any pool path. "." (the mount
        root) is never given to open or chmod: a root the test user cannot search would stop
        the tree walks of both sides."""
        if root_ok and self.rng.random() < 0.03:
            return "."
        cands = [p for p, k in self.model.kind.items() if kinds is None or k in kinds]
        if cands and self.rng.random() < 0.8:
            return self._slash(self.rng.choice(sorted(cands)))
        return self._slash(self.rng.choice(self.pool))

    def fresh(self) -> str:
        """Mostly a name the model does not have, in a directory it has."""
        cands = [p for p in self.pool if p not in self.model.kind and self.model.parent_ok(p)]
        if cands and self.rng.random() < 0.8:
            return self._slash(self.rng.choice(cands))
        return self.existing()

    def any(self, root_ok: bool = False) -> str:
        return self.fresh() if self.rng.random() < 0.25 else self.existing(root_ok=root_ok)

    def _k(self, path: str) -> str | None:
        k = self.model.kind.get(path.rstrip("/"))
        return None if path.endswith("/") and k != "d" else k

    def fd(self) -> str:
        if self.open_fds and self.rng.random() < 0.85:
            return self.rng.choice(sorted(self.open_fds))
        return self.rng.choice(FDS)

    def mode(self, modes=FILE_MODES) -> int:
        if self.modes == "mild":  # the owner keeps rw (files) / rwx (directories, chmod)
            modes = {FILE_MODES: MILD_FILE, DIR_MODES: MILD_DIR}.get(modes, MILD_CHMOD)
        return self.rng.choice(modes)

    def _created(self, path: str, kind: str) -> bool:
        """Record PATH as made if the model says that works; True if so."""
        p = path.rstrip("/")
        if p in self.model.kind or not self.model.parent_ok(p) or (path.endswith("/")
                                                                   and kind != "d"):
            return False
        self.model.kind[p] = kind
        if kind == "d":
            self.model.movable.add(p)
        return True

    # --- op families: each returns a list of ops -----------------------------------------
    def g_open(self):
        flags = [self.rng.choice(ACC)]
        flags += [f for f, p in EXTRA_FLAGS if self.rng.random() < p]
        creat = "O_CREAT" in flags
        path = self.fresh() if creat and self.rng.random() < 0.5 else \
            self.existing("fdp" if self.rng.random() < 0.9 else None)
        fd = self.rng.choice(FDS)
        self.open_fds.pop(fd, None)
        self.orphans.discard(fd)
        self.fd_paths[fd] = path.rstrip("/")
        kind = self._k(path)
        if kind is None and creat and "O_DIRECTORY" not in flags and self._created(path, "f"):
            kind = "f"
        elif kind is not None and "O_EXCL" in flags and creat:
            kind = None
        if kind == "d" and flags[0] != "O_RDONLY":
            kind = None
        if kind == "f" and "O_DIRECTORY" in flags:
            kind = None
        if kind is not None:
            self.open_fds[fd] = kind
        return [["open", fd, path, flags + ["O_NONBLOCK"], self.mode()]]

    def g_create(self):
        f = self.rng.choice(("O_EXCL", "O_TRUNC", None))
        fl = ["O_WRONLY", "O_CREAT"] + ([f] if f else []) + ["O_NONBLOCK"]
        path = self.fresh() if self.rng.random() < 0.75 else self.existing("f")
        self._created(path, "f")
        return [["open", "c", path, fl, self.mode()],
                ["write", "c", _payload(self.rng)], ["close", "c"]]

    def g_append(self):
        return [["open", "c", self.existing("f"), ["O_WRONLY", "O_APPEND", "O_NONBLOCK"]],
                ["write", "c", _payload(self.rng)], ["close", "c"]]

    def g_write_at(self):
        return [["open", "c", self.existing("f"), ["O_RDWR", "O_NONBLOCK"]],
                ["pwrite", "c", _payload(self.rng), self.rng.choice(OFFSETS)], ["close", "c"]]

    def g_read_path(self):
        return [["open", "c", self.existing("f"), ["O_RDONLY", "O_NONBLOCK"]],
                ["read", "c", 100000], ["close", "c"]]

    def g_fd_write(self):
        if self.rng.random() < 0.5:
            return [["write", self.fd(), _payload(self.rng)]]
        return [["pwrite", self.fd(), _payload(self.rng), self.rng.choice(OFFSETS)]]

    def g_fd_read(self):
        if self.rng.random() < 0.5:
            return [["read", self.fd(), self.rng.choice((1, 10, 5000, 100000))]]
        return [["pread", self.fd(), self.rng.choice((10, 100000)), self.rng.choice(OFFSETS)]]

    def g_fd_misc(self):
        fd, r = self.fd(), self.rng.random()
        if r < 0.3:
            return [["fstat", fd]]
        if r < 0.45:
            return [["ftruncate", fd, self.rng.choice(SIZES)]]
        if r < 0.55:
            if fd in self.orphans:
                return [["fstat", fd]]
            return [["fchmod", fd, self.mode(CHMOD_MODES)]]
        if r < 0.62:
            return [["fsync", fd]]
        if r < 0.67:
            return [["fstat_times", fd]]
        if r < 0.7:
            # a probe: the answers differ by design (EXPECTED lseek-holes), the offset must not
            return [["lseek", fd, 0, self.rng.choice(("SEEK_DATA", "SEEK_HOLE")), True]]
        if r < 0.8:
            op = ["lseek", fd, self.rng.choice((0, 3, 5000)),
                  self.rng.choice(("SEEK_SET", "SEEK_CUR", "SEEK_END"))]
            # a directory's SEEK_END differs by design (EXPECTED dir-lseek-end): a probe there
            return [op + [True] if self.open_fds.get(fd) == "d" else op]
        self.open_fds.pop(fd, None)
        return [["close", fd]]

    def g_truncate(self):
        return [["truncate", self.existing("f"), self.rng.choice(SIZES)]]

    def g_mkdir(self):
        path = self.fresh()
        self._created(path, "d")
        return [["mkdir", path, self.mode(DIR_MODES)]]

    def _touched(self, *paths: str) -> None:
        """PATHS are removed or renamed: descriptors opened below or at them are orphans."""
        for path in paths:
            p = path.rstrip("/")
            self.orphans.update(fd for fd, q in self.fd_paths.items()
                                if q == p or q.startswith(p + "/") or p in ("", "."))

    def g_rmdir(self):
        empty = sorted(p for p, k in self.model.kind.items()
                       if k == "d" and not self.model.children(p))
        path = self.rng.choice(empty) if empty and self.rng.random() < 0.5 else self.existing("d")
        p = path.rstrip("/")
        if (self.model.kind.get(p) == "d" and not self.model.children(p)
                and self.model.parent_ok(p)):
            self.model.remove(p)
        self._touched(path)
        return [["rmdir", path]]

    def g_unlink(self):
        path = self.existing("flps")
        p = path
        if self.model.kind.get(p) not in (None, "d") and self.model.parent_ok(p):
            self.model.remove(p)
        self._touched(path)
        return [["unlink", path]]

    def g_rename(self):
        flags = self.rng.choice(("", "", "", "NOREPLACE", "EXCHANGE"))
        src = self.existing()
        r = self.rng.random()
        dst = self.fresh() if r < 0.45 or flags == "NOREPLACE" else self.existing()
        self._predict_rename(src, dst, flags)
        self._touched(src, dst)
        return [["rename", src, dst, flags] if flags else ["rename", src, dst]]

    def _predict_rename(self, src: str, dst: str, flags: str) -> None:
        m = self.model
        s, d = src.rstrip("/"), dst.rstrip("/")
        ks, kd = m.kind.get(s), m.kind.get(d)
        if (ks is None or s == d or not m.parent_ok(s) or not m.parent_ok(d)
                or d.startswith(s + "/") or s.startswith(d + "/")):
            return
        if (ks == "d" and s not in m.movable) or (kd == "d" and flags == "EXCHANGE"
                                                  and d not in m.movable):
            return  # EXDEV
        if flags == "EXCHANGE":
            if kd is None:
                return
            tmp = "\0swap"
            m.move(s, tmp)
            m.move(d, s)
            m.move(tmp, d)
            return
        if kd is not None and (flags == "NOREPLACE" or (ks == "d") != (kd == "d")
                               or (kd == "d" and m.children(d))):
            return
        if (src.endswith("/") or dst.endswith("/")) and ks != "d":
            return
        m.move(s, d)

    def g_link(self):
        # no FIFOs: the kernel makes two pipes of a FIFO's two names (EXPECTED hardlink-ino), so
        # a reader on one name leaves a writer on the other with ENXIO, on the kernel only
        src, dst = self.existing("fl"), self.fresh()
        k = self.model.kind.get(src)
        if k == "p":
            return [["lstat", src]]
        if k not in (None, "d"):
            self._created(dst, k)
        return [["link", src, dst]]

    def g_symlink(self):
        p = self.fresh()
        self._created(p, "l")
        return [["symlink", _symlink_target(self.rng, p.rstrip("/")), p]]

    def g_special(self):
        if self.rng.random() < 0.6:
            p = self.fresh()
            self._created(p, "p")
            return [["mkfifo", p, self.mode()]]
        kind = self.rng.choice(("p", "f", "s", "c"))
        p = self.fresh()
        if kind != "c":
            self._created(p, kind)
        return [["mknod", p, 0o644, kind]]

    def g_chmod(self):
        return [["chmod", self.existing(), self.mode(CHMOD_MODES)]]

    def g_chown(self):
        r = self.rng.random()
        op = "lchown" if r < 0.3 else "chown"
        if self.rooted or r < 0.5:  # -1/-1 reaches setattr (copy-up) even on others' files
            return [[op, self.existing(), self.rng.choice(("user", "root")), "user"]]
        return [[op, self.existing(), -1, -1]]

    def g_utimens(self):
        if self.rng.random() < 0.2:
            return [["utime", self.any()]]
        path = self.any(root_ok=True)
        # "now" needs only write permission, which every user has on a symlink: on one of the
        # root-owned directory's own it would copy that directory up (EXPECTED copyup-owner)
        follow = self.rng.random() < 0.7 or path.split("/")[0] == ROOT_DIR
        return [["utimensat", path, self.rng.choice(ATIMES + ("NOW", "OMIT")),
                 self.rng.choice(MTIMES + ("NOW", "OMIT")), follow]]

    def g_stat(self):
        op = self.rng.choice(("stat", "lstat", "stat", "lstat", "stat_times", "lstat_times",
                              "readlink", "exists"))
        return [[op, self.existing("l" if op == "readlink" else None, root_ok=True)]]

    def g_access(self):
        modes = [m for m in ("R_OK", "W_OK", "X_OK") if self.rng.random() < 0.4] or ["F_OK"]
        return [["access", self.any(root_ok=True), modes]]

    def g_statfs(self):
        return [["statvfs", self.any(root_ok=True)]]

    def g_setxattr(self):
        op = "lsetxattr" if self.rng.random() < 0.2 else "setxattr"
        flags = self.rng.choice(("", "", "CREATE", "REPLACE"))
        path = self.existing(root_ok=True)
        out = [[op, path, self.rng.choice(XATTRS), _text(self.rng, 0, 8), flags]]
        if flags and path.split("/")[0] != ROOT_DIR:
            # copied up first: a refused CREATE/REPLACE copies up on the kernel only (EXPECTED
            # in README, test_xattr.py), and the copy-up would carry on into later results
            out.insert(0, ["lchown" if op == "lsetxattr" else "chown", path, -1, -1])
        return out

    def g_getxattr(self):
        if self.rng.random() < 0.5:
            return [[self.rng.choice(("getxattr", "lgetxattr")), self.existing(root_ok=True),
                     self.rng.choice(XATTRS)]]
        return [[self.rng.choice(("listxattr", "llistxattr")), self.existing(root_ok=True)]]

    def g_removexattr(self):
        op = "lremovexattr" if self.rng.random() < 0.2 else "removexattr"
        return [[op, self.existing(root_ok=True), self.rng.choice(XATTRS)]]

    def g_readdir(self):
        r = self.rng.random()
        if r < 0.4:
            return [["listdir", self.existing("d", root_ok=True)]]
        if r < 0.6:
            return [["scandir", self.existing("d", root_ok=True)]]
        if r < 0.8 or not self.open_dirs:  # readdir right after opendir: when a snapshot is
            d = self.rng.choice(DIRSTREAMS)  # taken is not semantics
            path = self.existing("d", root_ok=True)
            if self.model.kind.get(path) == "d" or path == ".":
                self.open_dirs.add(d)
            else:
                self.open_dirs.discard(d)
            return [["opendir", d, path], ["readdir", d]]
        d = self.rng.choice(sorted(self.open_dirs))
        if r < 0.95:  # rewinddir must show the current state (POSIX)
            return [["rewinddir", d], ["readdir", d]]
        self.open_dirs.discard(d)
        return [["closedir", d]]

    # families whose ops change times of the objects they name (or must not): g_times_rel
    # checks the mtime/ctime relations they leave on those objects and their parents
    TIMED = ("g_chmod", "g_chown", "g_rename", "g_link", "g_unlink", "g_truncate", "g_setxattr",
             "g_removexattr", "g_write_at", "g_append", "g_mkdir", "g_rmdir", "g_create",
             "g_symlink", "g_special", "g_read_path", "g_readdir", "g_utimens")

    def g_times_rel(self):
        ops = getattr(self, self.rng.choice(self.TIMED))()
        op = ops[0]
        named = [op[2]] if op[0] in ("open", "opendir", "symlink") else op[1:3] if op[0] in (
            "rename", "link") else op[1:2]
        named = [a.rstrip("/") or "." for a in named]
        # the objects at those paths, but never what a rename puts there: the times of two
        # objects changed before the first tick compare by chance
        kept = [] if op[0] == "rename" else named[:1]
        paths = list(dict.fromkeys(kept + [a.rpartition("/")[0] or "." for a in named]))
        marks = [["times_mark", f"t{i}", p] for i, p in enumerate(paths)]
        # a directory's ctime also moves when the kernel's overlay adds or drops its "impure"
        # marker (an entry renamed in or removed), which cowfs does not keep: mtime only there
        cmps = [["times_cmp", f"t{i}", p, ["mtime"] if p == "." or self.model.kind.get(p) == "d"
                 else ["mtime", "ctime", "mode"]] for i, p in enumerate(paths)]
        # ticks: the kernel's clock is coarse; what happened before the marks, and what the op
        # changes, must each land on a time of its own
        return [["sleep", 0.01]] + marks + [["sleep", 0.01]] + ops + cmps

    WEIGHTS = {
        "g_open": 8, "g_create": 6, "g_append": 3, "g_write_at": 3, "g_read_path": 4,
        "g_fd_write": 6, "g_fd_read": 5, "g_fd_misc": 6, "g_truncate": 3, "g_mkdir": 5,
        "g_rmdir": 4, "g_unlink": 6, "g_rename": 10, "g_link": 3, "g_symlink": 3,
        "g_special": 2, "g_chmod": 3, "g_chown": 1, "g_utimens": 3, "g_stat": 8,
        "g_access": 2, "g_statfs": 1, "g_setxattr": 4, "g_getxattr": 4, "g_removexattr": 2,
        "g_readdir": 5, "g_times_rel": 3,
    }

    def ops(self, n: int) -> list[list]:
        names = list(self.WEIGHTS)
        weights = [self.WEIGHTS[k] for k in names]
        out: list[list] = []
        while len(out) < n:
            out += getattr(self, self.rng.choices(names, weights)[0])()
        return out[:n]


def generate_case(seed: Any, run: int, n_ops: int, modes: str = "all") -> Case:
    """Run RUN of the session seeded SEED: deterministic in (seed, run, n_ops, modes).
    MODES "mild": no mode takes r/w/x away from a directory's owner (nor r/w from a file's)."""
    rng = random.Random(f"cowfs-fuzz/{seed}/{run}")
    lowers, upper, rooted = generate_layers(rng, modes)
    ops = _Gen(rng, lowers, upper, rooted, modes).ops(n_ops)
    return Case(seed, run, lowers, upper, ops)


# ---------------------------------------------------------------------------------------------
# Running one case
# ---------------------------------------------------------------------------------------------
@dataclass
class Finding:
    """One unexplained or tolerated difference of a run."""
    kind: str  # "op" | "tree" | "cross" | "error"
    diff: overlay.Diff | None
    message: str = ""

    def signature(self) -> tuple:
        if self.kind == "error":
            return ("error", self.message.split(":", 1)[0])
        leaf = self.diff.field.rsplit(".", 1)[-1]
        if self.kind == "op":
            return ("op", overlay._op_name(self.diff), leaf)
        return (self.kind, leaf)

    def __str__(self) -> str:
        if self.kind == "error":
            return f"error: {self.message}"
        d = self.diff
        fld = f" .{d.field}" if d.field else ""
        if self.kind == "cross":
            return (f"cross-check tree {d.path}{fld}:  kernel mount of the cowfs upper "
                    f"{overlay._show(d.kernel)}  |  cowfs {overlay._show(d.cowfs)}")
        return str(d)


@dataclass
class Result:
    case: Case
    bad: list[Finding] = field(default_factory=list)
    tolerated: list[tuple[Finding, str]] = field(default_factory=list)  # (finding, EXPECTED name)
    ops: list = field(default_factory=list)  # case.ops + epilogue
    kernel: list | None = None
    cowfs: list | None = None
    log: str = ""
    seconds: float = 0.0

    @property
    def diverged(self) -> bool:
        return bool(self.bad)

    def signature(self) -> tuple | None:
        return self.bad[0].signature() if self.bad else None

    def has(self, sig: tuple) -> bool:
        return any(f.signature() == sig for f in self.bad)

    def report(self, limit: int = 60) -> str:
        lines = []
        if self.bad:
            lines.append(f"{len(self.bad)} unexplained difference(s) (cowfs vs kernel overlayfs):")
            lines += [f"  {f}" for f in self.bad[:limit]]
            if len(self.bad) > limit:
                lines.append(f"  ... {len(self.bad) - limit} more")
        if self.tolerated:
            lines.append(f"{len(self.tolerated)} tolerated difference(s) (EXPECTED_DIFFERENCES):")
            lines += [f"  [{name}] {f}" for f, name in self.tolerated[:limit]]
        if self.kernel is not None and self.cowfs is not None:
            lines.append("ops (kernel result | cowfs result):")
            for i, (op, k, c) in enumerate(zip(self.ops, self.kernel, self.cowfs)):
                if i == len(self.case.ops):
                    lines.append("   (epilogue: every descriptor closed before the tree walk)")
                mark = "  " if k == c else "!!"
                lines.append(f"{mark} [{i}] {json.dumps(op)[:110]}  ->  {overlay._show(k)}"
                             + ("" if k == c else f"  |  {overlay._show(c)}"))
        if self.log and self.bad:
            lines.append(self.log)
        return "\n".join(lines)


def _tree(root: str) -> dict:
    return overlay.run_ops(root, [["tree", "."]], timeout=OP_TIMEOUT)[0]["ok"]


def epilogue(ops: list) -> list:
    """Close every descriptor and directory stream the ops may have left open, so the tree walk
    (same runner process) and the cross-check see the state after the last release."""
    fds = sorted({op[1] for op in ops if op[0] == "open"})
    dirs = sorted({op[1] for op in ops if op[0] == "opendir"})
    return [["close", f] for f in fds] + [["closedir", d] for d in dirs]


def _ops_and_tree(mnt: str, ops: list, tree: bool) -> tuple[list, dict | None]:
    """One runner process: the ops, then (if TREE) the merged tree walk."""
    out = overlay.run_ops(mnt, ops + ([["tree", "."]] if tree else []), timeout=OP_TIMEOUT)
    if not tree:
        return out, None
    walk = out.pop()
    return out, walk.get("ok", {".": walk})

def _forget_lowers(paths: list[str]) -> None:
    overlay.LOWERS[:] = [x for x in overlay.LOWERS if x[0] not in paths]


@contextlib.contextmanager
def _mounted(impl: str, lay: overlay.Layers, errors: list[str], opts: list[str] | None = None):
    m = overlay.mount(impl, lay, opts, trusted=opts is not None)
    try:
        yield m
    finally:
        try:
            m.unmount()
        except overlay.HarnessError as e:
            errors.append(f"unmount {impl}: {e}")


def run_case(case: Case, *, cross: bool = True, trees: bool = True,
             name: str = "fuzz") -> Result:
    """Run CASE on fresh layers and mounts; every difference classified. Raises HarnessError
    only for problems of the harness itself (the kernel side failing, malformed ops)."""
    t0 = time.monotonic()
    e = overlay.env()
    res = Result(case)
    lowers = [to_spec(js) for js in case.lowers]
    upper = overlay.Dir(to_spec(case.upper))  # always built: fixed times on the upper root
    klay = overlay.make_layers(f"{name}-{case.run}-kernel", lowers, upper)
    clay = overlay.make_layers(f"{name}-{case.run}-{case.impl}", lowers, upper)
    all_lowers = klay.lowers + clay.lowers
    errors: list[str] = []
    ctx = overlay.Context(klay.upper, clay.upper, e.uid, e.gid, case.impl, tuple(clay.lowers))
    ktree = ctree = None

    all_ops = case.ops + epilogue(case.ops)
    res.ops = all_ops

    kernel_opts = ["index=on"] if lower_links(case) else None

    def kernel_side() -> tuple[list, dict | None]:
        with _mounted("kernel", klay, errors, kernel_opts) as km:
            return _ops_and_tree(km.mnt, all_ops, trees)

    pool = concurrent.futures.ThreadPoolExecutor(1)  # the two sides are independent processes
    try:
        kfut = pool.submit(kernel_side)
        try:
            cm = overlay.mount(case.impl, clay)
        except BaseException:
            kfut.result()  # both mounts gone before the cleanup below
            raise
        try:
            try:
                res.cowfs, ctree = _ops_and_tree(cm.mnt, all_ops, trees or cross)
            except overlay.HarnessError as err:
                if "malformed ops" in str(err):
                    raise
                errors.append(f"runner: {err}")
            if not cm.alive():
                errors.append(f"daemon died: exit {cm.proc.returncode}")
            res.log = cm.log_tail(40) if cm.proc else ""
        finally:
            try:
                cm.unmount()
            except overlay.HarnessError as err:
                errors.append(f"unmount: {err}")
            res.kernel, ktree = kfut.result()
        if res.cowfs is not None:
            diffs = overlay.compare_results(all_ops, res.kernel, res.cowfs)
            kinds = ["op"] * len(diffs)
            if trees and ctree is not None:
                td = overlay.compare_trees(ktree, ctree)
                diffs += td
                kinds += ["tree"] * len(td)
            _classify(res, diffs, kinds, ctx)
        if cross and ctree is not None and not errors:
            clay.new_work()
            try:
                with _mounted("kernel", clay, errors) as xm:
                    xtree = _tree(xm.mnt)
            except overlay.HarnessError as err:
                errors.append(f"cross-check mount: {err}")
            else:
                xctx = overlay.Context(clay.upper, clay.upper, e.uid, e.gid, case.impl,
                                       tuple(clay.lowers))
                xd = overlay.compare_trees(xtree, ctree)
                _classify(res, xd, ["cross"] * len(xd), xctx)
        try:
            overlay.check_lowers(all_lowers)
        except AssertionError as err:
            errors.append(f"lower written: {err}")
    finally:
        pool.shutdown(wait=True)
        for m in (klay.mnt, clay.mnt):  # never leave a mount behind, whatever happened
            if overlay.mounted_at(m):
                overlay._run(["umount", "-l", m])
        _forget_lowers(all_lowers)
        if not overlay.KEEP:
            for lay in (klay, clay):
                shutil.rmtree(lay.base, ignore_errors=True)
    res.bad = [Finding("error", None, m) for m in errors] + res.bad
    res.seconds = time.monotonic() - t0
    return res


def _classify(res: Result, diffs: list, kinds: list[str], ctx: overlay.Context) -> None:
    for d, kind in zip(diffs, kinds, strict=True):
        bad, ok = overlay.classify([d], ctx)
        if bad:
            res.bad.append(Finding(kind, d))
        else:
            res.tolerated.append((Finding(kind, d), ok[0][1].name))


# ---------------------------------------------------------------------------------------------
# Shrinking
# ---------------------------------------------------------------------------------------------
class Shrinker:
    """Delta debugging: the smallest op list (then layer specs) keeping signature SIG."""

    def __init__(self, case: Case, sig: tuple, seconds: float, log: Callable[[str], None]):
        self.case = copy.deepcopy(case)
        self.sig = sig
        self.deadline = time.monotonic() + seconds
        self.log = log
        self.tries = 0
        self.ops_run = 0
        self.last: Result | None = None
        self.cross = sig[0] in ("cross", "error")
        self.trees = sig[0] != "op"

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def fails(self, cand: Case) -> bool:
        if _has_stray_whiteouts(cand) or not _ticks_kept(cand.ops):
            return False  # a case the generator never makes: not a smaller form of this one
        self.tries += 1
        self.ops_run += len(cand.ops)
        try:
            r = run_case(cand, cross=self.cross, trees=self.trees, name="shrink")
        except overlay.HarnessError:
            return False
        if r.has(self.sig):
            self.last = r
            return True
        return False

    def with_ops(self, ops: list) -> Case:
        return dataclasses.replace(self.case, ops=ops)

    def shrink_ops(self) -> None:
        ops = self.case.ops
        if self.sig[0] == "op" and self.last is not None:  # nothing after the first such op
            first = next((i for i, (k, c) in enumerate(zip(self.last.kernel, self.last.cowfs))
                          if k != c and any(f.kind == "op" and f.signature() == self.sig
                                            and f.diff.where.startswith(f"op[{i}]")
                                            for f in self.last.bad)), None)
            if (first is not None and first + 1 < len(ops)
                    and self.fails(self.with_ops(ops[:first + 1]))):
                ops = ops[:first + 1]
        n = 2
        while len(ops) >= 2 and not self.expired():
            chunk = -(-len(ops) // n)
            for start in range(0, len(ops), chunk):
                if self.expired():
                    break
                cand = ops[:start] + ops[start + chunk:]
                if cand and self.fails(self.with_ops(cand)):
                    ops = cand
                    n = max(n - 1, 2)
                    break
            else:
                if n >= len(ops):
                    break
                n = min(len(ops), 2 * n)
            self.case.ops = ops
        self.case.ops = ops

    def shrink_layers(self) -> None:
        c = self.case
        if len(c.lowers) > 1:
            for i in range(len(c.lowers)):
                cand = dataclasses.replace(c, lowers=c.lowers[:i] + c.lowers[i + 1:])
                if not self.expired() and self.fails(cand):
                    c = self.case = cand
                    break
        if c.upper and not self.expired():
            cand = dataclasses.replace(c, upper={})
            if self.fails(cand):
                c = self.case = cand
        # drop entries one at a time (parents before children), then simplify the rest
        for li in range(len(c.lowers) + 1):
            progress = True
            while progress and not self.expired():
                progress = False
                layer = self.case.upper if li == len(self.case.lowers) else self.case.lowers[li]
                for path, entry in _flat(layer):
                    if self.expired():
                        break
                    for variant in _simpler(entry):
                        cand = copy.deepcopy(self.case)
                        tgt = cand.upper if li == len(cand.lowers) else cand.lowers[li]
                        _replace(tgt, path, variant)
                        if self.fails(cand):
                            self.case = cand
                            progress = True
                            break
                    if progress:
                        break

    def run(self) -> Case:
        self.fails(self.case)  # the result of the full case, to find the first diverging op
        self.shrink_ops()
        if not self.expired():
            self.shrink_layers()
        if not self.expired():
            self.shrink_ops()  # fewer layer entries may make more ops droppable
        return self.case


def _simpler(entry: dict) -> list:
    """Candidates to replace ENTRY with, simplest first (None: remove it)."""
    out: list = [None]
    if entry["t"] == "f":
        for k in ("xattrs", "size", "mode"):
            if k in entry:
                out.append({x: v for x, v in entry.items() if x != k})
        if entry.get("data") not in ("", None):
            out.append({**entry, "data": ""})
    elif entry["t"] == "d":
        if entry.get("children"):
            out.append({**entry, "children": {}})
        for k in ("xattrs", "mode", "opaque"):
            if k in entry:
                out.append({x: v for x, v in entry.items() if x != k})
    return out


def _replace(layer: dict, path: str, entry: dict | None) -> None:
    parts = path.split("/")
    d = layer
    for p in parts[:-1]:
        d = d[p]["children"]
    if entry is None:
        del d[parts[-1]]
    else:
        d[parts[-1]] = entry


def shrink(case: Case, result: Result, *, seconds: float = 180.0,
           log: Callable[[str], None] = print) -> tuple[Case, Result | None, Shrinker]:
    """Minimize CASE keeping RESULT's first unexplained difference (its signature)."""
    s = Shrinker(case, result.signature(), seconds, log)
    small = s.run()
    final = None
    try:  # the reported outcome of the minimal case: with trees and the cross-check
        final = run_case(small, name="shrunk")
    except overlay.HarnessError:
        pass
    return small, final, s


# ---------------------------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def tmpfs_at(path: str):
    """A tmpfs mounted on PATH (created if missing) for the layers of both sides.

    Why: ext4 hands a freed inode number to the next new file at once. The harness labels inodes
    by first appearance over the whole run, so on ext4 the kernel side shows a new file under the
    label of a deleted one while cowfs (whose st_ino is never reused within a mount) shows a new
    label: a difference of the labelling, not of the filesystems. tmpfs numbers inodes from a
    counter and never reuses one; it has user xattrs, whiteouts and O_TMPFILE, so kernel overlay
    (userxattr) and cowfs both run on it unchanged."""
    os.makedirs(path, mode=0o755, exist_ok=True)
    r = overlay._run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=4g", "tmpfs", path])
    if r.returncode != 0:
        raise overlay.HarnessError(f"cannot mount a tmpfs on {path}: {r.stderr.strip()}")
    try:
        yield path
    finally:
        r = overlay._run(["umount", path])
        if r.returncode != 0:
            overlay._run(["umount", "-l", path])


def replay_command(path: str) -> str:
    return (f"cd {shlex.quote(overlay.REPO)} && unshare -m --propagation private "
            f"{shlex.quote(sys.executable)} tests/fuzz.py --replay {shlex.quote(path)}")


@dataclass
class Session:
    seed: Any
    ops_per_run: int = 250
    modes: str = "all"
    shrink_seconds: float = 180.0  # cap for one divergence
    shrink_budget: float | None = None  # cap for all shrinking of the session (None: none)
    out_dir: str = "/tmp/fuzz-cases"
    log: Callable[[str], None] = print
    ops: int = 0
    runs: int = 0
    divergences: int = 0
    shrink_ops: int = 0
    shrink_spent: float = 0.0
    tolerated: Counter = field(default_factory=Counter)
    cases: list[str] = field(default_factory=list)  # replay files written
    reports: list[str] = field(default_factory=list)
    seen: set = field(default_factory=set)

    def run_one(self, run: int) -> Result:
        case = generate_case(self.seed, run, self.ops_per_run, self.modes)
        res = run_case(case)
        self.ops += len(case.ops)
        self.runs += 1
        for _, name in res.tolerated:
            self.tolerated[name] += 1
        if res.diverged:
            self.divergences += 1
            self.handle_divergence(case, res)
        return res

    def handle_divergence(self, case: Case, res: Result) -> None:
        sig = res.signature()
        head = (f"fuzz: DIVERGENCE in run {case.run} (seed {self.seed}): "
                f"{res.bad[0]}\n   signature {list(sig)}")
        self.log(head)
        if sig in self.seen:
            self.log("   (same signature as an earlier divergence: not shrunk again)")
            self.reports.append(head)
            return
        self.seen.add(sig)
        t0 = time.monotonic()
        cap = self.shrink_seconds
        if self.shrink_budget is not None:
            cap = max(0.0, min(cap, self.shrink_budget - self.shrink_spent))
        small, final, s = shrink(case, res, seconds=cap, log=self.log)
        self.shrink_spent += time.monotonic() - t0
        self.shrink_ops += s.ops_run
        shown = final if final is not None and final.has(sig) else (s.last or res)
        os.makedirs(self.out_dir, mode=0o755, exist_ok=True)
        path = os.path.join(self.out_dir, f"case-{self.seed}-{case.run}.json")
        doc = small.to_json(signature=list(sig),
                            kernel=shown.kernel if shown.case is small else None,
                            cowfs=shown.cowfs if shown.case is small else None)
        with open(path, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        self.cases.append(path)
        text = "\n".join([
            *(["the divergence did NOT reproduce on fresh mounts (nondeterministic?): case "
               "left unshrunk"] if s.last is None else []),
            f"shrunk from {len(case.ops)} to {len(small.ops)} ops in {s.tries} tries, "
            f"{time.monotonic() - t0:.0f} s{' (time cap reached)' if s.expired() else ''}",
            shown.report(),
            "replayable case:",
            json.dumps(small.to_json(signature=list(sig))),
            f"saved as {path}; replay: {replay_command(path)}",
        ])
        self.log(text)
        self.reports.append(head + "\n" + text)

    def summary(self) -> str:
        return (f"fuzz: {self.ops} operations, {self.runs} runs, {self.divergences} divergences, "
                f"seed {self.seed}")

    def tolerated_line(self) -> str:
        t = ", ".join(f"{k}={v}" for k, v in sorted(self.tolerated.items())) or "none"
        return f"fuzz: tolerated (EXPECTED_DIFFERENCES): {t}; shrinking ran {self.shrink_ops} ops"


# ---------------------------------------------------------------------------------------------
# Script
# ---------------------------------------------------------------------------------------------
CLONE_NEWNS = 0x00020000


def _private_mount_ns() -> None:
    """Like conftest: every mount we make must vanish with us, also after a crash."""
    with open("/proc/self/mountinfo") as f:
        shared = any(ln.split()[4] == "/" and "shared:" in ln.split(" - ")[0] for ln in f)
    if not shared:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0 or libc.mount(b"none", b"/", None, 0x4000 | 0x40000,
                                                    None) != 0:
        raise SystemExit("fuzz: cannot enter a private mount namespace: run it through "
                         "`make fuzz` (unshare -m)")


def _setup_scratch() -> str | None:
    if os.environ.get("COWFS_TEST_TMP"):
        return None
    d = tempfile.mkdtemp(prefix="fuzz-", dir="/tmp")
    os.chmod(d, 0o755)
    os.environ["COWFS_TEST_TMP"] = d
    return d


def _with_scratch_fs(fs: str, fn):
    """Run FN with the layer scratch dir on FS ("tmpfs": a fresh tmpfs, "disk": as configured)."""
    overlay.set_scratch("fuzz")
    if fs == "disk":
        return fn()
    with tmpfs_at(os.path.join(overlay.env().base, "fuzz")):
        return fn()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60, help="fuzz for this long (default 60)")
    ap.add_argument("--runs", type=int, default=None, help="stop after this many runs")
    ap.add_argument("--seed", default=None, help="session seed (default: a fresh one)")
    ap.add_argument("--first-run", type=int, default=0, help="index of the first run")
    ap.add_argument("--ops-per-run", type=int, default=250)
    ap.add_argument("--modes", choices=("all", "mild"), default="all",
                    help="mild: never take r/w/x away from an owner (to look past a known "
                         "permission divergence)")
    ap.add_argument("--shrink-seconds", type=float, default=180,
                    help="time cap for shrinking one divergence (default 180)")
    ap.add_argument("--out", default="/tmp/fuzz-cases", help="where replay files go")
    ap.add_argument("--fs", choices=("tmpfs", "disk"), default="tmpfs",
                    help="layers on a fresh tmpfs (default: inode numbers never reused, see "
                         "tmpfs_at) or on the disk below COWFS_TEST_TMP")
    ap.add_argument("--replay", metavar="FILE", help="run one saved case (and print it)")
    ap.add_argument("--shrink", action="store_true", help="with --replay: shrink it further")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per run")
    args = ap.parse_args(argv)

    if os.geteuid() != 0:
        print("fuzz: must run as root (kernel overlay reference; `make fuzz`)", file=sys.stderr)
        return 2
    _private_mount_ns()
    scratch = _setup_scratch()
    try:
        overlay.env()
        return _with_scratch_fs(args.fs, lambda: _replay(args) if args.replay else _fuzz(args))
    except overlay.HarnessError as e:
        print(f"fuzz: harness problem: {e}", file=sys.stderr)
        return 2
    finally:
        with contextlib.suppress(Exception):
            overlay.cleanup_session()
        if scratch and not overlay.KEEP:
            shutil.rmtree(scratch, ignore_errors=True)


def _replay(args) -> int:
    with open(args.replay) as f:
        case = Case.from_json(json.load(f))
    res = run_case(case)
    print(res.report())
    div = 1 if res.diverged else 0
    if res.diverged and args.shrink:
        sess = Session(case.seed, shrink_seconds=args.shrink_seconds, out_dir=args.out)
        sess.handle_divergence(case, res)
    print(f"fuzz: {len(case.ops)} operations, 1 runs, {div} divergences, seed {case.seed}")
    return div


def _fuzz(args) -> int:
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    with contextlib.suppress(ValueError):
        seed = int(seed)
    sess = Session(seed, ops_per_run=args.ops_per_run, modes=args.modes,
                   shrink_seconds=args.shrink_seconds, out_dir=args.out)
    print(f"fuzz: seed {seed}, {args.ops_per_run} ops per run, modes {args.modes}, "
          f"{args.runs if args.runs is not None else 'unlimited'} runs, {args.seconds:g} s",
          flush=True)
    start = last = time.monotonic()
    run = args.first_run
    try:
        while time.monotonic() - start < args.seconds and (args.runs is None
                                                           or sess.runs < args.runs):
            res = sess.run_one(run)
            if args.verbose:
                print(f"run {run}: {len(res.case.ops)} ops, {len(res.bad)} unexplained, "
                      f"{len(res.tolerated)} tolerated, {res.seconds:.1f} s", flush=True)
            elif time.monotonic() - last > 30:
                last = time.monotonic()
                print(f"... {sess.summary()}, {last - start:.0f} s", flush=True)
            run += 1
    except KeyboardInterrupt:
        print("fuzz: interrupted", flush=True)
    finally:
        print(sess.tolerated_line())
        if sess.cases:
            print("fuzz: replay files: " + " ".join(sess.cases))
        print(sess.summary(), flush=True)
    return 1 if sess.divergences else 0


if __name__ == "__main__":
    sys.exit(main())

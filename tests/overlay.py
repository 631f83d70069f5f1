"""Differential test harness: the same operations on kernel overlayfs and on cowfs, compared.

Kernel overlayfs in its rootless "userxattr" mode is the reference (see shared SEMANTICS.md). A
test describes lower trees declaratively, lists operations, and asserts that the filesystem under
test gives the same result for every op and ends with the same merged tree as the kernel:

    from overlay import Dir, File, Symlink

    LOWER = {"a.txt": "hello\\n", "d": Dir({"b": File("x", mode=0o600)}), "s": Symlink("a.txt")}

    def test_append_copies_up(overlay_pair):
        pair = overlay_pair(LOWER)                       # lowers top first; also upper=SPEC
        out = pair.run([
            ["open", "f", "a.txt", ["O_WRONLY", "O_APPEND"]],
            ["write", "f", "more\\n"],
            ["close", "f"],
            ["read_file", "a.txt"],
            ["stat", "a.txt"],
        ])
        out.assert_same()        # every op result and the merged trees; readable diff if not

How it works
- `overlay_pair(*lower_specs, upper=None)` (fixture, tests/conftest.py) builds each lower twice
  (identical content, owners, xattrs and fixed times), mounts a kernel overlay (`mount -t overlay
  -o userxattr,...`, by root) on one copy and the implementation under test on the other (cowfs,
  mounted BY THE TEST USER through fusermount3: rootless for real). It returns a `Pair`.
- `Pair.run(ops)` runs the op list on both mounts as the unprivileged test user (tests/oprunner.py
  documents every op and how results are normalized), then dumps both merged trees (also as the
  test user: a FUSE mount without allow_other refuses every other user, root included, so only the
  mounting user can walk it; entries the user may not read are recorded as errnos, equally on both
  sides). It returns an `Outcome`: `.ops`, `.kernel`/`.cowfs` (result lists),
  `.kernel_tree`/`.cowfs_tree`, `.diffs()`, `.tolerated()`, `.assert_same(trees=True)`.
  `run` can be called again on the same mounts; each call is a fresh runner process (fd names and
  inode normalization start over). Inode numbers never compare raw: each is replaced by where it
  was first seen ("op3", or a tree path), so hardlinks and copy-up identity compare exactly.
  Also: `Pair.upper_tree("kernel"|"cowfs")` (the raw upper, as root: check the on-disk format),
  `Pair.remount()`, `Pair.trees()`, and `overlay_pair(..., impl="kernel")` for a fixed peer.
  Features the rootless kernel lacks (redirect_dir, index, metacopy) are compared with the kernel
  mounted as root in its trusted.overlay.* format: `overlay_pair(..., kernel_opts=["index=on"],
  cowfs_opts=["-o", "..."])` mounts the reference without userxattr, with KERNEL_OPTS, and cowfs
  with COWFS_OPTS added (lowers carrying user.overlay.* markers mean nothing to that reference).
  `trusted_copy(upper, dst)` copies an upper with its user.overlay.* xattrs renamed to
  trusted.overlay.*: what such a kernel mount reads, for interchange checks of those formats.
  `overlay_pair(..., upper_fs="tmpfs:size=1m,nr_inodes=64")` (or "ext4:size=8m,inodes=N") puts
  each side's upper and work dirs on a fresh filesystem of that kind and size (full-disk
  tests); `Pair.remount_upper_fs("ro")` remounts both under the running mounts.
  `overlay_pair(..., lower_fs={1: "tmpfs:size=4m"})` builds lower 1 on a filesystem of its own
  (layers on different filesystems: st_dev and inode numbers from two sources).
- The kernel reference is mounted by root (it cannot be mounted otherwise without a user
  namespace); the FUSE side runs as the test user. Ops and tree walks run as the test user on
  both, so permission checks match; only copy-up ownership differs (see EXPECTED_DIFFERENCES).
- Intended differences are declared ONLY in `EXPECTED_DIFFERENCES` below: named, explained, each
  matching as narrowly as possible (a predicate over one `Diff` plus a `Context` that can look at
  the uppers; `impls=` limits it to some implementations). Everything else that differs fails the
  test. Tolerated differences are still printed.
- Lowers are never written: every lower built here is hashed (xxhash over content, mode, owner,
  times except atime, inode numbers and all xattrs) when built, re-checked when its pair closes,
  before and after every test, and at the end of its module (conftest.py autouse fixtures).
- Lower-level pieces for other shapes of test (interchange, fuzzing, remount): `build_tree`,
  `make_layers`, `mount(impl, layers)`, `run_ops(root, ops)`, `dump_tree(root)`,
  `compare_trees(a, b)`, `format_diffs`.

Spec format (a dict of name -> entry; names may contain "/", missing parents become plain dirs):
  "name": "text" or b"bytes"                   regular file, 0644, owned by the test user
  File(data, mode=0o644, owner="user", xattrs={}, size=None)   size > len(data): sparse tail
  Dir({children}, mode=0o755, owner="user", xattrs={}, opaque=False)  (a plain dict = Dir(dict))
  Symlink(target) | Fifo(mode) | Hardlink("other/path") | Whiteout()   (char device 0/0)
  owner: "user" (the test user), "root", an int uid, or a (uid, gid) tuple.
  OCI forms are just names: {".wh.gone": "", "d/.wh..wh..opq": ""} (the kernel does not read
  them, so a differential test with them needs an EXPECTED entry or a non-differential check).
Every entry gets mtime FIXED_TIME_NS and atime FIXED_ATIME_NS, so untouched times compare exactly.

Environment switches
  COWFS_TEST_IMPL     implementation under test: cowfs (default) | fuse-overlayfs | kernel
                      (kernel vs kernel is the harness's own self-check: it must show no diff)
  COWFS_TEST_USER     unprivileged user the FUSE side runs as (default cowfs-test)
  COWFS_BIN           cowfs executable (default: next to sys.executable, i.e. the venv's)
  COWFS_TEST_MOUNT_OPTS  extra arguments for `cowfs mount`, e.g. "-o debug"
  COWFS_TEST_TMP      where scratch dirs go (default /tmp); must be traversable by the user
  COWFS_TEST_KEEP=1   keep the scratch dirs (and print where they are)
  COWFS_TEST_OP_TIMEOUT  seconds one runner invocation may take (default 60)
  COWFS_TEST_PYTHON   interpreter for the op runner (default: this one if the user may run it)
  COWFS_TEST_ALLOW_STALE=1  test an installed cowfs that differs from the checkout's cowfs/
"""
from __future__ import annotations

import dataclasses
import errno
import functools
import json
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import xxhash

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

IMPL = os.environ.get("COWFS_TEST_IMPL", "cowfs")
IMPLS = ("cowfs", "fuse-overlayfs", "kernel")
TEST_USER = os.environ.get("COWFS_TEST_USER", "cowfs-test")
OP_TIMEOUT = float(os.environ.get("COWFS_TEST_OP_TIMEOUT", "60"))
MOUNT_TIMEOUT = 30.0
UMOUNT_TIMEOUT = 20.0
KEEP = os.environ.get("COWFS_TEST_KEEP") == "1"
FIXED_TIME_NS = 1_600_000_000_000_000_000  # mtime of built entries: 2020-09-13, far from "now"
# atime of built entries: 2096. An atime in the future is newer than mtime and ctime and not a
# day old, so relatime never updates it on a read: atimes stay comparable across both sides.
FIXED_ATIME_NS = 4_000_000_000_000_000_000
USER_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"


class HarnessError(Exception):
    """The harness could not do its job (environment, mount, runner); not a filesystem diff."""


# ---------------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Env:
    uid: int
    gid: int
    user: str
    base: str  # session scratch root, 0755
    runner: str  # copy of oprunner.py the test user can read
    python: str  # interpreter the test user can execute
    impl: str
    cowfs_bin: str | None


def _run(cmd: list[str], timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def as_user(cmd: list[str]) -> list[str]:
    """CMD run as the unprivileged test user (needs root to call)."""
    return ["setpriv", f"--reuid={TEST_USER}", f"--regid={TEST_USER}", "--init-groups", *cmd]


def user_env(env: Env | None = None) -> dict[str, str]:
    return {"PATH": USER_PATH, "LANG": "C.UTF-8", "HOME": env.base if env else "/",
            "PYTHONDONTWRITEBYTECODE": "1"}


@functools.cache
def _env_cached() -> Env | str:
    problems = []
    if os.geteuid() != 0:
        return ("the differential tests must run as root (the kernel overlay reference is mounted "
                "by root; the FUSE side runs as the test user): run `make test`")
    if IMPL not in IMPLS:
        return f"COWFS_TEST_IMPL={IMPL!r}: must be one of {', '.join(IMPLS)}"
    try:
        pw = pwd.getpwnam(TEST_USER)
    except KeyError:
        return (f"test user {TEST_USER!r} does not exist: `useradd -M {TEST_USER}` as root "
                "(make test does this)")
    if pw.pw_uid == 0:
        return f"test user {TEST_USER!r} is root: the FUSE side must run unprivileged"
    try:
        mode = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
    except OSError as e:
        return f"/dev/fuse: {e}: install fuse3 (make deps)"
    if mode & 0o666 != 0o666:
        problems.append(f"/dev/fuse is {mode:04o}, rootless FUSE needs 0666: `chmod 666 "
                        "/dev/fuse` as root (make test does this)")
    for tool in ("setpriv", "fusermount3", "mount", "umount"):
        if shutil.which(tool) is None:
            problems.append(f"{tool} not found (make deps)")
    if IMPL == "fuse-overlayfs" and shutil.which("fuse-overlayfs") is None:
        problems.append("fuse-overlayfs not found (make deps)")
    if problems:
        return "; ".join(problems)

    parent = os.environ.get("COWFS_TEST_TMP", "/tmp")
    base = tempfile.mkdtemp(prefix="cowfs-test-", dir=parent)
    got = _setup_base(pw, base, parent)
    if isinstance(got, str):
        shutil.rmtree(base, ignore_errors=True)
    return got


def _setup_base(pw: pwd.struct_passwd, base: str, parent: str) -> Env | str:
    os.chmod(base, 0o755)
    runner = os.path.join(base, "oprunner.py")
    shutil.copyfile(os.path.join(HERE, "oprunner.py"), runner)
    os.chmod(runner, 0o644)
    env = Env(pw.pw_uid, pw.pw_gid, TEST_USER, base, runner, "", IMPL, None)

    python = None
    for cand in (os.environ.get("COWFS_TEST_PYTHON"), sys.executable, "/usr/bin/python3"):
        probe = _run(as_user([cand, "-c", "pass"]), cwd=base, env=user_env(env)) if cand else None
        if probe is not None and probe.returncode == 0:
            python = cand
            break
    if python is None:
        return (f"no python the user {TEST_USER!r} can execute ({sys.executable} is not "
                "reachable for it): build the venv from /usr/bin/python3 in a world-readable "
                "place (make venv)")
    reach = _run(as_user(["test", "-r", runner]), cwd=base, env=user_env(env))
    if reach.returncode != 0:
        return f"{TEST_USER} cannot read {runner}: {parent} must be traversable by it"

    cowfs_bin = None
    if IMPL == "cowfs":
        cowfs_bin = os.environ.get("COWFS_BIN") or os.path.join(os.path.dirname(sys.executable),
                                                                "cowfs")
        if not os.path.exists(cowfs_bin):
            found = shutil.which("cowfs")
            if not found:
                return f"cowfs executable not found ({cowfs_bin}): run `make venv` or set COWFS_BIN"
            cowfs_bin = found
        if _run(as_user(["test", "-x", cowfs_bin]), cwd=base, env=user_env(env)).returncode:
            return (f"{TEST_USER} cannot execute {cowfs_bin}: the venv must live in a place every "
                    "user can traverse (make venv picks one)")
        stale = stale_install()
        if stale:
            return stale
    return dataclasses.replace(env, python=python, cowfs_bin=cowfs_bin)


def env() -> Env:
    """The checked test environment; raises HarnessError (with the reason) if unusable."""
    got = _env_cached()
    if isinstance(got, str):
        raise HarnessError(got)
    return got


def stale_install() -> str | None:
    """A message if the cowfs installed for the interpreter differs from the checkout's cowfs/."""
    if os.environ.get("COWFS_TEST_ALLOW_STALE") == "1":
        return None
    src = os.path.join(REPO, "cowfs")
    probe = _run([sys.executable, "-c",
                  "import cowfs, os; print(os.path.dirname(cowfs.__file__))"], cwd="/")
    if probe.returncode != 0:
        return f"cowfs is not installed for {sys.executable}: run `make venv`"
    inst = probe.stdout.strip()
    if os.path.realpath(inst) == os.path.realpath(src):
        return None  # running from the checkout (editable install or PYTHONPATH)
    for name in sorted(os.listdir(src)):
        if not name.endswith(".py"):
            continue
        try:
            with open(os.path.join(src, name), "rb") as a, \
                    open(os.path.join(inst, name), "rb") as b:
                if a.read() == b.read():
                    continue
        except FileNotFoundError:
            pass
        return (f"installed cowfs ({inst}) differs from the checkout ({src}/{name}): run "
                "`make venv` (or set COWFS_TEST_ALLOW_STALE=1)")
    return None


def cleanup_session() -> None:
    got = _env_cached()
    if isinstance(got, Env) and not KEEP:
        rmtree_checked(got.base)
    elif isinstance(got, Env):
        print(f"\ncowfs test scratch kept in {got.base}")


# ---------------------------------------------------------------------------------------------
# Declarative trees
# ---------------------------------------------------------------------------------------------
Owner = Any  # "user" | "root" | int | (uid, gid)


@dataclass
class File:
    data: str | bytes = b""
    mode: int = 0o644
    owner: Owner = "user"
    xattrs: dict[str, str | bytes] = field(default_factory=dict)
    size: int | None = None


@dataclass
class Dir:
    children: dict[str, Any] = field(default_factory=dict)
    mode: int = 0o755
    owner: Owner = "user"
    xattrs: dict[str, str | bytes] = field(default_factory=dict)
    opaque: bool = False


@dataclass
class Symlink:
    target: str
    owner: Owner = "user"


@dataclass
class Fifo:
    mode: int = 0o644
    owner: Owner = "user"


@dataclass
class Hardlink:
    target: str  # path of another entry of the same tree


@dataclass
class Whiteout:
    owner: Owner = "user"


def owner_ids(owner: Owner) -> tuple[int, int]:
    if isinstance(owner, tuple):
        return owner
    if owner == "root":
        return 0, 0
    if owner == "user":
        e = env()
        return e.uid, e.gid
    if isinstance(owner, int):
        return owner, owner
    raise ValueError(f"bad owner {owner!r}")


def _bytes(v: str | bytes) -> bytes:
    return v.encode() if isinstance(v, str) else v


def _flatten(spec: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, entry in spec.items():
        if name in ("", ".", "..") or name.startswith("/"):
            raise ValueError(f"bad name in spec: {name!r}")
        path = f"{prefix}{name}"
        if isinstance(entry, dict):
            entry = Dir(entry)
        elif isinstance(entry, (str, bytes)):
            entry = File(entry)
        yield path, entry
        if isinstance(entry, Dir):
            yield from _flatten(entry.children, path + "/")


def build_tree(spec: dict | Dir, root: str) -> None:
    """Create SPEC at ROOT (which must not exist), as root, with fixed times."""
    top = spec if isinstance(spec, Dir) else Dir(spec)
    os.mkdir(root)
    entries = [(".", top)] + sorted(_flatten(top.children), key=lambda pe: pe[0].count("/"))
    created: list[str] = []
    for rel, e in entries:
        p = os.path.normpath(os.path.join(root, rel))
        parent = os.path.dirname(p)
        if rel != "." and not os.path.isdir(parent):
            created.extend(_make_parents(root, os.path.dirname(rel)))
        if isinstance(e, Dir):
            if rel != ".":
                os.mkdir(p)
            if e.opaque:
                os.setxattr(p, "user.overlay.opaque", b"y")
        elif isinstance(e, File):
            with open(p, "wb") as f:
                f.write(_bytes(e.data))
                if e.size is not None and e.size > len(_bytes(e.data)):
                    f.truncate(e.size)
        elif isinstance(e, Symlink):
            os.symlink(e.target, p)
        elif isinstance(e, Fifo):
            os.mkfifo(p)
        elif isinstance(e, Whiteout):
            os.mknod(p, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        elif isinstance(e, Hardlink):
            continue  # after everything else
        else:
            raise TypeError(f"bad spec entry {rel}: {e!r}")
        for k, v in getattr(e, "xattrs", {}).items():
            os.setxattr(p, k, _bytes(v), follow_symlinks=False)
        os.lchown(p, *owner_ids(getattr(e, "owner", "user")))
        if isinstance(e, (File, Dir, Fifo)):
            os.chmod(p, e.mode)
        elif isinstance(e, Whiteout):
            os.chmod(p, 0)
        created.append(p)
    for rel, e in entries:
        if isinstance(e, Hardlink):
            os.link(os.path.join(root, e.target), os.path.join(root, rel), follow_symlinks=False)
    # fixed times, deepest first so a directory's mtime is set after its entries exist
    for p in sorted(set(created), key=lambda q: -q.count("/")):
        os.utime(p, ns=(FIXED_ATIME_NS, FIXED_TIME_NS), follow_symlinks=False)


def _make_parents(root: str, rel: str) -> list[str]:
    """Create the missing directories of REL (plain 0755 dirs of the test user)."""
    missing = []
    while rel and not os.path.isdir(os.path.join(root, rel)):
        missing.append(os.path.join(root, rel))
        rel = os.path.dirname(rel)
    e = env()
    for p in reversed(missing):
        os.mkdir(p, 0o755)
        os.chown(p, e.uid, e.gid)
        os.chmod(p, 0o755)
    return missing


def hash_tree(root: str) -> str:
    """xxh3-128 over everything below ROOT except atime (as root, not through any mount)."""
    h = xxhash.xxh3_128()

    def visit(p: str, rel: str) -> None:
        st = os.lstat(p)
        h.update(repr((rel, st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_nlink,
                       st.st_ino, st.st_rdev, st.st_mtime_ns, st.st_ctime_ns)).encode())
        for name in sorted(os.listxattr(p, follow_symlinks=False)):
            h.update(repr((name, os.getxattr(p, name, follow_symlinks=False))).encode())
        if stat.S_ISREG(st.st_mode):
            with open(p, "rb") as f:
                _hash_data(h, f.fileno(), st.st_size)
        elif stat.S_ISLNK(st.st_mode):
            h.update(os.fsencode(os.readlink(p)))
        elif stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(p)):
                visit(os.path.join(p, name), f"{rel}/{name}")

    visit(root, ".")
    return h.hexdigest()


def _hash_data(h, fd: int, size: int) -> None:
    """A file's data extents with their offsets: holes cost nothing (a 1 TiB sparse lower), and
    a write into one shows as data where there was none."""
    off = 0
    while off < size:
        try:
            start = os.lseek(fd, off, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return  # only a hole from OFF on
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        h.update(b"@%d:" % start)
        while start < end:
            chunk = os.pread(fd, min(1 << 20, end - start), start)
            if not chunk:
                return
            h.update(chunk)
            start += len(chunk)
        off = end


# Every lower built by the harness: (path, hash at build time, nodeid of the test that built it,
# or None when built outside a test, e.g. by a module-scoped fixture).
LOWERS: list[tuple[str, str, str | None]] = []
CURRENT_TEST: list[str | None] = [None]
_ANY = object()


def register_lower(path: str) -> None:
    LOWERS.append((path, hash_tree(path), CURRENT_TEST[0]))


def check_lowers(paths: list[str] | None = None, *, tag: Any = _ANY) -> None:
    """Raise AssertionError naming every registered lower that changed since it was built.

    PATHS limits the check to those lowers; TAG to those built by one test (None: outside tests).
    """
    bad = []
    for path, digest, t in LOWERS:
        if (paths is not None and path not in paths) or (tag is not _ANY and t != tag):
            continue
        if not os.path.isdir(path):
            bad.append(f"{path}: gone")
        elif hash_tree(path) != digest:
            bad.append(f"{path}: content, metadata or xattrs changed")
    if bad:
        raise AssertionError("a lower layer was written (lowers are read-only):\n  "
                             + "\n  ".join(bad))


# ---------------------------------------------------------------------------------------------
# Scratch dirs and layers
# ---------------------------------------------------------------------------------------------
_scratch: dict[str, Any] = {"name": None, "n": 0}


def set_scratch(name: str | None) -> None:
    """Put new layer sets in sub-directory NAME of the session dir (conftest: one per module)."""
    _scratch["name"] = name


def scratch_path(name: str) -> str | None:
    got = _env_cached()
    return os.path.join(got.base, name) if isinstance(got, Env) else None


def new_dir(name: str) -> str:
    """A fresh 0755 directory for one test's layers."""
    parent = env().base
    if _scratch["name"]:
        parent = os.path.join(parent, _scratch["name"])
        os.makedirs(parent, mode=0o755, exist_ok=True)
    _scratch["n"] += 1
    p = os.path.join(parent, f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)[:60]}-{_scratch['n']}")
    os.mkdir(p, 0o755)
    return p


def _user_dir(path: str) -> str:
    e = env()
    os.mkdir(path, 0o755)
    os.chown(path, e.uid, e.gid)
    return path


@dataclass
class Layers:
    """The directories of one overlay: lowers (top first), upper, work, mountpoint.

    upper_fs: the mountpoint of the upper's own filesystem (make_layers(upper_fs=...)), which
    holds upper and every work dir; None when they live in BASE with the rest."""
    base: str
    lowers: list[str]
    upper: str | None
    work: str | None
    mnt: str
    n_work: int = 0
    upper_fs: str | None = None
    lower_fs: list[str] = field(default_factory=list)  # mountpoints of lowers' own filesystems

    def new_work(self) -> str:
        """A fresh, empty work dir (a work dir can serve only one mount at a time), next to
        the upper (on its filesystem)."""
        self.n_work += 1
        self.work = _user_dir(os.path.join(self.upper_fs or self.base, f"work{self.n_work}"))
        return self.work

    def remount_upper_fs(self, opts: str) -> None:
        """`mount -o remount,OPTS` of the upper's own filesystem (e.g. "ro", "rw")."""
        if self.upper_fs is None:
            raise HarnessError("no upper filesystem of its own (make_layers(upper_fs=...))")
        r = _run(["mount", "-o", f"remount,{opts}", self.upper_fs])
        if r.returncode != 0:
            raise HarnessError(f"remount,{opts} {self.upper_fs}: {r.stderr.strip()}")

    def unmount_upper_fs(self) -> None:
        if self.upper_fs is not None and mounted_at(self.upper_fs) is not None:
            r = _run(["umount", self.upper_fs], timeout=UMOUNT_TIMEOUT)
            if r.returncode != 0:
                _run(["umount", "-l", self.upper_fs], timeout=UMOUNT_TIMEOUT)
                raise HarnessError(f"umount {self.upper_fs}: {r.stderr.strip()}; lazily")

    def unmount_lower_fs(self) -> None:
        """Unmount the lowers' own filesystems, their lowers unregistered first (check them
        before: they are gone after)."""
        for fs in self.lower_fs:
            LOWERS[:] = [t for t in LOWERS if not t[0].startswith(fs + "/")]
            if mounted_at(fs) is not None:
                r = _run(["umount", fs], timeout=UMOUNT_TIMEOUT)
                if r.returncode != 0:
                    _run(["umount", "-l", fs], timeout=UMOUNT_TIMEOUT)
                    raise HarnessError(f"umount {fs}: {r.stderr.strip()}; lazily")


def _size(text: str) -> int:
    m = re.fullmatch(r"(\d+)([kmg]?)", text.lower())
    if not m:
        raise ValueError(f"bad size {text!r}")
    return int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2)]


def mount_upper_fs(path: str, spec: str) -> str:
    """A fresh, small filesystem at PATH (created) for an upper and its work dirs.

    SPEC: "tmpfs:OPTIONS" (tmpfs mount options, e.g. "size=1m,nr_inodes=64") or
    "ext4:size=8m[,inodes=N]" (an image file next to PATH, mkfs.ext4 with no root-reserved
    blocks: the kernel reference copies up with root's credentials, the FUSE side as the test
    user, and reserved blocks would let only the first fill them; mounted through a loop device
    that is freed at umount). Mounted in the test session's private mount namespace."""
    kind, _, opts = spec.partition(":")
    os.mkdir(path, 0o755)
    if kind == "tmpfs":
        cmd = ["mount", "-t", "tmpfs", "-o", ",".join(filter(None, ["mode=0755", opts])),
               "cowfs-upper", path]
    elif kind == "ext4":
        kv = dict(o.split("=", 1) for o in opts.split(",") if o)
        img = path + ".img"
        with open(img, "wb") as f:
            f.truncate(_size(kv.get("size", "8m")))
        mkfs = ["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=0,nodiscard"]
        if "inodes" in kv:
            mkfs += ["-N", kv["inodes"]]
        r = _run(mkfs + [img], timeout=60)
        if r.returncode != 0:
            raise HarnessError(f"mkfs.ext4 {img}: {r.stderr.strip()}")
        cmd = ["mount", "-t", "ext4", "-o", "loop", img, path]
    else:
        raise ValueError(f"bad upper_fs {spec!r}: tmpfs:OPTIONS or ext4:size=N[,inodes=N]")
    r = _run(cmd)
    if r.returncode != 0:
        raise HarnessError(f"cannot mount {spec} at {path}: {r.stderr.strip()}")
    os.chmod(path, 0o755)
    return path


def make_layers(name: str, lower_specs: list, upper_spec: dict | Dir | None = None, *,
                upper: bool = True, upper_fs: str | None = None,
                lower_fs: dict[int, str] | None = None) -> Layers:
    """Build lowers (registered as read-only) and an upper owned by the test user; UPPER_FS
    (see mount_upper_fs): upper and work dirs on a fresh filesystem of their own, BASE/upperfs
    (unmounted by Pair.close, or by the caller with Layers.unmount_upper_fs). LOWER_FS: lower
    index -> SPEC, that lower on a filesystem of its own, BASE/lowerfsN (Layers.unmount_lower_fs).
    """
    e = env()
    base = new_dir(name)
    ufs = mount_upper_fs(os.path.join(base, "upperfs"), upper_fs) if upper and upper_fs else None
    lowers, lfs = [], []
    for i, spec in enumerate(lower_specs):
        p = os.path.join(base, f"lower{i}")
        if lower_fs and i in lower_fs:
            lfs.append(mount_upper_fs(os.path.join(base, f"lowerfs{i}"), lower_fs[i]))
            p = os.path.join(lfs[-1], f"lower{i}")
        build_tree(spec, p)
        register_lower(p)
        lowers.append(p)
    up = None
    if upper:
        up = os.path.join(ufs or base, "upper")
        if upper_spec is None:
            _user_dir(up)
        else:
            if isinstance(upper_spec, dict):
                upper_spec = Dir(upper_spec)
            build_tree(upper_spec, up)
    lay = Layers(base, lowers, up, None, _user_dir(os.path.join(base, "mnt")), upper_fs=ufs,
                 lower_fs=lfs)
    if upper:
        lay.new_work()
    os.chown(base, e.uid, e.gid)
    return lay


# ---------------------------------------------------------------------------------------------
# Mounts
# ---------------------------------------------------------------------------------------------
def mounted_at(path: str) -> str | None:
    """fstype of the mount at PATH in our mount namespace, or None."""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        found = None
        for line in f:
            parts = line.split()
            mp = parts[4].encode().decode("unicode_escape")
            if mp == path:
                found = parts[parts.index("-") + 1]
        return found


class Mount:
    """One mounted overlay. Use as a context manager, or call unmount()."""

    def __init__(self, impl: str, layers: Layers, extra: list[str] | None = None, *,
                 trusted: bool = False):
        self.impl = impl
        self.trusted = trusted  # kernel: the trusted.overlay.* format (no userxattr)
        self.layers = layers
        self.mnt = layers.mnt
        self.proc: subprocess.Popen | None = None
        self.log = os.path.join(layers.base, f"{impl}-daemon.log")
        self.extra = extra or []
        self._mount()

    def __repr__(self) -> str:
        return f"Mount({self.impl} at {self.mnt})"

    def __enter__(self) -> "Mount":
        return self

    def __exit__(self, *exc) -> None:
        self.unmount()

    def _mount(self) -> None:
        e = env()
        lay = self.layers
        if self.impl == "kernel":
            opts = ([] if self.trusted else ["userxattr"]) + ["lowerdir=" + ":".join(lay.lowers)]
            if lay.upper:
                opts += [f"upperdir={lay.upper}", f"workdir={lay.work}"]
            r = _run(["mount", "-t", "overlay", "overlay", "-o", ",".join(opts + self.extra),
                      self.mnt])
            if r.returncode != 0:
                raise HarnessError(f"kernel overlay mount failed: {r.stderr.strip()}")
            return
        if self.impl == "cowfs":
            cmd = [e.cowfs_bin, "mount", "--foreground"]
            for low in lay.lowers:
                cmd += ["--lower", low]
            if lay.upper:
                cmd += ["--upper", lay.upper, "--work", lay.work]
            cmd += shlex.split(os.environ.get("COWFS_TEST_MOUNT_OPTS", "")) + self.extra
            cmd.append(self.mnt)
        elif self.impl == "fuse-overlayfs":
            opts = ["lowerdir=" + ":".join(lay.lowers)]
            if lay.upper:
                opts += [f"upperdir={lay.upper}", f"workdir={lay.work}"]
            cmd = ["fuse-overlayfs", "-f", "-o", ",".join(opts + self.extra), self.mnt]
        else:
            raise HarnessError(f"unknown implementation {self.impl!r}")
        with open(self.log, "ab") as log:
            log.write(f"$ {shlex.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(as_user(cmd), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=e.base, env=user_env(e),
                                         umask=0o022, start_new_session=True)
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while mounted_at(self.mnt) is None:
            if self.proc.poll() is not None:
                raise HarnessError(f"{self.impl} exited with {self.proc.returncode} before the "
                                   f"mount appeared:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self._kill()
                raise HarnessError(f"{self.impl}: no mount after {MOUNT_TIMEOUT}s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.01)

    def log_tail(self, n: int = 60) -> str:
        try:
            with open(self.log, errors="replace") as f:
                lines = f.readlines()
        except FileNotFoundError:
            return "(no log)"
        return f"--- {self.log} (last {n} lines) ---\n" + "".join(lines[-n:])

    def alive(self) -> bool:
        return self.impl == "kernel" or (self.proc is not None and self.proc.poll() is None)

    def check_alive(self) -> None:
        if not self.alive():
            raise HarnessError(f"{self.impl} daemon died (exit {self.proc.returncode}):\n"
                               f"{self.log_tail()}")

    def _kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def unmount(self) -> None:
        """Unmount; raise HarnessError if it needed force or the daemon misbehaved."""
        problems = []
        if mounted_at(self.mnt) is not None:
            if self.impl == "kernel":
                r = _run(["umount", self.mnt], timeout=UMOUNT_TIMEOUT)
            else:
                r = _run(as_user(["fusermount3", "-u", self.mnt]), timeout=UMOUNT_TIMEOUT,
                         cwd=env().base, env=user_env(env()))
            if r.returncode != 0:
                problems.append(f"unmount failed ({r.stderr.strip()}); lazily unmounted")
                _run(["umount", "-l", self.mnt], timeout=UMOUNT_TIMEOUT)
        if self.proc is not None:
            try:
                rc = self.proc.wait(timeout=UMOUNT_TIMEOUT)
                if rc != 0:
                    problems.append(f"daemon exited with status {rc} after unmount")
            except subprocess.TimeoutExpired:
                problems.append("daemon still running 20 s after unmount: killed")
                self._kill()
        if problems:
            raise HarnessError(f"{self.impl} at {self.mnt}: " + "; ".join(problems) + "\n"
                               + (self.log_tail() if self.proc else ""))


def mount(impl: str, layers: Layers, extra: list[str] | None = None, *,
          trusted: bool = False) -> Mount:
    """Mount LAYERS at layers.mnt with IMPL ("kernel", "cowfs", "fuse-overlayfs"); TRUSTED:
    the kernel in its trusted.overlay.* format (root's), EXTRA its mount options."""
    return Mount(impl, layers, extra, trusted=trusted)


def trusted_copy(upper: str, dst: str) -> str:
    """A copy of UPPER at DST (as root, everything kept) with every user.overlay.* xattr
    renamed to trusted.overlay.*: the same upper in the format a root kernel mount reads."""
    r = _run(["cp", "-a", "--", upper, dst], timeout=300)
    if r.returncode != 0:
        raise HarnessError(f"cp -a {upper} {dst}: {r.stderr.strip()}")
    for d, dirs, files in os.walk(dst):
        for path in [d] + [os.path.join(d, n) for n in files]:
            if os.path.islink(path):
                continue  # no user.* xattrs on symlinks
            for name in os.listxattr(path, follow_symlinks=False):
                if name.startswith("user.overlay."):
                    value = os.getxattr(path, name, follow_symlinks=False)
                    os.setxattr(path, "trusted." + name[len("user."):], value,
                                follow_symlinks=False)
                    os.removexattr(path, name, follow_symlinks=False)
    return dst


# ---------------------------------------------------------------------------------------------
# Running ops
# ---------------------------------------------------------------------------------------------
def run_ops(root: str, ops: list, *, user: bool = True, timeout: float | None = None) -> list:
    """Run OPS (see oprunner.py) below ROOT, as the test user unless user=False."""
    e = env()
    cmd = [e.python, e.runner, root]
    try:
        r = subprocess.run(as_user(cmd) if user else cmd, input=json.dumps(ops),
                           capture_output=True, text=True, timeout=timeout or OP_TIMEOUT,
                           cwd=e.base, env=user_env(e))
    except subprocess.TimeoutExpired:
        raise HarnessError(f"ops below {root} still running after {timeout or OP_TIMEOUT} s "
                           "(hung filesystem?): killed") from None
    if r.returncode != 0:
        raise HarnessError(f"oprunner failed (exit {r.returncode}) in {root}:\n{r.stderr}")
    results = json.loads(r.stdout)
    if len(results) != len(ops):
        raise HarnessError(f"oprunner gave {len(results)} results for {len(ops)} ops")
    bad = [f"op[{i}] {json.dumps(op)}: {res['error']}"
           for i, (op, res) in enumerate(zip(ops, results, strict=True)) if "error" in res]
    if bad:
        raise HarnessError("malformed ops (a bug in the test):\n  " + "\n  ".join(bad))
    return results


def dump_tree(root: str, *, user: bool = True) -> dict:
    """The merged tree below ROOT as seen by the test user (oprunner.tree_dump)."""
    return run_ops(root, [["tree", "."]], user=user)[0]["ok"]


# ---------------------------------------------------------------------------------------------
# Comparing
# ---------------------------------------------------------------------------------------------
@dataclass
class Diff:
    where: str  # "op[3] [...]" or "tree"
    path: str | None  # filesystem path (relative to the mount) the difference is about
    field: str  # dotted field inside the result or tree entry ("" = whole value)
    kernel: Any
    cowfs: Any
    # the stat-like dicts holding the differing field (kernel's, cowfs's), for a predicate that
    # needs the object's other fields (type, nlink)
    entries: tuple[Any, Any] = (None, None)
    # for an ino: the object is known to have had several names in this run (a non-directory
    # with st_nlink > 1 when cowfs first showed that ino, or a name a link op used or made,
    # followed through renames)
    linked: bool = False
    MISSING = "<missing>"

    def __str__(self) -> str:
        f = f" .{self.field}" if self.field else ""
        loc = f"tree {self.path}" if self.where == "tree" else self.where
        return f"{loc}{f}:  kernel {_show(self.kernel)}  |  cowfs {_show(self.cowfs)}"


def _show(v: Any) -> str:
    return v if v is Diff.MISSING else json.dumps(v, sort_keys=True)


def _leaf_diffs(a: Any, b: Any, prefix: str = "",
                holders: tuple[Any, Any] = (None, None)) -> Iterator[tuple[str, Any, Any, tuple]]:
    """(dotted field, a's value, b's value, the dicts holding them) for each difference."""
    if isinstance(a, dict) and isinstance(b, dict) and set(a) & set(b):
        for k in sorted(set(a) | set(b)):
            sub = f"{prefix}.{k}" if prefix else str(k)
            if k not in a:
                yield sub, Diff.MISSING, b[k], (a, b)
            elif k not in b:
                yield sub, a[k], Diff.MISSING, (a, b)
            else:
                yield from _leaf_diffs(a[k], b[k], sub, (a, b))
    elif a != b:
        yield prefix, a, b, holders


def _by_name(result: Any) -> Any:
    """A listing with d_ino ([[name, type, ino, nlink], ...]) as {name: {type, ino, nlink}}, so a
    difference is reported per entry and field, like a stat result's."""
    ok = result.get("ok") if isinstance(result, dict) else None
    if not (isinstance(ok, list) and ok and all(isinstance(e, list) and len(e) == 4
                                                 for e in ok)):
        return result
    return {"ok": {e[0]: {"type": e[1], "ino": e[2], "nlink": e[3]} for e in ok}}


_PATH_OPS = {"stat", "lstat", "stat_times", "lstat_times", "getxattr", "listxattr", "readlink",
             "read_file", "access", "listdir", "scandir", "exists", "tree"}


def _op_path(ops: list, i: int) -> str | None:
    op = ops[i]
    if op[0] in _PATH_OPS and len(op) > 1:
        return op[1]
    if op[0] in ("times_mark", "times_cmp") and len(op) > 2:
        return op[2]
    opener = "opendir" if op[0] == "readdir" else "open"
    if op[0].startswith("f") or op[0] in ("read", "pread", "mmap_read", "readdir"):
        for prev in reversed(ops[:i]):  # the path the fd or stream was opened with
            if prev[0] == opener and len(op) > 1 and prev[1] == op[1]:
                return prev[2]
    return None


def _diff_path(ops: list, i: int, fld: str, listing: bool,
               tree_keys: set[str] | None = None) -> str | None:
    """The path a difference is about: an entry's own path for a listing's or a tree's entry
    fields (TREE_KEYS: the paths a "tree" op's results hold, relative to its path)."""
    path = _op_path(ops, i)
    if tree_keys and path is not None and fld.startswith("ok."):
        rest = fld[3:]
        name = max((k for k in tree_keys if rest == k or rest.startswith(k + ".")), key=len,
                   default=None)
        if name is not None:
            return path if name == "." else os.path.normpath(os.path.join(path, name))
    if listing and path is not None and fld.startswith("ok."):
        head, _, last = fld[3:].rpartition(".")  # ok.NAME.FIELD, or ok.NAME (a missing entry)
        name = head if head and last in ("type", "ino", "nlink") else fld[3:]
        return name if path.strip("/") in ("", ".") else f"{path.rstrip('/')}/{name}"
    return path


def _stat_entries(result: Any) -> Iterator[dict]:
    """The stat-like dicts (with ino) in one op result (listings _by_name'd), in order."""
    ok = result.get("ok") if isinstance(result, dict) else None
    if isinstance(ok, dict) and isinstance(ok.get("ino"), str):
        yield ok
    elif isinstance(ok, dict):
        yield from (e for e in ok.values() if isinstance(e, dict) and "ino" in e)


def compare_results(ops: list, kernel: list, cowfs: list) -> list[Diff]:
    out = []
    first: dict[str, dict] = {}
    link_paths: set[str] = set()
    for i, (op, k, c) in enumerate(zip(ops, kernel, cowfs, strict=True)):
        bk, bc = _by_name(k), _by_name(c)
        for e in _stat_entries(bc):
            first.setdefault(e["ino"], e)
        where = f"op[{i}] {json.dumps(op)[:120]}"
        listing = bk is not k or bc is not c
        tree_keys = ({*k["ok"], *c["ok"]} if op[0] == "tree" and isinstance(k.get("ok"), dict)
                     and isinstance(c.get("ok"), dict) else None)
        for fld, kv, cv, held in _leaf_diffs(bk, bc):
            path = _diff_path(ops, i, fld, listing, tree_keys)
            e = first.get(cv) if isinstance(cv, str) else None
            linked = fld.endswith("ino") and (
                (e is not None and e.get("type") != "d" and (e.get("nlink") or 0) > 1)
                or (path or "").rstrip("/") in link_paths)
            out.append(Diff(where, path, fld, kv, cv, held, linked))
        if op[0] == "link" and len(op) > 2 and c == {"ok": None}:
            link_paths.update(p.rstrip("/") for p in op[1:3])
        elif op[0] in ("unlink", "rmdir") and c == {"ok": None}:
            _move_names(link_paths, op[1].rstrip("/"), None)
        elif op[0] == "rename" and len(op) > 2 and c == {"ok": None}:
            a, b = op[1].rstrip("/"), op[2].rstrip("/")
            if a == b:
                pass  # a name renamed onto itself stays (not: removed as the target)
            elif op[3:4] == ["EXCHANGE"]:
                _move_names(link_paths, a, "\0swap")
                _move_names(link_paths, b, a)
                _move_names(link_paths, "\0swap", b)
            else:
                _move_names(link_paths, b, None)
                _move_names(link_paths, a, b)
    return out


def _move_names(names: set[str], src: str, dst: str | None) -> None:
    """The names at or below SRC go to DST (None: removed), as a rename or unlink does."""
    under = [p for p in names if p == src or p.startswith(src + "/")]
    names.difference_update(under)
    if dst is not None:
        names.update(dst + p[len(src):] for p in under)


def compare_trees(kernel: dict, cowfs: dict) -> list[Diff]:
    out = []
    for path in sorted(set(kernel) | set(cowfs)):
        if path not in cowfs:
            out.append(Diff("tree", path, "", kernel[path], Diff.MISSING))
        elif path not in kernel:
            out.append(Diff("tree", path, "", Diff.MISSING, cowfs[path]))
        else:
            for fld, kv, cv, held in _leaf_diffs(kernel[path], cowfs[path]):
                out.append(Diff("tree", path, fld, kv, cv, held))
    return out


@dataclass(frozen=True)
class Expected:
    """A named, explained, intended difference between cowfs and the kernel reference.

    impls: the implementations it applies to (None: every one compared with the kernel).
    """
    name: str
    why: str
    matches: Callable[[Diff, "Context"], bool]
    impls: frozenset[str] | None = None


@dataclass
class Context:
    """What an Expected predicate may look at besides the Diff itself."""
    kernel_upper: str | None
    cowfs_upper: str | None
    uid: int
    gid: int
    impl: str = IMPL
    lowers: tuple[str, ...] = ()

    def in_cowfs_upper(self, path: str | None) -> bool:
        """PATH exists in the cowfs side's upper and is not a whiteout (i.e. was copied up)."""
        if path is None or self.cowfs_upper is None:
            return False
        try:
            st = os.lstat(os.path.join(self.cowfs_upper, path))
        except OSError:
            return False
        return not (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0)


    def lower_stat(self, path: str | None) -> os.stat_result | None:
        """lstat of PATH in the topmost lower that has it."""
        for lower in self.lowers if path is not None else ():
            try:
                return os.lstat(os.path.join(lower, path))
            except OSError:
                continue
        return None

    def upper_stat(self, path: str | None) -> os.stat_result | None:
        if path is None or self.cowfs_upper is None:
            return None
        try:
            return os.lstat(os.path.join(self.cowfs_upper, path))
        except OSError:
            return None


def _field(d: Diff) -> str:
    return d.field.rsplit(".", 1)[-1]


def _op_name(d: Diff) -> str | None:
    m = re.match(r'op\[\d+\] \["(\w+)"', d.where)
    return m.group(1) if m else None


def _hardlink_ino(d: Diff, ctx: Context) -> bool:
    """The st_ino of a non-directory with several names, in a stat result, a listing entry or
    the tree (each carries type and nlink); or the kernel's ESTALE for renaming one name of such
    an object over another, which cowfs, seeing one object, does as POSIX says (nothing). An
    object known to have had several names in the run counts too (Diff.linked: the kernel shows
    the upper inode's number for a name linked through the mount)."""
    if _op_name(d) == "rename" and d.kernel == {"errno": "ESTALE"} and d.cowfs == {"ok": None}:
        return True
    if _field(d) != "ino":
        return False
    if d.linked:
        return True
    return any(isinstance(e, dict) and e.get("type") not in (None, "d")
               and (e.get("nlink") or 0) > 1 for e in d.entries)


def _lower_hardlink_copyup(d: Diff, ctx: Context) -> bool:
    """Anything about a path that names a lower hard link (a non-directory of st_nlink > 1 in
    the topmost lower that has the path) and that cowfs copied up or linked to a copy-up; or
    about a path of the cowfs upper that is a hard link of such a copy (a link made through
    the mount to a name of a lower hard link)."""
    if not ctx.in_cowfs_upper(d.path):
        return False
    if _names_lower_link(ctx, d.path):
        return True
    st = ctx.upper_stat(d.path)
    if stat.S_ISDIR(st.st_mode) or st.st_nlink < 2:
        return False
    for top, dirs, files in os.walk(ctx.cowfs_upper):
        for n in files + [x for x in dirs if os.path.islink(os.path.join(top, x))]:
            p = os.path.join(top, n)
            if os.lstat(p).st_ino == st.st_ino and _names_lower_link(
                    ctx, os.path.relpath(p, ctx.cowfs_upper)):
                return True
    return False


def _names_lower_link(ctx: Context, path: str | None) -> bool:
    st = ctx.lower_stat(path)
    return st is not None and not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1


def _index_counts_hidden_names(d: Diff, ctx: Context) -> bool:
    """An nlink higher on the kernel (with index=on) than on cowfs by no more than the number of
    names of some lower hard link that the cowfs upper hides (a whiteout or another object at
    the name, not the copy of that lower inode)."""
    if not (_field(d) == "nlink" and isinstance(d.kernel, int) and isinstance(d.cowfs, int)
            and d.cowfs < d.kernel and ctx.cowfs_upper):
        return False
    for index, lower in enumerate(ctx.lowers):
        names: dict[tuple[int, int], list[str]] = {}
        for top, dirs, files in os.walk(lower):
            for n in files + [x for x in dirs if os.path.islink(os.path.join(top, x))]:
                st = os.lstat(os.path.join(top, n))
                if st.st_nlink > 1:
                    names.setdefault((st.st_dev, st.st_ino), []).append(
                        os.path.relpath(os.path.join(top, n), lower))
        for (dev, ino), paths in names.items():
            origin = f"l:{index}:{dev}:{ino}".encode()
            hidden = sum(1 for p in paths if ctx.upper_stat(p) is not None
                         and _origin_of(ctx, p) != origin)
            if d.kernel - d.cowfs <= hidden:
                return True
    return False


def _origin_of(ctx: Context, path: str) -> bytes | None:
    try:
        return os.getxattr(os.path.join(ctx.cowfs_upper, path), "user.overlay.cowfs.origin",
                           follow_symlinks=False)
    except OSError:
        return None


def _lower_hardlink_renamed_over_itself(d: Diff, ctx: Context) -> bool:
    """A name of a lower hard link renamed over another name of it: the kernel copied it up
    and renamed (a whiteout at the source, the copy at the target), cowfs did nothing. So: a
    path naming a lower hard link that the cowfs upper does not have, and the kernel upper has
    as a whiteout (anything differs: the name is gone there) or as a copy (its ino and nlink);
    or a listing whose only difference is names of the first kind, which only cowfs lists."""
    if d.field == "ok" and isinstance(d.kernel, list) and isinstance(d.cowfs, list):
        if not all(isinstance(n, str) for n in d.kernel + d.cowfs) or d.path is None:
            return False
        extra = set(d.cowfs) - set(d.kernel)
        return (bool(extra) and set(d.kernel) <= set(d.cowfs) and all(
            _kernel_only_lower_link(ctx, n if d.path.strip("/") in ("", ".")
                                    else f"{d.path.rstrip('/')}/{n}") == "whiteout"
            for n in extra))
    kernel_has = _kernel_only_lower_link(ctx, d.path)
    return kernel_has == "whiteout" or (kernel_has == "copy" and _field(d) in ("ino", "nlink"))


def _kernel_only_lower_link(ctx: Context, path: str | None) -> str | None:
    """"whiteout" or "copy": what the kernel upper has at PATH, a name of a lower hard link
    that the cowfs upper does not have; else None."""
    if not _names_lower_link(ctx, path) or ctx.kernel_upper is None:
        return None
    try:
        st = os.lstat(os.path.join(ctx.kernel_upper, path))
    except OSError:
        return None
    if ctx.upper_stat(path) is not None:
        return None
    return "whiteout" if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 else "copy"


def _lseek_holes(d: Diff, ctx: Context) -> bool:
    return _op_name(d) == "lseek" and ('"SEEK_HOLE"' in d.where or '"SEEK_DATA"' in d.where)


def _dotdot_ino(d: Diff, ctx: Context) -> bool:
    """The ".." entry's ino in a listing, or an ino first seen as one (its label says so)."""
    return d.field == "ok....ino" or (_field(d) == "ino" and any(
        isinstance(v, str) and v.endswith("/..") for v in (d.kernel, d.cowfs)))


def _lent_permission_ctime(d: Diff, ctx: Context) -> bool:
    if not (_op_name(d) == "times_cmp" and d.field == "ok.ctime"
            and d.kernel == "same" and d.cowfs == "later"):
        return False
    held = d.entries[1] if isinstance(d.entries[1], dict) else {}
    if "mode" in held:  # as at the comparison (the fuzzer asks it for non-directories)
        return int(held["mode"], 8) & stat.S_IRUSR == 0
    st = ctx.upper_stat(d.path)
    if st is None or st.st_uid != ctx.uid:
        return False
    needs = stat.S_IRWXU if stat.S_ISDIR(st.st_mode) else stat.S_IRUSR
    return st.st_mode & needs != needs


def _dir_lseek_end(d: Diff, ctx: Context) -> bool:
    return (_op_name(d) == "lseek" and '"SEEK_END"' in d.where
            and d.kernel == {"errno": "EINVAL"} and "ok" in (d.cowfs or {}))


def _mmap_before_copyup(d: Diff, ctx: Context) -> bool:
    return _op_name(d) == "mmap_read" and ctx.in_cowfs_upper(d.path)




def _removed_lower_changed(d: Diff, ctx: Context) -> bool:
    """A lower object whose name is whited out (cowfs upper), changed through an old fd."""
    st = ctx.upper_stat(d.path)
    if not (st is not None and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
            and ctx.lower_stat(d.path) is not None):
        return False
    if d.where == "tree":
        return d.cowfs is Diff.MISSING
    op = _op_name(d)
    if op == "fstat":
        return True  # the change that cowfs refused shows in the kernel's attributes
    refused = d.cowfs in ("ENOENT", {"errno": "ENOENT"})
    return refused and op in ("fchmod", "fchown")


def _split_layer_dir_ino(d: Diff, ctx: Context) -> bool:
    if _field(d) != "ino" or not ctx.kernel_upper:
        return False
    try:
        dev = os.stat(ctx.kernel_upper).st_dev
        if all(os.stat(low).st_dev == dev for low in ctx.lowers):
            return False
    except OSError:
        return False
    held = d.entries[0] if isinstance(d.entries[0], dict) else {}
    if held.get("type") == "d":
        return True
    label = d.kernel  # a tree path for tree entries: the directory whose number it shows
    if d.where != "tree" or not isinstance(label, str):
        return False
    st = ctx.upper_stat(label) or ctx.lower_stat(label)
    return st is not None and stat.S_ISDIR(st.st_mode)


def _ro_upper_access(d: Diff, ctx: Context) -> bool:
    if not (_op_name(d) == "access" and '"W_OK"' in d.where
            and d.kernel == {"errno": "EROFS"} and d.cowfs == {"ok": True}):
        return False
    try:
        return bool(os.statvfs(ctx.cowfs_upper).f_flag & os.ST_RDONLY)
    except (OSError, TypeError):
        return False


def _copyup_owner(d: Diff, ctx: Context) -> bool:
    last = d.field.rsplit(".", 1)[-1]
    want = {"uid": ctx.uid, "gid": ctx.gid}.get(last)
    return want is not None and d.kernel == 0 and d.cowfs == want and ctx.in_cowfs_upper(d.path)


# THE list of intended differences. Add an entry only with a reason a reviewer can check against
# SEMANTICS.md; keep `matches` as narrow as possible. Nothing else is ever filtered.
def _layer_store_nlink(d: Diff, ctx: Context) -> bool:
    if _field(d) != "nlink" or not (isinstance(d.kernel, int) and isinstance(d.cowfs, int)
                                    and d.cowfs > d.kernel) or d.path is None:
        return False
    for lower in ctx.lowers:  # the topmost lower holding the path
        try:
            st = os.lstat(os.path.join(lower, d.path))
        except OSError:
            continue
        return stat.S_ISREG(st.st_mode) and "/layers/sha256/" in lower
    return False


EXPECTED_DIFFERENCES: tuple[Expected, ...] = (
    Expected(
        "copyup-owner",
        "The reference kernel overlay is mounted by root, so its copy-ups keep a root-owned lower "
        "object's owner. cowfs is mounted by the unprivileged test user, which cannot chown: its "
        "copy belongs to the mounting user, as on a rootless kernel overlay (SEMANTICS.md, "
        "Copy-up: Owner). Matches only uid/gid 0 vs the test user's, for paths present in the "
        "cowfs upper.",
        _copyup_owner,
    ),
    Expected(
        "hardlink-ino",
        "st_ino of a non-directory with several names. After a hard link is made through the "
        "mount to a copied-up object, kernel overlay (without index=on) shows the new name with "
        "the upper inode's number and the old one with the lower origin's (one object, two "
        "st_ino, until a remount; renaming one of those names over the other then fails with "
        "ESTALE); cowfs shows one st_ino for all names of one object, as POSIX wants. Matches "
        "only the ino field of an entry whose type is not a directory and whose st_nlink is "
        "over 1, or that had several names earlier in the run (st_nlink over 1 when its st_ino "
        "first showed, or a link op on its path); and that rename's ESTALE.",
        _hardlink_ino,
    ),
    Expected(
        "lower-hardlink-copyup",
        "A lower hard link after a copy-up. Kernel overlay without index=on (the rootless "
        "kernel cannot have index=on) breaks the link: the name copied up becomes an upper "
        "file of its own (st_nlink 1, the upper inode's number) and the other names keep "
        "showing the lower object, old contents and attributes. cowfs copies the object once "
        "and links every name the view shows to the copy, as the kernel does as root with "
        "index=on (tests/test_hardlinks.py compares with that). Matches anything about a path "
        "that names a lower hard link (a non-directory of st_nlink over 1 in the topmost lower "
        "holding the path) and is in the cowfs upper, or that is in the cowfs upper as a hard "
        "link of such a path (a link made through the mount to a lower hard link).",
        _lower_hardlink_copyup,
    ),
    Expected(
        "index-nlink-hidden-names",
        "st_nlink of a lower hard link after its copy-up, against the kernel as root with "
        "index=on (the reference for lower hard links): the kernel keeps counting the lower "
        "names that the upper hides (shadowed by an upper entry, whited out, under an opaque "
        "dir), which no one can find through the mount; cowfs counts the names the merged "
        "view shows, all of them links of its copy. Matches only an nlink where the kernel's "
        "is higher than cowfs's by at most the number of names of one lower hard link that "
        "the cowfs upper hides (a whiteout or another object there, not its copy).",
        _index_counts_hidden_names,
    ),
    Expected(
        "lower-hardlink-rename",
        "rename(2) of one name of a lower hard link over another name of it. POSIX says two "
        "names of one file make rename do nothing, and so do cowfs and the kernel as root with "
        "index=on (one overlay inode); the rootless kernel sees two inodes, copies the source "
        "up and renames it over the target. Matches only a path naming a lower hard link "
        "(a non-directory of st_nlink over 1 in the topmost lower holding it) that is not in "
        "the cowfs upper and is a whiteout in the kernel upper (any field), or a copy there "
        "(ino and nlink); and a listing whose only difference is names of the first kind, "
        "which cowfs lists and the kernel does not.",
        _lower_hardlink_renamed_over_itself,
    ),
    Expected(
        "lseek-holes",
        "pyfuse3 has no FUSE lseek handler, so SEEK_DATA/SEEK_HOLE through a cowfs mount get "
        "the kernel's generic answer (all data up to EOF). Copy-up keeps holes on disk (tested "
        "on the upper); only the view through the mount differs. Matches only lseek ops with "
        "SEEK_DATA or SEEK_HOLE.",
        _lseek_holes,
    ),
    Expected(
        "dotdot-ino",
        "d_ino of the \"..\" entry in a listing. Kernel overlay does not always give the "
        "st_ino it shows for the parent (seen on 6.18: a directory merged from two lowers on "
        "tmpfs lists \"..\" with the inode number of a real directory below, where an upper "
        "sibling's \"..\" is right). cowfs answers the parent's st_ino everywhere. Matches "
        "only the ino of \"..\" entries, and an ino whose label says it was first seen as "
        "one (the kernel's number then names nothing else).",
        _dotdot_ino,
    ),
    Expected(
        "lent-permission-ctime",
        "The ctime of an upper object of the mounting user that lacks owner r (or, for a "
        "directory, w or x). The kernel's overlay reads markers, lists, searches and copies up "
        "into upper objects with privileges; a rootless cowfs lends itself the missing owner "
        "bits for a moment (chmod and back), which moves the object's ctime (a daemon started "
        "by root needs no such thing). Matches only a ctime relation \"later\" on cowfs where "
        "the kernel has \"same\", for a path that is such an object in the cowfs upper (or "
        "whose mode at the comparison lacks owner r).",
        _lent_permission_ctime,
    ),
    Expected(
        "dir-lseek-end",
        "lseek(SEEK_END) on a directory: kernel overlay answers EINVAL for a merged directory "
        "(and the upper or lower filesystem's own answer otherwise: EINVAL on tmpfs, the size "
        "plus the offset on ext4); on FUSE the kernel serves directory lseek itself "
        "(generic_file_llseek, no request reaches the daemon) and answers the size plus the "
        "offset. Matches only lseek SEEK_END where the kernel says EINVAL and cowfs succeeds.",
        _dir_lseek_end,
    ),
    Expected(
        "removed-lower-change",
        "A change (fchmod, fchown) through a descriptor of a lower object "
        "whose name has been removed: the kernel copies it up to its old name, over the "
        "whiteout, so the deleted entry reappears in the merged tree (or, for a directory, "
        "answers ENOTDIR). cowfs refuses with ENOENT and the name stays deleted. Matches only "
        "f* ops on, and tree entries at, a path that is a whiteout in the cowfs upper over a "
        "lower object.",
        _removed_lower_changed,
    ),
    Expected(
        "mmap-before-copyup",
        "A mapping made on a descriptor opened before a copy-up: the kernel keeps showing the "
        "lower's pages (documented in overlayfs.rst and SEMANTICS.md as its one stale case); "
        "cowfs reads the current data. Matches only mmap_read results on copied-up files.",
        _mmap_before_copyup,
    ),
    Expected(
        "split-layer-dir-ino",
        "st_ino on a kernel overlay whose layers are not all on one filesystem (full-disk "
        "tests: upper and work on a small filesystem of their own; test_ino_persist.py: a "
        "lower on a tmpfs). Without xino "
        "(off here) the kernel shows a directory with an inode number of the overlay's own, "
        "and an upper non-directory with the upper's, told apart by st_dev only, which the "
        "harness does not compare: a directory and a file may show one number (seen: an "
        "upper dir and an upper file of a fresh tmpfs, 10 and 10). Matches only the ino of a "
        "directory, or of a tree entry whose kernel label names a directory, and only when "
        "some lower's st_dev is not the kernel upper's.",
        _split_layer_dir_ino,
    ),
    Expected(
        "ro-upper-access",
        "access(W_OK) while the upper's filesystem is mounted read-only: the kernel's overlay "
        "asks the upper inode, whose filesystem answers EROFS; a FUSE mount with "
        "default_permissions answers access(2) in the kernel from the mode cowfs reports, no "
        "request reaches the daemon, so it says yes. The write itself then fails with EROFS "
        "on both (tests/test_full_disk.py). Matches only access ops asking W_OK where the "
        "kernel says EROFS and cowfs yes, while the cowfs upper's filesystem is read-only.",
        _ro_upper_access,
    ),
    Expected(
        "layer-store-nlink",
        "st_nlink of a regular file of an image layer given as a tarball (cowfs/layertar.py): "
        "each file of the unpacked layer is a hard link to a store object, shared with the "
        "identical files of every layer and snapshot, so it counts those links too; the kernel, "
        "over the same layer unpacked as containerd does, counts the layer's own. Matches only "
        "an nlink larger on cowfs, of a path whose topmost lower object is a regular file in a "
        "layer store's layers/sha256/ dir.",
        _layer_store_nlink,
    ),
)


def classify(diffs: list[Diff], ctx: Context) -> tuple[list[Diff], list[tuple[Diff, Expected]]]:
    """Split DIFFS into (unexplained, tolerated-with-reason)."""
    bad, ok = [], []
    for d in diffs:
        exp = next((x for x in EXPECTED_DIFFERENCES
                    if (x.impls is None or ctx.impl in x.impls) and x.matches(d, ctx)), None)
        if exp is None:
            bad.append(d)
        else:
            ok.append((d, exp))
    return bad, ok


def format_diffs(bad: list[Diff], tolerated: list[tuple[Diff, Expected]], *,
                 title: str = "", limit: int = 80) -> str:
    lines = [title] if title else []
    if bad:
        lines.append(f"{len(bad)} unexplained difference(s):")
        lines += [f"  {d}" for d in bad[:limit]]
        if len(bad) > limit:
            lines.append(f"  ... {len(bad) - limit} more")
    if tolerated:
        lines.append(f"{len(tolerated)} tolerated difference(s) (EXPECTED_DIFFERENCES):")
        lines += [f"  [{x.name}] {d}" for d, x in tolerated[:limit]]
    return "\n".join(lines)


@dataclass
class Outcome:
    ops: list
    kernel: list
    cowfs: list
    kernel_tree: dict | None
    cowfs_tree: dict | None
    ctx: Context
    impl: str
    logs: str = ""

    def _all(self, trees: bool = True) -> list[Diff]:
        diffs = compare_results(self.ops, self.kernel, self.cowfs)
        if trees and self.kernel_tree is not None:
            diffs += compare_trees(self.kernel_tree, self.cowfs_tree)
        return diffs

    def diffs(self, trees: bool = True) -> list[Diff]:
        """Unexplained differences (results, then trees)."""
        return classify(self._all(trees), self.ctx)[0]

    def tolerated(self, trees: bool = True) -> list[tuple[Diff, Expected]]:
        return classify(self._all(trees), self.ctx)[1]

    def report(self, trees: bool = True) -> str:
        bad, ok = classify(self._all(trees), self.ctx)
        lines = [format_diffs(bad, ok, title=f"{self.impl} vs kernel overlayfs")]
        lines.append("ops (kernel result | cowfs result):")
        for i, (op, k, c) in enumerate(zip(self.ops, self.kernel, self.cowfs, strict=True)):
            mark = "  " if k == c else "!!"
            lines.append(f"{mark} [{i}] {json.dumps(op)[:100]}  ->  {_show(k)}"
                         + ("" if k == c else f"  |  {_show(c)}"))
        if self.logs:
            lines.append(self.logs)
        return "\n".join(lines)

    def assert_same(self, trees: bool = True) -> None:
        """Fail with a readable report unless results (and trees) match up to EXPECTED."""
        bad, ok = classify(self._all(trees), self.ctx)
        if bad:
            raise AssertionError(self.report(trees))
        if ok:
            print(format_diffs([], ok, title=f"{self.impl} vs kernel overlayfs"))


class Pair:
    """The same lowers (and optional upper) mounted twice: kernel overlay and IMPL."""

    def __init__(self, lower_specs: list, upper: dict | Dir | None = None, *,
                 impl: str | None = None, name: str = "pair", upper_fs: str | None = None,
                 lower_fs: dict[int, str] | None = None, kernel_opts: list[str] | None = None,
                 cowfs_opts: list[str] | None = None):
        self.impl = impl or env().impl
        self.kernel_opts = kernel_opts  # not None: the reference is the trusted-format kernel
        self.cowfs_opts = cowfs_opts or []
        self.kernel_layers = make_layers(f"{name}-kernel", lower_specs, upper, upper_fs=upper_fs,
                                         lower_fs=lower_fs)
        self.cowfs_layers = make_layers(f"{name}-{self.impl}", lower_specs, upper,
                                        upper_fs=upper_fs, lower_fs=lower_fs)
        self.kernel: Mount | None = None
        self.cowfs: Mount | None = None
        self.mount()

    def mount(self) -> None:
        self.kernel = mount("kernel", self.kernel_layers, self.kernel_opts,
                            trusted=self.kernel_opts is not None)
        try:
            self.cowfs = mount(self.impl, self.cowfs_layers, self.cowfs_opts)
        except BaseException:
            self.kernel.unmount()
            raise

    def unmount(self) -> None:
        errors = []
        for m in (self.cowfs, self.kernel):
            if m is not None:
                try:
                    m.unmount()
                except HarnessError as e:
                    errors.append(str(e))
        self.kernel = self.cowfs = None
        if errors:
            raise HarnessError("\n".join(errors))

    def remount(self) -> None:
        """Unmount both and mount again on the same dirs (kernel gets a fresh work dir)."""
        self.unmount()
        self.kernel_layers.new_work()
        self.mount()

    def context(self) -> Context:
        e = env()
        return Context(self.kernel_layers.upper, self.cowfs_layers.upper, e.uid, e.gid,
                       self.impl, tuple(self.cowfs_layers.lowers))

    def run(self, ops: list, *, trees: bool = True) -> Outcome:
        k = run_ops(self.kernel.mnt, ops)
        kt = dump_tree(self.kernel.mnt) if trees else None
        try:
            c = run_ops(self.cowfs.mnt, ops)
            ct = dump_tree(self.cowfs.mnt) if trees else None
        except HarnessError as e:
            raise HarnessError(f"{e}\n{self.cowfs.log_tail()}") from None
        self.cowfs.check_alive()
        logs = self.cowfs.log_tail(30) if self.cowfs.proc else ""
        return Outcome(ops, k, c, kt, ct, self.context(), self.impl, logs)

    def trees(self) -> tuple[dict, dict]:
        return dump_tree(self.kernel.mnt), dump_tree(self.cowfs.mnt)

    def upper_tree(self, side: str = "cowfs") -> dict:
        """The raw upper dir of SIDE ("kernel" or "cowfs") as root sees it, not mounted."""
        lay = self.cowfs_layers if side == "cowfs" else self.kernel_layers
        return dump_tree(lay.upper, user=False)

    def remount_upper_fs(self, opts: str) -> None:
        """`mount -o remount,OPTS` of both sides' upper filesystems (upper_fs= pairs)."""
        for lay in (self.kernel_layers, self.cowfs_layers):
            lay.remount_upper_fs(opts)

    def close(self) -> None:
        """Unmount (and the upper filesystems, if any), then check that neither side's lowers
        changed."""
        try:
            self.unmount()
        finally:
            try:
                for lay in (self.kernel_layers, self.cowfs_layers):
                    lay.unmount_upper_fs()
            finally:
                try:
                    check_lowers(self.kernel_layers.lowers + self.cowfs_layers.lowers)
                finally:
                    for lay in (self.kernel_layers, self.cowfs_layers):
                        lay.unmount_lower_fs()


def rmtree_checked(path: str) -> None:
    """Remove PATH unless something below it is still mounted (then raise)."""
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        busy = [ln.split()[4] for ln in f if ln.split()[4].startswith(real + "/")]
    if busy:
        raise HarnessError(f"not removing {path}: still mounted: {busy}")
    # rm(1), not shutil.rmtree: a tree thousands of directories deep overflows its recursion
    r = subprocess.run(["rm", "-rf", "--one-file-system", "--", path], capture_output=True,
                       text=True, timeout=600)
    if r.returncode:
        raise HarnessError(f"rm -rf {path}: {r.stderr.strip()}")

"""Sandboxes (`cowfs sandbox`, cowfs/sandbox.py): isolation and lifecycle, through real rootless
mounts made by the test user over snapshots built here by hand.

Isolation runs on two shapes of snapshot. "root-ro" looks like a real one (root's files and
directories, read-only); "user-rw" belongs to the sandbox user and is writable by it. A sandbox
shows either as the user's own writable tree (`--own-lowers`), so every poisoning attempt reaches
cowfs and succeeds inside the sandbox on both, and nothing but cowfs keeps the snapshot intact.
After every attempt the snapshot is hashed (content, modes, owners, times, xattrs, inode
numbers) and the other sandbox's view is compared with what it showed before.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

import overlay
from overlay import Dir, File

SHAPES = ("root-ro", "user-rw")
ORIGINAL = "original\n"


# ---------------------------------------------------------------------------------------------
# snapshots and sandboxes


def snapshot_spec(tag: str, owner: str) -> Dir:
    """ROOT/snapshots/<tag>: what the builder writes, plus targets for the poisoning attempts."""
    fmode, dmode = (0o444, 0o555) if owner == "root" else (0o644, 0o755)

    def f(data, **kw) -> File:
        return File(data, mode=fmode, owner=owner, **kw)

    def d(children) -> Dir:
        return Dir(children, mode=dmode, owner=owner)

    targets = {name: f(ORIGINAL) for name in (
        "wronly", "rdwr", "append", "trunc", "mmap", "truncate", "chmod", "chown", "utime",
        "setxattr", "link", "renamed-over", "rename-src", "rename-dst")}
    targets["removexattr"] = f(ORIGINAL, xattrs={"user.k": "v"})
    pip = d({
        "http-v2": d({"a": d({"b": d({"entry": f(f"cached response {tag}\n")})})}),
        "t": d(targets),
        "both": d({name: f(ORIGINAL) for name in ("edit", "gone", "moved")}),
        # empty dirs a sandbox user may remove even from a read-only snapshot (the sandbox's
        # root is its own): replaced by symlinks out of the sandbox
        "into-snapshot": d({}),
        "into-tmp": d({}),
    })
    return d({
        "MANIFEST": f(f"manifest of {tag}\n"),
        "MANIFEST.xxh3": f(f"xxh3 of the manifest of {tag}\n"),
        "requirements.txt": f("demo==1.0\n"),
        "wheels": d({"demo-1.0-py3-none-any.whl": f(b"PK\x03\x04 not really a wheel")}),
        "pip": pip,
    })


@dataclasses.dataclass
class Snap:
    root: str  # ROOT, with ROOT/current -> snapshots/s1
    home: str  # the test user's: state dirs and mountpoints go here
    pristine: tuple[str, str] = ("", "")  # digest() when built

    def snapshot(self, tag: str) -> str:
        return os.path.join(self.root, "snapshots", tag)

    def digest(self) -> tuple[str, str]:
        return (overlay.hash_tree(os.path.join(self.root, "snapshots")),
                os.readlink(os.path.join(self.root, "current")))


def build_snapshot_root(name: str, owner: str) -> Snap:
    """Two snapshots, s1 (current) and s2; the snapshots are checked as lowers (conftest)."""
    base = overlay.new_dir(name)
    root = os.path.join(base, "root")
    os.makedirs(os.path.join(root, "snapshots"), 0o755)
    for tag in ("s1", "s2"):
        overlay.build_tree(snapshot_spec(tag, owner), os.path.join(root, "snapshots", tag))
    os.symlink("snapshots/s1", os.path.join(root, "current"))
    overlay.register_lower(os.path.join(root, "snapshots"))
    e = overlay.env()
    home = os.path.join(base, "home")
    os.mkdir(home, 0o755)
    os.chown(home, e.uid, e.gid)
    snap = Snap(root, home)
    snap.pristine = snap.digest()
    return snap


def as_user(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    e = overlay.env()
    return subprocess.run(overlay.as_user(list(argv)), capture_output=True, text=True,
                          timeout=timeout, cwd=e.base, env=overlay.user_env(e),
                          stdin=subprocess.DEVNULL)


def cowfs(*args: str) -> subprocess.CompletedProcess:
    """`cowfs ARGS` as the test user."""
    return as_user(overlay.env().cowfs_bin, *args)


def user_dir(path: str) -> str:
    e = overlay.env()
    os.mkdir(path, 0o755)
    os.chown(path, e.uid, e.gid)
    return path


def ok(res: subprocess.CompletedProcess) -> None:
    assert res.returncode == 0 and res.stderr == "", (res.returncode, res.stderr)


def refused(res: subprocess.CompletedProcess, fragment: str) -> None:
    """Exit status 2 and exactly one line on stderr, naming the problem."""
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert re.fullmatch(r"cowfs: [^\n]+\n", res.stderr), res.stderr
    assert fragment in res.stderr, res.stderr


def mounts_below(path: str) -> list[str]:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f if ln.split()[4].startswith(real + "/")]


def unmount_below(path: str) -> None:
    """Teardown: take down whatever a failed test left mounted below PATH."""
    for mp in reversed(mounts_below(path)):
        subprocess.run(["umount", "-l", mp], capture_output=True, timeout=30)


@dataclasses.dataclass
class Sandbox:
    state: str
    mnt: str

    def mount(self, snapshot: str, *extra: str) -> subprocess.CompletedProcess:
        return cowfs("sandbox", "mount", "--snapshot", snapshot, "--state", self.state, *extra,
                     self.mnt)

    def umount(self) -> None:
        ok(cowfs("sandbox", "umount", self.mnt))

    def ops(self, ops: list) -> list:
        return overlay.run_ops(self.mnt, ops)


def new_sandbox(snap: Snap, name: str) -> Sandbox:
    return Sandbox(os.path.join(snap.home, f"state-{name}"),
                   user_dir(os.path.join(snap.home, f"mnt-{name}")))


# ---------------------------------------------------------------------------------------------
# isolation: two sandboxes over one snapshot, mounted for the whole module per shape


@dataclasses.dataclass
class Pair:
    shape: str
    snap: Snap
    a: Sandbox
    b: Sandbox
    b_view: dict  # B's merged tree right after mounting


@pytest.fixture(scope="module")
def pair(harness, request) -> Pair:
    shape = request.param
    snap = build_snapshot_root(f"isolation-{shape}", "root" if shape == "root-ro" else "user")
    a, b = new_sandbox(snap, "a"), new_sandbox(snap, "b")
    try:
        for sb in (a, b):  # over pip's cache, as in the README's recipe
            ok(sb.mount(snap.root, "--subdir", "pip"))
        yield Pair(shape, snap, a, b, overlay.dump_tree(b.mnt))
        for sb in (a, b):
            sb.umount()
    finally:
        unmount_below(snap.home)


def assert_isolated(pair: Pair) -> None:
    assert pair.snap.digest() == pair.snap.pristine, "the snapshot changed"
    assert overlay.dump_tree(pair.b.mnt) == pair.b_view, "the other sandbox saw a change"


@pytest.mark.parametrize("pair", SHAPES, indirect=True)
def test_two_sandboxes_over_one_snapshot(pair: Pair):
    out = pair.a.ops([
        ["write_file", "both/edit", "from A\n"],
        ["unlink", "both/gone"],
        ["rename", "both/moved", "both/moved-by-a"],
        ["write_file", "new", "from A\n"],
    ])
    assert all("ok" in r for r in out), out
    assert pair.a.ops([["read_file", "both/edit"], ["listdir", "both"]]) == [
        {"ok": "from A\n"}, {"ok": ["edit", "moved-by-a"]}]
    assert_isolated(pair)

    ok_b = pair.b.ops([["write_file", "new", "from B\n"], ["read_file", "new"]])
    assert ok_b[1] == {"ok": "from B\n"}
    assert pair.a.ops([["read_file", "new"]]) == [{"ok": "from A\n"}]
    assert pair.b.ops([["unlink", "new"]]) == [{"ok": None}]
    assert_isolated(pair)


@dataclasses.dataclass
class Attempt:
    ops: list
    check: list  # an op run in the attempting sandbox afterwards ...
    expect: dict  # ... and its result (the same on both shapes)


def _written(path: str, flags: list[str], after: str) -> Attempt:
    return Attempt([["open", "f", path, flags], ["write", "f", "POISON"], ["close", "f"]],
                   ["read_file", path], {"ok": after})


ATTEMPTS = {
    "O_WRONLY": _written("t/wronly", ["O_WRONLY"], "POISONal\n"),
    "O_RDWR": _written("t/rdwr", ["O_RDWR"], "POISONal\n"),
    "O_APPEND": _written("t/append", ["O_WRONLY", "O_APPEND"], ORIGINAL + "POISON"),
    "O_TRUNC": _written("t/trunc", ["O_WRONLY", "O_TRUNC"], "POISON"),
    "mmap-shared": Attempt(
        [["open", "f", "t/mmap", ["O_RDWR"]], ["mmap_write", "f", 0, "POISON"], ["close", "f"]],
        ["read_file", "t/mmap"], {"ok": "POISONal\n"}),
    "truncate": Attempt([["truncate", "t/truncate", 3]], ["read_file", "t/truncate"],
                        {"ok": "ori"}),
    "chmod": Attempt([["chmod", "t/chmod", 0o777]], ["access", "t/chmod", ["X_OK"]],
                     {"ok": True}),
    "chown": Attempt([["chown", "t/chown", "user", "user"]], ["read_file", "t/chown"],
                     {"ok": ORIGINAL}),
    "utimens": Attempt([["utime", "t/utime", 10**9, 2 * 10**9]], ["stat_times", "t/utime"],
                       {"ok": {"atime": 10**9, "mtime": 2 * 10**9}}),
    "setxattr": Attempt([["setxattr", "t/setxattr", "user.poison", "1"]],
                        ["listxattr", "t/setxattr"], {"ok": ["user.poison"]}),
    "removexattr": Attempt([["removexattr", "t/removexattr", "user.k"]],
                           ["listxattr", "t/removexattr"], {"ok": []}),
    "hardlink-then-write": Attempt(
        [["link", "t/link", "t/link2"], ["open", "f", "t/link2", ["O_WRONLY"]],
         ["write", "f", "POISON"], ["close", "f"]],
        ["read_file", "t/link"], {"ok": "POISONal\n"}),
    "rename-over": Attempt(
        [["write_file", "fresh", "POISON"], ["rename", "fresh", "t/renamed-over"],
         ["rename", "t/rename-src", "t/rename-dst"]],
        ["read_file", "t/renamed-over"], {"ok": "POISON"}),
    "dir-to-symlink-to-tmp": Attempt(
        [["rmdir", "into-tmp"], ["symlink", "{tmp}", "into-tmp"],
         ["write_file", "into-tmp/poison", "POISON"]],
        ["read_file", "into-tmp/poison"], {"ok": "POISON"}),
}


def _fill(ops, values: dict[str, str]):
    if isinstance(ops, list):
        return [_fill(o, values) for o in ops]
    return ops.format(**values) if isinstance(ops, str) else ops


def try_poisoning(pair: Pair, a: Attempt, expect_ok: bool = True) -> list:
    """Run attempt A in sandbox A; the snapshot and sandbox B must not notice. Returns the op
    results."""
    tmp = tempfile.mkdtemp(prefix="cowfs-poison-", dir="/tmp")
    try:
        os.chown(tmp, overlay.env().uid, overlay.env().gid)
        values = {"snapshot": pair.snap.snapshot("s1"), "tmp": tmp}
        out = pair.a.ops(_fill(a.ops, values))
        if expect_ok:  # nothing refused it: every op reached cowfs
            assert all("errno" not in r for r in out), out
        after = pair.a.ops([_fill(a.check, values)])[0]
        assert after == a.expect, (out, after)
        assert_isolated(pair)
        if "{tmp}" in str(a.ops):
            assert os.listdir(tmp) == ["poison"]  # outside: neither snapshot nor sandbox
    finally:
        shutil.rmtree(tmp)
    return out


@pytest.mark.parametrize("pair", SHAPES, indirect=True)
@pytest.mark.parametrize("attempt", ATTEMPTS)
def test_poisoning_does_not_reach_the_snapshot(pair: Pair, attempt: str):
    try_poisoning(pair, ATTEMPTS[attempt])


@pytest.mark.parametrize("pair", ["root-ro"], indirect=True)
def test_symlink_into_the_snapshot_meets_its_permissions(pair: Pair):
    """The kernel follows a symlink in the caller's process: a write through one lands on the
    target itself, never in cowfs. Into the snapshot, only the snapshot's own permissions stop
    it: this is why a real one is read-only to the sandbox users (a user-rw one is not)."""
    out = try_poisoning(pair, Attempt(
        [["rmdir", "into-snapshot"], ["symlink", "{snapshot}/pip/t", "into-snapshot"],
         ["write_file", "into-snapshot/wronly", "POISON"],
         ["write_file", "into-snapshot/new", "POISON"]],
        ["read_file", "into-snapshot/wronly"], {"ok": ORIGINAL}), expect_ok=False)
    assert out == [{"ok": None}, {"ok": None}, {"errno": "EACCES"}, {"errno": "EACCES"}]


# ---------------------------------------------------------------------------------------------
# lifecycle: state dirs, reset, snapshot roots


@pytest.fixture(scope="module")
def snap(harness) -> Snap:
    s = build_snapshot_root("lifecycle", "root")
    yield s
    unmount_below(s.home)


def listing(path: str) -> list[str]:
    return sorted(os.listdir(path))


def test_changes_persist_until_reset(snap: Snap):
    sb = new_sandbox(snap, "persist")
    ok(sb.mount(snap.root, "--subdir", "pip"))
    assert sb.ops([["write_file", "mine", "kept\n"]]) == [{"ok": 5}]
    sb.umount()
    ok(sb.mount(snap.root, "--subdir", "pip"))
    assert sb.ops([["read_file", "mine"]]) == [{"ok": "kept\n"}]
    sb.umount()
    ok(cowfs("sandbox", "reset", sb.state))  # right after the unmount: no race with the daemon
    assert listing(sb.state) == ["lock"]
    ok(sb.mount(snap.root, "--subdir", "pip"))
    assert sb.ops([["exists", "mine"], ["read_file", "http-v2/a/b/entry"]]) == [
        {"ok": False}, {"ok": "cached response s1\n"}]
    sb.umount()


def test_in_use_state_dir_is_refused(snap: Snap):
    sb = new_sandbox(snap, "busy")
    ok(sb.mount(snap.root, "--subdir", "pip"))
    sb.ops([["write_file", "mine", "kept\n"]])
    refused(cowfs("sandbox", "reset", sb.state), f"is in use: mounted at {sb.mnt}")
    other = user_dir(os.path.join(snap.home, "mnt-busy2"))
    refused(cowfs("sandbox", "mount", "--snapshot", snap.root, "--subdir", "pip", "--state",
                  sb.state, other), "is in use")
    assert overlay.mounted_at(other) is None
    assert listing(os.path.join(sb.state, "upper")) == ["mine"]
    sb.umount()
    ok(cowfs("sandbox", "reset", sb.state))


def test_other_snapshot_is_refused_until_reset(snap: Snap):
    sb = new_sandbox(snap, "switch")
    ok(sb.mount(snap.root, "--subdir", "pip"))
    sb.ops([["write_file", "mine", "kept\n"]])
    sb.umount()
    record = os.path.join(sb.state, "snapshot")
    with open(record) as f:
        made_over = f.read()
    assert made_over == snap.snapshot("s1") + "/pip\n"
    before = listing(sb.state)
    for args in ((snap.snapshot("s2"), "--subdir", "pip"), (snap.snapshot("s1"),)):
        refused(sb.mount(*args), "run `cowfs sandbox reset")
        assert overlay.mounted_at(sb.mnt) is None
        assert listing(sb.state) == before
        with open(record) as f:
            assert f.read() == made_over
    ok(cowfs("sandbox", "reset", sb.state))
    ok(sb.mount(snap.snapshot("s2"), "--subdir", "pip"))
    assert sb.ops([["exists", "mine"], ["read_file", "http-v2/a/b/entry"]]) == [
        {"ok": False}, {"ok": "cached response s2\n"}]
    sb.umount()


def test_snapshot_root_is_resolved_once(snap: Snap):
    first, second = new_sandbox(snap, "once1"), new_sandbox(snap, "once2")
    current = os.path.join(snap.root, "current")
    ok(first.mount(snap.root))
    try:
        # a rebuild: a new link renamed over `current`, atomically
        os.symlink("snapshots/s2", current + ".new")
        os.rename(current + ".new", current)
        assert first.ops([["read_file", "MANIFEST"]]) == [{"ok": "manifest of s1\n"}]
        ok(second.mount(snap.root))
        assert second.ops([["read_file", "MANIFEST"]]) == [{"ok": "manifest of s2\n"}]
        with open(os.path.join(first.state, "snapshot")) as f:
            assert f.read() == snap.snapshot("s1") + "\n"
        second.umount()
    finally:
        os.symlink("snapshots/s1", current + ".new")
        os.rename(current + ".new", current)
    first.umount()


def test_crashed_daemon_leaves_no_stale_claim(snap: Snap):
    """mounted-at still names a (dead) cowfs mount, but no daemon holds the lock: reset works."""
    sb = new_sandbox(snap, "crash")
    ok(sb.mount(snap.root, "--subdir", "pip"))
    sb.ops([["write_file", "mine", "kept\n"]])
    daemons = [int(pid) for pid in os.listdir("/proc") if pid.isdigit()
               and sb.state.encode() in _cmdline(pid)]
    assert len(daemons) == 1, daemons
    os.kill(daemons[0], signal.SIGKILL)
    wait_dead(daemons[0])
    assert overlay.mounted_at(sb.mnt) == "fuse.cowfs"  # the dead mount stays until unmounted
    ok(cowfs("sandbox", "reset", sb.state))
    assert listing(sb.state) == ["lock"]
    sb.umount()


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def wait_dead(pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except FileNotFoundError:
            return
        time.sleep(0.05)
    raise AssertionError(f"daemon {pid} still alive after SIGKILL")


@pytest.fixture(scope="module")
def bad(snap: Snap):
    """Things for bad input: a dir of root's, a file, a root whose current leads nowhere."""
    base = overlay.new_dir("bad-input")
    os.makedirs(os.path.join(base, "roots", "snapshots"))
    os.symlink("snapshots/gone", os.path.join(base, "roots", "current"))
    with open(os.path.join(base, "file"), "w") as f:
        f.write("not a dir\n")
    return base


# case: (arguments, fragment of the message); the state dir and mountpoint default to fresh ones
BAD = {
    "missing snapshot": (["--snapshot", "{base}/nowhere"], "does not exist"),
    "not a snapshot": (["--snapshot", "{home}"], "is not a snapshot (no MANIFEST)"),
    "current leads nowhere": (["--snapshot", "{base}/roots"], "is not a snapshot"),
    "missing subdir": (["--snapshot", "{root}", "--subdir", "npm"], "no such directory"),
    "subdir outside": (["--snapshot", "{root}", "--subdir", "../.."], "not a path inside"),
    "state of root's": (["--snapshot", "{root}", "--state", "{base}"], "is not writable"),
    "state below root's": (["--snapshot", "{root}", "--state", "{base}/state"],
                           "is not writable"),
    "state is a file": (["--snapshot", "{root}", "--state", "{base}/file"], "not a directory"),
    "state in the snapshot": (["--snapshot", "{root}", "--state", "{root}/current/pip/s"],
                              "overlaps snapshot"),
    # found by the final check, after the state dir was made: undone
    "missing mountpoint": (["--snapshot", "{root}", "{home}/nowhere"], "does not exist"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_creates_nothing(snap: Snap, bad: str, case: str):
    args, fragment = BAD[case]
    args = [a.format(base=bad, home=snap.home, root=snap.root) for a in args]
    if "--state" not in args:
        args += ["--state", os.path.join(snap.home, "state-bad")]
    if not any(a.startswith(snap.home + "/nowhere") for a in args):
        args.append(user_dir(os.path.join(snap.home, "mnt-bad-" + re.sub(r"\W", "_", case))))
    before = {p: listing(p) for p in (bad, snap.home)}
    refused(cowfs("sandbox", "mount", *args), fragment)
    assert {p: listing(p) for p in before} == before
    assert mounts_below(snap.home) == []


def test_reset_and_cli_refuse_bad_input(snap: Snap):
    refused(cowfs("sandbox", "reset", os.path.join(snap.home, "nowhere")), "does not exist")
    refused(cowfs("sandbox", "reset", snap.home), "not a sandbox state directory")
    refused(cowfs("sandbox"), "missing sandbox action: mount, reset or umount")
    refused(cowfs("sandbox", "mount", snap.home), "--snapshot")
    refused(cowfs("sandbox", "umount", os.path.join(snap.home, "nowhere")), "is not mounted")

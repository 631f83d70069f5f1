"""`cowfs snapshot gc` (cowfs/collect.py) on snapshots built by `cowfs snapshot build`, offline,
from wheels made here (tools/store_disk.write_wheel). Sandboxes are real rootless mounts by the
test user: what keeps a snapshot alive is the flock their daemons hold, nothing else."""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

import overlay
from cowfs import store
from test_sandbox import (Sandbox, _cmdline, as_user, ok, refused, unmount_below, user_dir,
                          wait_dead)

sys.path.insert(0, os.path.join(overlay.REPO, "tools"))
from store_disk import write_wheel  # noqa: E402

COWFS = os.path.join(os.path.dirname(sys.executable), "cowfs")
PROJECTS = ("alpha", "beta", "gamma")


def cowfs(*args: str) -> subprocess.CompletedProcess:
    """`cowfs ARGS` as root, the builder."""
    return subprocess.run([COWFS, *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def gc(root: str, *args: str) -> list[str]:
    """The lines of a successful `cowfs snapshot gc ROOT ARGS`."""
    res = cowfs("snapshot", "gc", root, *args)
    assert res.returncode == 0 and res.stderr == "", (res.returncode, res.stderr)
    return res.stdout.splitlines()


@pytest.fixture(scope="module")
def wheels(harness) -> str:
    """alpha, beta, gamma in versions 1..4, 16-64 KiB of random bytes each."""
    out = overlay.new_dir("wheels")
    rng = random.Random(15)
    for name in PROJECTS:
        for version in range(1, 5):
            write_wheel(out, name, f"{version}.0", rng.randrange(16 << 10, 64 << 10),
                        rng.getrandbits(32))
    return out


def build_weeks(wheels: str, weeks: int) -> tuple[str, list[str]]:
    """A ROOT with one snapshot a week, alpha new every week; (ROOT, ids oldest first)."""
    root = os.path.join(overlay.new_dir("root"), "root")
    ids = []
    for week in range(1, weeks + 1):
        req = f"{root}-requirements.txt"
        with open(req, "w") as f:
            f.write(f"alpha=={week}.0\nbeta==1.0\ngamma==1.0\n")
        res = cowfs("snapshot", "build", root, "-r", req, "--find-links", wheels, "--no-index")
        assert res.returncode == 0, res.stdout + res.stderr
        ids.append(os.path.basename(os.readlink(os.path.join(root, "current"))))
    return root, ids


def snapshots(root: str) -> set[str]:
    return set(os.listdir(os.path.join(root, "snapshots")))


def store_links(root: str) -> dict[str, int]:
    """Every store object's st_nlink, by name."""
    d = os.path.join(root, "store", "sha256")
    return {n: os.lstat(os.path.join(d, n)).st_nlink for n in os.listdir(d)}


def objects_of(root: str, snap: str) -> set[str]:
    """The store objects SNAP's files are links to."""
    d = os.path.join(root, "store", "sha256")
    by_ino = {os.lstat(os.path.join(d, n)).st_ino: n for n in os.listdir(d)}
    inos = {os.lstat(os.path.join(top, n)).st_ino
            for top, _, files in os.walk(os.path.join(root, "snapshots", snap)) for n in files}
    return {by_ino[i] for i in inos if i in by_ino}


def point_current(root: str, name: str) -> None:
    tmp = os.path.join(root, "current.new")
    os.symlink(f"snapshots/{name}", tmp)
    os.rename(tmp, os.path.join(root, "current"))


def freed_by_removing(snap: str) -> int:
    """What removing SNAP alone frees: files it is the last link of besides the store's."""
    total = 0
    for top, _, files in os.walk(snap):
        for name in files:
            st = os.lstat(os.path.join(top, name))
            in_store = not name.startswith("MANIFEST")
            if st.st_nlink == 1 + in_store:
                total += st.st_size
    return total


def test_keeps_current_and_the_newest(wheels):
    root, (s1, s2, s3, s4) = build_weeks(wheels, 4)
    point_current(root, s1)  # a rollback: current is the oldest, and kept
    # a killed build's dir (sealed half way), and a killed download in the store
    building = os.path.join(root, "snapshots", ".building-20200101T000000Z-dead")
    os.makedirs(os.path.join(building, "wheels"))
    os.chmod(os.path.join(building, "wheels"), 0o555)
    with open(os.path.join(root, "store", "tmp", "0123-partial"), "wb") as f:
        f.write(b"x" * 1000)
    freed = freed_by_removing(os.path.join(root, "snapshots", s2)) + 1000
    before = store_links(root)
    only_s2 = {n for n in objects_of(root, s2) if before[n] == 2}  # alpha-2.0, requirements.txt

    lines = gc(root)

    assert lines == [f"gc: removed snapshots/{os.path.basename(building)}",
                     f"gc: removed snapshots/{s2}",
                     f"gc {root}: 2 snapshot dirs removed, 0 in use, 3 kept; 3 store objects "
                     f"removed; {freed} bytes freed"]
    assert snapshots(root) == {s1, s3, s4}
    after = store_links(root)
    assert len(only_s2) == 2 and set(before) - set(after) == only_s2
    assert min(after.values()) >= 2
    assert os.listdir(os.path.join(root, "store", "tmp")) == []
    for snap in (s1, s3, s4):
        res = cowfs("verify", os.path.join(root, "snapshots", snap))
        assert res.returncode == 0, res.stdout + res.stderr
    # nothing more to do: the same again removes nothing
    assert gc(root)[-1] == (f"gc {root}: 0 snapshot dirs removed, 0 in use, 3 kept; 0 store "
                            "objects removed; 0 bytes freed")
    point_current(root, s4)
    lines = gc(root, "--keep", "1")
    assert lines[:2] == [f"gc: removed snapshots/{s1}", f"gc: removed snapshots/{s3}"]
    assert snapshots(root) == {s4}
    assert len(store_links(root)) == 4  # s4's three wheels and requirements.txt


def test_gc_and_builds_wait_for_each_other(wheels):
    """A build or pull holds ROOT's lock shared from its first store link to its `current`, gc
    exclusively: neither runs while the other does."""
    root, (s1, s2, s3) = build_weeks(wheels, 3)
    with store.root_lock(root):  # as a build does
        sweep = subprocess.Popen([COWFS, "snapshot", "gc", root, "--keep", "1"], text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert sweep.stdout.readline() == "gc: waiting for a build or pull to finish\n"
        time.sleep(0.5)
        assert snapshots(root) == {s1, s2, s3} and sweep.poll() is None
    out, err = sweep.communicate(timeout=60)
    assert sweep.returncode == 0 and err == "", err
    assert snapshots(root) == {s3}

    req = f"{root}-requirements.txt"
    with store.root_lock(root, exclusive=True):  # as gc does
        build = subprocess.Popen([COWFS, "snapshot", "build", root, "-r", req, "--find-links",
                                  wheels, "--no-index"], text=True, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        assert build.stdout.readline().startswith("snapshot: pip ")
        assert build.stdout.readline() == "snapshot: waiting for cowfs snapshot gc\n"
        time.sleep(0.5)
        assert snapshots(root) == {s3} and build.poll() is None  # not even a .building dir
    out, err = build.communicate(timeout=120)
    assert build.returncode == 0, out + err
    assert len(snapshots(root)) == 2


BAD = {
    "missing root": (["{base}/nowhere"], "snapshot root {base}/nowhere does not exist"),
    "root is a file": (["{base}/file"], "snapshot root {base}/file is not a directory"),
    "not a root": (["{base}"], "{base} is not a snapshot root (no current)"),
    "a snapshot dir": (["{snap}"], "{snap} is not a snapshot root (no current)"),
    "current leads nowhere": (["{base}/broken"], "{base}/broken/current points to "
                              "snapshots/gone, which is not a snapshot under {base}/broken/"
                              "snapshots"),
    "keep 0": (["{root}", "--keep", "0"], "--keep 0: keep at least 1 snapshot"),
    "keep not a number": (["{root}", "--keep", "two"],
                          "argument --keep: invalid int value: 'two'"),
}


@pytest.fixture(scope="module")
def bad(wheels):
    root, ids = build_weeks(wheels, 2)
    base = os.path.dirname(root)
    with open(os.path.join(base, "file"), "w") as f:
        f.write("not a dir\n")
    broken = os.path.join(base, "broken")
    os.makedirs(os.path.join(broken, "snapshots"))
    os.symlink("snapshots/gone", os.path.join(broken, "current"))
    return base, root, os.path.join(root, "snapshots", ids[0])


def tree(top: str) -> list[tuple[str, int]]:
    return sorted((os.path.relpath(os.path.join(d, n), top), os.lstat(os.path.join(d, n)).st_ino)
                  for d, dirs, files in os.walk(top) for n in dirs + files)


@pytest.mark.parametrize("case", BAD)
def test_bad_input_removes_nothing(bad, case):
    base, root, snap = bad
    args, says = BAD[case]
    before = tree(base)
    res = cowfs("snapshot", "gc", *(a.format(base=base, root=root, snap=snap) for a in args))
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.splitlines() == [f"cowfs: {says.format(base=base, snap=snap)}"]
    assert tree(base) == before


def test_a_user_who_cannot_write_the_root_is_refused(bad):
    base, root, _ = bad
    before = tree(base)
    refused(as_user(COWFS, "snapshot", "gc", root),
            f"{root}/snapshots is not writable (run gc as its builder)")
    assert tree(base) == before


# ---------------------------------------------------------------------------------------------
# sandboxes: the flock their daemons hold


@pytest.fixture
def home(harness):
    h = user_dir(os.path.join(overlay.new_dir("home"), "home"))
    yield h
    unmount_below(h)


def sandbox(home: str, name: str) -> Sandbox:
    return Sandbox(os.path.join(home, f"state-{name}"), user_dir(os.path.join(home, f"mnt-{name}")))


def daemon_of(sb: Sandbox) -> int:
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()
            and f"\0{sb.state}\0".encode() in _cmdline(p)]
    assert len(pids) == 1, pids
    return pids[0]


def unmount(sb: Sandbox) -> None:
    """Unmount and wait for the daemon to exit: it lets go of its locks just after."""
    pid = daemon_of(sb)
    sb.umount()
    wait_dead(pid)


def reads_its_snapshot(sb: Sandbox, snap: str) -> bool:
    with open(os.path.join(snap, "MANIFEST")) as f:
        manifest = f.read()
    return sb.ops([["read_file", "MANIFEST"]]) == [{"ok": manifest}]


def test_a_mounted_sandbox_keeps_its_snapshot(wheels, home):
    root, (s1, s2, s3) = build_weeks(wheels, 3)
    old, new = sandbox(home, "old"), sandbox(home, "new")
    # a part of it: the lock is on the snapshot dir all the same
    ok(old.mount(os.path.join(root, "snapshots", s1), "--subdir", "wheels"))
    ok(new.mount(root))  # current: s3
    lines = gc(root, "--keep", "1")
    assert lines[:2] == [f"gc: in use, kept snapshots/{s1}", f"gc: removed snapshots/{s2}"]
    assert re.fullmatch(r"gc \S+: 1 snapshot dir removed, 1 in use, 1 kept; 2 store objects "
                        r"removed; \d+ bytes freed", lines[2]), lines[2]
    assert snapshots(root) == {s1, s3}
    wheels_of_s1 = sorted(os.listdir(os.path.join(root, "snapshots", s1, "wheels")))
    assert old.ops([["listdir", "."]]) == [{"ok": wheels_of_s1}]
    unmount(old)
    assert gc(root, "--keep", "1")[0] == f"gc: removed snapshots/{s1}"
    assert snapshots(root) == {s3}
    assert reads_its_snapshot(new, os.path.join(root, "snapshots", s3))
    unmount(new)


def test_a_killed_daemon_lets_go_of_its_snapshot(wheels, home):
    root, (s1, s2) = build_weeks(wheels, 2)
    sb = sandbox(home, "killed")
    ok(sb.mount(os.path.join(root, "snapshots", s1)))
    assert gc(root, "--keep", "1")[0] == f"gc: in use, kept snapshots/{s1}"
    pid = daemon_of(sb)
    os.kill(pid, signal.SIGKILL)
    wait_dead(pid)
    assert gc(root, "--keep", "1")[0] == f"gc: removed snapshots/{s1}"
    assert snapshots(root) == {s2}
    sb.umount()  # the dead mount


ROUNDS = 20


def race(*calls) -> list:
    """Run each (fn, *args) in its own thread after a random delay of up to 0.4 s (a cowfs
    command takes longer to start): their results."""
    got: list = [None] * len(calls)

    def run(k: int, delay: float) -> None:
        time.sleep(delay)
        got[k] = calls[k][0](*calls[k][1:])

    threads = [threading.Thread(target=run, args=(k, random.uniform(0, 0.4)))
               for k in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got


def test_mounts_racing_with_gc_never_lose_their_snapshot(wheels, home):
    """Each round a fresh old snapshot (older than current: gc --keep 1 removes it unless it is
    in use), and a sandbox mount of it started with gc. Either the mount wins (gc keeps the
    snapshot, the sandbox reads it) or gc does (the mount is refused, as for a snapshot that
    does not exist); never both. The winners stay mounted through the later rounds' gc and
    read their snapshot again at the end."""
    root, (newest,) = build_weeks(wheels, 1)
    mounted: list[tuple[Sandbox, str]] = []
    refusals = 0
    for i in range(ROUNDS):
        name = f"20000101T0000{i:02d}Z-old{i:05d}"
        old = os.path.join(root, "snapshots", name)
        subprocess.run(["cp", "-al", os.path.join(root, "snapshots", newest), old], check=True)
        sb = sandbox(home, f"race{i}")
        mount, swept = race((sb.mount, old), (cowfs, "snapshot", "gc", root, "--keep", "1"))
        assert swept.returncode == 0, swept.stderr
        removed = f"gc: removed snapshots/{name}\n" in swept.stdout
        if mount.returncode == 0:
            assert not removed and os.path.isdir(old), swept.stdout
            assert reads_its_snapshot(sb, old)
            mounted.append((sb, old))
        else:
            refused(mount, f"snapshot {old} does not exist")
            assert removed and not os.path.lexists(old), swept.stdout
            assert not os.path.lexists(sb.state)
            refusals += 1
    print(f"{len(mounted)} mounts won, {refusals} refused")
    unmount_then_gc(root, mounted, newest)


def unmount_then_gc(root: str, mounted: list[tuple[Sandbox, str]], last: str) -> None:
    """Every sandbox still reads its snapshot; once they are unmounted, gc --keep 1 leaves LAST
    and the objects it links."""
    for sb, snap in mounted:
        assert reads_its_snapshot(sb, snap)
        unmount(sb)
    gc(root, "--keep", "1")
    assert snapshots(root) == {last}
    assert all(n >= 2 for n in store_links(root).values())


def test_mounts_of_a_root_racing_with_a_rebuild_and_gc(wheels, home):
    """Each round a rebuild (a new snapshot, `current` switched to it) then gc --keep 1 race a
    sandbox mount of ROOT. The mount resolves `current` before or after the switch; if gc
    removes what it resolved before it holds its lock, it resolves `current` again. So it is
    always mounted, over a snapshot that stays for as long as it runs."""
    root, _ = build_weeks(wheels, 1)
    snaps = os.path.join(root, "snapshots")

    def rebuild_and_gc(name: str) -> subprocess.CompletedProcess:
        point_current(root, name)
        return cowfs("snapshot", "gc", root, "--keep", "1")

    mounted: list[tuple[Sandbox, str]] = []
    over_before = 0
    for i in range(ROUNDS // 2):
        before = os.path.realpath(os.path.join(root, "current"))
        name = f"20990101T0000{i:02d}Z-new{i:05d}"  # newer than every other
        subprocess.run(["cp", "-al", before, os.path.join(snaps, name)], check=True)
        sb = sandbox(home, f"root{i}")
        mount, swept = race((sb.mount, root), (rebuild_and_gc, name))
        ok(mount)
        assert swept.returncode == 0, swept.stderr
        with open(os.path.join(sb.state, "snapshot")) as f:
            over = f.read().rstrip("\n")
        assert over in (before, os.path.join(snaps, name))
        if over == before:  # gc saw it, and found it in use
            assert f"gc: in use, kept snapshots/{os.path.basename(before)}\n" in swept.stdout
            over_before += 1
        assert reads_its_snapshot(sb, over)
        mounted.append((sb, over))
    print(f"{over_before} of {len(mounted)} mounts over the snapshot before the rebuild")
    unmount_then_gc(root, mounted, name)


def test_a_snapshot_removed_between_resolving_and_locking_is_resolved_again(wheels, home):
    """The window between resolving `current` and locking the snapshot, made wide: strace delays
    each flock(2) of the mount command by 3 s. The mount has resolved and opened s1 when
    `current` moves to s2 and gc removes s1; once it holds its lock the mount finds s1's path
    gone, resolves `current` again, and mounts s2."""
    root, (s1, s2) = build_weeks(wheels, 2)
    point_current(root, s1)
    old = os.path.join(root, "snapshots", s1)
    sb = sandbox(home, "window")
    e = overlay.env()
    mount = subprocess.Popen(
        overlay.as_user(["strace", "-o", "/dev/null", "-e", "trace=flock", "-e",
                         "inject=flock:delay_enter=3000000", e.cowfs_bin, "sandbox", "mount",
                         "--snapshot", root, "--state", sb.state, sb.mnt]),
        cwd=e.base, env=overlay.user_env(e), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not opened_by_a_mount(sb, old):
        assert mount.poll() is None and time.monotonic() < deadline, mount.communicate()
        time.sleep(0.02)
    point_current(root, s2)
    assert gc(root, "--keep", "1")[0] == f"gc: removed snapshots/{s1}"
    out, err = mount.communicate(timeout=60)
    assert mount.returncode == 0 and err == "", (mount.returncode, err)
    with open(os.path.join(sb.state, "snapshot")) as f:
        assert f.read() == os.path.join(root, "snapshots", s2) + "\n"
    assert reads_its_snapshot(sb, os.path.join(root, "snapshots", s2))
    unmount(sb)


def opened_by_a_mount(sb: Sandbox, path: str) -> bool:
    """Whether the command mounting SB has PATH open."""
    for pid in os.listdir("/proc"):
        if pid.isdigit() and f"\0{sb.state}\0".encode() in _cmdline(pid):
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                        return True
                except OSError:
                    pass
    return False

"""The daemon's life: `cowfs mount` returns once the mount is live, `cowfs umount`, signals,
mount(8) and fstab, the read-only view without upper, foreground mode, startup failures.

The CLI runs as a subprocess (`python -m cowfs`, the checkout's package first on PYTHONPATH).
Every file access through a mount happens in a subprocess with a timeout, so a hung filesystem
fails the test instead of hanging the run; every mount is taken down at teardown. Most tests
mount as root (the test process); cases that must not leave the test's mount namespace run a
shell script in a throwaway one (`unshare -m`). Two tests swap the core for a tiny stand-in
(tests of the lifecycle itself: a crash in the main loop, a core that refuses to start).
"""
from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cowfs.config import mount_at, read_mountinfo  # noqa: E402

IS_ROOT = os.geteuid() == 0
pytestmark = pytest.mark.skipif(not IS_ROOT, reason="mount tests run as root (see TESTING.md)")


# ---------------------------------------------------------------------------------------------
# helpers


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def cowfs(*args: str, timeout: float = 60, env: dict | None = None,
          python_args: tuple[str, ...] = ("-m", "cowfs")) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *python_args, *args], capture_output=True, text=True,
                          timeout=timeout, env=_env(env), stdin=subprocess.DEVNULL, cwd="/")


def sh(script: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """Run a shell script (file access through a mount) with a timeout."""
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=_env(), **kw)


def py(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def wait_for(pred, timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def daemon_pid(log_file: str) -> int:
    m = re.search(r"mounted \S+ \(pid (\d+)\)", Path(log_file).read_text())
    assert m, f"no 'mounted ... (pid N)' line in the log:\n{Path(log_file).read_text()}"
    return int(m.group(1))


def fstype_at(path: str) -> str | None:
    m = mount_at(path, read_mountinfo())
    return None if m is None else m.fstype


class Box:
    """Scratch dir with two lowers (lo: the top one), up/ and mnt/; readable by everyone."""

    def __init__(self) -> None:
        base = os.environ.get("COWFS_TEST_TMP", "/tmp")
        self.root = os.path.realpath(tempfile.mkdtemp(prefix="cowfs-life-", dir=base))
        os.chmod(self.root, 0o755)
        for d in ("lo", "lo2", "up", "mnt"):
            os.mkdir(self.p(d))
        Path(self.p("lo/file")).write_text("lower\n")
        Path(self.p("lo2/file")).write_text("hidden by lo\n")
        Path(self.p("lo2/only2")).write_text("from lo2\n")
        os.mkdir(self.p("lo/d"))
        self.pids: list[int] = []

    def p(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    @property
    def mnt(self) -> str:
        return self.p("mnt")

    @property
    def log(self) -> str:
        return self.p("log")

    def cleanup(self) -> None:
        for m in reversed(read_mountinfo()):
            if m.mountpoint.startswith(self.root + "/"):
                subprocess.run(["fusermount3", "-uz", m.mountpoint], capture_output=True)
                if mount_at(m.mountpoint) is not None:
                    subprocess.run(["umount", "-l", m.mountpoint], capture_output=True)
        for pid in self.pids:
            if not process_gone(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def box():
    b = Box()
    yield b
    b.cleanup()


def mount_bg(box: Box, *args: str) -> int:
    """cowfs mount ARGS MNT in the background with a log; returns the daemon's pid."""
    res = cowfs("mount", *args, "--log", box.log, box.mnt)
    assert res.returncode == 0, f"cowfs mount failed ({res.returncode}): {res.stderr}"
    assert res.stderr == "" and res.stdout == ""
    pid = daemon_pid(box.log)
    box.pids.append(pid)
    return pid


# A stand-in for the core (cowfs.operations), injected through sys.modules by a runner script:
# "hello" reads "hello\n", looking up "crash" raises a non-FUSEError (ends pyfuse3.main).
FAKE_RUNNER = '''
import errno, os, stat, sys, types
sys.path.insert(0, {repo!r})
import pyfuse3

class FakeOps(pyfuse3.Operations):
    def __init__(self, cfg):
        super().__init__()
        if os.environ.get("FAKE_CORE_REFUSES"):
            raise RuntimeError("the stand-in core refuses to start")

    async def getattr(self, inode, ctx=None):
        e = pyfuse3.EntryAttributes()
        if inode == pyfuse3.ROOT_INODE:
            e.st_mode = stat.S_IFDIR | 0o755
        elif inode == 2:
            e.st_mode, e.st_size = stat.S_IFREG | 0o644, 6
        else:
            raise pyfuse3.FUSEError(errno.ENOENT)
        e.st_ino, e.st_nlink, e.attr_timeout, e.entry_timeout = inode, 1, 0, 0
        return e

    async def lookup(self, parent, name, ctx=None):
        if name == b"hello":
            return await self.getattr(2)
        if name == b"crash":
            raise ValueError("stand-in core crashed")
        raise pyfuse3.FUSEError(errno.ENOENT)

    async def open(self, inode, flags, ctx):
        return pyfuse3.FileInfo(fh=inode)

    async def read(self, fh, off, size):
        return b"hello\\n"[off:off + size]

mod = types.ModuleType("cowfs.operations")
mod.CowOperations = FakeOps
sys.modules["cowfs.operations"] = mod
from cowfs.cli import main
sys.exit(main(sys.argv[1:]))
'''


@pytest.fixture
def fake_runner(box) -> str:
    path = box.p("fake_runner.py")
    Path(path).write_text(FAKE_RUNNER.format(repo=str(REPO)))
    return path


# ---------------------------------------------------------------------------------------------
# background mount, umount, signals


def test_mount_returns_once_live_then_umount(box):
    pid = mount_bg(box, "--lower", box.p("lo"), "--upper", box.p("up"))
    # no waiting: the mount answers as soon as `cowfs mount` has returned
    m = mount_at(box.mnt, read_mountinfo())
    assert m is not None and m.fstype == "fuse.cowfs" and m.source == "cowfs"
    assert "allow_other" in Path("/proc/self/mountinfo").read_text()  # root mounts for everyone
    r = sh(f"cat {box.mnt}/file && echo new > {box.mnt}/new && ls {box.mnt}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[0] == "lower"
    assert Path(box.p("up/new")).read_text() == "new\n"
    # the default work dir: a hidden sibling of upper, with work/ inside
    assert os.path.isdir(box.p(".up.cowfs-work/work"))
    assert not process_gone(pid)

    res = cowfs("umount", box.mnt)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    assert fstype_at(box.mnt) is None
    wait_for(lambda: process_gone(pid), what="the daemon to exit")
    assert "unmounted" in Path(box.log).read_text()


def test_umount_twice_is_a_usage_error(box):
    mount_bg(box, "--lower", box.p("lo"), "--upper", box.p("up"))
    assert cowfs("umount", box.mnt).returncode == 0
    res = cowfs("umount", box.mnt)
    assert res.returncode == 2 and res.stderr.strip() == f"cowfs: {box.mnt} is not mounted"


def test_umount_of_a_stopped_daemon_answers_and_abort_frees_its_waiters(box):
    """A daemon that does not answer (SIGSTOP) must not hang `cowfs umount`, also once the
    kernel dropped the root's attributes (a copy-up in the root changes its ctime): a busy
    mount is refused at once with the way out, and --abort (root) fails the requests it holds
    (ECONNABORTED) and detaches the mount."""
    pid = mount_bg(box, "--lower", box.p("lo"), "--upper", box.p("up"))
    assert sh(f"echo more >> {box.mnt}/file").returncode == 0
    os.kill(pid, signal.SIGSTOP)
    try:
        waiter = subprocess.Popen(["cat", f"{box.mnt}/file"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        time.sleep(0.5)
        assert waiter.poll() is None  # blocked on the stopped daemon
        res = cowfs("umount", box.mnt, timeout=60)
        assert res.returncode == 1 and "busy (use -z for a lazy unmount)" in res.stderr
        res = cowfs("umount", "--abort", box.mnt, timeout=60)
        assert res.returncode == 0 and res.stderr == "", res.stderr
        _, err = waiter.communicate(timeout=30)
        assert waiter.returncode != 0 and "connection abort" in err, err
        assert fstype_at(box.mnt) is None
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: process_gone(pid), what="the aborted daemon to exit")
    assert Path(box.p("up/file")).read_text() == "lower\nmore\n"


def test_abort_needs_root(box):
    """--abort writes a root-only file: anyone else gets one line and exit 2, mount kept."""
    user = _test_user()
    if user is None or not shutil.which("setpriv"):
        pytest.fail("needs an unprivileged user and setpriv (make test creates cowfs-test)")
    mount_bg(box, "--lower", box.p("lo"), "--upper", box.p("up"))
    res = subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                          "--clear-groups", sys.executable, "-m", "cowfs", "umount", "--abort",
                          box.mnt], capture_output=True, text=True, timeout=60, cwd="/",
                         stdin=subprocess.DEVNULL, env=_env())
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert res.stderr.splitlines() == [
        "cowfs: --abort needs root (it writes the FUSE connection's abort file)"]
    assert fstype_at(box.mnt) == "fuse.cowfs"


def test_umount_of_a_stopped_idle_daemon(box):
    pid = mount_bg(box, "--lower", box.p("lo"), "--upper", box.p("up"))
    assert sh(f"echo more >> {box.mnt}/file").returncode == 0
    os.kill(pid, signal.SIGSTOP)
    try:
        res = cowfs("umount", box.mnt, timeout=60)
        assert res.returncode == 0, res.stderr
        assert fstype_at(box.mnt) is None
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: process_gone(pid), what="the daemon to exit")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_unmounts_cleanly(box, sig):
    pid = mount_bg(box, "--lower", box.p("lo"), "--upper", box.p("up"))
    assert sh(f"echo kept > {box.mnt}/kept").returncode == 0
    os.kill(pid, sig)
    wait_for(lambda: fstype_at(box.mnt) is None, what="the mount to go")
    wait_for(lambda: process_gone(pid), what="the daemon to exit")
    log = Path(box.log).read_text()
    assert f"got {sig.name}: unmounting" in log and "unmounted" in log
    assert "Traceback" not in log
    assert Path(box.p("up/kept")).read_text() == "kept\n"


def test_debug_logs_every_request_to_the_log_file(box):
    mount_bg(box, "-o", f"lowerdir={box.p('lo')},upperdir={box.p('up')},debug")
    assert sh(f"cat {box.mnt}/file").returncode == 0
    assert cowfs("umount", box.mnt).returncode == 0
    log = Path(box.log).read_text()
    assert re.search(r" DEBUG cowfs: lookup\(", log), log


def test_kernel_overlay_workdir_is_accepted(box):
    """A work dir a kernel overlay mount left behind (WORK/work, mode 000) interchanges."""
    os.makedirs(box.p("w"))
    os.mkdir(box.p("kmnt"))
    opts = f"userxattr,lowerdir={box.p('lo')},upperdir={box.p('up')},workdir={box.p('w')}"
    k = sh(f"""unshare -m --propagation private sh -ec '
        mount -t overlay overlay -o {opts} {box.p("kmnt")}
        echo from-kernel > {box.p("kmnt")}/k
        umount {box.p("kmnt")}'""")
    if k.returncode != 0:
        pytest.skip(f"kernel overlay mount not possible here: {k.stderr}")
    assert os.listdir(box.p("w")) == ["work"]
    mount_bg(box, "--lower", box.p("lo"), "--upper", box.p("up"), "--work", box.p("w"))
    r = sh(f"cat {box.mnt}/k {box.mnt}/file")
    assert r.returncode == 0 and r.stdout == "from-kernel\nlower\n", r.stderr
    assert os.stat(box.p("w/work")).st_mode & 0o700 == 0o700  # the kernel left it at 000
    assert cowfs("umount", box.mnt).returncode == 0


# ---------------------------------------------------------------------------------------------
# no upper: a read-only merged view


def test_no_upper_is_a_read_only_merged_view(box):
    before = sorted(os.listdir(box.root))
    mount_bg(box, "-o", f"lowerdir={box.p('lo')}:{box.p('lo2')}")
    m = mount_at(box.mnt, read_mountinfo())
    assert m is not None and m.fstype == "fuse.cowfs"
    r = py(f"""
        import errno, os, json
        mnt = {box.mnt!r}
        out = {{"names": sorted(os.listdir(mnt)),
               "file": open(os.path.join(mnt, "file")).read(),
               "only2": open(os.path.join(mnt, "only2")).read()}}
        def err(fn, *a):
            try:
                fn(*a)
            except OSError as e:
                return errno.errorcode[e.errno]
            return "no error"
        out["create"] = err(os.open, os.path.join(mnt, "new"), os.O_CREAT | os.O_WRONLY, 0o644)
        out["write_open"] = err(os.open, os.path.join(mnt, "file"), os.O_WRONLY)
        out["mkdir"] = err(os.mkdir, os.path.join(mnt, "newdir"))
        out["unlink"] = err(os.unlink, os.path.join(mnt, "file"))
        out["rename"] = err(os.rename, os.path.join(mnt, "file"), os.path.join(mnt, "f2"))
        out["chmod"] = err(os.chmod, os.path.join(mnt, "file"), 0o600)
        print(json.dumps(out))
    """)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["names"] == ["d", "file", "only2"]
    assert out["file"] == "lower\n" and out["only2"] == "from lo2\n"
    for op in ("create", "write_open", "mkdir", "unlink", "rename", "chmod"):
        assert out[op] == "EROFS", (op, out[op])
    assert cowfs("umount", box.mnt).returncode == 0
    # no work dir anywhere, lowers untouched
    assert sorted(os.listdir(box.root)) == sorted(before + ["log"])
    assert sorted(os.listdir(box.p("lo"))) == ["d", "file"]


# ---------------------------------------------------------------------------------------------
# foreground


def test_foreground_serves_until_sigint(box):
    proc = subprocess.Popen(
        [sys.executable, "-m", "cowfs", "mount", "--foreground", "--debug", "--lower",
         box.p("lo"), "--upper", box.p("up"), box.mnt],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(), cwd="/")
    box.pids.append(proc.pid)
    try:
        wait_for(lambda: fstype_at(box.mnt) == "fuse.cowfs" or proc.poll() is not None,
                 what="the foreground mount")
        assert proc.poll() is None, proc.communicate(timeout=10)
        r = sh(f"cat {box.mnt}/file")
        assert r.returncode == 0 and r.stdout == "lower\n", r.stderr
        assert proc.poll() is None  # still in front
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert fstype_at(box.mnt) is None
    assert out == ""
    assert "mounted " in err and "got SIGINT: unmounting" in err and "unmounted" in err
    assert re.search(r" DEBUG cowfs: lookup\(", err)  # --debug logs requests to stderr


# ---------------------------------------------------------------------------------------------
# mount(8) and fstab


def test_mount_helper_through_mount8_and_fstab(box):
    """`mount -t fuse.cowfs cowfs MNT -o ...` and an fstab line, through mount.fuse3.

    mount(8) drops PATH before it runs mount.fuse3, whose /bin/sh then finds `cowfs` only in
    the default path (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin). So the
    script binds a directory holding a `cowfs` wrapper over /usr/local/sbin, in a throwaway
    mount namespace."""
    if not shutil.which("mount.fuse3") and not os.path.exists("/sbin/mount.fuse3"):
        pytest.skip("mount.fuse3 (package fuse3) is not installed")
    shim = box.p("shim")
    os.mkdir(shim)
    Path(shim, "cowfs").write_text(
        "#!/bin/sh\n"
        f"PYTHONPATH={shlex.quote(str(REPO))} exec {shlex.quote(sys.executable)} -m cowfs \"$@\"\n")
    os.chmod(Path(shim, "cowfs"), 0o755)
    os.mkdir(box.p("w"))
    lo, up, w, mnt = box.p("lo"), box.p("up"), box.p("w"), box.mnt
    Path(box.p("fstab")).write_text(
        f"cowfs {mnt} fuse.cowfs lowerdir={lo},upperdir={up},workdir={w},"
        "noauto,nofail,_netdev,x-systemd.requires=foo.service,noatime 0 0\n")
    script = f"""
        set -e
        mount --bind {shim} /usr/local/sbin
        mount -t fuse.cowfs cowfs {mnt} -o lowerdir={lo},upperdir={up},workdir={w},nosuid,nodev
        findmnt -n -o FSTYPE,SOURCE {mnt}
        cat {mnt}/file
        echo via-mount8 > {mnt}/m8
        umount {mnt}
        findmnt {mnt} || echo unmounted
        mount --fstab {box.p("fstab")} {mnt}
        findmnt -n -o FSTYPE,OPTIONS {mnt}
        echo via-fstab > {mnt}/fs
        umount {mnt}
        set +e
        mount -t fuse.cowfs cowfs {mnt} -o lowerdir={lo},frobnicate 2>&1
        echo "bad option status $?"
    """
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        textwrap.dedent(script)],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                       cwd="/")  # mount(8) turns a source that names a path into that path
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["fuse.cowfs", "cowfs"]
    assert lines[1] == "lower"
    assert lines[2] == "unmounted"
    assert lines[3].startswith("fuse.cowfs") and "noatime" in lines[3]
    assert "cowfs: unknown mount option 'frobnicate'" in lines[4]
    assert lines[5] == "bad option status 2"
    assert Path(up, "m8").read_text() == "via-mount8\n"
    assert Path(up, "fs").read_text() == "via-fstab\n"
    assert os.path.isdir(Path(w, "work"))


# ---------------------------------------------------------------------------------------------
# rootless


def _test_user() -> pwd.struct_passwd | None:
    for name in filter(None, [os.environ.get("COWFS_TEST_USER"), "cowfs-test", "nobody"]):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


def test_rootless_mount_and_umount_through_fusermount3(box):
    user = _test_user()
    if user is None or not shutil.which("setpriv") or not shutil.which("fusermount3"):
        pytest.skip("needs an unprivileged user, setpriv and fusermount3")
    drop = f"setpriv --reuid={user.pw_uid} --regid={user.pw_gid} --clear-groups"
    probe = sh(f"{drop} {shlex.quote(sys.executable)} -c 'import cowfs.cli, pyfuse3, trio'")
    if probe.returncode != 0:
        pytest.skip(f"user {user.pw_name} cannot run {sys.executable} with cowfs: {probe.stderr}")
    for d in (".", "up", "mnt"):
        os.chown(box.p(d), user.pw_uid, user.pw_gid)
    node = box.p("fuse-666")  # /dev/fuse as a normal distribution has it, in this namespace only
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(10, 229))
    os.chmod(node, 0o666)
    cow = f"{drop} {shlex.quote(sys.executable)} -m cowfs"
    script = f"""
        set -e
        mount --bind {node} /dev/fuse
        {cow} mount --lower {box.p("lo")} --upper {box.p("up")} {box.mnt}
        findmnt -n -o FSTYPE,OPTIONS {box.mnt}
        {drop} cat {box.mnt}/file
        {drop} sh -c 'echo mine > {box.mnt}/mine'
        {cow} umount {box.mnt}
        findmnt {box.mnt} || echo unmounted
    """
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        textwrap.dedent(script)], capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL, env=_env(), cwd="/")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    lines = r.stdout.splitlines()
    assert lines[0].startswith("fuse.cowfs") and "allow_other" not in lines[0]
    assert f"user_id={user.pw_uid}" in lines[0]
    assert lines[1:] == ["lower", "unmounted"]
    st = os.stat(box.p("up/mine"))
    assert st.st_uid == user.pw_uid
    assert os.stat(box.p(".up.cowfs-work")).st_uid == user.pw_uid


# ---------------------------------------------------------------------------------------------
# failures after validation (a stand-in core)


def test_core_that_cannot_start_reports_one_line_and_leaves_nothing(box, fake_runner):
    before = sorted(os.listdir(box.root))
    res = cowfs("mount", "--lower", box.p("lo"), "--upper", box.p("up"), box.mnt,
                python_args=(fake_runner,), env={"FAKE_CORE_REFUSES": "1"})
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        "cowfs: cannot start the filesystem: the stand-in core refuses to start"]
    assert sorted(os.listdir(box.root)) == before  # the default work dir was removed again
    assert fstype_at(box.mnt) is None


def test_crash_in_main_loop_unmounts_lazily_and_fails(box, fake_runner):
    proc = subprocess.Popen(
        [sys.executable, fake_runner, "mount", "-f", "--lower", box.p("lo"), "--upper",
         box.p("up"), box.mnt],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(), cwd="/")
    box.pids.append(proc.pid)
    try:
        wait_for(lambda: fstype_at(box.mnt) == "fuse.cowfs" or proc.poll() is not None,
                 what="the mount")
        assert sh(f"cat {box.mnt}/hello").stdout == "hello\n"
        r = sh(f"stat {box.mnt}/crash")
        assert r.returncode != 0
        proc.wait(timeout=30)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert "main loop failed" in err and "stand-in core crashed" in err
    wait_for(lambda: fstype_at(box.mnt) is None, what="the lazy unmount")


def test_background_startup_failure_reaches_the_caller(box, fake_runner):
    """The daemon's error comes back through the pipe: one line, status 1, no daemon left."""
    res = cowfs("mount", "--lower", box.p("lo"), "--upper", box.p("up"), "--log", box.log,
                box.mnt, python_args=(fake_runner,), env={"FAKE_CORE_REFUSES": "1"})
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        "cowfs: cannot start the filesystem: the stand-in core refuses to start"]
    assert "refuses to start" in Path(box.log).read_text()

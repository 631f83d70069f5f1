"""`cowfs mount` with bad input: exactly one line on stderr naming the problem, exit status 2,
and nothing created or mounted.

Each case runs the CLI as a subprocess (`python -m cowfs`, the checkout's package first on
PYTHONPATH). Cases that need a changed machine (a mount on the mountpoint, no /dev/fuse, ...) run
it inside a throwaway private mount namespace (`unshare -m`, root only) that a small shell
script prepares; cases about what a non-root user may do drop to an unprivileged user there
(COWFS_TEST_USER, else cowfs-test, else nobody).
"""
from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cowfs.cli import parse_o_options  # noqa: E402
from cowfs.config import UsageError, read_mountinfo  # noqa: E402

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT or not shutil.which("unshare"),
                                reason="needs root and unshare(1) for a private mount namespace")


# ---------------------------------------------------------------------------------------------
# helpers


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_cowfs(*args: str, setup: str | None = None, user: pwd.struct_passwd | None = None,
              timeout: float = 60) -> subprocess.CompletedProcess:
    """python -m cowfs ARGS; as `user`; after `setup` (sh, as root) in a private mount ns."""
    cmd = [sys.executable, "-m", "cowfs", *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
               *cmd]
    if setup is not None:
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-ec",
               setup + '\nexec "$@"', "sh", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(),
                          stdin=subprocess.DEVNULL, cwd="/")


def tree(root: str) -> set[tuple[str, int]]:
    """Every path below root (hidden ones too) with its file type."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            out.add((os.path.relpath(p, root), stat.S_IFMT(os.lstat(p).st_mode)))
    return out


def mounts_below(root: str) -> list[str]:
    return [m.mountpoint for m in read_mountinfo() if m.mountpoint.startswith(root + "/")]


class Box:
    """A scratch dir with lo/ (a lower with a file), up/, mnt/; readable by everyone."""

    def __init__(self) -> None:
        base = os.environ.get("COWFS_TEST_TMP", "/tmp")
        self.root = os.path.realpath(tempfile.mkdtemp(prefix="cowfs-cli-", dir=base))
        os.chmod(self.root, 0o755)
        for d in ("lo", "up", "mnt"):
            os.mkdir(self.p(d))
        Path(self.p("lo/file")).write_text("lower\n")
        Path(self.p("plainfile")).write_text("x\n")

    def p(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def give_to(self, user: pwd.struct_passwd, *rels: str) -> None:
        for rel in rels:
            os.chown(self.p(rel), user.pw_uid, user.pw_gid)


@pytest.fixture
def box():
    b = Box()
    yield b
    for mp in reversed(mounts_below(b.root)):
        subprocess.run(["umount", "-l", mp], capture_output=True)
    shutil.rmtree(b.root, ignore_errors=True)


def expect_usage_error(box: Box, *args: str, says: list[str], setup: str | None = None,
                       user: pwd.struct_passwd | None = None) -> str:
    """Run cowfs; assert: exit 2, one stderr line with every fragment of `says`, nothing new
    below box (no work dir, no files) and no mount below box."""
    before = tree(box.root)
    mounts = mounts_below(box.root)
    res = run_cowfs(*args, setup=setup, user=user)
    lines = res.stderr.splitlines()
    assert res.returncode == 2, f"exit {res.returncode}, stderr:\n{res.stderr}"
    assert len(lines) == 1, f"want exactly one line on stderr, got:\n{res.stderr}"
    assert lines[0].startswith("cowfs: "), lines[0]
    for fragment in says:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert res.stdout == ""
    assert tree(box.root) == before, "something was created"
    assert mounts_below(box.root) == mounts, "something was mounted"
    return lines[0]


def _usable_user() -> pwd.struct_passwd | None:
    for name in filter(None, [os.environ.get("COWFS_TEST_USER"), "cowfs-test", "nobody"]):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


@pytest.fixture(scope="module")
def user() -> pwd.struct_passwd:
    """An unprivileged user who can run this python and import cowfs (root only)."""
    if not IS_ROOT or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv(1) to act as an unprivileged user")
    u = _usable_user()
    if u is None:
        pytest.skip("no unprivileged user (set COWFS_TEST_USER)")
    probe = subprocess.run(
        ["setpriv", f"--reuid={u.pw_uid}", f"--regid={u.pw_gid}", "--clear-groups",
         sys.executable, "-c", "import cowfs.cli, cowfs.config"],
        capture_output=True, text=True, env=_env(), cwd="/", timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"user {u.pw_name} cannot run {sys.executable} with cowfs: {probe.stderr}")
    return u


def _fuse_node(box: Box, mode: int) -> str:
    """A copy of the /dev/fuse device node with `mode`, to bind over /dev/fuse in a namespace."""
    path = box.p(f".fuse-{mode:o}")
    os.mknod(path, stat.S_IFCHR | mode, os.makedev(10, 229))
    os.chmod(path, mode)
    return path


# ---------------------------------------------------------------------------------------------
# missing or wrong layers and mountpoint


def test_missing_lower(box):
    expect_usage_error(box, "mount", "--lower", box.p("nope"), "--upper", box.p("up"),
                       box.p("mnt"), says=[f"lower directory {box.p('nope')} does not exist"])


def test_lower_not_a_directory(box):
    expect_usage_error(box, "mount", "--lower", box.p("plainfile"), "--upper", box.p("up"),
                       box.p("mnt"),
                       says=[f"lower directory {box.p('plainfile')} is not a directory"])


def test_missing_second_lower_in_lowerdir(box):
    expect_usage_error(box, "mount", "-o", f"lowerdir={box.p('lo')}:{box.p('gone')}",
                       box.p("mnt"), says=[f"lower directory {box.p('gone')} does not exist"])


def test_missing_upper(box):
    expect_usage_error(box, "mount", "--lower", box.p("lo"), "--upper", box.p("nope"),
                       box.p("mnt"), says=[f"upper directory {box.p('nope')} does not exist"])


def test_upper_not_a_directory(box):
    expect_usage_error(box, "mount", "--lower", box.p("lo"), "--upper", box.p("plainfile"),
                       box.p("mnt"),
                       says=[f"upper directory {box.p('plainfile')} is not a directory"])


def test_missing_mountpoint(box):
    expect_usage_error(box, "mount", "--lower", box.p("lo"), "--upper", box.p("up"),
                       box.p("nope"), says=[f"mountpoint {box.p('nope')} does not exist"])


def test_mountpoint_not_a_directory(box):
    expect_usage_error(box, "mount", "--lower", box.p("lo"), "--upper", box.p("up"),
                       box.p("plainfile"),
                       says=[f"mountpoint {box.p('plainfile')} is not a directory"])


# ---------------------------------------------------------------------------------------------
# upper against lowers (real paths)


def test_upper_equal_to_lower_through_a_symlink(box):
    os.symlink("lo", box.p("lo-link"))
    expect_usage_error(box, "mount", "--lower", box.p("lo"), "--upper", box.p("lo-link"),
                       box.p("mnt"),
                       says=[f"upper directory {box.p('lo-link')} is the same directory as "
                             f"lower directory {box.p('lo')}"])


def test_upper_inside_lower(box):
    os.mkdir(box.p("lo/sub"))
    expect_usage_error(box, "mount", "--lower", box.p("lo"), "--upper", box.p("lo/sub"),
                       box.p("mnt"),
                       says=[f"upper directory {box.p('lo/sub')} is inside lower directory "
                             f"{box.p('lo')}"])


def test_upper_containing_lower(box):
    os.mkdir(box.p("up/inner"))
    expect_usage_error(box, "mount", "--lower", box.p("lo"), "--lower", box.p("up/inner"),
                       "--upper", box.p("up"), box.p("mnt"),
                       says=[f"upper directory {box.p('up')} contains lower directory "
                             f"{box.p('up/inner')}"])


# ---------------------------------------------------------------------------------------------
# the work dir


@needs_root
def test_work_on_another_filesystem(box):
    os.mkdir(box.p("otherfs"))
    expect_usage_error(
        box, "mount", "--lower", box.p("lo"), "--upper", box.p("up"), "--work", box.p("otherfs"),
        box.p("mnt"),
        setup=f"mount -t tmpfs cowfs-test-tmpfs {box.p('otherfs')}",
        says=[f"work directory {box.p('otherfs')} is on another filesystem than upper directory "
              f"{box.p('up')}"])


def test_work_equal_to_upper(box):
    expect_usage_error(box, "mount", "--lower", box.p("lo"), "--upper", box.p("up"),
                       "--work", box.p("up"), box.p("mnt"),
                       says=[f"work directory {box.p('up')} is the same directory as upper "
                             f"directory {box.p('up')}"])


def test_work_inside_upper(box):
    expect_usage_error(box, "mount", "--lower", box.p("lo"), "--upper", box.p("up"),
                       "--work", box.p("up/w"), box.p("mnt"),
                       says=[f"work directory {box.p('up/w')} is inside upper directory "
                             f"{box.p('up')}"])


def test_upper_inside_work(box):
    os.makedirs(box.p("w/up2"))
    expect_usage_error(box, "mount", "--lower", box.p("lo"), "--upper", box.p("w/up2"),
                       "--work", box.p("w"), box.p("mnt"),
                       says=[f"upper directory {box.p('w/up2')} is inside work directory "
                             f"{box.p('w')}"])


def test_work_not_empty_and_not_ours(box):
    os.makedirs(box.p("w/work"))  # kernel overlay's own layout is fine ...
    Path(box.p("w/precious.txt")).write_text("user data\n")  # ... anything else is not
    expect_usage_error(box, "mount", "--lower", box.p("lo"), "--upper", box.p("up"),
                       "--work", box.p("w"), box.p("mnt"),
                       says=[f"work directory {box.p('w')} is not empty", "precious.txt"])


def test_default_work_not_empty_and_not_ours(box):
    os.mkdir(box.p(".up.cowfs-work"))
    Path(box.p(".up.cowfs-work/junk")).write_text("")
    expect_usage_error(box, "mount", "--lower", box.p("lo"), "--upper", box.p("up"),
                       box.p("mnt"),
                       says=[f"work directory {box.p('.up.cowfs-work')} is not empty"])


@needs_root
def test_default_work_parent_not_writable(box):
    # the upper's parent becomes read-only (EROFS stops root too); the upper itself stays writable
    os.mkdir(box.p("ro"))
    os.mkdir(box.p("ro/up"))
    setup = "\n".join([
        f"mount --bind {box.p('ro')} {box.p('ro')}",
        f"mount -o remount,bind,ro {box.p('ro')}",
        f"mount --bind {box.p('ro/up')} {box.p('ro/up')}",
        f"mount -o remount,bind,rw {box.p('ro/up')}",
    ])
    line = expect_usage_error(
        box, "mount", "--lower", box.p("lo"), "--upper", box.p("ro/up"), box.p("mnt"),
        setup=setup,
        says=[f"cannot create work directory {box.p('ro/.up.cowfs-work')}",
              "is not writable", "pass --work"])
    assert "pass --work" in line


# ---------------------------------------------------------------------------------------------
# the mountpoint and the machine


@needs_root
def test_mountpoint_already_mounted(box):
    expect_usage_error(box, "mount", "--lower", box.p("lo"), "--upper", box.p("up"),
                       box.p("mnt"),
                       setup=f"mount -t tmpfs cowfs-test-tmpfs {box.p('mnt')}",
                       says=[f"mountpoint {box.p('mnt')} is already mounted"])


@needs_root
def test_no_dev_fuse(box):
    # an empty /dev in the namespace: no FUSE device at all
    expect_usage_error(box, "mount", "--lower", box.p("lo"), "--upper", box.p("up"),
                       box.p("mnt"), setup="mount -t tmpfs cowfs-test-dev /dev",
                       says=["/dev/fuse does not exist"])


def test_dev_fuse_not_openable_by_user(box, user):
    node = _fuse_node(box, 0o600)  # root's, as on these machines by default
    box.give_to(user, ".", "up", "mnt")
    expect_usage_error(box, "mount", "--lower", box.p("lo"), "--upper", box.p("up"),
                       box.p("mnt"), user=user, setup=f"mount --bind {node} /dev/fuse",
                       says=["cannot open /dev/fuse for reading and writing: Permission denied"])


def test_no_fusermount3_for_user(box, user):
    node = _fuse_node(box, 0o666)
    box.give_to(user, ".", "up", "mnt")
    fusermount = os.path.realpath(shutil.which("fusermount3") or "/bin/fusermount3")
    if not os.path.exists(fusermount):
        pytest.skip("fusermount3 is not installed at all")
    setup = f"mount --bind {node} /dev/fuse\nmount --bind /dev/null {fusermount}"
    expect_usage_error(box, "mount", "--lower", box.p("lo"), "--upper", box.p("up"),
                       box.p("mnt"), user=user, setup=setup,
                       says=["fusermount3 not found in PATH"])


def test_mountpoint_not_writable_for_user(box, user):
    node = _fuse_node(box, 0o666)
    box.give_to(user, ".", "up")  # mnt stays root's 0755: fusermount3 would refuse
    expect_usage_error(box, "mount", "--lower", box.p("lo"), "--upper", box.p("up"),
                       box.p("mnt"), user=user, setup=f"mount --bind {node} /dev/fuse",
                       says=[f"no write access to mountpoint {box.p('mnt')}"])


# ---------------------------------------------------------------------------------------------
# options


def test_unknown_option(box):
    expect_usage_error(box, "mount", "-o", f"lowerdir={box.p('lo')},frobnicate", box.p("mnt"),
                       says=["unknown mount option 'frobnicate'"])


def test_unknown_option_in_mount_helper_convention(box):
    # what mount.fuse3 runs for `mount -t fuse.cowfs cowfs MNT -o ...`
    expect_usage_error(box, "cowfs", box.p("mnt"), "-o",
                       f"rw,lowerdir={box.p('lo')},upperdir={box.p('up')},frobnicate=1,dev,suid",
                       says=["unknown mount option 'frobnicate=1'"])


def test_kernel_only_overlay_option(box):
    expect_usage_error(box, "mount", "-o", f"lowerdir={box.p('lo')},index=on", box.p("mnt"),
                       says=["unknown mount option 'index=on'"])


def test_remount_is_refused(box):
    expect_usage_error(box, "cowfs", box.p("mnt"), "-o", f"remount,lowerdir={box.p('lo')}",
                       says=["remount is not supported"])


def test_conflicting_lowerdir(box):
    os.mkdir(box.p("lo2"))
    expect_usage_error(box, "mount", "--lower", box.p("lo"), "-o", f"lowerdir={box.p('lo2')}",
                       box.p("mnt"), says=["conflicting lower directories"])


def test_lowerdir_given_twice(box):
    expect_usage_error(box, "mount", "-o", f"lowerdir={box.p('lo')}", "-o",
                       f"lowerdir={box.p('lo')}", box.p("mnt"),
                       says=["option lowerdir given twice"])


def test_missing_lowerdir(box):
    expect_usage_error(box, "mount", "-o", f"upperdir={box.p('up')}", box.p("mnt"),
                       says=["no lower directory given"])


def test_empty_lowerdir_entry(box):
    expect_usage_error(box, "mount", "-o", f"lowerdir={box.p('lo')}:", box.p("mnt"),
                       says=["has an empty directory"])


def test_workdir_without_upperdir(box):
    expect_usage_error(box, "mount", "-o", f"lowerdir={box.p('lo')},workdir={box.p('w')}",
                       box.p("mnt"), says=["a work directory needs an upper directory"])


def test_missing_mountpoint_argument(box):
    expect_usage_error(box, "mount", "--lower", box.p("lo"), says=["MOUNTPOINT"])


def test_umount_of_something_not_mounted(box):
    expect_usage_error(box, "umount", box.p("mnt"), says=[f"{box.p('mnt')} is not mounted"])


@needs_root
def test_umount_of_something_not_cowfs(box):
    expect_usage_error(box, "umount", box.p("mnt"),
                       setup=f"mount -t tmpfs cowfs-test-tmpfs {box.p('mnt')}",
                       says=[f"{box.p('mnt')} is not a cowfs mount (it is tmpfs)"])


# ---------------------------------------------------------------------------------------------
# what is accepted (parsed in-process: no mount needed)

# The options mount.fuse3 (fuse3 3.14) was seen to pass through for fstab/mount(8) lines, and the
# rest of mount(8)'s generic ones.
GENERIC = ("rw,ro,suid,nosuid,dev,nodev,exec,noexec,async,sync,dirsync,atime,noatime,diratime,"
           "nodiratime,relatime,norelatime,strictatime,nostrictatime,lazytime,nolazytime,"
           "iversion,noiversion,mand,nomand,defaults,auto,noauto,user,nouser,users,owner,group,"
           "_netdev,nofail,silent,loud,x-systemd.automount,comment=x,default_permissions,"
           "userxattr,auto_unmount")


def test_generic_mount_options_are_accepted():
    mo = parse_o_options([GENERIC + ",lowerdir=/a:/b,upperdir=/u,workdir=/w"])
    assert mo.lowers == ["/a", "/b"] and mo.upper == "/u" and mo.work == "/w"
    assert mo.read_only is True  # "ro" came after "rw"
    assert {"nosuid", "nodev", "noexec", "noatime", "sync", "dirsync"} <= mo.fuse
    assert "relatime" not in mo.fuse  # libfuse 3 cannot set it: accepted, no effect


def test_option_escapes_like_kernel_overlay():
    mo = parse_o_options([r"lowerdir=/a\:b:/c\,d,upperdir=/u\,v"])
    assert mo.lowers == ["/a:b", "/c,d"]
    assert mo.upper == "/u,v"


def test_data_only_lowers_are_refused():
    with pytest.raises(UsageError, match="data-only"):
        parse_o_options(["lowerdir=/a::/b"])

"""Runs unionmount-testsuite (vendored, unmodified, in tests/unionmount-testsuite/) against cowfs
or kernel overlayfs; tests/test_unionmount.py drives it.

    unshare -m --propagation private python tests/unionmount.py run \\
        --fs cowfs|kernel --dir SCRATCH [--cowfs BIN] [--opts O] -- SUITE-ARGS... [TEST...]

As root, in a private mount namespace (all mounts vanish with it). SCRATCH gets `base` (a tmpfs:
the suite's upper and middle layers, and the lowest layer with --samefs), `lower` (a tmpfs of its
own, the lowest layer, unless --samefs) and `mnt` (the union), given to the suite through
UNIONMOUNT_BASEDIR, UNIONMOUNT_LOWERDIR and UNIONMOUNT_MNTPOINT. The suite then mounts with
`mount -t fuse.cowfs cowfs MNT -o...` (cowfs) or `mount -t overlay` with `userxattr` (kernel,
the reference: the format cowfs writes). Its output and exit status are passed on.

Two things the suite takes from its surroundings are set up here:
- mount(8) runs mount.fuse3 with a fixed PATH (/usr/local/sbin:/usr/local/bin:/usr/sbin:...),
  not the caller's, so the cowfs under test is put there: a directory holding only a link to
  BIN is bind-mounted over /usr/local/sbin, in this namespace only.
- The suite assumes umount(8) returns once the filesystem has let go of its layers (true for
  kernel overlayfs). A FUSE daemon lets go only when it exits, a moment after the unmount
  returned, and the suite then unmounts the tmpfs its layers are on (--maxfs) or mounts the same
  upper again (remounts): EBUSY. So `umount` on the suite's PATH is `python unionmount.py umount`:
  umount(8), then it waits for the daemon of every cowfs mount it unmounted to exit.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SUITE = os.path.join(HERE, "unionmount-testsuite")
UMOUNT = "/usr/bin/umount"
#: The first directory of the fixed PATH mount(8) gives mount.fuse3.
HELPER_PATH_DIR = "/usr/local/sbin"
DAEMON_EXIT_WAIT = 30.0


def suite_tests(xdev: bool) -> list[str]:
    """The tests `run` picks by itself (read from its source: it has no option to list them):
    its base list, then rename-exdev with --xdev, else the directory rename tests."""
    with open(os.path.join(SUITE, "run")) as f:
        tree = ast.parse(f.read())
    base, extra = [], {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign)) and isinstance(node.value, ast.List):
            target = node.target if isinstance(node, ast.AugAssign) else node.targets[0]
            if isinstance(target, ast.Name) and target.id == "tests":
                names = [e.value for e in node.value.elts]
                if isinstance(node, ast.Assign):
                    base = names
                else:
                    extra["rename-exdev" in names] = names
    return base + extra[xdev]


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def run(fs: str, scratch: str, cowfs: str | None, opts: str, suite_args: list[str],
        timeout: float) -> int:
    base, lower, mnt, bindir = (os.path.join(scratch, n) for n in ("base", "lower", "mnt", "bin"))
    for d in (base, lower, mnt, bindir):
        os.makedirs(d, exist_ok=True)
    env = dict(os.environ, UNIONMOUNT_BASEDIR=base, UNIONMOUNT_MNTPOINT=mnt,
               PYTHONDONTWRITEBYTECODE="1")  # nothing written into the vendored tree
    env.pop("UNIONMOUNT_LOWERDIR", None)
    _mount("-t", "tmpfs", "base_fs", base)
    if "--samefs" not in suite_args:  # the suite refuses UNIONMOUNT_LOWERDIR with --samefs
        _mount("-t", "tmpfs", "lower_fs", lower)
        env["UNIONMOUNT_LOWERDIR"] = lower
    if fs == "cowfs":
        helpers = os.path.join(scratch, "helpers")
        os.makedirs(helpers, exist_ok=True)
        os.symlink(cowfs, os.path.join(helpers, "cowfs"))
        _mount("--bind", helpers, HELPER_PATH_DIR)
    else:
        opts = ",".join(o for o in ("userxattr", opts) if o)
    if opts:
        env["UNIONMOUNT_MNTOPTIONS"] = opts
    wrapper = os.path.join(bindir, "umount")
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\nexec {sys.executable} {os.path.abspath(__file__)} umount "$@"\n')
    os.chmod(wrapper, 0o755)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    if fs == "cowfs":  # the suite wants it right after --ov[=N]
        suite_args = [*suite_args[:1], "--fuse=cowfs", *suite_args[1:]]
    print("+ ./run", *suite_args, flush=True)
    try:
        # the suite imports its modules from its own directory: run it from there
        return subprocess.run([sys.executable, "./run", *suite_args], cwd=SUITE, env=env,
                              stdin=subprocess.DEVNULL, timeout=timeout, check=False).returncode
    except subprocess.TimeoutExpired:
        print(f"unionmount-testsuite: no end after {timeout:.0f} s", flush=True)
        return 124
    finally:
        # The suite leaves its last union mounted. A cowfs daemon keeps this mount namespace
        # alive, and itself with it, until its mount goes: detach every one.
        subprocess.run([UMOUNT, "-l", "-t", "fuse.cowfs", "-a"], check=False)


def _daemon_pid(mountpoint: str) -> int | None:
    """The pid of the cowfs daemon serving MOUNTPOINT: it holds a flock on its upper dir for
    its whole life (cowfs/claim.py); the root's user.cowfs.layers names that dir."""
    try:
        upper = json.loads(os.getxattr(mountpoint, "user.cowfs.layers"))["upper"]
        st = os.stat(upper)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with open("/proc/locks") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 5 and parts[1] == "FLOCK" and parts[5] == want:
                return int(parts[4])
    return None


def _is_cowfs_mount(path: str) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[4] == real and fields[sep + 1] == "fuse.cowfs":
                return True
    return False


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def umount(argv: list[str]) -> int:
    """umount(8) ARGV; then wait until the daemons of the cowfs mounts among ARGV have exited."""
    pids = [pid for a in argv if not a.startswith("-") and _is_cowfs_mount(a)
            for pid in [_daemon_pid(a)] if pid is not None]
    rc = subprocess.run([UMOUNT, *argv], check=False).returncode
    deadline = time.monotonic() + DAEMON_EXIT_WAIT
    for pid in pids if rc == 0 else []:
        while not _gone(pid):
            if time.monotonic() > deadline:
                print(f"umount: cowfs daemon {pid} still running {DAEMON_EXIT_WAIT:.0f} s after "
                      "its unmount", file=sys.stderr)
                return 1
            time.sleep(0.01)
    return rc


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "umount":
        return umount(sys.argv[2:])
    argv = sys.argv[2:]
    cut = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser(prog="unionmount.py run")
    p.add_argument("--fs", choices=["cowfs", "kernel"], required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--cowfs")
    p.add_argument("--opts", default="")
    p.add_argument("--timeout", type=float, default=600)
    if sys.argv[1:2] != ["run"] or cut == len(argv):
        p.error("usage: unionmount.py run OPTIONS -- SUITE-ARGS... | unionmount.py umount ARGS")
    a = p.parse_args(argv[:cut])
    args = argv[cut + 1:]
    if a.fs == "cowfs" and not (a.cowfs and os.path.isfile(a.cowfs)):
        p.error("--fs cowfs needs --cowfs BIN, the cowfs executable")
    return run(a.fs, a.dir, a.cowfs, a.opts, args, a.timeout)


if __name__ == "__main__":
    sys.exit(main())

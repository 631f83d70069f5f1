"""One mount per upper and work dir (cowfs/claim.py), stricter than kernel overlayfs, which only
warns without index=on: a second mount of either is one line and exit 2, also from another mount
namespace, also when the first user is kernel overlayfs; the claim dies with its daemon, however
it dies."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from test_mount_lifecycle import (box, cowfs, daemon_pid, fstype_at, mount_bg,  # noqa: F401
                                  process_gone, wait_for)


def refused(res: subprocess.CompletedProcess, *words: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert res.stdout == "" and len(res.stderr.splitlines()) == 1, res.stderr
    for w in words:
        assert w in res.stderr, res.stderr


def test_second_mount_of_an_upper_or_work_dir_is_refused(box):
    mount_bg(box, "--lower", box.p("lo"), "--upper", box.p("up"))
    os.mkdir(box.p("m2"))
    up2 = box.p("up2")
    os.mkdir(up2)
    before = sorted(os.listdir(box.root))
    refused(cowfs("mount", "--lower", box.p("lo2"), "--upper", box.p("up"), box.p("m2")),
            f"upper directory {box.p('up')} is in use by another cowfs mount")
    work = box.p(".up.cowfs-work")
    refused(cowfs("mount", "--lower", box.p("lo"), "--upper", up2, "--work", work, box.p("m2")),
            f"work directory {work} is in use by another cowfs mount")
    # another mount namespace sees the claim too: it lives on the directory, not in a table
    other = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, "-m", "cowfs", "mount",
         "--lower", box.p("lo"), "--upper", box.p("up"), box.p("m2")],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, cwd="/",
        env={**os.environ, "PYTHONPATH": str(os.path.dirname(os.path.dirname(__file__)))})
    refused(other, "is in use by another cowfs mount")
    assert fstype_at(box.p("m2")) is None and sorted(os.listdir(box.root)) == before
    assert os.listdir(up2) == []


def test_upper_of_a_kernel_overlay_is_refused(box):
    for d in ("kup", "kwork", "kmnt", "m2"):
        os.mkdir(box.p(d))
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"userxattr,lowerdir={box.p('lo')},upperdir={box.p('kup')},"
                    f"workdir={box.p('kwork')}", box.p("kmnt")], check=True, timeout=30)
    refused(cowfs("mount", "--lower", box.p("lo"), "--upper", box.p("kup"), "--work",
                  box.p("kwork"), box.p("m2")),
            f"upper directory {box.p('kup')} is in use by kernel overlayfs at {box.p('kmnt')}")
    # where cowfs goes beyond the kernel: without index=on (the userxattr default) a second
    # kernel mount of an upper in use is only warned about ("upperdir is in-use by another
    # mount ... undefined behavior"); cowfs refuses it (README "Differences")
    os.mkdir(box.p("kwork2"))
    second = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                             f"userxattr,lowerdir={box.p('lo')},upperdir={box.p('kup')},"
                             f"workdir={box.p('kwork2')}", box.p("m2")],
                            capture_output=True, text=True, timeout=30)
    assert second.returncode == 0, second
    subprocess.run(["umount", box.p("m2")], check=True, timeout=30)
    os.mkdir(box.p("up3"))
    refused(cowfs("mount", "--lower", box.p("lo"), "--upper", box.p("up3"), "--work",
                  box.p("kwork"), box.p("m2")), "work directory", "kernel overlayfs")
    assert fstype_at(box.p("m2")) is None


def test_claim_is_free_at_once_after_umount_and_after_a_kill(box):
    args = ("--lower", box.p("lo"), "--upper", box.p("up"))
    for _ in range(3):  # umount then mount again at once: the old daemon may still be exiting
        mount_bg(box, *args)
        res = cowfs("umount", box.mnt)
        assert res.returncode == 0, res.stderr
    os.unlink(box.log)  # mount_bg reads the daemon's pid from the log's first "mounted" line
    pid = mount_bg(box, *args)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: process_gone(pid), what="the killed daemon to go")
    subprocess.run(["fusermount3", "-uz", box.mnt], capture_output=True, timeout=30)
    os.unlink(box.log)
    mount_bg(box, *args)
    assert fstype_at(box.mnt) == "fuse.cowfs"


def test_racing_mounts_of_one_upper_leave_exactly_one(box):
    """Both pass the check before either daemon runs: the daemons' claims decide, and the loser
    reports one line (exit 1: it failed after validation) and leaves no mount."""
    mnts = [box.p(f"race{i}") for i in range(2)]
    for m in mnts:
        os.mkdir(m)
    procs = [subprocess.Popen([sys.executable, "-m", "cowfs", "mount", "--lower", box.p("lo"),
                               "--upper", box.p("up"), "--log", f"{m}.log", m],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL, cwd="/",
                              env={**os.environ, "PYTHONPATH": str(
                                  os.path.dirname(os.path.dirname(__file__)))})
             for m in mnts]
    outs = [p.communicate(timeout=60) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes[0] == 0 and codes[1] in (1, 2), (codes, outs)
    loser = outs[[p.returncode for p in procs].index(codes[1])]
    assert len(loser[1].splitlines()) == 1 and "in use" in loser[1], loser
    assert sorted(fstype_at(m) for m in mnts if fstype_at(m)) == ["fuse.cowfs"]
    winner = mnts[[p.returncode for p in procs].index(0)]
    box.pids.append(daemon_pid(f"{winner}.log"))
    time.sleep(0.2)
    assert fstype_at(winner) == "fuse.cowfs"

"""`cowfs serve`: one ready parent forks the daemon of each mount (cowfs/serve.py).

Rootless for real, like test_api: the parent runs as the test user, and so does every client
(small scripts that print what they saw as JSON).
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time

import pytest

import overlay
from test_api import Lab, lab, user_dir  # noqa: F401 - lab is a fixture

SCRIPT = '''
import cowfs.serve
from cowfs.config import UsageError
from cowfs.mount import MountError

def ask(argv):
    try:
        return {"pid": cowfs.serve.request(SOCK, argv)}
    except (UsageError, MountError) as e:
        return {"error": type(e).__name__, "message": str(e)}

def proc(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return {"ppid": int(fields[1]), "sid": int(fields[3])}
'''


def run(lab: Lab, code: str, **constants) -> dict:  # noqa: F811
    return lab.run(SCRIPT + textwrap.dedent(code), **constants)


class Parent:
    def __init__(self, lab: Lab):
        e = overlay.env()
        # sun_path holds 107 bytes at most: a short dir of the user's own (COWFS_TEST_TMP may
        # be a long path)
        self.dir = tempfile.mkdtemp(prefix="cowfs-s-", dir="/tmp")
        os.chown(self.dir, e.uid, e.gid)
        os.chmod(self.dir, 0o755)
        self.sock = os.path.join(self.dir, "s")
        self.proc = subprocess.Popen(
            overlay.as_user([e.python, "-m", "cowfs", "serve", self.sock]), cwd=lab.home,
            env=overlay.user_env(e), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        assert line == "ready\n", (line, self.proc.poll(), self.proc.stderr.read())
        # setpriv execs: the parent is this very process
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def parent(lab: Lab):  # noqa: F811
    p = Parent(lab)
    yield p
    p.stop()


def dirs(lab: Lab, name: str) -> tuple[str, str]:
    d = user_dir(os.path.join(lab.home, name))
    return user_dir(os.path.join(d, "upper")), user_dir(os.path.join(d, "mnt"))


def umount(mnt: str) -> None:
    e = overlay.env()
    res = subprocess.run(overlay.as_user([e.python, "-m", "cowfs", "umount", mnt]),
                         capture_output=True, text=True, timeout=60, cwd="/",
                         env=overlay.user_env(e))
    assert res.returncode == 0, res.stderr


def wait_gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                f.read()  # a zombie (not reaped) stays until the timeout
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def test_serve_mounts_and_answers_with_the_daemon(lab: Lab, parent: Parent):  # noqa: F811
    upper, mnt = dirs(lab, "one")
    out = run(lab, '''
        got = ask(["mount", "--lower", DATA, "--upper", UPPER, MNT])
        write(MNT + "/new", "kept\\n")
        report(got=got, fstype=fstype(MNT), a=read(MNT + "/a.txt"), daemon=proc(got["pid"]))
    ''', SOCK=parent.sock, DATA=lab.data, UPPER=upper, MNT=mnt)
    pid = out["got"]["pid"]
    assert out == {"got": {"pid": pid}, "fstype": "fuse.cowfs", "a": "alpha\n",
                   "daemon": {"ppid": parent.pid, "sid": pid}}  # the parent's child, detached
    assert os.listdir(upper) == ["new"]
    umount(mnt)
    assert wait_gone(pid), "the daemon did not end (or was not reaped) after its unmount"
    assert parent.alive()


def test_relative_paths_mount_form_and_api(lab: Lab, parent: Parent):  # noqa: F811
    upper, mnt = dirs(lab, "rel")
    _, mnt2 = dirs(lab, "api")
    out = run(lab, '''
        os.chdir(os.path.dirname(UPPER))
        got = ask(["cowfs", "mnt", "-o", f"lowerdir={DATA},upperdir=upper"])  # mount(8) form
        seen = {"fstype": fstype(MNT), "names": sorted(os.listdir(MNT))}
        subprocess.run([sys.executable, "-m", "cowfs", "umount", MNT], check=True)
        with cowfs.mounted(DATA, mountpoint=MNT2, server=SOCK) as m:
            seen.update(api=fstype(m), api_a=read(m + "/a.txt"))
        report(got=sorted(got), seen=seen, after=fstype(MNT2), leftovers=leftovers())
    ''', SOCK=parent.sock, DATA=lab.data, UPPER=upper, MNT=mnt, MNT2=mnt2)
    assert out == {"got": ["pid"], "seen": {"fstype": "fuse.cowfs",
                                            "names": ["a.txt", "b.txt", "sub"],
                                            "api": "fuse.cowfs", "api_a": "alpha\n"},
                   "after": None, "leftovers": []}


def test_errors_reach_the_requester_as_one_line(lab: Lab, parent: Parent):  # noqa: F811
    upper, mnt = dirs(lab, "err")
    missing = os.path.join(lab.base, "missing")
    out = run(lab, '''
        import socket
        seen = {
            "missing": ask(["mount", "--lower", MISSING, "--upper", UPPER, MNT]),
            "foreground": ask(["mount", "-f", "--lower", DATA, "--upper", UPPER, MNT]),
            "not_a_mount": ask(["fsck", "--upper", UPPER]),
            "help": ask(["mount", "--help"]),
            "bad_option": ask(["mount", "-o", "bogus", "--lower", DATA, MNT]),
        }
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(SOCK)
            s.sendall(b"not json\\n")
            seen["garbage"] = s.recv(4096).decode()
        try:
            with cowfs.mounted(MISSING, server=SOCK):
                pass
        except cowfs.MountError as e:
            seen["api"] = str(e)
        try:
            cowfs.serve.request(SOCK + ".none", ["mount", MNT])
        except MountError as e:
            seen["no_parent"] = str(e)
        report(seen=seen, fstype=fstype(MNT), upper=os.listdir(UPPER))
    ''', SOCK=parent.sock, DATA=lab.data, UPPER=upper, MNT=mnt, MISSING=missing)
    usage = "UsageError"
    assert out == {"seen": {
        "missing": {"error": usage, "message": f"lower directory {missing} does not exist"},
        "foreground": {"error": usage, "message": "--foreground: a mount made through cowfs "
                                                  "serve runs in the background"},
        "not_a_mount": {"error": usage, "message": "cowfs serve makes mounts only, not fsck"},
        "help": {"error": usage,
                 "message": "cowfs serve makes mounts only (no --help or --version)"},
        "bad_option": {"error": usage, "message": "unknown mount option 'bogus'"},
        "garbage": 'ERR 2 bad request: one line of JSON {"argv": [...], "cwd": DIR} expected\n',
        "api": f"lower directory {missing} does not exist",
        "no_parent": f"cannot reach cowfs serve at {parent.sock}.none: No such file or directory",
    }, "fstype": None, "upper": []}
    assert parent.alive()


def test_a_dying_daemon_leaves_the_parent_serving(lab: Lab, parent: Parent):  # noqa: F811
    upper, mnt = dirs(lab, "dies")
    upper2, mnt2 = dirs(lab, "next")
    out = run(lab, '''
        report(got=ask(["mount", "--lower", DATA, "--upper", UPPER, MNT]))
    ''', SOCK=parent.sock, DATA=lab.data, UPPER=upper, MNT=mnt)
    pid = out["got"]["pid"]
    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid), "a killed daemon stayed a zombie"
    subprocess.run(["fusermount3", "-uz", mnt], capture_output=True, timeout=30)
    out = run(lab, '''
        got = ask(["mount", "--lower", DATA, "--upper", UPPER, MNT])
        report(got=sorted(got), a=read(MNT + "/a.txt"))
        subprocess.run([sys.executable, "-m", "cowfs", "umount", MNT], check=True)
    ''', SOCK=parent.sock, DATA=lab.data, UPPER=upper2, MNT=mnt2)
    assert out == {"got": ["pid"], "a": "alpha\n"}
    assert parent.alive()


def test_parent_stops_cleanly_and_leaves_mounts_serving(lab: Lab, parent: Parent):  # noqa: F811
    upper, mnt = dirs(lab, "stays")
    e = overlay.env()
    second = subprocess.run(overlay.as_user([e.python, "-m", "cowfs", "serve", parent.sock]),
                            capture_output=True, text=True, timeout=60, cwd="/",
                            env=overlay.user_env(e))
    assert (second.returncode, second.stderr) == (
        2, f"cowfs: cannot listen on {parent.sock}: a cowfs serve is running there\n")
    too_long = os.path.join(lab.home, "x" * 120)
    res = subprocess.run(overlay.as_user([e.python, "-m", "cowfs", "serve", too_long]),
                         capture_output=True, text=True, timeout=60, cwd="/",
                         env=overlay.user_env(e))
    assert (res.returncode, res.stderr) == (
        2, f"cowfs: cannot listen on {too_long}: a Unix socket path has at most 107 bytes\n")
    out = run(lab, '''
        report(got=ask(["mount", "--lower", DATA, "--upper", UPPER, MNT]))
    ''', SOCK=parent.sock, DATA=lab.data, UPPER=upper, MNT=mnt)
    assert parent.stop() == 0
    assert not os.path.exists(parent.sock)
    out = lab.run('''
        report(fstype=fstype(MNT), a=read(MNT + "/a.txt"))
        subprocess.run([sys.executable, "-m", "cowfs", "umount", MNT], check=True)
    ''', MNT=mnt)
    assert out == {"fstype": "fuse.cowfs", "a": "alpha\n"}


def test_other_users_are_refused(lab: Lab, parent: Parent):  # noqa: F811
    # root may ask (it could anyway); any other user gets one line and nothing else
    nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    os.chmod(parent.sock, 0o666)  # past the socket's mode: the parent checks the peer itself
    code = ("import socket; s = socket.socket(socket.AF_UNIX); s.connect(%r); "
            "print(s.recv(4096).decode(), end='')" % parent.sock)  # refused before it asks
    res = subprocess.run([*nobody, overlay.env().python, "-c", code], capture_output=True,
                         text=True, timeout=60, cwd="/")
    assert res.stdout == "ERR 2 cowfs serve takes requests from its own user only\n", res.stderr
    with socket.socket(socket.AF_UNIX) as s:  # root
        s.connect(parent.sock)
        s.sendall(json.dumps({"argv": ["umount", "/x"]}).encode() + b"\n")
        assert s.recv(4096) == b"ERR 2 cowfs serve makes mounts only, not umount\n"


def test_sandbox_mount_holds_its_lock(lab: Lab, parent: Parent):  # noqa: F811
    snap = os.path.join(lab.base, "snap")
    overlay.build_tree({"MANIFEST": "", "pip": {"x.whl": "wheel\n"}}, snap)
    overlay.register_lower(snap)
    state = os.path.join(lab.home, "state")
    _, mnt = dirs(lab, "sb")
    out = run(lab, '''
        got = ask(["sandbox", "mount", "--snapshot", SNAP, "--state", STATE, MNT])
        seen = {"got": sorted(got), "x": read(MNT + "/pip/x.whl")}
        import fcntl  # the snapshot is in use for `cowfs snapshot gc`: the daemon locks it
        probe = os.open(SNAP, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            seen["snapshot"] = "locked"
        os.close(probe)
        write(MNT + "/pip/y", "mine\\n")
        cli = [sys.executable, "-m", "cowfs"]
        busy = subprocess.run([*cli, "sandbox", "reset", STATE], capture_output=True, text=True)
        seen["reset_while_mounted"] = (busy.returncode, busy.stderr)
        subprocess.run([*cli, "sandbox", "umount", MNT], check=True)
        done = subprocess.run([*cli, "sandbox", "reset", STATE], capture_output=True, text=True)
        seen["reset_after"] = done.returncode
        report(seen=seen, upper=os.listdir(STATE + "/upper") if os.path.isdir(STATE + "/upper")
               else None)
    ''', SOCK=parent.sock, SNAP=snap, STATE=state, MNT=mnt)
    assert out == {"seen": {
        "got": ["pid"], "x": "wheel\n", "snapshot": "locked",
        "reset_while_mounted": [2, f"cowfs: state directory {state} is in use: mounted at {mnt} "
                                   f"(cowfs sandbox umount {mnt} first)\n"],
        "reset_after": 0}, "upper": None}

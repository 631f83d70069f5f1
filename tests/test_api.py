"""The Python API (cowfs/api.py: mounted, open_mount) and the pytest plugin (cow_mount).

Rootless for real: every mount is made by the test user, so each case is a small script run as
that user (through setpriv, like the rest of the suite) that prints what it saw as JSON; its
TMPDIR is a directory of its own, so leftover temporary directories show. The plugin is tested
by running pytest as that user on a tiny test file that uses cow_mount (pytester runs it and
parses the outcome).
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import pytest

import overlay

pytest_plugins = ["pytester"]

DATA = {"a.txt": "alpha\n", "b.txt": "beta\n", "sub": {"c.txt": "gamma\n"}}

PRELUDE = '''\
import json, os, subprocess, sys
import cowfs

def fstype(path):
    path, found = os.path.realpath(path), None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if parts[4] == path:
                found = parts[parts.index("-") + 1]
    return found

def leftovers():
    return sorted(os.listdir(os.environ["TMPDIR"]))

def read(path):
    with open(path) as f:
        return f.read()

def write(path, text):
    with open(path, "w") as f:
        f.write(text)

def report(**kw):
    print(json.dumps(kw))
'''


@dataclasses.dataclass
class Lab:
    base: str  # root's
    data: str  # the lower: DATA, registered (checked unchanged after every test)
    home: str  # the test user's
    tmp: str  # the scripts' TMPDIR
    scripts: int = 0

    def run(self, code: str, **constants) -> dict:
        """Run CODE (after PRELUDE and NAME = value for each constant) as the test user."""
        e = overlay.env()
        self.scripts += 1
        script = os.path.join(self.base, f"script{self.scripts}.py")
        with open(script, "w") as f:
            f.write(PRELUDE + "".join(f"{k} = {v!r}\n" for k, v in constants.items())
                    + textwrap.dedent(code))
        os.chmod(script, 0o644)
        res = subprocess.run(overlay.as_user([e.python, script]), capture_output=True, text=True,
                             timeout=120, cwd=self.home, stdin=subprocess.DEVNULL,
                             env=overlay.user_env(e) | {"TMPDIR": self.tmp})
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout.splitlines()[-1])


def user_dir(path: str) -> str:
    e = overlay.env()
    os.mkdir(path, 0o755)
    os.chown(path, e.uid, e.gid)
    return path


@pytest.fixture
def lab(harness, request) -> Lab:
    base = overlay.new_dir(request.node.name)
    data = os.path.join(base, "data")
    overlay.build_tree(DATA, data)
    overlay.register_lower(data)
    home = user_dir(os.path.join(base, "home"))
    yield Lab(base, data, home, user_dir(os.path.join(home, "tmp")))
    with open("/proc/self/mountinfo") as f:  # what a failed test left behind
        left = [ln.split()[4] for ln in f if ln.split()[4].startswith(base + "/")]
    for mp in reversed(left):
        subprocess.run(["umount", "-l", mp], capture_output=True, timeout=30)
    assert not left, f"still mounted after the test: {left}"


def test_mounted_with_temporary_upper(lab: Lab):
    out = lab.run('''
        with cowfs.mounted(DATA) as mnt:
            seen = {"fstype": fstype(mnt), "names": sorted(os.listdir(mnt)),
                    "a": read(mnt + "/a.txt")}
            write(mnt + "/a.txt", "changed\\n")
            os.unlink(mnt + "/b.txt")
            write(mnt + "/sub/new", "new\\n")
            seen.update(after=sorted(os.listdir(mnt)), a2=read(mnt + "/a.txt"),
                        inside_tmpdir=mnt.startswith(os.environ["TMPDIR"] + "/"))
        report(seen=seen, fstype_after=fstype(mnt), leftovers=leftovers())
    ''', DATA=lab.data)
    assert out == {
        "seen": {"fstype": "fuse.cowfs", "names": ["a.txt", "b.txt", "sub"], "a": "alpha\n",
                 "after": ["a.txt", "sub"], "a2": "changed\n", "inside_tmpdir": True},
        "fstype_after": None, "leftovers": []}


def test_mounted_with_upper_mountpoint_and_lowers(lab: Lab):
    bottom = os.path.join(lab.base, "bottom")
    overlay.build_tree({"a.txt": "hidden by the top lower\n", "only-bottom": "bottom\n"}, bottom)
    overlay.register_lower(bottom)
    upper, mnt = user_dir(os.path.join(lab.home, "up")), user_dir(os.path.join(lab.home, "mnt"))
    out = lab.run('''
        with cowfs.mounted([DATA, BOTTOM], UPPER, mountpoint=MNT) as mnt:
            seen = {"mnt": mnt, "a": read(mnt + "/a.txt"), "bottom": read(mnt + "/only-bottom")}
            write(mnt + "/new", "kept\\n")
        with cowfs.mounted(DATA, read_only=True) as ro:
            try:
                write(ro + "/new", "x")
            except OSError as e:
                seen["read_only"] = e.strerror
        report(seen=seen, fstype_after=fstype(MNT), leftovers=leftovers())
    ''', DATA=lab.data, BOTTOM=bottom, UPPER=upper, MNT=mnt)
    assert out == {"seen": {"mnt": mnt, "a": "alpha\n", "bottom": "bottom\n",
                            "read_only": "Read-only file system"},
                   "fstype_after": None, "leftovers": []}
    assert os.listdir(upper) == ["new"]  # the caller's upper and mountpoint stay
    assert os.listdir(mnt) == []


def test_exception_inside_the_block_still_unmounts(lab: Lab):
    out = lab.run('''
        try:
            with cowfs.mounted(DATA) as mnt:
                write(mnt + "/new", "x")
                raise RuntimeError("boom")
        except RuntimeError as e:
            caught = str(e)
        report(caught=caught, fstype_after=fstype(mnt), leftovers=leftovers())
    ''', DATA=lab.data)
    assert out == {"caught": "boom", "fstype_after": None, "leftovers": []}


def test_busy_mount_is_detached_on_exit(lab: Lab):
    out = lab.run('''
        with cowfs.mounted(DATA) as mnt:
            busy = subprocess.Popen(["sleep", "60"], cwd=mnt)  # keeps the mount busy
        after = fstype(mnt)
        busy.kill()
        busy.wait()
        report(fstype_after=after, leftovers=leftovers())
    ''', DATA=lab.data)
    assert out == {"fstype_after": None, "leftovers": []}


def test_bad_lower_raises_the_cli_message(lab: Lab):
    missing = os.path.join(lab.base, "missing")
    out = lab.run('''
        try:
            with cowfs.mounted(MISSING):
                raise AssertionError("mounted")
        except cowfs.MountError as e:
            report(message=str(e), leftovers=leftovers())
    ''', MISSING=missing)
    assert out == {"message": f"lower directory {missing} does not exist", "leftovers": []}


def test_open_mount_under_trio(lab: Lab):
    missing = os.path.join(lab.base, "missing")
    out = lab.run('''
        import trio

        async def main():
            ticks = 0

            async def ticker():
                nonlocal ticks
                while True:
                    await trio.sleep(0.005)
                    ticks += 1

            seen = {}
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ticker)
                before = ticks
                async with cowfs.open_mount(DATA) as mnt:
                    seen["loop_ran_while_mounting"] = ticks > before
                    write(mnt + "/a.txt", "changed\\n")
                    seen.update(fstype=fstype(mnt), a=read(mnt + "/a.txt"))
                seen["fstype_after"] = fstype(mnt)

                # cancelled while the mount is being made (it shows in the mount table before
                # the daemon reports): the mount completes, then the block is left
                async def cancel_once_in_mount_table(scope):
                    while not any(" fuse.cowfs " in line and os.environ["TMPDIR"] in line
                                  for line in open("/proc/self/mountinfo")):
                        await trio.sleep(0.0005)
                    scope.cancel()

                with trio.CancelScope() as scope:
                    nursery.start_soon(cancel_once_in_mount_table, scope)
                    async with cowfs.open_mount(DATA) as mnt:
                        await trio.sleep(60)
                seen.update(cancelled=scope.cancelled_caught, fstype_cancelled=fstype(mnt))

                try:
                    async with cowfs.open_mount(MISSING):
                        raise AssertionError("mounted")
                except cowfs.MountError as e:
                    seen["message"] = str(e)
                nursery.cancel_scope.cancel()
            return seen

        report(seen=trio.run(main), leftovers=leftovers())
    ''', DATA=lab.data, MISSING=missing)
    assert out == {"seen": {"loop_ran_while_mounting": True, "fstype": "fuse.cowfs",
                            "a": "changed\n", "fstype_after": None, "cancelled": True,
                            "fstype_cancelled": None,
                            "message": f"lower directory {missing} does not exist"},
                   "leftovers": []}


# ---------------------------------------------------------------------------------------------
# the pytest plugin


def test_plugin_is_loaded_and_light(request):
    assert request.config.pluginmanager.get_plugin("cowfs") is not None  # by its entry point
    probe = subprocess.run([sys.executable, "-c", textwrap.dedent('''
        import json, sys
        import cowfs.pytest_plugin as plugin
        print(json.dumps({"imported": [m for m in ("pyfuse3", "trio") if m in sys.modules],
                          "hooks": [n for n in vars(plugin) if n.startswith("pytest_")]}))
    ''')], capture_output=True, text=True, timeout=60, cwd="/")
    assert json.loads(probe.stdout) == {"imported": [], "hooks": []}, probe.stderr


INNER_TESTS = '''
import os

DATA = {data!r}


def test_change_everything(cow_mount):
    view = cow_mount(DATA)
    assert (view / "a.txt").read_text() == "alpha\\n"
    (view / "a.txt").write_text("changed\\n")
    (view / "b.txt").unlink()
    (view / "sub" / "c.txt").rename(view / "c.txt")
    assert sorted(p.name for p in view.iterdir()) == ["a.txt", "c.txt", "sub"]


def test_next_test_gets_pristine_data(cow_mount):
    view, other = cow_mount(DATA), cow_mount([DATA])
    (other / "a.txt").write_text("other\\n")
    assert (view / "a.txt").read_text() == "alpha\\n"
    assert sorted(p.name for p in view.iterdir()) == ["a.txt", "b.txt", "sub"]


def test_not_autouse(request):
    assert "cow_mount" not in request.fixturenames
'''


def test_cow_mount_fixture(lab: Lab, pytester: pytest.Pytester, monkeypatch):
    e = overlay.env()
    inner = os.path.join(lab.home, "test_inner.py")
    with open(inner, "w") as f:
        f.write(INNER_TESTS.format(data=lab.data))
    os.chmod(inner, 0o644)
    basetemp = os.path.join(lab.home, "basetemp")
    monkeypatch.chdir(lab.home)
    env = [f"{k}={v}" for k, v in overlay.user_env(e).items()]
    # the cowfs plugin comes in through its entry point, as in any project with cowfs installed
    result = pytester.run(*overlay.as_user(["env", "-i", *env, e.python, "-m", "pytest", "-q",
                                            "-p", "no:cacheprovider", f"--basetemp={basetemp}",
                                            inner]), timeout=120)
    result.assert_outcomes(passed=3)
    assert overlay.mounted_at(basetemp) is None
    # every view's upper stays under tmp_path: what each test changed, and nothing else
    uppers = [sorted(files) for root, _, files in os.walk(basetemp)
              if os.path.basename(root) == "upper"]
    assert sorted(uppers) == [[], ["a.txt"], ["a.txt", "b.txt", "c.txt"]]

"""`cowfs diff`: the same operations through cowfs and through kernel overlayfs leave uppers that
give the same, expected list of changes; the live-mount form finds the layers through the
virtual user.cowfs.layers xattr of the mount root, which nothing else shows or may change."""
from __future__ import annotations

import json
import os
import subprocess

import overlay
from overlay import Dir, Symlink

LOWER = {
    "etc": Dir({"conf": "a=1\n", "run.sh": "#!/bin/sh\n", "old.conf": "old\n",
                "sub": Dir({"deep": "d\n"})}),
    "pkg": Dir({"a.py": "a\n", "b.py": "b\n"}),
    "gone.txt": "bye\n",
    "gonedir": Dir({"a": "1", "b": Dir({"c": "2"})}),
    "replaced": Dir({"old1": "1", "olddir": Dir({"z": "z"})}),
    "mv-src.txt": "moving\n",
    "link": Symlink("gone.txt"),
    "keep": Dir({"untouched": "u\n"}),
}
LOWER2 = {  # below LOWER
    "bottom.txt": "b\n",
    "gonedir": Dir({"bottom": "x"}),
    "replaced": Dir({"from-bottom": "b"}),
}

OPS = [
    # content change; its parent is copied up on the way and stays unlisted (mtime kept)
    ["open", "f", "pkg/a.py", ["O_WRONLY", "O_APPEND"]], ["write", "f", "more\n"], ["close", "f"],
    ["write_file", "etc/conf", "a=2\n"],
    ["chmod", "etc/run.sh", 0o755],  # chmod-only copy-up
    ["unlink", "etc/old.conf"],  # whiteout in a merged dir: the dir changes too
    ["setxattr", "etc/sub", "user.k", "v"],  # directory copy-up with a new xattr
    ["unlink", "gone.txt"], ["unlink", "bottom.txt"],
    ["unlink", "gonedir/a"], ["unlink", "gonedir/b/c"], ["rmdir", "gonedir/b"],
    ["unlink", "gonedir/bottom"], ["rmdir", "gonedir"],
    # rmdir + mkdir: opaque
    ["unlink", "replaced/old1"], ["unlink", "replaced/olddir/z"], ["rmdir", "replaced/olddir"],
    ["unlink", "replaced/from-bottom"], ["rmdir", "replaced"],
    ["mkdir", "replaced"], ["write_file", "replaced/new", "n\n"], ["mkdir", "replaced/olddir"],
    ["write_file", "replaced/olddir/n", "n\n"],
    ["rename", "mv-src.txt", "moved.txt"],
    ["unlink", "link"], ["mkdir", "link"],  # a symlink replaced by a directory
    ["mkdir", "new"], ["mkdir", "new/a"], ["write_file", "new/a/f", "f\n"],
    ["symlink", "../x", "new/a/l"], ["mkfifo", "new/p"],
    ["write_file", "keep/added", "+\n"],
]

EXPECTED = [  # (line, type)
    ("D bottom.txt", "file"),
    ("C etc", "dir"), ("C etc/conf", "file"), ("D etc/old.conf", "file"),
    ("C etc/run.sh", "file"), ("C etc/sub", "dir"),
    ("D gone.txt", "file"), ("D gonedir", "dir"),
    ("C keep", "dir"), ("A keep/added", "file"),
    ("C link", "dir"),
    ("A moved.txt", "file"), ("D mv-src.txt", "file"),
    ("A new", "dir"), ("A new/a", "dir"), ("A new/a/f", "file"), ("A new/a/l", "symlink"),
    ("A new/p", "fifo"),
    ("C pkg/a.py", "file"),
    ("C replaced", "dir"), ("D replaced/from-bottom", "file"), ("A replaced/new", "file"),
    ("D replaced/old1", "file"), ("A replaced/olddir", "dir"), ("A replaced/olddir/n", "file"),
    ("D replaced/olddir/z", "file"),
]
LINES = [line for line, _ in EXPECTED]
KINDS = {"A": "added", "C": "modified", "D": "deleted"}


def cowfs(*args: str, user: bool = False) -> subprocess.CompletedProcess:
    """The installed cowfs, as root or as the test user."""
    e = overlay.env()
    cmd = [e.cowfs_bin, *args]
    return subprocess.run(overlay.as_user(cmd) if user else cmd, capture_output=True, text=True,
                          timeout=60, cwd=e.base, env=overlay.user_env(e),
                          stdin=subprocess.DEVNULL)


def layer_args(lay: overlay.Layers) -> list[str]:
    return ["--upper", lay.upper] + [a for low in lay.lowers for a in ("--lower", low)]


def ok(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 0 and res.stderr == "", res
    return res.stdout


def usage_error(res: subprocess.CompletedProcess, *says: str) -> str:
    lines = res.stderr.splitlines()
    assert res.returncode == 2 and len(lines) == 1 and res.stdout == "", res
    for fragment in says:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_kernel_and_cowfs_uppers_give_the_same_diff(overlay_pair):
    pair = overlay_pair(LOWER, LOWER2)
    pair.run(OPS).assert_same()
    for side, lay in (("kernel", pair.kernel_layers), ("cowfs", pair.cowfs_layers)):
        assert ok(cowfs("diff", *layer_args(lay))).splitlines() == LINES, side
        got = json.loads(ok(cowfs("diff", "--json", *layer_args(lay))))
        assert got == [{"path": line[2:], "kind": KINDS[line[0]], "type": t}
                       for line, t in EXPECTED], side


def test_live_mountpoint(overlay_pair):
    pair = overlay_pair(LOWER, LOWER2)
    pair.run(OPS, trees=False)
    mnt = pair.cowfs.mnt
    # a FUSE mount answers only the user who mounted it
    assert ok(cowfs("diff", mnt, user=True)).splitlines() == LINES
    assert ok(cowfs("diff", "--json", mnt, user=True)) == \
        ok(cowfs("diff", "--json", *layer_args(pair.cowfs_layers)))
    usage_error(cowfs("diff", mnt), f"cannot ask the cowfs mount at {mnt} for its layers")
    usage_error(cowfs("diff", pair.kernel.mnt), f"{pair.kernel.mnt} is not a cowfs mount point")
    usage_error(cowfs("diff", os.path.join(mnt, "etc"), user=True), "is not a cowfs mount point")


def test_layers_xattr(overlay_pair):
    pair = overlay_pair(LOWER, LOWER2)
    lay = pair.cowfs_layers
    got = overlay.run_ops(pair.cowfs.mnt, [
        ["getxattr", ".", "user.cowfs.layers"], ["listxattr", "."],
        ["setxattr", ".", "user.cowfs.layers", "{}"], ["removexattr", ".", "user.cowfs.layers"],
        ["getxattr", "etc", "user.cowfs.layers"], ["getxattr", "etc/conf", "user.cowfs.layers"],
    ])
    assert json.loads(got[0]["ok"]) == {"lowers": lay.lowers, "upper": lay.upper,
                                        "work": lay.work}
    assert got[1:] == [{"ok": []}, {"errno": "EPERM"}, {"errno": "EPERM"},
                       {"errno": "ENODATA"}, {"errno": "ENODATA"}]
    assert os.listxattr(lay.upper) == []  # nothing reached the disk
    # anywhere else it is an ordinary name, as on the kernel
    pair.run([
        ["setxattr", "etc", "user.cowfs.layers", "mine"], ["getxattr", "etc", "user.cowfs.layers"],
        ["listxattr", "etc"], ["removexattr", "etc", "user.cowfs.layers"], ["listxattr", "."],
    ]).assert_same()


def test_mount_without_upper(harness):
    lay = overlay.make_layers("no-upper", [LOWER, LOWER2], upper=False)
    with overlay.mount("cowfs", lay) as m:
        got = overlay.run_ops(m.mnt, [["getxattr", ".", "user.cowfs.layers"]])
        assert json.loads(got[0]["ok"]) == {"lowers": lay.lowers, "upper": None, "work": None}
        assert ok(cowfs("diff", m.mnt, user=True)) == ""
        assert ok(cowfs("diff", "--json", m.mnt, user=True)) == "[]\n"


def test_errors(harness):
    base = overlay.new_dir("errors")
    lower, upper = os.path.join(base, "lower"), os.path.join(base, "upper")
    os.mkdir(lower)
    os.mkdir(upper)
    missing = os.path.join(base, "missing")
    usage_error(cowfs("diff", base), f"{base} is not a cowfs mount point")
    usage_error(cowfs("diff", missing), f"{missing} does not exist")
    usage_error(cowfs("diff", "--upper", missing, "--lower", lower),
                f"upper directory {missing} does not exist")
    usage_error(cowfs("diff", "--upper", upper, "--lower", missing),
                f"lower directory {missing} does not exist")
    usage_error(cowfs("diff", "--upper", upper), "--upper needs at least one --lower")
    usage_error(cowfs("diff"), "missing MOUNTPOINT")
    usage_error(cowfs("diff", base, "--upper", upper, "--lower", lower), "not both")
    assert ok(cowfs("diff", "--upper", upper, "--lower", lower)) == ""

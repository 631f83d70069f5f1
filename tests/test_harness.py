"""Self-checks of the differential harness: they pass whatever state cowfs is in."""
from __future__ import annotations

import os

import pytest

import overlay
from overlay import Diff, Dir, Fifo, File, Hardlink, Symlink, Whiteout

SPEC = {
    "a.txt": "hello\n",
    "bin/tool": File(b"\x7fELF", mode=0o755, xattrs={"user.k": "v"}),
    "etc": Dir({"conf": File("x=1\n", mode=0o600)}, mode=0o700),
    "link": Symlink("a.txt"),
    "fifo": Fifo(),
    "hard": Hardlink("a.txt"),
    "rootfile": File("r", owner="root"),
    "sparse": File("head", size=1 << 20),
    "deep/er/file": "d",
    "opq": Dir({"o": "o"}, opaque=True),
    "wh": Whiteout(),
}


def test_build_tree_and_runner_on_plain_dir(harness):
    root = os.path.join(overlay.new_dir("plain"), "t")
    overlay.build_tree(SPEC, root)
    tree = overlay.dump_tree(root)
    assert tree["a.txt"]["ino"] == tree["hard"]["ino"] == "a.txt" and tree["a.txt"]["nlink"] == 2
    assert tree["bin/tool"]["mode"] == "0755" and tree["bin/tool"]["xattrs"] == {"user.k": "v"}
    assert tree["etc"]["mode"] == "0700" and tree["etc/conf"]["mode"] == "0600"
    assert tree["rootfile"]["uid"] == 0 and tree["deep/er"]["uid"] == harness.uid
    assert tree["link"]["target"] == "a.txt" and tree["fifo"]["type"] == "p"
    assert tree["wh"]["rdev"] == [0, 0] and tree["sparse"]["size"] == 1 << 20
    assert tree["opq"]["xattrs"] == {"user.overlay.opaque": "y"}

    res = overlay.run_ops(root, [
        ["stat", "a.txt"], ["stat", "hard"], ["lstat", "link"], ["stat", "link"],
        ["stat_times", "a.txt"], ["write_file", "new", "n"], ["stat_times", "new"],
        ["unlink", "nope"], ["open", "f", "new", ["O_RDWR"]], ["fstat", "f"], ["close", "f"],
        ["rename", "new", "a.txt", "NOREPLACE"], ["rename", "new", "a.txt", "EXCHANGE"],
        ["read_file", "a.txt"], ["chown", "rootfile", "user", "user"], ["scandir", "deep"],
    ])
    assert res[0]["ok"]["ino"] == res[1]["ok"]["ino"] == res[3]["ok"]["ino"] == "op0"
    assert res[2]["ok"]["type"] == "l" and res[2]["ok"]["ino"] == "op2"
    assert res[4]["ok"] == {"atime": overlay.FIXED_ATIME_NS, "mtime": overlay.FIXED_TIME_NS}
    assert res[6]["ok"] == {"atime": "now", "mtime": "now"}
    assert res[7] == {"errno": "ENOENT"} and res[9]["ok"]["ino"] == "op9"
    assert res[11] == {"errno": "EEXIST"} and res[12] == {"ok": None}
    assert res[13] == {"ok": "n"} and res[14] == {"errno": "EPERM"}
    assert res[15]["ok"] == [["er", "d", "op15/er", 2]]


def test_malformed_op_is_a_harness_error(harness):
    root = overlay.new_dir("malformed")
    with pytest.raises(overlay.HarnessError, match="unknown op"):
        overlay.run_ops(root, [["frobnicate", "x"]])
    with pytest.raises(overlay.HarnessError, match="relative"):
        overlay.run_ops(root, [["stat", "/etc/passwd"]])
    assert overlay.run_ops(root, [["read", "never-opened", 1]]) == [{"errno": "EBADF"}]


def test_lower_write_is_detected(harness):
    lay = overlay.make_layers("detect", [{"f": "data", "d": {"g": "x"}}], upper=False)
    lower = lay.lowers[0]
    try:
        overlay.check_lowers([lower])
        with open(os.path.join(lower, "d/g"), "rb") as f:  # a read (atime) is not a write
            f.read()
        overlay.check_lowers([lower])
        os.setxattr(os.path.join(lower, "f"), "user.sneaky", b"1")
        with pytest.raises(AssertionError, match="lower layer was written"):
            overlay.check_lowers([lower])
        os.removexattr(os.path.join(lower, "f"), "user.sneaky")  # ctime moved: still detected
        with pytest.raises(AssertionError, match="lower layer was written"):
            overlay.check_lowers([lower])
    finally:
        overlay.LOWERS[:] = [e for e in overlay.LOWERS if e[0] != lower]


def test_expected_difference_is_narrow(harness, tmp_path):
    upper = tmp_path / "upper"
    (upper / "d").mkdir(parents=True)
    (upper / "d" / "f").write_text("x")
    ctx = overlay.Context(None, str(upper), harness.uid, harness.gid)
    up = Diff("tree", "d/f", "uid", 0, harness.uid)
    assert overlay.classify([up], ctx) == ([], [(up, overlay.EXPECTED_DIFFERENCES[0])])
    not_copied = Diff("tree", "d/g", "uid", 0, harness.uid)
    other_uid = Diff("tree", "d/f", "uid", 0, 4242)
    mode = Diff("tree", "d/f", "mode", "0644", "0600")
    assert overlay.classify([not_copied, other_uid, mode], ctx)[0] == [not_copied, other_uid, mode]


KERNEL_SCENARIO = [
    ["open", "f", "a.txt", ["O_RDWR"]], ["write", "f", "HE"], ["fstat", "f"], ["close", "f"],
    ["unlink", "hard"], ["rmdir", "etc"], ["mkdir", "etc"], ["write_file", "etc/new", "n"],
    ["listdir", "etc"], ["chmod", "bin/tool", 0o700], ["stat_times", "bin/tool"],
    ["setxattr", "deep/er", "user.x", "1"], ["rename", "deep", "moved"],
]


def test_kernel_against_kernel_shows_no_difference(overlay_pair):
    """The reference against itself: every difference here would be harness noise."""
    pair = overlay_pair(SPEC, {"other": "lower2", "a.txt": "hidden"}, impl="kernel")
    out = pair.run(KERNEL_SCENARIO)
    assert out.kernel[5] == {"errno": "ENOTEMPTY"}
    assert out.kernel[12] == {"errno": "EXDEV"}
    assert out.diffs() == [], out.report()
    assert out.tolerated() == []


def test_trusted_reference_and_copy(overlay_pair):
    """kernel_opts= mounts the reference in root's trusted format with those options (a lower
    dir renames there, where userxattr gives EXDEV); trusted_copy gives an upper that such a
    mount reads as the userxattr kernel read the original."""
    pair = overlay_pair({"d": Dir({"f": "F"}), "o": Dir({"x": "x"})}, impl="kernel",
                        kernel_opts=["redirect_dir=on"])
    out = pair.run([["rename", "d", "e"], ["read_file", "e/f"], ["stat", "d"]], trees=False)
    assert out.kernel == [{"ok": None}, {"ok": "F"}, {"errno": "ENOENT"}], out.kernel
    assert out.cowfs[0] == {"errno": "EXDEV"}, out.cowfs  # userxattr: no redirects
    pair.run([["unlink", "o/x"], ["rmdir", "o"], ["mkdir", "o"], ["write_file", "o/y", "y"]])
    upper = pair.cowfs_layers.upper  # the userxattr kernel's upper, impl="kernel"
    assert os.getxattr(os.path.join(upper, "o"), "user.overlay.opaque") == b"y"
    lay = overlay.make_layers("trusted-copy", [{"d": Dir({"f": "F"}), "o": Dir({"x": "x"})}])
    copy = overlay.trusted_copy(upper, os.path.join(lay.base, "trusted-upper"))
    assert os.getxattr(os.path.join(copy, "o"), "trusted.overlay.opaque") == b"y"
    assert "user.overlay.opaque" not in os.listxattr(os.path.join(copy, "o"))
    lay.upper = copy
    lay.new_work()
    with overlay.mount("kernel", lay, trusted=True):
        tree = overlay.dump_tree(lay.mnt)
    assert sorted(p for p in tree if p.startswith("o")) == ["o", "o/y"], tree

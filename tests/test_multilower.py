"""Several lower layers, differentially against kernel overlayfs, and the no-upper (read-only)
form: `lowerdir=A:B` without upperdir, which the kernel mounts read-only too."""
from __future__ import annotations

import os
import subprocess

import overlay
from overlay import Dir, File, Symlink, Whiteout

TOP = {
    "all3.txt": "top\n",
    "d": Dir({"from-top": "t", "shared": "top's", "sub": Dir({"t": "t"})}, mode=0o750),
    "file-over-dir": "I am a file in top\n",
    "dir-over-file": Dir({"inside": "i"}),
    "op": Dir({"t": "t"}),
}
MIDDLE = {
    "all3.txt": "middle\n",
    "mid-only.txt": File("middle only\n", mode=0o600, xattrs={"user.m": "m"}),
    "d": Dir({"from-mid": "m", "shared": "middle's", "sub": Dir({"m": "m"}),
              "wh-mid": Whiteout(), "all3.txt": "in d"}, mode=0o700),
    "hidden.txt": Whiteout(),
    "hidden-dir": Whiteout(),
    "all3-wh": Whiteout(),  # top does not have it: hides bottom's
    "op": Dir({"m": "m"}, opaque=True),
}
BOTTOM = {
    "all3.txt": "bottom\n",
    "bottom.txt": "bottom only\n",
    "d": Dir({"from-bottom": "b", "shared": "bottom's", "sub": Dir({"b": "b"}),
              "wh-mid": "hidden by middle", "deep": Dir({"x": Dir({"y": "y\n"})})}),
    "file-over-dir": Dir({"never": "n"}),
    "dir-over-file": "a file in bottom\n",
    "hidden.txt": "hidden by middle's whiteout\n",
    "hidden-dir": Dir({"z": "z"}),
    "all3-wh": "hidden\n",
    "op": Dir({"b": "b"}),
    "link": Symlink("all3.txt"),
}

LOOK = [
    ["listdir", "."], ["read_file", "all3.txt"], ["read_file", "mid-only.txt"],
    ["read_file", "bottom.txt"], ["listdir", "d"], ["read_file", "d/shared"], ["stat", "d"],
    ["listdir", "d/sub"], ["lstat", "file-over-dir"], ["listdir", "dir-over-file"],
    ["exists", "hidden.txt"], ["stat", "hidden-dir"], ["exists", "all3-wh"],
    ["exists", "d/wh-mid"], ["listdir", "op"], ["read_file", "link"],
    ["getxattr", "mid-only.txt", "user.m"], ["stat", "mid-only.txt"],
    ["read_file", "d/deep/x/y"], ["listdir", "file-over-dir"],
]


def test_three_lowers_merge(overlay_pair):
    pair = overlay_pair(TOP, MIDDLE, BOTTOM)
    out = pair.run(LOOK)
    out.assert_same()
    assert out.cowfs[0] == {"ok": ["all3.txt", "bottom.txt", "d", "dir-over-file",
                                   "file-over-dir", "link", "mid-only.txt", "op"]}
    assert out.cowfs[4] == {"ok": ["all3.txt", "deep", "from-bottom", "from-mid", "from-top",
                                   "shared", "sub"]}
    assert out.cowfs[1] == {"ok": "top\n"} and out.cowfs[5] == {"ok": "top's"}
    assert out.cowfs[14] == {"ok": ["m", "t"]}


def test_writes_go_to_upper(overlay_pair):
    """Changing a file of the bottom or middle layer copies it (and its parents) into upper."""
    pair = overlay_pair(TOP, MIDDLE, BOTTOM)
    out = pair.run([
        ["open", "w", "d/deep/x/y", ["O_WRONLY", "O_APPEND"]], ["write", "w", "more\n"],
        ["close", "w"], ["read_file", "d/deep/x/y"],
        ["chmod", "mid-only.txt", 0o640], ["listxattr", "mid-only.txt"],
        ["write_file", "bottom.txt", "new\n"], ["write_file", "hidden.txt", "visible again\n"],
        ["mkdir", "hidden-dir"], ["listdir", "hidden-dir"],
        ["unlink", "all3.txt"], ["exists", "all3.txt"],
        ["stat", "d"], ["stat_times", "d/deep/x"], ["listdir", "d"],
    ])
    out.assert_same()
    for side in ("kernel", "cowfs"):
        up = pair.upper_tree(side)
        assert {"d", "d/deep", "d/deep/x", "d/deep/x/y", "mid-only.txt", "bottom.txt",
                "hidden.txt", "hidden-dir", "all3.txt"} <= set(up), side
        assert up["d"]["mode"] == "0750" and up["mid-only.txt"]["mode"] == "0640", side
        assert up["all3.txt"]["type"] == "c" and up["all3.txt"]["rdev"] == [0, 0], side
        assert "d/from-bottom" not in up and "op" not in up, side
    pair.remount()
    pair.run(LOOK).assert_same()


# --- no upper: a read-only merged view --------------------------------------------------------
WRITES = [
    ["write_file", "new.txt", "x"], ["mkdir", "newdir"], ["unlink", "bottom.txt"],
    ["rmdir", "d/sub"], ["chmod", "all3.txt", 0o600], ["setxattr", "all3.txt", "user.x", "y"],
    ["open", "w", "all3.txt", ["O_WRONLY"]], ["open", "w", "all3.txt", ["O_RDWR"]],
    ["truncate", "all3.txt", 0], ["utime", "all3.txt", 1, 1], ["rename", "all3.txt", "b"],
    ["link", "all3.txt", "l2"], ["symlink", "x", "s2"], ["mkfifo", "p"],
    ["removexattr", "mid-only.txt", "user.m"], ["access", "all3.txt", ["W_OK"]],
    ["open", "c", "created", ["O_WRONLY", "O_CREAT"]],
]


def _no_upper_pair(specs: list) -> tuple[overlay.Mount, overlay.Mount]:
    klay = overlay.make_layers("noupper-kernel", specs, upper=False)
    clay = overlay.make_layers(f"noupper-{overlay.env().impl}", specs, upper=False)
    k = overlay.mount("kernel", klay)
    try:
        c = overlay.mount(overlay.env().impl, clay)
    except BaseException:
        k.unmount()
        raise
    return k, c


def test_no_upper_is_read_only(harness):
    """`lowerdir=A:B:C` alone: the same merged view as the kernel's, every write EROFS."""
    k, c = _no_upper_pair([TOP, MIDDLE, BOTTOM])
    with k, c:
        ops = LOOK + WRITES + [["listdir", "."]]
        kres, cres = overlay.run_ops(k.mnt, ops), overlay.run_ops(c.mnt, ops)
        diffs = overlay.compare_results(ops, kres, cres)
        diffs += overlay.compare_trees(overlay.dump_tree(k.mnt), overlay.dump_tree(c.mnt))
        ctx = overlay.Context(None, None, harness.uid, harness.gid)
        bad, ok = overlay.classify(diffs, ctx)
        assert not bad, overlay.format_diffs(bad, ok, title="no upper: cowfs vs kernel")
        writes = cres[len(LOOK):len(LOOK) + len(WRITES)]
        assert all(r == {"errno": "EROFS"} for r in writes), list(zip(WRITES, writes))
        c.check_alive()


def test_no_upper_o_lowerdir_form(harness):
    """Plain (not differential): `cowfs mount -o lowerdir=A:B M` as the unprivileged user, in the
    background form; the merged view is right and writes fail with EROFS."""
    lay = overlay.make_layers("noupper-o", [TOP, BOTTOM], upper=False)
    user = dict(cwd=harness.base, env=overlay.user_env(harness), capture_output=True,
                text=True, timeout=30)
    r = subprocess.run(overlay.as_user([harness.cowfs_bin, "mount", "-o",
                                        "lowerdir=" + ":".join(lay.lowers), lay.mnt]), **user)
    assert r.returncode == 0, f"cowfs mount failed ({r.returncode}): {r.stderr}"
    try:
        assert overlay.mounted_at(lay.mnt) == "fuse.cowfs"
        res = overlay.run_ops(lay.mnt, [
            ["listdir", "."], ["read_file", "all3.txt"], ["listdir", "d"],
            ["read_file", "hidden.txt"], ["statvfs", "."],
            ["write_file", "new.txt", "x"], ["unlink", "all3.txt"], ["mkdir", "n"],
            ["open", "w", "all3.txt", ["O_RDWR"]], ["chmod", "d", 0o700],
        ])
        assert res[0] == {"ok": ["all3-wh", "all3.txt", "bottom.txt", "d", "dir-over-file",
                                 "file-over-dir", "hidden-dir", "hidden.txt", "link", "op"]}
        assert res[1] == {"ok": "top\n"}
        assert res[2] == {"ok": ["deep", "from-bottom", "from-top", "shared", "sub", "wh-mid"]}
        assert res[3] == {"ok": "hidden by middle's whiteout\n"}  # no middle layer here
        assert res[5:] == [{"errno": "EROFS"}] * 5, res[5:]
        with open("/proc/self/mountinfo") as f:
            opts = [ln.split()[5] for ln in f if ln.split()[4] == os.path.realpath(lay.mnt)]
        assert opts and "ro" in opts[0].split(","), f"mount not flagged read-only: {opts}"
    finally:
        u = subprocess.run(overlay.as_user([harness.cowfs_bin, "umount", lay.mnt]), **user)
        assert u.returncode == 0, f"cowfs umount failed: {u.stderr}"
    assert overlay.mounted_at(lay.mnt) is None

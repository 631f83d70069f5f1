"""Modes, owners, access checks and umask, differentially against kernel overlayfs.

The ops run as the unprivileged test user on both mounts. The kernel reference is mounted by root,
so its copy-ups keep a root owner where cowfs (mounted by the user) cannot: EXPECTED
'copyup-owner' in overlay.py.
"""
from __future__ import annotations

from overlay import Dir, File, Symlink

LOWER = {
    "f": "mine\n",
    "x": File("#!/bin/sh\n", mode=0o755),
    "none": File("no access\n", mode=0o000),
    "root644": File("root's\n", owner="root"),
    "root666": File("root's, world-writable\n", mode=0o666, owner="root"),
    "root600": File("root only\n", mode=0o600, owner="root"),
    "root755": File("#!/bin/sh\n", mode=0o755, owner="root"),
    "rootdir": Dir({"f": "in a root dir\n"}, owner="root"),
    "s": Symlink("f"),
    "sticky": Dir({"rootfile": File("root's\n", owner="root"), "userfile": "user's\n",
                   "other": File("another user's\n", owner=(4242, 4242))},
                  mode=0o1777, owner="root"),
}


def test_chmod_chown_copy_up(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["chmod", "f", 0o600], ["stat", "f"],
        ["chown", "x", "user", "user"], ["chown", "x", -1, -1], ["stat", "x"],
        ["chmod", "x", 0o4755], ["stat", "x"],  # setuid on an own file
        ["open", "h", "s"], ["fchmod", "h", 0o640], ["close", "h"], ["stat", "f"],
        ["lchown", "s", "user", -1], ["lstat", "s"],
        ["chmod", "root644", 0o666],  # not the owner
        ["chown", "f", "root", -1],  # give away
        ["chown", "f", -1, "root"],  # a group the user is not in
        ["chown", "f", 4242, 4242],
        ["stat", "f"],
    ])
    out.assert_same()
    assert out.kernel[1]["ok"]["mode"] == "0600" and out.kernel[6]["ok"]["mode"] == "4755"
    assert [out.kernel[i] for i in (13, 14, 15, 16)] == [{"errno": "EPERM"}] * 4
    for side in ("kernel", "cowfs"):
        upper = pair.upper_tree(side)
        assert upper["f"]["mode"] == "0640" and "root644" not in upper, side


def test_copy_up_of_unreadable_own_file(overlay_pair):
    """The user's own mode-0000 lower file: the kernel copies it up with the mounter's (root's)
    credentials; rootless cowfs copies as the user, who may not read it: EACCES, nothing
    changes (README, differences). Files the user can read copy up on both alike."""
    pair = overlay_pair(LOWER)
    ops = [["chmod", "none", 0o4755], ["stat", "none"]]
    out = pair.run(ops, trees=False)
    assert out.kernel == [{"ok": None}, out.kernel[1]] and out.kernel[1]["ok"]["mode"] == "4755"
    assert out.cowfs[0] == {"errno": "EACCES"} and out.cowfs[1]["ok"]["mode"] == "0000"
    assert set(pair.upper_tree("cowfs")) == {"."}


def test_access(overlay_pair):
    pair = overlay_pair(LOWER)
    ops = []
    for path in ("f", "x", "none", "root644", "root666", "root600", "root755", "rootdir",
                 "rootdir/f", "sticky", "s"):
        ops += [["access", path, [m]] for m in ("F_OK", "R_OK", "W_OK", "X_OK")]
    ops += [["write_file", "u", "u\n", 0o640], ["chmod", "u", 0o400], ["access", "u", ["W_OK"]],
            ["access", "u", ["R_OK"]], ["access", "nope", ["F_OK"]]]
    out = pair.run(ops)
    out.assert_same()
    res = {(op[1], op[2][0]): r for op, r in zip(ops, out.kernel) if op[0] == "access"}
    ok, acc = {"ok": True}, {"errno": "EACCES"}
    assert res["root644", "R_OK"] == ok and res["root644", "W_OK"] == acc
    assert res["root666", "W_OK"] == ok and res["root600", "R_OK"] == acc
    assert res["none", "R_OK"] == acc and res["root755", "X_OK"] == ok
    assert res["rootdir", "W_OK"] == acc and res["rootdir/f", "W_OK"] == ok
    assert res["u", "W_OK"] == acc and res["nope", "F_OK"] == {"errno": "ENOENT"}


def test_write_root_owned_files(overlay_pair, harness):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["open", "w", "root644", ["O_WRONLY"]], ["write_file", "root644", "mine now\n"],
        ["read_file", "root600"],
        ["open", "w", "root666", ["O_WRONLY", "O_APPEND"]], ["write", "w", "added\n"],
        ["close", "w"], ["read_file", "root666"], ["stat", "root666"],
        ["write_file", "rootdir/new", "n\n"],  # root's 0755 dir: EACCES
        ["write_file", "rootdir/f", "changed\n"],  # root's dir copied up for the user's file
        ["listdir", "rootdir"],
    ])
    out.assert_same()
    assert [out.kernel[i] for i in (0, 1, 2, 8)] == [{"errno": "EACCES"}] * 4
    assert out.kernel[6] == {"ok": "root's, world-writable\nadded\n"}
    for side in ("kernel", "cowfs"):
        assert "root644" not in pair.upper_tree(side), side
    # The copied-up dir: the kernel (mounted by root) keeps root as its owner; rootless cowfs
    # cannot chown, so the copy is the user's, and stat says so (SEMANTICS.md, Copy-up: Owner;
    # README, differences): from now on the user may create entries in it.
    out = pair.run([["stat", "rootdir"], ["write_file", "rootdir/new", "n\n"]], trees=False)
    assert out.kernel == [out.kernel[0], {"errno": "EACCES"}]
    assert out.kernel[0]["ok"]["uid"] == 0
    assert out.cowfs == [out.cowfs[0], {"ok": 2}]
    assert out.cowfs[0]["ok"]["uid"] == harness.uid


def test_sticky_dir(overlay_pair):
    """Before anything copies the 1777 root dir up: only own entries may go."""
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["unlink", "sticky/rootfile"], ["unlink", "sticky/other"],
        ["rename", "sticky/rootfile", "sticky/mine"], ["rename", "f", "sticky/rootfile"],
        ["listdir", "sticky"], ["stat", "sticky"],
    ])
    out.assert_same()
    assert [out.kernel[i] for i in range(4)] == [{"errno": "EPERM"}] * 4


def test_sticky_dir_after_copy_up(overlay_pair, harness):
    """Once the user's own change has copied the 1777 root dir up, the kernel (mounted by root)
    keeps root as its owner and the sticky rules as they were; in rootless cowfs the copy is the
    user's (SEMANTICS.md, Copy-up: Owner; README, differences), so its owner may remove
    anything in it, as on any directory the user owns."""
    pair = overlay_pair(LOWER)
    out = pair.run([["write_file", "sticky/new", "n\n"], ["unlink", "sticky/userfile"],
                    ["stat", "sticky"]])
    out.assert_same()
    ops = [["unlink", "sticky/rootfile"], ["unlink", "sticky/other"], ["listdir", "sticky"],
           ["stat", "sticky"]]
    out = pair.run(ops, trees=False)
    assert out.kernel[:3] == [{"errno": "EPERM"}, {"errno": "EPERM"},
                              {"ok": ["new", "other", "rootfile"]}]
    assert out.kernel[3]["ok"]["uid"] == 0 and out.kernel[3]["ok"]["mode"] == "1777"
    assert out.cowfs[:3] == [{"ok": None}, {"ok": None}, {"ok": ["new"]}]
    assert out.cowfs[3]["ok"]["uid"] == harness.uid and out.cowfs[3]["ok"]["mode"] == "1777"


def _setgid_dir(uid: int) -> Dir:
    return Dir({"old": "o\n"}, mode=0o2775, owner=(uid, 0))


def test_setgid_upper_dir(overlay_pair, harness):
    pair = overlay_pair(LOWER, upper={"sg": _setgid_dir(harness.uid)})
    out = pair.run([
        ["stat", "sg"], ["write_file", "sg/f", "f\n"], ["stat", "sg/f"],
        ["mkdir", "sg/sub"], ["stat", "sg/sub"], ["mkdir", "sg/sub/deeper"],
        ["stat", "sg/sub/deeper"], ["mkfifo", "sg/p"], ["stat", "sg/p"],
    ])
    out.assert_same()
    assert out.kernel[2]["ok"]["gid"] == 0 and out.kernel[4]["ok"]["mode"] == "2755"
    assert out.kernel[6]["ok"]["gid"] == 0


def test_setgid_lower_dir(overlay_pair, harness):
    pair = overlay_pair({**LOWER, "sg": _setgid_dir(harness.uid)})
    out = pair.run([
        ["stat", "sg"], ["write_file", "sg/f", "f\n"], ["stat", "sg"], ["stat", "sg/f"],
        ["mkdir", "sg/sub"], ["stat", "sg/sub"],
    ])
    out.assert_same()
    assert out.kernel[2]["ok"]["mode"] == "2775" and out.kernel[3]["ok"]["gid"] == 0
    assert out.kernel[5]["ok"]["mode"] == "2755"
    for side in (out.kernel, out.cowfs):  # new entries take the group the dir shows
        assert side[3]["ok"]["gid"] == side[5]["ok"]["gid"] == side[2]["ok"]["gid"]


def test_umask(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["umask", 0], ["write_file", "a", "a\n", 0o666], ["mkdir", "da", 0o777],
        ["umask", 0o077], ["write_file", "b", "b\n", 0o666], ["mkdir", "db", 0o777],
        ["mkfifo", "pb", 0o666], ["open", "c", "c", ["O_WRONLY", "O_CREAT"], 0o644],
        ["mknod", "sock", 0o777, "s"],
        ["umask", 0o027], ["mkdir", "rootdir-not", 0o777], ["mkdir", "sticky/d", 0o1777],
        ["symlink", "a", "l"],
        ["stat", "a"], ["stat", "da"], ["stat", "b"], ["stat", "db"], ["stat", "pb"],
        ["stat", "c"], ["stat", "sock"], ["stat", "rootdir-not"], ["stat", "sticky/d"],
        ["lstat", "l"],
    ])
    out.assert_same()
    assert [out.kernel[i]["ok"]["mode"] for i in range(13, 22)] == [
        "0666", "0777", "0600", "0700", "0600", "0600", "0700", "0750", "1750"]

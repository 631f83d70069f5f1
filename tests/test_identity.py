"""Object identity: st_ino/st_dev/st_nlink, differentially against kernel overlayfs.

Inode numbers never compare raw between the two mounts (oprunner.py normalizes them to where
they were first seen). Across runner invocations and cache drops, raw numbers are compared on
each mount with itself (`raw_ids`), and the kernel must show the same stability as cowfs.
"""
from __future__ import annotations

import json
import subprocess

import overlay
from overlay import Dir, Fifo, File, Symlink

LOWER = {
    "f.txt": "lower file\n",
    "big": File(b"b" * 200_000),
    "d": Dir({"inner": "i\n", "sub": Dir({"deep": "d\n"})}),
    "sym": Symlink("f.txt"),
    "untouched": "never changed\n",
}
LOWER2 = {"d": Dir({"from-bottom": "b\n"}), "bottom.txt": "bottom\n"}
PATHS = [".", "f.txt", "big", "d", "d/inner", "d/sub", "d/sub/deep", "d/from-bottom", "sym",
         "untouched", "bottom.txt"]

_RAW = ("import json, os, sys\n"
        "os.chdir(sys.argv[1])\n"
        "out = {}\n"
        "for p in sys.argv[2:]:\n"
        "    try:\n"
        "        st = os.lstat(p)\n"
        "        out[p] = [st.st_ino, st.st_dev, st.st_nlink]\n"
        "    except OSError as e:\n"
        "        out[p] = e.errno\n"
        "print(json.dumps(out))\n")


def raw_ids(mnt: str, paths: list[str]) -> dict[str, list[int]]:
    """path -> [st_ino, st_dev, st_nlink], raw, as the test user sees them below MNT."""
    e = overlay.env()
    r = subprocess.run(overlay.as_user([e.python, "-c", _RAW, mnt, *paths]), cwd=e.base,
                       env=overlay.user_env(e), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def drop_caches() -> None:
    """Make the kernel forget dentries and inodes (FUSE: FORGET for every unused node)."""
    subprocess.run(["sync"], check=True, timeout=60)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2\n")


def mounts(pair) -> list[tuple[str, str]]:
    return [("kernel", pair.kernel.mnt), ("cowfs", pair.cowfs.mnt)]


def test_ino_stable_across_copy_up_and_forget(overlay_pair):
    pair = overlay_pair(LOWER, LOWER2)
    before = {side: raw_ids(m, PATHS) for side, m in mounts(pair)}
    out = pair.run([
        ["stat", "f.txt"], ["write_file", "f.txt", "changed\n"], ["stat", "f.txt"],
        ["stat", "big"], ["open", "w", "big", ["O_WRONLY", "O_APPEND"]], ["write", "w", "x"],
        ["fstat", "w"], ["close", "w"], ["stat", "big"],
        ["stat", "d/sub"], ["write_file", "d/sub/deep", "x"], ["stat", "d/sub"],
        ["stat", "d/from-bottom"], ["chmod", "d/from-bottom", 0o600], ["stat", "d/from-bottom"],
        ["lstat", "sym"], ["lchown", "sym", "user", "user"], ["lstat", "sym"],
    ])
    out.assert_same()
    for a, b in ((0, 2), (3, 6), (3, 8), (9, 11), (12, 14), (15, 17)):  # before/after copy-up
        assert out.cowfs[a]["ok"]["ino"] == out.cowfs[b]["ok"]["ino"], (a, b, out.cowfs[b])
    after = {side: raw_ids(m, PATHS) for side, m in mounts(pair)}
    drop_caches()
    forgotten = {side: raw_ids(m, PATHS) for side, m in mounts(pair)}
    # On the kernel a copied-up symlink keeps its st_ino only while it remembers it: user.*
    # xattrs cannot be set on a symlink, so it records no origin. cowfs keeps it (in memory, and
    # across remounts in WORK/cowfs-origins: test_ino_persist.py).
    for side, _ in mounts(pair):
        for p in PATHS:
            assert before[side][p][:2] == after[side][p][:2], \
                f"{side}: {p}: (st_ino, st_dev) before copy-up {before[side][p][:2]}, after " \
                f"{after[side][p][:2]}"
            assert (p == "sym" and side == "kernel") or \
                after[side][p][:2] == forgotten[side][p][:2], \
                f"{side}: {p}: (st_ino, st_dev) after copy-up {after[side][p][:2]}, after " \
                f"drop_caches {forgotten[side][p][:2]}"


def test_copied_up_symlink_and_fifo_keep_ino(overlay_pair):
    """While the kernel remembers them, copied-up symlinks and fifos keep their st_ino, also once
    the entry cache (cowfs: 1 s) expired and the name is looked up again."""
    pair = overlay_pair({"sym": Symlink("x"), "fifo": Fifo(0o644)})
    out = pair.run([
        ["lstat", "sym"], ["lstat", "fifo"],
        ["lchown", "sym", "user", "user"], ["chmod", "fifo", 0o600],
        ["lstat", "sym"], ["lstat", "fifo"], ["sleep", 1.6], ["lstat", "sym"], ["lstat", "fifo"],
    ])
    out.assert_same()
    assert [out.cowfs[i]["ok"]["ino"] for i in (4, 5, 7, 8)] == ["op0", "op1", "op0", "op1"]


def test_inodes_unique_in_tree(overlay_pair):
    """Every entry of a merged tree over two lowers and an upper has its own st_ino."""
    upper = {"u.txt": "upper\n", "d": Dir({"u-in-d": "u"})}
    pair = overlay_pair(LOWER, LOWER2, upper=upper)
    out = pair.run([["write_file", "d/new", "n"], ["mkdir", "newdir"],
                    ["write_file", "f.txt", "copied"], ["symlink", "x", "newsym"]])
    out.assert_same()
    for side, tree in (("kernel", out.kernel_tree), ("cowfs", out.cowfs_tree)):
        shared = {p: e["ino"] for p, e in tree.items() if e["ino"] != p}
        assert not shared, f"{side}: entries sharing an inode with another path: {shared}"
    for side, m in mounts(pair):
        paths = sorted(out.cowfs_tree)
        ids = raw_ids(m, paths)
        inos = [ids[p][0] for p in paths]
        assert len(set(inos)) == len(inos), f"{side}: duplicate st_ino"


def test_hardlinks_share_inode(overlay_pair):
    """Links made through the mount: one st_ino, nlink counting every name, also after remount."""
    pair = overlay_pair(LOWER)
    ops = [
        ["write_file", "new", "n"], ["link", "new", "new2"], ["link", "new", "d/new3"],
        ["stat", "new"], ["stat", "new2"], ["stat", "d/new3"],
        ["link", "untouched", "u2"], ["stat", "untouched"], ["stat", "u2"],
        ["unlink", "new2"], ["stat", "new"], ["stat", "d/new3"],
        ["write_file", "d/new3", "through the other name\n"], ["read_file", "new"],
    ]
    out = pair.run(ops)
    out.assert_same()
    res = out.cowfs
    assert res[3]["ok"]["nlink"] == 3 and res[3]["ok"]["ino"] == res[5]["ok"]["ino"] == "op3"
    assert res[7]["ok"]["nlink"] == 2 and res[8]["ok"]["ino"] == "op7"
    assert res[10]["ok"]["nlink"] == 2 and res[13] == {"ok": "through the other name\n"}
    pair.remount()
    out = pair.run([["stat", "new"], ["stat", "d/new3"], ["stat", "untouched"], ["stat", "u2"]])
    out.assert_same()
    assert out.cowfs[1]["ok"]["ino"] == "op0" and out.cowfs[3]["ok"]["ino"] == "op2"


def test_open_unlinked_file_has_nlink_0(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["write_file", "tmp", "t"], ["open", "a", "tmp", ["O_RDWR"]], ["unlink", "tmp"],
        ["fstat", "a"], ["write", "a", "still writable"], ["pread", "a", 100, 0],
        ["open", "b", "f.txt", ["O_RDWR"]], ["unlink", "f.txt"], ["fstat", "b"],
        ["pread", "b", 100, 0],
        ["open", "c", "untouched", ["O_RDONLY"]], ["unlink", "untouched"], ["fstat", "c"],
        ["read", "c", 100],
        ["close", "a"], ["close", "b"], ["close", "c"],
    ])
    out.assert_same()
    assert out.cowfs[3]["ok"]["nlink"] == 0 and out.cowfs[8]["ok"]["nlink"] == 0


def test_st_dev_same_for_whole_mount(overlay_pair):
    upper = {"u.txt": "upper\n"}
    pair = overlay_pair(LOWER, LOWER2, upper=upper)
    pair.run([["write_file", "f.txt", "copied"], ["mkdir", "newdir"]], trees=False)
    for side, m in mounts(pair):
        ids = raw_ids(m, PATHS + ["u.txt", "newdir"])
        devs = {p: v[1] for p, v in ids.items()}
        assert len(set(devs.values())) == 1, f"{side}: st_dev differs inside the mount: {devs}"

"""Inodes persist (issue 16, item 3): an object's st_ino stays the same across copy-up and across
unmount and remount, no two objects share one, and readdir's d_ino is the entry's st_ino.

A tree over two lowers (files, dirs, symlinks, fifos, a lower hard link) is walked raw on both
mounts, half of it is copied up (writes, chmods, lchowns, renames within a dir, xattrs), then
the tree is walked again, both sides are remounted and it is walked a third time. Inode numbers
compare raw, each mount with itself (they never compare between the two mounts).

The kernel (userxattr, no xino) keeps every st_ino except those of the symlinks and fifos it
copied up: user.* xattrs cannot be set on those, so it records no origin and shows the upper
inode's number once it forgot the object (after a remount); and a lower hard link gets the
upper's number when copied up (no index=on). cowfs goes beyond it there: it keeps the origins of
symlinks and special files in WORK/cowfs-origins (originmap.py, README "Differences"). Run again
with the bottom lower on a tmpfs of its own: cowfs's numbers stay unique; the kernel's repeat
across layers (told apart by st_dev only) and a merged dir's d_ino is not its st_ino there.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

import overlay
from overlay import Dir, Fifo, File, Hardlink, Symlink

LOWER = {
    "f1": "one\n",
    "f2": "two\n",
    "keep": "kept\n",
    "d1": Dir({"g1": "g1\n", "g2": "g2\n", "sub": Dir({"h": "h\n", "k": "k\n"})}),
    "s1": Symlink("f1"),
    "s2": Symlink("d1"),
    "s3": Symlink("nowhere"),
    "fifo1": Fifo(0o644),
    "fifo2": Fifo(0o644),
    "fifo3": Fifo(0o644),
    "hl1": File("linked\n"),
    "hl2": Hardlink("hl1"),
    "ds": Dir({"s4": Symlink("../f1"), "p": Fifo(0o600), "x": "x\n"}),
}
LOWER2 = {
    "d1": Dir({"b1": "bottom\n", "b2": "bottom 2\n"}),
    "bot": "bot\n",
    "bot2": "bot2\n",
    "bsym": Symlink("bot"),
    "bsym2": Symlink("bot2"),
    "bfifo": Fifo(0o644),
    "bdir": Dir({"bf": "bf\n", "bg": "bg\n"}),
}

OPS = [
    ["write_file", "f1", "changed\n"],
    ["rename", "f2", "f2r"],
    ["chmod", "d1/g1", 0o600],
    ["setxattr", "d1/sub/h", "user.test", "v"],
    ["lchown", "s1", "user", "user"],
    ["rename", "s2", "s2r"],
    ["chmod", "fifo1", 0o600],
    ["rename", "fifo2", "fifo2r"],
    ["write_file", "hl1", "written\n"],
    ["rename", "ds/s4", "ds/s4r"],
    ["chmod", "ds/p", 0o640],
    ["chmod", "d1/b1", 0o600],
    ["rename", "bot", "botr"],
    ["lchown", "bsym", "user", "user"],
    ["rename", "bsym2", "bsym2r"],
    ["rename", "bfifo", "bfifor"],
    ["chmod", "bdir", 0o700],
    ["write_file", "bdir/bf", "new bf\n"],
    # upper-only objects
    ["write_file", "new", "new\n"], ["symlink", "f1", "newsym"], ["mkfifo", "newfifo"],
    ["mkdir", "newdir"], ["write_file", "newdir/n", "n\n"],
]
RENAMED = {"f2": "f2r", "s2": "s2r", "fifo2": "fifo2r", "ds/s4": "ds/s4r", "bot": "botr",
           "bsym2": "bsym2r", "bfifo": "bfifor"}
# Lower hard links: one st_ino for both names; the kernel (no index=on) breaks the link when it
# copies one up, cowfs links both names to the copy: one object throughout (test_hardlinks.py).
LINKED = {"hl1", "hl2"}
# What the kernel renumbers when it copies it up: a lower hard link (without index=on).
KERNEL_COPY_UP_RENUMBERED = {"hl1"}
# What the kernel copies up without an origin it can record: renumbered after a remount.
# (paths before the renames)
KERNEL_RENUMBERED = {"s1", "s2", "fifo1", "fifo2", "ds/s4", "ds/p", "bsym", "bsym2", "bfifo"}

_WALK = ("import json, os, sys\n"
         "root = sys.argv[1]\n"
         "out = {}\n"
         "def walk(rel):\n"
         "    with os.scandir(os.path.join(root, rel)) as it:\n"
         "        ents = sorted(it, key=lambda e: e.name)\n"
         "    for e in ents:\n"
         "        p = os.path.join(rel, e.name) if rel else e.name\n"
         "        st = os.lstat(e.path)\n"
         "        out[p] = [st.st_ino, e.inode(), st.st_mode >> 12]\n"
         "        if e.is_dir(follow_symlinks=False):\n"
         "            walk(p)\n"
         "st = os.lstat(root)\n"
         "out['.'] = [st.st_ino, st.st_ino, st.st_mode >> 12]\n"
         "walk('')\n"
         "print(json.dumps(out))\n")


def walk(mnt: str) -> dict[str, list[int]]:
    """path -> [st_ino, d_ino, S_IFMT >> 12] of everything below MNT, raw, as the test user."""
    e = overlay.env()
    r = subprocess.run(overlay.as_user([e.python, "-c", _WALK, mnt]), cwd=e.base,
                       env=overlay.user_env(e), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _moved(before: dict, after: dict) -> dict[str, str]:
    """Path before the ops -> path after, for every object that still exists."""
    out = {}
    for p in before:
        q = RENAMED.get(p, p)
        assert q in after, f"{q} missing after the ops"
        out[p] = q
    return out


def _ino_changes(before: dict, after: dict, moved: dict[str, str]) -> dict[str, tuple]:
    return {p: (before[p][0], after[q][0]) for p, q in moved.items()
            if before[p][0] != after[q][0]}


def _check_tree(side: str, tree: dict, linked_may_share: bool) -> None:
    wrong_dino = {p: v[:2] for p, v in tree.items() if v[0] != v[1]}
    assert not wrong_dino, f"{side}: d_ino differs from st_ino: {wrong_dino}"
    by_ino: dict[int, list[str]] = {}
    for p, v in tree.items():
        by_ino.setdefault(v[0], []).append(p)
    shared = [ps for ps in by_ino.values() if len(ps) > 1
              and not (linked_may_share and set(ps) <= LINKED)]
    assert not shared, f"{side}: objects sharing an st_ino: {shared}"


@pytest.mark.parametrize("lower_fs", [None, {1: "tmpfs:size=4m"}], ids=["one-fs", "lower-on-tmpfs"])
def test_inodes_persist_across_copy_up_and_remount(overlay_pair, lower_fs):
    pair = overlay_pair(LOWER, LOWER2, lower_fs=lower_fs)
    sides = {"kernel": lambda: pair.kernel.mnt, "cowfs": lambda: pair.cowfs.mnt}
    before = {s: walk(m()) for s, m in sides.items()}
    out = pair.run(OPS)
    out.assert_same()
    copied = {s: walk(m()) for s, m in sides.items()}
    pair.remount()
    remounted = {s: walk(m()) for s, m in sides.items()}
    assert pair.run([]).diffs() == []  # the same merged trees after the remount

    moved = _moved(before["cowfs"], copied["cowfs"])
    upper_only = {"new", "newsym", "newfifo", "newdir", "newdir/n"}
    assert set(copied["cowfs"]) - set(moved.values()) == upper_only
    # cowfs: every object keeps its st_ino across copy-up and across the remount, no two share
    # one (the names of a lower hard link are one), and d_ino is st_ino, at every step
    c_before, c_copied, c_remounted = before["cowfs"], copied["cowfs"], remounted["cowfs"]
    changes = _ino_changes(c_before, c_copied, moved)
    assert not changes, f"cowfs: st_ino changed by copy-up: {changes}"
    changes = _ino_changes(c_before, c_remounted, moved)
    assert not changes, f"cowfs: st_ino changed by the remount: {changes}"
    changes = {p: (c_copied[p][0], c_remounted[p][0]) for p in upper_only
               if c_copied[p][0] != c_remounted[p][0]}
    assert not changes, f"cowfs: st_ino of upper objects changed by the remount: {changes}"
    for tree in (c_before, c_copied, c_remounted):
        _check_tree("cowfs", tree, linked_may_share=True)
        assert tree["hl1"][0] == tree["hl2"][0]

    # The kernel: a copied-up lower hard link gets the upper's number (no index=on); the
    # symlinks and fifos it copied up get the upper's once remounted (no origin on them).
    k_before, k_copied, k_remounted = before["kernel"], copied["kernel"], remounted["kernel"]
    copy_up = _ino_changes(k_before, k_copied, moved)
    remount = {p: (k_copied[q][0], k_remounted[q][0]) for p, q in moved.items()
               if k_copied[q][0] != k_remounted[q][0]}
    assert set(copy_up) == KERNEL_COPY_UP_RENUMBERED, f"kernel: by copy-up: {copy_up}"
    assert set(remount) == KERNEL_RENUMBERED, f"kernel: by the remount: {remount}"
    for p in upper_only:
        assert k_copied[p][0] == k_remounted[p][0], ("kernel", p)
    if lower_fs is not None:
        # layers on two filesystems, no xino: st_ino repeats across layers (told apart by
        # st_dev only) and a merged directory's d_ino is not its st_ino
        return
    for tree in (k_before, k_copied, k_remounted):
        _check_tree("kernel", tree, linked_may_share=True)


def test_origin_records_follow_removal_and_renames(overlay_pair):
    """A copied-up symlink's origin goes with it when it is removed (its inode number, reused
    by a new upper object, does not bring the old origin back), and follows it through renames
    and a second remount."""
    pair = overlay_pair({"s": Symlink("a"), "t": Symlink("b"), "p": Fifo(0o644), "f": "f\n"})
    mnt = lambda: pair.cowfs.mnt  # noqa: E731
    before = walk(mnt())
    pair.run([["lchown", "s", "user", "user"], ["lchown", "t", "user", "user"],
              ["chmod", "p", 0o600]]).assert_same()
    pair.remount()
    assert {p: v[0] for p, v in walk(mnt()).items()} == {p: v[0] for p, v in before.items()}
    pair.run([["unlink", "s"], ["symlink", "x", "new"], ["rename", "t", "t2"],
              ["rename", "p", "p2"]]).assert_same()
    new = walk(mnt())["new"][0]
    pair.remount()
    after = walk(mnt())
    assert after["new"][0] == new  # an upper object: its own number, whatever inode it reused
    assert after["t2"][0] == before["t"][0] and after["p2"][0] == before["p"][0]
    assert after["f"][0] == before["f"][0] and "s" not in after
    _check_tree("cowfs", after, linked_may_share=False)
    with open(os.path.join(pair.cowfs_layers.work, "cowfs-origins"), "rb") as f:
        records = f.read().splitlines()
    assert [r[:1] for r in records] == [b"=", b"+", b"+", b"+", b"-"], records


def test_origin_map_log(tmp_path):
    """The log: later records win, a torn last line is skipped (and cut off, so the next record
    starts a line), it is compacted once mostly dead, and ignored with another upper."""
    from cowfs.originmap import OriginMap  # noqa: PLC0415

    work = tmp_path / "w"
    (work / "work").mkdir(parents=True)
    fd = os.open(work / "work", os.O_RDONLY | os.O_DIRECTORY)
    try:
        m = OriginMap(str(work), fd, 7)
        assert m.load() == {}
        m.add(10, b"l:0:1:10")
        m.add(11, b"l:0:1:11\nwith:a newline")
        m.drop(10)
        m.close()
        with open(work / "cowfs-origins", "ab") as f:
            f.write(b"+12 6c3a")  # torn
        m = OriginMap(str(work), fd, 7)
        assert m.load() == {11: b"l:0:1:11\nwith:a newline"}
        assert (work / "cowfs-origins").read_bytes().endswith(b"\n")
        for i in range(100):
            m.add(100 + i, b"l:0:1:%d" % i)
        for i in range(95):
            m.drop(100 + i)
        m.close()
        m = OriginMap(str(work), fd, 7)
        assert m.load() == {11: b"l:0:1:11\nwith:a newline",
                            **{100 + i: b"l:0:1:%d" % i for i in range(95, 100)}}
        assert (work / "cowfs-origins").read_bytes().splitlines()[0] == b"=7"
        assert len((work / "cowfs-origins").read_bytes().splitlines()) == 7
        assert os.listdir(work / "work") == []
        # a work dir given with another upper: the records are not that upper's
        assert OriginMap(str(work), fd, 8).load() == {}
        assert (work / "cowfs-origins").read_bytes() == b"=8\n"
    finally:
        os.close(fd)

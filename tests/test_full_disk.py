"""Full disk, read-only upper (issue 14 item 3), differentially against kernel overlayfs.

Each side's upper and work dir live on a small filesystem of their own (overlay_pair(...,
upper_fs=...): a tmpfs with size= or nr_inodes=, or a loop-mounted ext4 image), so filling it
fills only that side. The same ops then run on both mounts and every result (errno included) and
both merged trees are compared; the cowfs work dir must hold nothing after a failure, the uppers
hold the same names, and freeing space (or remounting the upper filesystem read-write) lets the
same changes succeed on the running mounts, without a remount of the overlay.

Cases (README "Reliability: full disk, read-only upper"):
- a copy-up bigger than the free space: ENOSPC, nothing in upper or work, the space back, the
  lower file reads as before (tmpfs and ext4)
- a full filesystem (blocks): writes, copy-ups, metadata copy-ups (chmod, setxattr), whiteouts,
  mkdir, rename, link, symlink of lower and upper objects (tmpfs and ext4)
- no inodes left (tmpfs nr_inodes=, its xattr space filled too): the same, and setxattr on an
  upper file
- the upper filesystem remounted read-only under the running mounts: reads are served, every
  change gives EROFS; remounted read-write, changes go on
"""
from __future__ import annotations

import json
import os
import random

import pytest

import overlay
from overlay import Dir, File
from test_whiteout import upper_markers
from test_diff import cowfs, ok

BIG = 3 << 20  # a lower file bigger than a whole small upper filesystem
BIG_DATA = random.Random(1).randbytes(BIG)

LOWER = {
    "big.bin": File(BIG_DATA),
    "small.txt": "hello\n",
    "meta.txt": "meta\n",
    "xattr.txt": File("x\n", xattrs={"user.keep": "1"}),
    "gone.txt": "bye\n",
    "ren.txt": "ren\n",
    "link.txt": "link\n",
    "up.txt": "copied up before the disk filled\n",
    "upgone.txt": "copied up, then removed on a full disk\n",
    "upren.txt": "copied up, then renamed on a full disk\n",
    "d": Dir({"f": "in d\n", "g": "in d too\n"}),
    "emptyd": Dir(),
    "wh.txt": "removed before the disk filled\n",
    "whd": Dir({"x": "removed with its dir\n"}),
    "spare.txt": "removed by the kernel's spare whiteout\n",
}

# the state before the filesystem fills up: upper copies of some lower files, an upper dir, an
# upper-only file
BEFORE = [
    ["chmod", "up.txt", 0o640], ["chmod", "upgone.txt", 0o640], ["chmod", "upren.txt", 0o640],
    ["write_file", "mine.txt", "upper only\n"], ["mkdir", "updir"],
    ["unlink", "wh.txt"], ["unlink", "whd/x"], ["rmdir", "whd"],
]

# every kind of change; on a full filesystem each fails, or succeeds where the filesystem still
# has room for it (a whiteout needs an inode, not a block): the kernel's results are the reference
CHANGES = [
    ["write_file", "new.txt", {"pattern": 7, "size": 64 << 10}],  # a new file's data
    ["open", "a", "small.txt", ["O_WRONLY", "O_APPEND"]],  # copy-up with data
    ["write", "a", "more\n"],
    ["close", "a"],
    ["chmod", "meta.txt", 0o600],  # metadata copy-up
    ["setxattr", "xattr.txt", "user.new", "v"],  # metadata copy-up, xattrs kept
    ["chmod", "d/g", 0o600],  # copy-up of the parent dir first, then the file
    ["unlink", "gone.txt"],  # whiteout over nothing
    ["unlink", "upgone.txt"],  # whiteout over an upper copy
    ["mkdir", "newdir"],
    ["rename", "ren.txt", "ren2.txt"],  # copy-up, then a whiteout at the old name
    ["rename", "upren.txt", "upren2.txt"],  # only the whiteout at the old name
    ["link", "link.txt", "link2.txt"],
    ["symlink", "small.txt", "sym"],
    ["mkfifo", "fifo"],
    ["rmdir", "emptyd"],
    ["unlink", "d/f"],
    ["truncate", "big.bin", 1],  # the whole file is copied first: never fits
    ["open", "t", "meta.txt", ["O_WRONLY", "O_TRUNC"]],  # copy-up without data
    ["close", "t"],
    ["write_file", "mine.txt", "rewritten\n"],  # upper-only file, truncated and rewritten
    ["setxattr", "mine.txt", "user.mine", "m" * 200],
    ["setxattr", "updir", "user.dir", "d" * 200],
    ["mkdir", "updir/sub"],
    ["chmod", "up.txt", 0o600],  # an upper copy: no copy-up needed
    ["symlink", "small.txt", "wh.txt"],  # a new object over a whiteout
    ["mkdir", "whd"],  # an opaque directory over a whiteout
    ["mkdir", "whd/in"],
]

READS = [
    ["read_file", "small.txt"], ["read_file", "big.bin"], ["stat", "meta.txt"],
    ["read_file", "meta.txt"], ["getxattr", "xattr.txt", "user.keep"],
    ["listxattr", "xattr.txt"], ["listdir", "."], ["listdir", "d"], ["read_file", "ren.txt"],
    ["stat", "link.txt"], ["read_file", "up.txt"], ["stat", "up.txt"], ["read_file", "mine.txt"],
    ["listdir", "updir"], ["listxattr", "mine.txt"], ["readlink", "wh.txt"], ["listdir", "whd"],
]

FILL = "fill"  # the filler objects live here; their number may differ between the sides


def upper_fs_for(kind: str, size: str) -> str:
    return f"tmpfs:size={size}" if kind == "tmpfs" else f"ext4:size={size}"


def layers(pair, side: str) -> overlay.Layers:
    return pair.cowfs_layers if side == "cowfs" else pair.kernel_layers


def statvfs(pair, side: str) -> os.statvfs_result:
    return os.statvfs(layers(pair, side).upper_fs)


def work_leftovers(pair) -> list[str]:
    """What the cowfs work dir (WORK/work, its scratch area) holds: nothing between requests."""
    return sorted(os.listdir(os.path.join(pair.cowfs_layers.work, "work")))


def _under(path: str, tops: tuple[str, ...]) -> bool:
    return any(path == t or path.startswith(t + "/") for t in tops)


def upper_names(pair, side: str, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """upper_markers of SIDE's raw upper, the fillers and SKIP left out."""
    return {p: m for p, m in upper_markers(pair, side).items() if not _under(p, (FILL, *skip))}


def assert_trees_same(pair, skip: tuple[str, ...] = ()) -> None:
    """Both merged trees equal up to EXPECTED_DIFFERENCES (SKIP: subtrees left out), and the
    uppers hold the same names."""
    kt, ct = ({p: e for p, e in t.items() if not _under(p, skip)} for t in pair.trees())
    bad, ok = overlay.classify(overlay.compare_trees(kt, ct), pair.context())
    assert not bad, overlay.format_diffs(bad, ok, title="merged trees")
    assert upper_names(pair, "cowfs", skip) == upper_names(pair, "kernel", skip)


def run_same(pair, ops: list, *, trees: bool = True) -> overlay.Outcome:
    out = pair.run(ops, trees=trees)
    out.assert_same(trees=trees)
    assert work_leftovers(pair) == []
    return out


def run_each(pair, ops: list) -> tuple[list, list]:
    """OPS on both sides, results not compared (fillers: the sides may differ by an object)."""
    return (overlay.run_ops(pair.kernel.mnt, ops), overlay.run_ops(pair.cowfs.mnt, ops))


def fill_blocks(pair) -> None:
    """Fill both upper filesystems' blocks: one big file, then a tail appended in 4 KiB and
    1 KiB pieces until ENOSPC (ext4 refuses a big write some blocks before it is full)."""
    tail = [["open", "t", f"{FILL}/tail", ["O_WRONLY", "O_CREAT", "O_APPEND"]]]
    tail += [["write", "t", {"pattern": i, "size": 4096}] for i in range(64)]
    tail += [["write", "t", {"pattern": i, "size": 1024}] for i in range(256)]
    tail += [["close", "t"]]
    for res in run_each(pair, [["mkdir", FILL], ["write_file", f"{FILL}/big",
                                                 {"pattern": 2, "size": 32 << 20}]] + tail):
        assert res[1] == {"errno": "ENOSPC"}, res[1]
        assert res[-2] == {"errno": "ENOSPC"}, res[-2]
    for side in ("kernel", "cowfs"):
        sv = statvfs(pair, side)
        assert sv.f_bavail * sv.f_frsize < 64 << 10, (side, sv)


def free_blocks(pair) -> None:
    out = run_same(pair, [["unlink", f"{FILL}/big"], ["unlink", f"{FILL}/tail"],
                          ["rmdir", FILL]], trees=False)
    assert out.cowfs == [{"ok": None}] * 3


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fs", ["tmpfs", "ext4"])
def test_copyup_bigger_than_free_space(overlay_pair, fs):
    """The copy-up of a lower file bigger than what the upper filesystem has free fails with
    ENOSPC partway through its data: nothing of it stays in upper or work, the space it took is
    free again, the lower file reads as before; a copy-up without data (O_TRUNC) still works."""
    pair = overlay_pair(LOWER, upper_fs=upper_fs_for(fs, "2m" if fs == "tmpfs" else "4m"))
    free = {side: statvfs(pair, side).f_bfree for side in ("kernel", "cowfs")}
    out = run_same(pair, [
        ["open", "w", "big.bin", ["O_RDWR"]],
        ["open", "a", "big.bin", ["O_WRONLY", "O_APPEND"]],
        ["chmod", "big.bin", 0o600], ["setxattr", "big.bin", "user.x", "1"],
        ["rename", "big.bin", "moved.bin"], ["link", "big.bin", "big2.bin"],
        ["truncate", "big.bin", 1 << 20],
        ["read_file", "big.bin"], ["stat", "big.bin"], ["listdir", "."],
    ])
    assert out.cowfs[:7] == [{"errno": "ENOSPC"}] * 7, out.cowfs[:7]
    assert upper_names(pair, "cowfs") == upper_names(pair, "kernel") == {}
    for side in ("kernel", "cowfs"):  # the partial copy's blocks are free again
        assert statvfs(pair, side).f_bfree == free[side], side
    with open(os.path.join(pair.cowfs_layers.lowers[0], "big.bin"), "rb") as f:
        assert f.read() == BIG_DATA
    # unmounted, `cowfs fsck` finds nothing to repair in either upper or work dir; mounted again
    pair.unmount()
    for side in ("kernel", "cowfs"):
        lay = layers(pair, side)
        assert ok(cowfs("fsck", "--upper", lay.upper, "--work", lay.work)) == "", side
    pair.kernel_layers.new_work()
    pair.mount()
    # without its data the copy fits: open(O_TRUNC) copies up an empty file
    run_same(pair, [["open", "t", "big.bin", ["O_WRONLY", "O_TRUNC"]], ["write", "t", "now\n"],
                    ["close", "t"], ["read_file", "big.bin"], ["stat", "big.bin"]])


@pytest.mark.parametrize("fs", ["tmpfs", "ext4"])
def test_full_filesystem(overlay_pair, fs):
    """Every change on a full upper filesystem (no block free) fails with the kernel's errno or
    succeeds as on the kernel (a whiteout or a directory may still fit where data does not);
    nothing partial is left; once the filler is removed the same changes succeed on the same
    mounts."""
    pair = overlay_pair(LOWER, upper_fs=upper_fs_for(fs, "1m" if fs == "tmpfs" else "8m"))
    run_same(pair, BEFORE)
    fill_blocks(pair)
    out = run_same(pair, READS + CHANGES + READS)
    changes = out.cowfs[len(READS):len(READS) + len(CHANGES)]
    for i in (0, 1, 17):  # whatever else finds room, new data does not fit
        assert changes[i] == {"errno": "ENOSPC"}, (CHANGES[i], changes[i])
    assert_trees_same(pair)
    free_blocks(pair)
    out = run_same(pair, CHANGES + READS)
    assert_all_done(out, "tmpfs-1m" if fs == "tmpfs" else fs)


def assert_all_done(out: overlay.Outcome, fs: str) -> None:
    """Every change of CHANGES (run again after space came back) succeeded, or failed as it
    must: a name made or removed by its first run (EEXIST, ENOENT), the 3 MiB copy-up on a
    1 MiB tmpfs (ENOSPC)."""
    for op, r in zip(out.ops, out.cowfs):
        if op not in CHANGES or "ok" in r:
            continue
        if op == ["truncate", "big.bin", 1] and fs == "tmpfs-1m":
            assert r == {"errno": "ENOSPC"}
        else:
            assert r in ({"errno": "EEXIST"}, {"errno": "ENOENT"}, {"errno": "EBADF"}), (op, r)


def test_no_inodes_left(overlay_pair):
    """tmpfs nr_inodes= exhausted (and its xattr space, which tmpfs counts with the inodes): a
    whiteout, mkdir, create, copy-up, rename, setxattr of a lower or an upper object: ENOSPC as
    on the kernel, nothing changed (a rename that needs a whiteout at its old name did move,
    then fail, before cowfs made it one RENAME_WHITEOUT); freed, the same changes succeed."""
    pair = overlay_pair(LOWER, upper_fs="tmpfs:size=8m,nr_inodes=48")
    run_same(pair, BEFORE)
    fill = [["mkdir", FILL]] + [["mkfifo", f"{FILL}/{i}"] for i in range(48)]
    # the kernel's upper root carries user.overlay.uuid: the xattr space left differs by that,
    # so it is filled too, in small pieces, until ENOSPC on both sides
    fill += [["setxattr", FILL, f"user.f{i}", "f" * 16] for i in range(64)]
    for res in run_each(pair, fill):
        assert res[48] == {"errno": "ENOSPC"} and res[-1] == {"errno": "ENOSPC"}, res
    for side in ("kernel", "cowfs"):
        assert statvfs(pair, side).f_favail == 0, side
    # The kernel keeps one whiteout inode in its work dir (it links every whiteout to it): when
    # no link can be made it hands out that one, so it can still remove one name on a
    # filesystem with no inode left, where cowfs answers ENOSPC (a harmless difference: an
    # error, nothing lost; README). Used up here; cowfs gets one inode for the same removal.
    k, c = run_each(pair, [["unlink", "spare.txt"]])
    assert (k, c) == ([{"ok": None}], [{"errno": "ENOSPC"}]), (k, c)
    c = overlay.run_ops(pair.cowfs.mnt, [["unlink", f"{FILL}/0"], ["unlink", "spare.txt"]])
    assert c == [{"ok": None}] * 2, c
    for side in ("kernel", "cowfs"):
        assert statvfs(pair, side).f_favail == 0, side
    out = run_same(pair, READS + CHANGES + READS, trees=False)
    changes = out.cowfs[len(READS):len(READS) + len(CHANGES)]
    fits = {'["write_file", "mine.txt", "rewritten\\n"]': {"ok": 10},  # no new inode: fits
            '["chmod", "up.txt", 384]': {"ok": None}}
    for op, r in zip(CHANGES, changes):
        want = {"errno": "EBADF"} if op[0] in ("write", "close") else {"errno": "ENOSPC"}
        if op == ["mkdir", "whd/in"]:
            want = {"errno": "ENOENT"}  # its parent was not made
        assert r == fits.get(json.dumps(op), want), (op, r)
    assert_trees_same(pair, skip=(FILL,))
    # freed (the fillers' number may differ by one between the sides: not compared)
    for res in run_each(pair, [["unlink", f"{FILL}/{i}"] for i in range(48)]
                        + [["rmdir", FILL]]):
        assert res[-1] == {"ok": None}
    out = run_same(pair, CHANGES + READS)
    assert_all_done(out, "tmpfs-8m")


def test_space_of_unlinked_file_comes_back_at_once(overlay_pair):
    """On a full upper, removing a file makes room for the next request at once, as on the
    kernel. (cowfs holds an unlinked file open until the kernel forgets its inode, and the
    kernel may send that FORGET after the caller's next requests: about one write in 80 here
    failed with ENOSPC before such a request waited for it, errors.py.)"""
    lower = dict(LOWER, **{f"l{i}": "lower\n" for i in range(40)})
    pair = overlay_pair(lower, upper_fs="tmpfs:size=1m")
    run_same(pair, [["chmod", f"l{i}", 0o600] for i in range(40)]
             + [["write_file", f"u{i}", "upper\n"] for i in range(40)], trees=False)
    fill_blocks(pair)
    ops = [op for i in range(40) for op in (
        ["unlink", f"l{i}"], ["write_file", f"n{i}", "y"],  # a whiteout over an upper copy
        ["unlink", f"u{i}"], ["write_file", f"m{i}", "y"])]  # an upper-only file
    out = run_same(pair, ops, trees=False)
    assert all("ok" in r for r in out.cowfs), out.report()
    assert_trees_same(pair)


@pytest.mark.parametrize("fs", ["tmpfs", "ext4"])
def test_write_that_does_not_fit(overlay_pair, fs):
    """Writes bigger than the free space, to a new file, an upper file and a copied-up one:
    the part that fits is written (a short write), the next write fails with ENOSPC; sizes and
    contents afterwards are the kernel's; fsync of what was written succeeds."""
    pair = overlay_pair(LOWER, upper_fs=upper_fs_for(fs, "1m" if fs == "tmpfs" else "4m"))
    run_same(pair, BEFORE)
    big = {"pattern": 9, "size": 8 << 20}
    out = run_same(pair, [
        ["write_file", "new.bin", big], ["stat", "new.bin"], ["read_file", "new.bin"],
        ["open", "a", "mine.txt", ["O_WRONLY", "O_APPEND"]], ["write", "a", "still fits\n"],
        ["fsync", "a"], ["close", "a"], ["read_file", "mine.txt"],
        ["unlink", "new.bin"],
        ["open", "b", "up.txt", ["O_RDWR"]], ["pwrite", "b", big, 100], ["fsync", "b"],
        ["fstat", "b"], ["close", "b"], ["stat", "up.txt"], ["read_file", "up.txt"],
        ["truncate", "up.txt", 5], ["read_file", "up.txt"],
        ["write_file", "new2.bin", "fits again\n"], ["read_file", "new2.bin"],
    ])
    assert out.cowfs[0] == {"errno": "ENOSPC"}
    assert out.cowfs[4]["ok"] == len("still fits\n")
    assert out.cowfs[10] != {"errno": "ENOSPC"} and out.cowfs[10]["ok"] < 8 << 20  # short
    assert out.cowfs[18] == {"ok": len("fits again\n")}


READ_ONLY_EXTRA = [
    ["read_file", "mine.txt"], ["access", "mine.txt", ["W_OK"]],
    ["open", "u", "mine.txt", ["O_WRONLY"]], ["open", "r", "mine.txt", ["O_RDONLY"]],
    ["read", "r", 100], ["close", "r"], ["unlink", "mine.txt"],
    ["setxattr", "mine.txt", "user.a", "b"], ["removexattr", "xattr.txt", "user.keep"],
    ["utime", "mine.txt"], ["chmod", "mine.txt", 0o600], ["truncate", "mine.txt", 0],
    ["rmdir", "updir"], ["rename", "mine.txt", "updir/mine.txt"],
]


@pytest.mark.parametrize("fs", ["tmpfs", "ext4"])
def test_read_only_upper(overlay_pair, fs):
    """The upper's filesystem remounted read-only under the running mounts: every read is
    served, every change gives EROFS, as on the kernel (access(W_OK) is the one difference:
    EXPECTED_DIFFERENCES "ro-upper-access"); remounted read-write, the changes succeed without
    a remount of the overlay."""
    pair = overlay_pair(LOWER, upper_fs=upper_fs_for(fs, "8m"))
    run_same(pair, BEFORE)
    pair.remount_upper_fs("ro")
    try:
        out = run_same(pair, READS + READ_ONLY_EXTRA + CHANGES + READS)
    finally:
        pair.remount_upper_fs("rw")
    for op, r in zip(out.ops, out.cowfs):
        if op in READS:  # as on the kernel; ENOENT for names made only later
            assert r not in ({"errno": "EROFS"}, {"errno": "EIO"}), (op, r)
        elif op[0] in ("write", "close") and op[1] in ("a", "t"):  # of a failed open
            assert r == {"errno": "EBADF"}, (op, r)
        elif op[0] in ("read_file", "read", "close", "access") or op[3:] == [["O_RDONLY"]]:
            assert "ok" in r, (op, r)
        elif op == ["mkdir", "whd/in"]:  # its parent was not made
            assert r == {"errno": "ENOENT"}, (op, r)
        else:
            assert r == {"errno": "EROFS"}, (op, r)
    out = run_same(pair, CHANGES + READS)
    assert_all_done(out, "tmpfs-8m")

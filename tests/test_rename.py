"""rename(2) and renameat2(2), differentially against kernel overlayfs (see tests/overlay.py).

Kernel overlay in userxattr mode has no redirect_dir: a merged or lower directory cannot move
(EXDEV); everything else renames, leaving a whiteout where a lower name disappears.
"""
from __future__ import annotations

from overlay import Dir, Hardlink

LOWER = {
    "a": "A\n",
    "b": "B\n",
    "d": Dir({"x": "X\n"}),  # lower dir with a child: merged once touched
    "lonly": Dir({"y": "Y\n"}),  # lower-only dir that receives a renamed file
    "edir": Dir(),  # empty lower dir
    "wdir": Dir({"gone": "G\n"}),  # emptied through the mount: merged dir holding a whiteout
    "full": Dir({"k": "K\n"}),
    "h1": "shared\n",
    "h2": Hardlink("h1"),
}


def upper_markers(pair, side: str) -> dict:
    """path -> "whiteout" | "opaque" | type, from SIDE's raw upper (the on-disk format)."""
    out = {}
    for path, e in pair.upper_tree(side).items():
        if path == "." or "type" not in e:
            continue
        if e["type"] == "c" and e.get("rdev") == [0, 0]:
            out[path] = "whiteout"
        elif e["type"] == "d" and e["xattrs"].get("user.overlay.opaque") == "y":
            out[path] = "opaque"
        else:
            out[path] = e["type"]
    return out


def same_markers(pair) -> dict:
    markers = upper_markers(pair, "cowfs")
    assert markers == upper_markers(pair, "kernel")
    return markers


def test_lower_file_same_dir_leaves_whiteout(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["stat", "a"], ["rename", "a", "a2"], ["stat", "a2"], ["exists", "a"],
        ["read_file", "a2"], ["listdir", "."], ["rename", "a", "a3"],
    ])
    out.assert_same()
    assert out.kernel[2]["ok"]["ino"] == "op0"  # st_ino survives copy-up + rename
    assert out.kernel[6] == {"errno": "ENOENT"}
    markers = same_markers(pair)
    assert markers["a"] == "whiteout" and markers["a2"] == "f"


def test_lower_file_to_other_dirs(overlay_pair):
    """Into a merged dir, and into a lower-only dir that gets copied up for it."""
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["stat", "b"], ["rename", "b", "d/b"], ["stat", "d/b"], ["listdir", "d"],
        ["rename", "a", "lonly/a"], ["listdir", "lonly"], ["read_file", "lonly/a"],
        ["read_file", "lonly/y"], ["stat", "lonly"], ["stat_times", "lonly"],
        ["listdir", "."],
    ])
    out.assert_same()
    assert out.kernel[2]["ok"]["ino"] == "op0"
    markers = same_markers(pair)
    assert markers["a"] == markers["b"] == "whiteout" and markers["lonly"] == "d"


def test_rename_back_onto_whiteout(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["stat", "a"], ["rename", "a", "tmp"], ["rename", "tmp", "a"], ["stat", "a"],
        ["read_file", "a"], ["exists", "tmp"], ["listdir", "."],
    ])
    out.assert_same()
    assert out.kernel[3]["ok"]["ino"] == "op0"
    markers = same_markers(pair)
    assert markers["a"] == "f" and "tmp" not in markers


def test_over_existing_files(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["stat", "a"],
        ["rename", "a", "b"],  # lower over lower
        ["read_file", "b"], ["stat", "b"], ["exists", "a"],
        ["write_file", "new", "new\n"], ["stat", "new"],
        ["rename", "new", "b"],  # upper over the (now upper) b
        ["read_file", "b"], ["stat", "b"],
        ["write_file", "d/x", "changed\n"],  # an upper copy ...
        ["rename", "lonly/y", "d/x"],  # ... replaced by a lower file from another dir
        ["read_file", "d/x"], ["listdir", "d"], ["listdir", "lonly"],
    ])
    out.assert_same()
    assert out.kernel[3]["ok"]["ino"] == "op0" and out.kernel[9]["ok"]["ino"] == "op6"
    markers = same_markers(pair)
    assert markers["a"] == markers["lonly/y"] == "whiteout"


def test_over_open_file_keeps_old_data(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["open", "old", "b"], ["rename", "a", "b"], ["read", "old", 100], ["read_file", "b"],
        ["fstat", "old"], ["stat", "b"], ["close", "old"],
        ["write_file", "u", "upper old\n"], ["open", "u", "u"],
        ["write_file", "v", "upper new\n"], ["rename", "v", "u"], ["read", "u", 100],
        ["fstat", "u"], ["read_file", "u"],
    ])
    out.assert_same()
    assert out.kernel[2] == {"ok": "B\n"} and out.kernel[11] == {"ok": "upper old\n"}


def test_pure_upper_dir(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["mkdir", "n"], ["write_file", "n/c", "c\n"], ["mkdir", "n/sub"],
        ["write_file", "n/sub/f", "f\n"], ["stat", "n"], ["stat", "n/sub/f"],
        ["rename", "n", "m"], ["stat", "m"], ["stat", "m/sub/f"], ["listdir", "m"],
        ["read_file", "m/sub/f"], ["exists", "n"],
        ["rename", "m", "d/m"],  # into a merged dir
        ["listdir", "d"], ["read_file", "d/m/c"],
        ["rename", "d/m", "lonly/m"],  # into a lower-only dir
        ["listdir", "lonly/m/sub"],
    ])
    out.assert_same()
    assert out.kernel[7]["ok"]["ino"] == "op4" and out.kernel[8]["ok"]["ino"] == "op5"
    markers = same_markers(pair)
    # the kernel marks a pure upper dir opaque when it moves into a merged dir (d)
    assert markers["lonly/m"] == "opaque" and "n" not in markers and "m" not in markers


def test_lower_and_merged_dirs_give_exdev(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["rename", "d", "d2"],  # lower dir
        ["rename", "edir", "e2"],  # empty lower dir
        ["write_file", "d/new", "n\n"],
        ["rename", "d", "d2"],  # merged dir (upper + lower)
        ["rename", "lonly", "d/lonly"],
        ["rename", "d", "edir"],  # over an empty lower dir
        ["listdir", "."], ["listdir", "d"],
    ])
    out.assert_same()
    assert [out.kernel[i] for i in (0, 1, 3, 4, 5)] == [{"errno": "EXDEV"}] * 5


def test_dir_over_empty_lower_dir(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["mkdir", "n"], ["write_file", "n/f", "f\n"], ["rename", "n", "edir"],
        ["listdir", "edir"], ["exists", "n"], ["stat", "edir"],
    ])
    out.assert_same()
    assert out.kernel[2] == {"ok": None}
    assert same_markers(pair)["edir"] == "opaque"


def test_dir_over_emptied_merged_dir(overlay_pair):
    """The target looks empty through the mount but holds a whiteout in upper."""
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["unlink", "wdir/gone"], ["listdir", "wdir"],
        ["mkdir", "n"], ["write_file", "n/f", "f\n"], ["rename", "n", "wdir"],
        ["listdir", "wdir"], ["exists", "wdir/gone"], ["read_file", "wdir/f"],
    ])
    out.assert_same()
    assert out.kernel[4] == {"ok": None} and out.kernel[5] == {"ok": ["f"]}
    markers = same_markers(pair)
    assert markers["wdir"] == "opaque" and "wdir/gone" not in markers


def test_dir_over_non_empty_dir(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["mkdir", "n"],
        ["rename", "n", "full"],  # lower, non-empty
        ["rename", "n", "d"],  # idem
        ["write_file", "d/more", "m\n"], ["rename", "n", "d"],  # merged, non-empty
        ["mkdir", "u"], ["write_file", "u/f", "f\n"], ["rename", "n", "u"],  # upper, non-empty
        ["unlink", "full/k"], ["rename", "n", "full"],  # emptied: now allowed
        ["listdir", "full"], ["listdir", "."],
    ])
    out.assert_same()
    assert [out.kernel[i] for i in (1, 2, 4, 7)] == [{"errno": "ENOTEMPTY"}] * 4
    assert out.kernel[9] == {"ok": None}


def test_type_mismatches(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["rename", "a", "edir"],  # file over dir
        ["mkdir", "n"], ["write_file", "u", "u\n"],
        ["rename", "u", "n"],  # upper file over upper dir
        ["rename", "n", "a"],  # dir over file
        ["rename", "d", "b"],  # lower dir over lower file
        ["rename", "n", "u"],
        ["listdir", "."],
    ])
    out.assert_same()
    assert [out.kernel[i] for i in (0, 3, 4, 5, 6)] == [
        {"errno": "EISDIR"}, {"errno": "EISDIR"}, {"errno": "ENOTDIR"}, {"errno": "ENOTDIR"},
        {"errno": "ENOTDIR"}]


def test_dir_into_own_subdir(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["mkdir", "n"], ["mkdir", "n/s"],
        ["rename", "n", "n/s/x"], ["rename", "n", "n/x"],
        ["rename", "d", "d/x2"],
        ["listdir", "n"],
    ])
    out.assert_same()
    assert [out.kernel[i] for i in (2, 3, 4)] == [{"errno": "EINVAL"}] * 3


def test_noreplace(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["rename", "a", "b", "NOREPLACE"],  # target exists (lower)
        ["rename", "a", "c", "NOREPLACE"],  # free name
        ["read_file", "c"], ["exists", "a"],
        ["rename", "c", "a", "NOREPLACE"],  # onto a whiteout: free
        ["read_file", "a"],
        ["write_file", "u", "u\n"], ["rename", "u", "a", "NOREPLACE"],  # upper target
        ["mkdir", "n"], ["rename", "n", "edir", "NOREPLACE"],  # dir target
        ["listdir", "."],
    ])
    out.assert_same()
    assert [out.kernel[i] for i in (0, 7, 9)] == [{"errno": "EEXIST"}] * 3
    assert out.kernel[1] == out.kernel[4] == {"ok": None}
    markers = same_markers(pair)
    assert markers["a"] == "f" and markers.get("c") is None


def test_exchange_files(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["stat", "a"], ["stat", "b"],
        ["rename", "a", "b", "EXCHANGE"],  # lower <-> lower
        ["read_file", "a"], ["read_file", "b"], ["stat", "a"], ["stat", "b"],
        ["write_file", "u", "u\n"], ["stat", "u"],
        ["rename", "u", "d/x", "EXCHANGE"],  # upper <-> lower, across dirs
        ["read_file", "u"], ["read_file", "d/x"], ["stat", "d/x"],
        ["rename", "u", "a", "EXCHANGE"],  # upper <-> copied-up
        ["read_file", "u"], ["read_file", "a"],
        ["listdir", "."], ["listdir", "d"],
    ])
    out.assert_same()
    assert out.kernel[5]["ok"]["ino"] == "op1" and out.kernel[6]["ok"]["ino"] == "op0"
    assert out.kernel[12]["ok"]["ino"] == "op8"
    same_markers(pair)


def test_exchange_with_dirs_and_missing(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["mkdir", "n"], ["write_file", "n/f", "f\n"],
        ["rename", "a", "n", "EXCHANGE"],  # lower file <-> pure upper dir
        ["lstat", "a"], ["lstat", "n"], ["read_file", "a/f"], ["read_file", "n"],
        ["rename", "nope", "nada", "EXCHANGE"],  # both missing
        ["rename", "b", "nada", "EXCHANGE"],  # target missing
        ["rename", "nope", "b", "EXCHANGE"],  # source missing
        ["rename", "d", "b", "EXCHANGE"],  # lower dir <-> file
        ["rename", "a", "edir", "EXCHANGE"],  # upper dir <-> lower dir
        ["rename", "d", "full", "EXCHANGE"],  # lower dir <-> lower dir
        ["listdir", "."],
    ])
    out.assert_same()
    assert out.kernel[2] == {"ok": None}
    assert [out.kernel[i] for i in (7, 8, 9)] == [{"errno": "ENOENT"}] * 3
    assert [out.kernel[i] for i in (10, 11, 12)] == [{"errno": "EXDEV"}] * 3
    same_markers(pair)


def test_hardlinks_of_same_inode(overlay_pair):
    """rename onto another name of the same inode does nothing (POSIX)."""
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["write_file", "u", "u\n"], ["link", "u", "u2"],
        ["rename", "u", "u2"], ["stat", "u"], ["stat", "u2"], ["listdir", "."],
        ["link", "a", "a2"],  # copied-up lower file and a new name of it
        ["rename", "a2", "a"], ["stat", "a"], ["stat", "a2"],
    ])
    out.assert_same()
    assert out.kernel[2] == {"ok": None} and out.kernel[4]["ok"]["nlink"] == 2
    assert out.kernel[4]["ok"]["ino"] == "op3"
    assert out.kernel[8]["ok"]["ino"] == out.kernel[9]["ok"]["ino"]


HARDLINK_RENAMES = [
    ["stat", "h1"], ["stat", "h2"], ["rename", "h1", "h2"],
    ["exists", "h1"], ["read_file", "h2"], ["stat", "h2"], ["listdir", "."],
    ["rename", "h2", "h3"], ["exists", "h2"], ["stat", "h3"], ["stat", "h1"], ["listdir", "."],
]


def test_lower_hardlinks(overlay_pair):
    """Two names of one lower inode are one object: renaming one over the other does nothing
    (POSIX), as on the kernel with index=on; renaming one elsewhere copies it up and links the
    other name to the copy."""
    pair = overlay_pair({"h1": "shared\n", "h2": Hardlink("h1")}, kernel_opts=["index=on"])
    out = pair.run(HARDLINK_RENAMES)
    out.assert_same()
    assert out.kernel[3] == {"ok": True} and out.kernel[9]["ok"]["ino"] == "op0"


def test_lower_hardlinks_rootless_kernel(overlay_pair):
    """The rootless kernel renames one name over the other (two inodes to it): EXPECTED
    lower-hardlink-rename (the trees part ways there: the kernel has one name left, cowfs
    two, so the comparison stops at that)."""
    pair = overlay_pair(LOWER)
    out = pair.run(HARDLINK_RENAMES[:7])
    out.assert_same()
    assert {x.name for _, x in out.tolerated()} == {"lower-hardlink-rename", "hardlink-ino"}


def test_upper_dir_onto_removed_lower_dir(overlay_pair):
    """The lower dir's old entries must stay hidden under the dir moved onto its whiteout."""
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["unlink", "full/k"], ["rmdir", "full"],
        ["mkdir", "n"], ["write_file", "n/f", "f\n"], ["rename", "n", "full"],
        ["listdir", "full"], ["exists", "full/k"],
        ["mkdir", "m"], ["rename", "m", "lonly/y2"], ["rmdir", "lonly/y2"],
    ])
    out.assert_same()
    assert out.kernel[5] == {"ok": ["f"]} and out.kernel[6] == {"ok": False}
    assert same_markers(pair)["full"] == "opaque"

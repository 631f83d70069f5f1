"""Whiteouts and opaque directories, differentially against kernel overlayfs."""
from __future__ import annotations

from overlay import Dir, File, Symlink, Whiteout

LOWER = {
    "gone.txt": "bye\n",
    "keep.txt": "keep\n",
    "link": Symlink("keep.txt"),
    "empty": Dir(),
    "full": Dir({"x": "1", "y": Dir({"z": "2"}), "l": Symlink("x")}),
    "mixed": Dir({"lower-only": "l"}),
}
LOWER2 = {  # below LOWER: partly hidden by it
    "deep.txt": "from the bottom layer\n",
    "mixed": Dir({"bottom-only": "b", "lower-only": "shadowed"}),
    "hidden-by-wh": "should not show\n",
    "full": Dir({"bottom": "b"}),
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


def test_unlink_lower_file_leaves_whiteout(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["unlink", "gone.txt"], ["exists", "gone.txt"], ["stat", "gone.txt"],
        ["listdir", "."], ["unlink", "gone.txt"], ["unlink", "link"], ["readlink", "link"],
        ["rmdir", "empty"], ["listdir", "."], ["rmdir", "full"],
    ])
    out.assert_same()
    assert out.cowfs[9] == {"errno": "ENOTEMPTY"}
    assert upper_markers(pair, "cowfs") == upper_markers(pair, "kernel") == {
        "gone.txt": "whiteout", "link": "whiteout", "empty": "whiteout"}


def test_recreate_over_whiteout(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["unlink", "gone.txt"], ["write_file", "gone.txt", "back\n"], ["read_file", "gone.txt"],
        ["unlink", "keep.txt"], ["symlink", "gone.txt", "keep.txt"], ["readlink", "keep.txt"],
        ["unlink", "link"], ["mkfifo", "link"], ["lstat", "link"],
    ])
    out.assert_same()
    assert upper_markers(pair, "cowfs") == upper_markers(pair, "kernel")


def test_replace_deleted_directory_is_opaque(overlay_pair):
    pair = overlay_pair(LOWER, LOWER2)
    out = pair.run([
        ["listdir", "full"],
        ["unlink", "full/x"], ["unlink", "full/l"], ["unlink", "full/y/z"], ["rmdir", "full/y"],
        ["unlink", "full/bottom"], ["rmdir", "full"],
        ["mkdir", "full"], ["write_file", "full/new", "new\n"], ["listdir", "full"],
        ["stat", "full"], ["exists", "full/x"], ["exists", "full/bottom"],
        ["rmdir", "empty"], ["mkdir", "empty"], ["listdir", "empty"],
    ])
    out.assert_same()
    markers = upper_markers(pair, "cowfs")
    assert markers == upper_markers(pair, "kernel")
    assert markers["full"] == "opaque" and markers["empty"] == "opaque"


def test_multiple_lowers_merge(overlay_pair):
    pair = overlay_pair(LOWER, LOWER2)
    out = pair.run([
        ["listdir", "."], ["listdir", "mixed"], ["read_file", "mixed/lower-only"],
        ["read_file", "deep.txt"], ["unlink", "mixed/bottom-only"], ["listdir", "mixed"],
        ["write_file", "deep.txt", "changed\n"], ["read_file", "deep.txt"],
        ["stat", "mixed"], ["stat", "."],  # merged dirs: kernel reports nlink 1
    ])
    out.assert_same()


def test_markers_in_lower_layers(overlay_pair):
    """A whiteout and an opaque dir in the top lower hide the layer below (kernel format)."""
    top = {"hidden-by-wh": Whiteout(), "mixed": Dir({"only-top": "t"}, opaque=True)}
    pair = overlay_pair(top, LOWER2)
    out = pair.run([
        ["listdir", "."], ["exists", "hidden-by-wh"], ["listdir", "mixed"],
        ["listxattr", "mixed"], ["write_file", "hidden-by-wh", "now visible\n"],
    ])
    out.assert_same()


def test_markers_in_upper(overlay_pair):
    """An upper that already holds whiteouts and opaque dirs (e.g. from an earlier mount)."""
    upper = {"gone.txt": Whiteout(), "full": Dir({"mine": "m"}, opaque=True),
             "keep.txt": File("upper copy\n")}
    pair = overlay_pair(LOWER, upper=upper)
    out = pair.run([
        ["listdir", "."], ["listdir", "full"], ["read_file", "keep.txt"], ["stat", "gone.txt"],
        ["listxattr", "full"], ["getxattr", "full", "user.overlay.opaque"],
    ])
    out.assert_same()


def whiteout_entries(pair, side: str) -> dict:
    """path -> (type, rdev) of every whiteout-looking entry in SIDE's raw upper."""
    return {p: (e["type"], e.get("rdev")) for p, e in pair.upper_tree(side).items()
            if e.get("type") == "c"}


def test_unlink_upper_only_file_leaves_nothing(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["write_file", "new.txt", "n"], ["mkdir", "newdir"], ["write_file", "newdir/f", "f"],
        ["symlink", "new.txt", "newlink"],
        ["unlink", "new.txt"], ["unlink", "newdir/f"], ["rmdir", "newdir"], ["unlink", "newlink"],
        ["exists", "new.txt"], ["exists", "newdir"], ["listdir", "."],
    ])
    out.assert_same()
    for side in ("kernel", "cowfs"):
        assert list(pair.upper_tree(side)) == ["."], f"{side}: upper-only removals left traces"


def test_unlink_copied_up_file(overlay_pair):
    """The upper copy goes, a whiteout takes its place: the lower file does not come back."""
    pair = overlay_pair(LOWER, LOWER2)
    out = pair.run([
        ["write_file", "keep.txt", "changed\n"], ["write_file", "mixed/lower-only", "c\n"],
        ["unlink", "keep.txt"], ["unlink", "mixed/lower-only"],
        ["exists", "keep.txt"], ["exists", "mixed/lower-only"], ["listdir", "mixed"],
        ["read_file", "link"],  # dangling now
        ["write_file", "deep.txt", "x"], ["unlink", "deep.txt"], ["stat", "deep.txt"],
    ])
    out.assert_same()
    assert upper_markers(pair, "cowfs") == upper_markers(pair, "kernel") == {
        "keep.txt": "whiteout", "mixed": "d", "mixed/lower-only": "whiteout",
        "deep.txt": "whiteout"}
    pair.remount()
    pair.run([["listdir", "."], ["listdir", "mixed"], ["exists", "keep.txt"]]).assert_same()


def test_rmdir_merged_dir_that_became_empty(overlay_pair):
    """Whiteouts inside a merged directory do not make it non-empty."""
    pair = overlay_pair(LOWER, LOWER2)
    out = pair.run([
        ["rmdir", "mixed"],  # ENOTEMPTY
        ["unlink", "mixed/lower-only"], ["rmdir", "mixed"],  # bottom-only is still there
        ["unlink", "mixed/bottom-only"], ["listdir", "mixed"], ["rmdir", "mixed"],
        ["exists", "mixed"], ["listdir", "."],
    ])
    out.assert_same()
    assert [r.get("errno") for r in out.cowfs[:3]] == ["ENOTEMPTY", None, "ENOTEMPTY"]
    assert out.cowfs[5] == {"ok": None}
    assert upper_markers(pair, "cowfs") == upper_markers(pair, "kernel") == {
        "mixed": "whiteout"}


def test_rmdir_not_empty(overlay_pair):
    """ENOTEMPTY from any layer: a lower entry, an upper-only entry, a bottom-layer entry, a
    lower subdirectory whose own contents were removed."""
    pair = overlay_pair(LOWER, LOWER2)
    out = pair.run([
        ["rmdir", "full"],  # lower entries
        ["mkdir", "empty/sub"], ["rmdir", "empty"],  # upper-only entry in a lower dir
        ["rmdir", "empty/sub"], ["rmdir", "empty"],  # now empty again
        ["unlink", "full/x"], ["unlink", "full/l"], ["unlink", "full/y/z"],
        ["rmdir", "full"],  # y still there (empty)
        ["rmdir", "full/y"], ["rmdir", "full"],  # "bottom" from LOWER2 remains
        ["listdir", "full"], ["rmdir", "."], ["rmdir", "keep.txt"], ["rmdir", "nonexistent"],
        ["unlink", "full"], ["unlink", "nonexistent"],
    ])
    out.assert_same()
    assert [out.cowfs[i].get("errno") for i in (0, 2, 4, 8, 10)] == [
        "ENOTEMPTY", "ENOTEMPTY", None, "ENOTEMPTY", "ENOTEMPTY"]


def test_recreate_dir_over_whiteout(overlay_pair):
    """A directory over a whited-out file or directory is new (opaque where a lower dir was);
    a file over a whited-out directory replaces it."""
    pair = overlay_pair(LOWER, LOWER2)
    out = pair.run([
        ["unlink", "gone.txt"], ["mkdir", "gone.txt"], ["stat", "gone.txt"],
        ["listdir", "gone.txt"],
        ["rmdir", "empty"], ["write_file", "empty", "now a file\n"], ["read_file", "empty"],
        ["lstat", "empty"],
        ["unlink", "mixed/lower-only"], ["unlink", "mixed/bottom-only"], ["rmdir", "mixed"],
        ["symlink", "full", "mixed"], ["listdir", "mixed"], ["readlink", "mixed"],
        ["unlink", "link"], ["mkdir", "link"], ["write_file", "link/in", "i"],
        ["listdir", "link"],
    ])
    out.assert_same()
    markers = upper_markers(pair, "cowfs")
    assert markers == upper_markers(pair, "kernel")
    assert markers["empty"] == "f" and markers["mixed"] == "l"
    assert markers["gone.txt"] in ("d", "opaque") and markers["link"] in ("d", "opaque")


def test_whiteout_on_disk_format(overlay_pair):
    """Whiteouts in the upper are 0/0 character devices, nothing else; remount shows the same."""
    pair = overlay_pair(LOWER, LOWER2)
    out = pair.run([
        ["unlink", "gone.txt"], ["unlink", "full/y/z"], ["rmdir", "full/y"], ["rmdir", "empty"],
        ["unlink", "deep.txt"], ["unlink", "link"], ["listdir", "."], ["listdir", "full"],
    ])
    out.assert_same()
    want = {p: ("c", [0, 0]) for p in ("gone.txt", "full/y", "empty", "deep.txt", "link")}
    for side in ("kernel", "cowfs"):
        assert whiteout_entries(pair, side) == want, side
    pair.remount()
    pair.run([["listdir", "."], ["listdir", "full"], ["stat", "full/y"],
              ["stat", "deep.txt"]]).assert_same()

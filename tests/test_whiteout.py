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

"""link(2), differentially against kernel overlayfs (see tests/overlay.py).

A link copies its source up first, then links in upper: both names are one upper inode.
"""
from __future__ import annotations

from overlay import Dir, Symlink

LOWER = {
    "a": "A\n",
    "b": "B\n",
    "d": Dir({"x": "X\n"}),
    "s": Symlink("a"),
    "dangling": Symlink("nowhere"),
}


def upper_markers(pair, side: str) -> dict:
    """path -> "whiteout" | type, from SIDE's raw upper."""
    out = {}
    for path, e in pair.upper_tree(side).items():
        if path != "." and "type" in e:
            out[path] = "whiteout" if e["type"] == "c" and e.get("rdev") == [0, 0] else e["type"]
    return out


def upper_ino(pair, side: str, path: str) -> str:
    """The tree label of PATH's inode in SIDE's raw upper: equal labels = hardlinks."""
    return pair.upper_tree(side)[path]["ino"]


def test_link_lower_file(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["stat", "a"], ["link", "a", "a2"], ["stat", "a"], ["stat", "a2"], ["read_file", "a2"],
        ["link", "d/x", "x2"],  # source in a lower-only dir, new name elsewhere
        ["stat", "x2"], ["stat", "d/x"], ["listdir", "."],
    ])
    out.assert_same()
    assert out.kernel[2]["ok"]["ino"] == out.kernel[3]["ok"]["ino"] == "op0"
    assert out.kernel[3]["ok"]["nlink"] == 2
    for side in ("kernel", "cowfs"):
        assert upper_ino(pair, side, "a2") == "a" and upper_ino(pair, side, "x2") == "d/x"


def test_link_upper_file(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["write_file", "u", "u\n"], ["stat", "u"], ["link", "u", "d/u2"], ["stat", "d/u2"],
        ["link", "d/u2", "u3"], ["stat", "u"], ["write_file", "u3", "changed\n"],
        ["read_file", "u"], ["listdir", "d"],
    ])
    out.assert_same()
    assert out.kernel[5]["ok"]["nlink"] == 3 and out.kernel[5]["ok"]["ino"] == "op1"


def test_link_errors(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["link", "a", "b"],  # over a lower name
        ["write_file", "u", "u\n"], ["link", "a", "u"],  # over an upper name
        ["link", "a", "d"],  # over a dir
        ["link", "d", "d2"],  # of a dir
        ["mkdir", "n"], ["link", "n", "n2"],  # of an upper dir
        ["link", "nope", "n3"],  # missing source
        ["link", "a", "nodir/a"],  # missing target dir
        ["stat", "a"], ["listdir", "."],
    ])
    out.assert_same()
    assert [out.kernel[i] for i in (0, 2, 3)] == [{"errno": "EEXIST"}] * 3
    assert out.kernel[4] == out.kernel[6] == {"errno": "EPERM"}
    assert out.kernel[7] == out.kernel[8] == {"errno": "ENOENT"}


def test_link_onto_whiteout(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["unlink", "d/x"], ["exists", "d/x"], ["link", "a", "d/x"], ["read_file", "d/x"],
        ["stat", "a"], ["stat", "d/x"], ["listdir", "d"],
    ])
    out.assert_same()
    assert out.kernel[2] == {"ok": None} and out.kernel[5]["ok"]["nlink"] == 2
    markers = upper_markers(pair, "cowfs")
    assert markers == upper_markers(pair, "kernel")
    assert markers["d/x"] == "f"


def test_unlink_both_names(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["stat", "a"], ["link", "a", "a2"], ["unlink", "a"], ["exists", "a"], ["stat", "a2"],
        ["read_file", "a2"], ["unlink", "a2"], ["exists", "a2"], ["listdir", "."],
        ["write_file", "u", "u\n"], ["link", "u", "u2"], ["unlink", "u2"], ["stat", "u"],
        ["unlink", "u"], ["listdir", "."],
    ])
    out.assert_same()
    assert out.kernel[4]["ok"]["nlink"] == 1 and out.kernel[4]["ok"]["ino"] == "op0"
    markers = upper_markers(pair, "cowfs")
    assert markers == upper_markers(pair, "kernel") == {"a": "whiteout"}


def test_link_symlinks(overlay_pair):
    """link(2) does not follow: the new name is the symlink itself."""
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["lstat", "s"], ["link", "s", "s2"], ["lstat", "s2"], ["readlink", "s2"],
        ["read_file", "s2"], ["lstat", "s"],
        ["link", "dangling", "dangling2"], ["lstat", "dangling2"], ["readlink", "dangling2"],
        ["symlink", "b", "us"], ["link", "us", "us2"], ["lstat", "us2"],
    ])
    out.assert_same()
    assert out.kernel[2]["ok"]["type"] == "l" and out.kernel[5]["ok"]["nlink"] == 2
    for side in ("kernel", "cowfs"):
        assert upper_ino(pair, side, "s2") == "s" and upper_ino(pair, side, "us2") == "us", side

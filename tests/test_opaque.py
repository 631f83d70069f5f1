"""Opaque directories, differentially against kernel overlayfs (see tests/overlay.py).

A directory created where a lower directory was removed must hide everything below it for good:
the old entries never come back (not after a remount either), and the upper carries the kernel's
marker, xattr user.overlay.opaque=y.
"""
from __future__ import annotations

from overlay import Dir, Symlink

from test_whiteout import upper_markers

LOWER = {
    "pkg": Dir({"a.py": "a\n", "b.py": "b\n", "sub": Dir({"c.py": "c\n", "deeper": Dir({
        "d.py": "d\n"})}), "link": Symlink("a.py")}, mode=0o750),
    "other": Dir({"keep": "keep\n"}),
}
BOTTOM = {"pkg": Dir({"from-bottom": "b\n", "sub": Dir({"bottom-sub": "s\n"})}),
          "only-bottom": Dir({"x": "x\n"})}

RM_PKG = [  # rm -r pkg, depth first, as rm(1) does
    ["unlink", "pkg/a.py"], ["unlink", "pkg/b.py"], ["unlink", "pkg/link"],
    ["unlink", "pkg/sub/c.py"], ["unlink", "pkg/sub/deeper/d.py"], ["rmdir", "pkg/sub/deeper"],
    ["rmdir", "pkg/sub"], ["rmdir", "pkg"],
]


def test_rm_r_then_mkdir_is_opaque(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run(RM_PKG + [
        ["exists", "pkg"], ["mkdir", "pkg"], ["listdir", "pkg"],
        ["write_file", "pkg/a.py", "new a\n"], ["mkdir", "pkg/sub"],
        ["listdir", "pkg"], ["listdir", "pkg/sub"], ["read_file", "pkg/a.py"],
        ["exists", "pkg/b.py"], ["exists", "pkg/link"], ["exists", "pkg/sub/c.py"],
        ["stat", "pkg"], ["listxattr", "pkg"],
    ])
    out.assert_same()
    assert out.cowfs[-8] == {"ok": ["a.py", "sub"]}
    markers = upper_markers(pair, "cowfs")
    assert markers == upper_markers(pair, "kernel")
    assert markers["pkg"] == "opaque"
    pair.remount()
    out = pair.run([["listdir", "pkg"], ["listdir", "pkg/sub"], ["exists", "pkg/b.py"],
                    ["read_file", "pkg/a.py"]])
    out.assert_same()
    assert out.cowfs[0] == {"ok": ["a.py", "sub"]} and out.cowfs[1] == {"ok": []}


def test_opaque_hides_every_lower_layer(overlay_pair):
    pair = overlay_pair(LOWER, BOTTOM)
    out = pair.run([["listdir", "pkg"]] + RM_PKG + [
        ["unlink", "pkg/from-bottom"], ["unlink", "pkg/sub/bottom-sub"],  # order as rm -r would
        ["rmdir", "pkg/sub"], ["rmdir", "pkg"],
        ["mkdir", "pkg"], ["listdir", "pkg"], ["exists", "pkg/from-bottom"],
        ["mkdir", "pkg/sub"], ["listdir", "pkg/sub"],
    ])
    out.assert_same()
    assert out.cowfs[-4] == out.cowfs[-1] == {"ok": []}
    assert upper_markers(pair, "cowfs") == upper_markers(pair, "kernel")


def test_nested_opaque(overlay_pair):
    """Only the removed-and-recreated directory is opaque; its merged parent is not."""
    pair = overlay_pair(LOWER, BOTTOM)
    out = pair.run([
        ["unlink", "pkg/sub/c.py"], ["unlink", "pkg/sub/deeper/d.py"],
        ["rmdir", "pkg/sub/deeper"], ["unlink", "pkg/sub/bottom-sub"], ["rmdir", "pkg/sub"],
        ["mkdir", "pkg/sub"], ["mkdir", "pkg/sub/deeper"], ["write_file", "pkg/sub/new", "n"],
        ["listdir", "pkg"], ["listdir", "pkg/sub"], ["listdir", "pkg/sub/deeper"],
        ["read_file", "pkg/from-bottom"],
    ])
    out.assert_same()
    markers = upper_markers(pair, "cowfs")
    assert markers == upper_markers(pair, "kernel")
    assert markers["pkg"] == "d" and markers["pkg/sub"] == "opaque"
    assert markers["pkg/sub/deeper"] == "d"
    pair.remount()
    pair.run([["listdir", "pkg"], ["listdir", "pkg/sub"],
              ["listdir", "pkg/sub/deeper"]]).assert_same()


def test_rmdir_of_opaque_dir(overlay_pair):
    """An opaque dir is empty when its upper is: the hidden lower entries do not count. Removing
    it leaves a whiteout (the lower dir still exists below)."""
    pair = overlay_pair(LOWER, BOTTOM)
    out = pair.run(RM_PKG + [
        ["unlink", "pkg/from-bottom"], ["unlink", "pkg/sub/bottom-sub"], ["rmdir", "pkg/sub"],
        ["rmdir", "pkg"], ["mkdir", "pkg"], ["write_file", "pkg/f", "f"],
        ["rmdir", "pkg"],  # ENOTEMPTY: f
        ["unlink", "pkg/f"], ["rmdir", "pkg"], ["exists", "pkg"], ["listdir", "."],
        ["mkdir", "pkg"], ["listdir", "pkg"],  # opaque again
    ])
    out.assert_same()
    assert out.cowfs[-7] == {"errno": "ENOTEMPTY"} and out.cowfs[-5] == {"ok": None}
    assert out.cowfs[-1] == {"ok": []}
    assert upper_markers(pair, "cowfs") == upper_markers(pair, "kernel")


def test_upper_opaque_dir_written_by_kernel_format(overlay_pair):
    """An upper that already holds an opaque dir (and entries in it) hides the lowers."""
    upper = {"pkg": Dir({"mine": "m\n", "sub": Dir({"s": "s"})}, opaque=True)}
    pair = overlay_pair(LOWER, BOTTOM, upper=upper)
    out = pair.run([
        ["listdir", "pkg"], ["listdir", "pkg/sub"], ["exists", "pkg/a.py"],
        ["exists", "pkg/from-bottom"], ["rmdir", "pkg/sub"], ["unlink", "pkg/sub/s"],
        ["rmdir", "pkg/sub"], ["unlink", "pkg/mine"], ["rmdir", "pkg"], ["listdir", "."],
    ])
    out.assert_same()


def test_opaque_lower_dir_in_multi_lower_stack(overlay_pair):
    """Dir(opaque=True) in the middle lower: the top lower merges with it, the bottom is hidden.
    Writing inside it (a copy-up) does not let the bottom through, not even after remount."""
    top = {"pkg": Dir({"top.txt": "t\n"}), "plain": Dir({"t": "t"})}
    middle = {"pkg": Dir({"mid.txt": "m\n", "sub": Dir({"ms": "ms"})}, opaque=True),
              "plain": Dir({"m": "m"})}
    bottom = {"pkg": Dir({"bottom.txt": "b\n", "sub": Dir({"bs": "bs"})}),
              "plain": Dir({"b": "b"})}
    pair = overlay_pair(top, middle, bottom)
    out = pair.run([
        ["listdir", "pkg"], ["listdir", "pkg/sub"], ["listdir", "plain"],
        ["exists", "pkg/bottom.txt"], ["stat", "pkg/bottom.txt"],
        ["write_file", "pkg/sub/ms", "changed"], ["write_file", "pkg/new", "n"],
        ["listdir", "pkg"], ["listdir", "pkg/sub"], ["listxattr", "pkg"],
    ])
    out.assert_same()
    assert out.cowfs[0] == {"ok": ["mid.txt", "sub", "top.txt"]}
    assert out.cowfs[1] == {"ok": ["ms"]}
    pair.remount()
    out = pair.run([["listdir", "pkg"], ["listdir", "pkg/sub"], ["exists", "pkg/bottom.txt"]])
    out.assert_same()
    assert out.cowfs[0] == {"ok": ["mid.txt", "new", "sub", "top.txt"]}


def test_only_the_value_y_is_opaque(overlay_pair):
    """The kernel reads one byte of user.overlay.opaque and wants exactly "y": "Y", "yes" (too
    long for its buffer) and "x" leave the lower showing through, as on cowfs."""
    values = {"y": "y", "upper-y": "Y", "yes": "yes", "x": "x"}
    lower = {name: Dir({"lowerfile": "l\n"}) for name in values}
    upper = {name: Dir({"upperfile": "u\n"}, xattrs={"user.overlay.opaque": v})
             for name, v in values.items()}
    pair = overlay_pair(lower, upper=upper)
    out = pair.run([["listdir", name] for name in values])
    out.assert_same()
    assert out.cowfs[0] == {"ok": ["upperfile"]}
    assert all(r == {"ok": ["lowerfile", "upperfile"]} for r in out.cowfs[1:]), out.cowfs

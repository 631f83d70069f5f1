"""Uppers interchange with kernel overlayfs: what one wrote, the other shows identically."""
from __future__ import annotations

import overlay
from overlay import Dir, File

LOWER = {
    "pkg": Dir({"a.py": "print('a')\n", "b.py": "b\n", "sub": Dir({"c.txt": "c\n"})}),
    "gone.txt": "bye\n",
    "olddir": Dir({"x": "1", "y": Dir({"z": "2"})}),
    "keep.txt": File("keep\n", xattrs={"user.k": "v"}),
    "tool": File("#!/bin/sh\n", mode=0o755),
}
LOWER2 = {"bottom.txt": "bottom\n", "olddir": Dir({"from-bottom": "b"})}

SCENARIO = [
    ["open", "f", "pkg/a.py", ["O_WRONLY", "O_APPEND"]], ["write", "f", "print('more')\n"],
    ["close", "f"],  # copy-up with parents
    ["unlink", "gone.txt"],  # whiteout
    ["unlink", "olddir/x"], ["unlink", "olddir/y/z"], ["rmdir", "olddir/y"],
    ["unlink", "olddir/from-bottom"], ["rmdir", "olddir"],
    ["mkdir", "olddir"], ["write_file", "olddir/new", "n\n"],  # opaque dir
    ["write_file", "new.txt", "new\n"], ["mkdir", "newdir", 0o750],
    ["write_file", "newdir/f", "f\n", 0o600], ["symlink", "new.txt", "newlink"],
    ["setxattr", "keep.txt", "user.added", "v2"],  # copy-up keeps user.k
    ["setxattr", "pkg/sub", "user.dirx", "y"],  # directory copy-up
    ["chmod", "tool", 0o700],  # metadata-only copy-up
    ["rename", "pkg/b.py", "pkg/b2.py"],  # copy-up + whiteout at the old name
    ["unlink", "bottom.txt"],
]


def _write_then_read(harness, writer: str, reader: str):
    lay = overlay.make_layers(f"{writer}-writes", [LOWER, LOWER2])
    with overlay.mount(writer, lay) as m:
        overlay.run_ops(m.mnt, SCENARIO)
        written = overlay.dump_tree(m.mnt)
    lay.new_work()
    with overlay.mount(reader, lay) as m:
        read_back = overlay.dump_tree(m.mnt)
    return written, read_back


def _assert_same(seen_by_kernel: dict, seen_by_cowfs: dict, title: str) -> None:
    diffs = overlay.compare_trees(seen_by_kernel, seen_by_cowfs)
    if diffs:
        raise AssertionError(overlay.format_diffs(diffs, [], title=title))


def test_cowfs_upper_mounted_by_kernel(harness):
    """(a) an upper written through cowfs shows the same tree under kernel overlayfs."""
    written, read_back = _write_then_read(harness, harness.impl, "kernel")
    _assert_same(read_back, written, f"upper written by {harness.impl}, read by kernel")


def test_kernel_upper_mounted_by_cowfs(harness):
    """(b) an upper written through kernel overlayfs shows the same tree under cowfs."""
    written, read_back = _write_then_read(harness, "kernel", harness.impl)
    _assert_same(written, read_back, f"upper written by kernel, read by {harness.impl}")


def test_scenario_matches_kernel(overlay_pair):
    """The interchange scenario itself, differentially (so (a)/(b) start from agreement)."""
    pair = overlay_pair(LOWER, LOWER2)
    pair.run(SCENARIO).assert_same()


def test_remount_keeps_state(overlay_pair):
    """Unmount and mount again on the same upper: both sides still show the same tree."""
    pair = overlay_pair(LOWER, LOWER2)
    pair.run(SCENARIO, trees=False)
    pair.remount()
    pair.run([
        ["listdir", "."], ["listdir", "olddir"], ["read_file", "pkg/a.py"],
        ["listxattr", "keep.txt"], ["readlink", "newlink"], ["stat", "tool"],
    ]).assert_same()

"""Timestamps, differentially against kernel overlayfs (see tests/overlay.py).

Absolute "now" times differ between the two mounts, so changes are compared as relations
(times_mark / times_cmp: "same" | "later" | "earlier"); fixed and explicit times compare exactly.
Every change is preceded by a short sleep so that a coarse clock cannot hide it.
"""
from __future__ import annotations

from overlay import FIXED_ATIME_NS, FIXED_TIME_NS, Dir, File, Symlink

LOWER = {
    "a": "A\n",
    "b": "B\n",
    "c": "C\n",
    "d": Dir({"x": "X\n", "y": "Y\n"}),
    "e": Dir({"z": "Z\n"}),
    "s": Symlink("a"),
    "root-rw": File("world-writable\n", mode=0o666, owner="root"),
    "root-ro": File("root's\n", owner="root"),
}
T1 = 1_500_000_000_123_456_789
T2 = 1_400_000_000_987_654_321
FIXED = {"atime": FIXED_ATIME_NS, "mtime": FIXED_TIME_NS}
TICK = ["sleep", 0.02]


def test_utime_explicit(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["utime", "a", T1, T2], ["stat_times", "a"],  # lower file: copy-up
        ["write_file", "u", "u\n"], ["utime", "u", T2, T1], ["stat_times", "u"],
        ["utime", "d", T1, T1], ["stat_times", "d"], ["listdir", "d"],  # lower dir
        ["utimensat", "s", T2, T2, False], ["lstat_times", "s"], ["stat_times", "a"],
        ["utimensat", "b", "OMIT", T1], ["stat_times", "b"],  # atime kept (copy-up + omit)
        ["utimensat", "c", T2, "OMIT"], ["stat_times", "c"],
        ["utime", "root-rw", T1, T1],  # not the owner: explicit times need ownership
        ["utime", "nope", T1, T1],
    ])
    out.assert_same()
    assert out.kernel[1] == {"ok": {"atime": T1, "mtime": T2}}
    assert out.kernel[9] == {"ok": {"atime": T2, "mtime": T2}}
    assert out.kernel[12] == {"ok": {"atime": FIXED_ATIME_NS, "mtime": T1}}
    assert out.kernel[14] == {"ok": {"atime": T2, "mtime": FIXED_TIME_NS}}
    assert out.kernel[15] == {"errno": "EPERM"}


def test_utime_now(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["utime", "a"], ["stat_times", "a"],
        ["utimensat", "b", "NOW", "OMIT"], ["stat_times", "b"],
        ["utimensat", "c", "OMIT", "NOW"], ["stat_times", "c"],
        ["utimensat", "d", "NOW", "NOW"], ["stat_times", "d"],
        ["utime", "root-rw"],  # write permission is enough for "now"
        ["stat_times", "root-rw"],
        ["utime", "root-ro"],  # neither owner nor writer
        ["utimensat", "e", "OMIT", "OMIT"], ["stat_times", "e"],
    ])
    out.assert_same()
    assert out.kernel[1] == {"ok": {"atime": "now", "mtime": "now"}}
    assert out.kernel[3] == {"ok": {"atime": "now", "mtime": FIXED_TIME_NS}}
    assert out.kernel[5] == {"ok": {"atime": FIXED_ATIME_NS, "mtime": "now"}}
    assert out.kernel[8] == {"ok": None} and out.kernel[10] == {"errno": "EACCES"}
    assert out.kernel[12] == {"ok": FIXED}


def test_write_changes_mtime_and_ctime(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["times_mark", "a", "a"], TICK,
        ["open", "w", "a", ["O_WRONLY"]], ["pwrite", "w", "a", 0], ["close", "w"],
        ["times_cmp", "a", "a"],  # lower file: copy-up, then the write
        ["write_file", "u", "u\n"], ["times_mark", "u", "u"], TICK,
        ["open", "w", "u", ["O_WRONLY", "O_APPEND"]], ["write", "w", "more"],
        ["times_cmp", "u", "u", ["mtime", "ctime"]], ["close", "w"],
        ["times_mark", "u2", "u"], TICK,
        ["open", "w", "u", ["O_WRONLY"]], ["close", "w"],  # open for write alone: no change
        ["times_cmp", "u2", "u", ["mtime", "ctime"]],
    ])
    out.assert_same()
    assert out.kernel[5] == {"ok": {"atime": "same", "mtime": "later", "ctime": "later"}}
    assert out.kernel[11] == {"ok": {"mtime": "later", "ctime": "later"}}
    assert out.kernel[17] == {"ok": {"mtime": "same", "ctime": "same"}}


def test_metadata_changes_only_ctime(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["times_mark", "a", "a"], TICK, ["chmod", "a", 0o600], ["times_cmp", "a", "a"],
        ["times_mark", "b", "b"], TICK, ["setxattr", "b", "user.k", "v"],
        ["times_cmp", "b", "b"],
        ["write_file", "u", "u\n"], ["times_mark", "u", "u"], TICK,
        ["chown", "u", "user", "user"], ["times_cmp", "u", "u", ["mtime", "ctime"]],
        ["times_mark", "u2", "u"], TICK, ["truncate", "u", 1],
        ["times_cmp", "u2", "u", ["mtime", "ctime"]],
        ["times_mark", "u3", "u"], TICK, ["truncate", "u", 1],  # same size: still a change
        ["times_cmp", "u3", "u", ["mtime", "ctime"]],
        ["times_mark", "c", "c"], TICK, ["read_file", "c"], ["times_cmp", "c", "c"],
    ])
    out.assert_same()
    assert out.kernel[3] == out.kernel[7] == {
        "ok": {"atime": "same", "mtime": "same", "ctime": "later"}}
    assert out.kernel[12] == {"ok": {"mtime": "same", "ctime": "later"}}
    assert out.kernel[16] == out.kernel[20] == {"ok": {"mtime": "later", "ctime": "later"}}
    assert out.kernel[24] == {"ok": {"atime": "same", "mtime": "same", "ctime": "same"}}


def test_dir_mtime_on_entry_changes(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["times_mark", "d", "d"], TICK, ["write_file", "d/new", "n\n"],  # create in lower dir
        ["times_cmp", "d", "d"],
        ["times_mark", "e", "e"], TICK, ["unlink", "e/z"], ["times_cmp", "e", "e"],
        ["mkdir", "n"], ["times_mark", "n", "n"], TICK, ["mkdir", "n/sub"],
        ["times_cmp", "n", "n", ["mtime", "ctime"]],
        ["times_mark", "n2", "n"], ["times_mark", "d2", "d"], TICK,
        ["rename", "d/new", "n/moved"],
        ["times_cmp", "n2", "n", ["mtime", "ctime"]], ["times_cmp", "d2", "d", ["mtime", "ctime"]],
        ["times_mark", "n3", "n"], TICK, ["write_file", "n/moved", "rewritten\n"],
        ["times_cmp", "n3", "n", ["mtime", "ctime"]],  # writing an entry is no dir change
        ["times_mark", "root", "."], TICK, ["symlink", "a", "sl"],
        ["times_cmp", "root", ".", ["mtime", "ctime"]],
    ])
    out.assert_same()
    assert out.kernel[3]["ok"]["mtime"] == out.kernel[7]["ok"]["mtime"] == "later"
    assert out.kernel[12] == out.kernel[17] == out.kernel[18] == out.kernel[26] == {
        "ok": {"mtime": "later", "ctime": "later"}}
    assert out.kernel[22] == {"ok": {"mtime": "same", "ctime": "same"}}


def test_copy_up_keeps_times(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["chmod", "a", 0o640], ["stat_times", "a"],  # metadata-only copy-up
        ["setxattr", "b", "user.k", "v"], ["stat_times", "b"],
        ["link", "c", "c2"], ["stat_times", "c2"],
        ["open", "w", "d/x", ["O_WRONLY"]], ["stat_times", "d/x"], ["close", "w"],
        ["stat_times", "d"],  # the parent copied up on the way keeps its times too
        ["lchown", "s", "user", "user"], ["lstat_times", "s"],
        ["chmod", "e", 0o700], ["stat_times", "e"],
    ])
    out.assert_same()
    for i in (1, 3, 5, 7, 9, 11, 13):
        assert out.kernel[i] == {"ok": FIXED}, i

"""truncate(2), ftruncate(2) and O_TRUNC, differentially against kernel overlayfs."""
from __future__ import annotations

import os

from overlay import Dir, File

LOWER = {
    "a": "0123456789\n",
    "b": "abcdefghij\n",
    "c": "cccccccccc\n",
    "big": File(b"z" * 100_000),
    "ro": File("read only\n", mode=0o444),
    "root": File("root's\n", owner="root"),
    "d": Dir({"x": "X\n"}),
}


def test_truncate_lower_files(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["stat", "a"],
        ["truncate", "a", 4], ["read_file", "a"], ["stat", "a"],  # shrink
        ["truncate", "b", 20], ["read_file", "b"], ["stat", "b"],  # grow: zeros
        ["truncate", "c", 0], ["read_file", "c"], ["stat", "c"],
        ["truncate", "big", 1 << 20], ["stat", "big"], ["read_file", "big"],
        ["truncate", "d/x", 1], ["read_file", "d/x"], ["stat_times", "d/x"],
    ])
    out.assert_same()
    assert out.kernel[3]["ok"]["ino"] == "op0" and out.kernel[3]["ok"]["size"] == 4
    assert out.kernel[5] == {"ok": "abcdefghij\n" + "\0" * 9}
    for side in ("kernel", "cowfs"):
        assert {"a", "b", "c", "big", "d/x"} <= set(pair.upper_tree(side)), side


def test_grow_leaves_a_hole(overlay_pair):
    """The grown tail is a hole, and SEEK_HOLE/SEEK_DATA through the kernel's mount say so
    (cowfs: EXPECTED "lseek-holes"; its upper copy is sparse all the same)."""
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["truncate", "big", 1 << 20], ["open", "h", "big"], ["lseek", "h", 0, "SEEK_HOLE"],
        ["lseek", "h", 200_000, "SEEK_DATA"], ["lseek", "h", 0, "SEEK_DATA"],
    ])
    out.assert_same()
    assert out.kernel[2] == {"ok": 102_400}  # data up to the end of the block of byte 99_999
    assert out.kernel[3] == {"errno": "ENXIO"}
    st = os.lstat(os.path.join(pair.cowfs_layers.upper, "big"))
    assert st.st_size == 1 << 20 and st.st_blocks * 512 < 200_000


def test_truncate_upper_files(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["write_file", "u", "upper data\n"], ["truncate", "u", 5], ["read_file", "u"],
        ["truncate", "u", 8], ["read_file", "u"], ["truncate", "u", 0], ["stat", "u"],
        ["truncate", "a", 3], ["truncate", "a", 6], ["read_file", "a"],  # copied up, again
    ])
    out.assert_same()
    assert out.kernel[4] == {"ok": "upper\0\0\0"} and out.kernel[9] == {"ok": "012\0\0\0"}


def test_ftruncate(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["open", "r", "a"],  # read-only, before the copy-up
        ["open", "w", "a", ["O_RDWR"]],
        ["ftruncate", "w", 3], ["fstat", "w"], ["pread", "w", 100, 0],
        ["pread", "r", 100, 0], ["fstat", "r"],  # the old read-only fd sees the change
        ["ftruncate", "w", 12], ["pread", "w", 100, 0], ["close", "w"],
        ["ftruncate", "r", 1],  # not open for writing
        ["open", "p", "b", ["O_PATH"]], ["ftruncate", "p", 1],
        ["open", "ro", "b"], ["ftruncate", "ro", 1], ["stat", "b"],
        ["open", "d", "d", ["O_RDONLY", "O_DIRECTORY"]], ["ftruncate", "d", 0],
        ["open", "ap", "c", ["O_WRONLY", "O_APPEND"]], ["ftruncate", "ap", 2],
        ["write", "ap", "+"], ["close", "ap"], ["read_file", "c"],
        ["read_file", "a"],
    ])
    out.assert_same()
    assert out.kernel[5] == {"ok": "012"}
    assert out.kernel[10] == out.kernel[14] == out.kernel[17] == {"errno": "EINVAL"}
    assert out.kernel[12] == {"errno": "EBADF"}
    assert out.kernel[22] == {"ok": "cc+"}
    assert "b" not in pair.upper_tree("cowfs")  # refused truncates copy nothing up


def test_o_trunc(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["stat", "a"], ["open", "t", "a", ["O_WRONLY", "O_TRUNC"]], ["fstat", "t"],
        ["close", "t"], ["read_file", "a"], ["stat", "a"],
        ["open", "t", "b", ["O_RDONLY", "O_TRUNC"]],  # O_RDONLY|O_TRUNC truncates on Linux
        ["stat", "b"],
    ])
    out.assert_same()
    assert out.kernel[4] == {"ok": ""} and out.kernel[5]["ok"]["ino"] == "op0"


def test_truncate_errors(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["truncate", "ro", 1],  # own file, mode 0444: EACCES
        ["truncate", "root", 1],  # root's 0644 file
        ["truncate", "d", 0],  # a dir
        ["truncate", "a", -1],
        ["truncate", "nope", 0],
        ["open", "o", "ro", ["O_WRONLY"]],
        ["stat", "ro"], ["read_file", "root"], ["stat", "a"],
    ])
    out.assert_same()
    assert out.kernel[0] == out.kernel[1] == out.kernel[5] == {"errno": "EACCES"}
    assert out.kernel[2] == {"errno": "EISDIR"} and out.kernel[3] == {"errno": "EINVAL"}
    for side in ("kernel", "cowfs"):
        assert list(pair.upper_tree(side)) == ["."], side

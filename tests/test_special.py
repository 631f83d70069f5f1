"""Special files, symlinks and open(2) flag errors, differentially against kernel overlayfs."""
from __future__ import annotations

from overlay import Dir, Fifo, Symlink

LOWER = {
    "a": "A\n",
    "d": Dir({"x": "X\n"}),
    "fifo": Fifo(0o640),
    "s": Symlink("a"),
    "sd": Symlink("d"),
    "dangling": Symlink("nowhere"),
    "dangling-deep": Symlink("d/new/deeper"),
    "loop1": Symlink("loop2"),
    "loop2": Symlink("loop1"),
    "abs": Symlink("/nonexistent/target"),
}


def test_mkfifo(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["mkfifo", "p", 0o600], ["lstat", "p"], ["mkfifo", "a"], ["mkfifo", "fifo"],
        ["lstat", "fifo"], ["open", "r", "fifo", ["O_RDONLY", "O_NONBLOCK"]], ["read", "r", 10],
        ["open", "w", "fifo", ["O_WRONLY", "O_NONBLOCK"]], ["write", "w", "through\n"],
        ["read", "r", 100], ["close", "w"], ["close", "r"],
        ["open", "w2", "p", ["O_WRONLY", "O_NONBLOCK"]],  # no reader: ENXIO
        ["unlink", "fifo"], ["mkfifo", "fifo", 0o666], ["lstat", "fifo"],
    ])
    out.assert_same()
    assert out.kernel[1]["ok"]["type"] == "p" and out.kernel[1]["ok"]["mode"] == "0600"
    assert out.kernel[2] == out.kernel[3] == {"errno": "EEXIST"}
    assert out.kernel[9] == {"ok": "through\n"} and out.kernel[12] == {"errno": "ENXIO"}


def test_mknod(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["mknod", "wh", 0o644, "c", 0, 0],  # a whiteout made through the mount: refused
        ["mknod", "null", 0o666, "c", 1, 3], ["mknod", "blk", 0o660, "b", 8, 0],
        ["mknod", "reg", 0o640, "f"], ["lstat", "reg"],
        ["mknod", "p", 0o640, "p"], ["lstat", "p"],
        ["mknod", "sock", 0o755, "s"], ["lstat", "sock"],
        ["unlink", "a"], ["mknod", "a", 0o600, "c", 0, 0],  # over a whiteout
        ["listdir", "."],
    ])
    out.assert_same()
    assert out.kernel[0] == out.kernel[1] == out.kernel[2] == {"errno": "EPERM"}
    assert out.kernel[10] == {"errno": "EPERM"}
    assert out.kernel[8]["ok"]["type"] == "s"
    for side in ("kernel", "cowfs"):
        assert "wh" not in pair.upper_tree(side), side


def test_symlinks(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["symlink", "a", "new"], ["lstat", "new"], ["readlink", "new"], ["read_file", "new"],
        ["stat", "new"],
        ["symlink", "x", "a"], ["symlink", "x", "s"],  # over existing names
        ["symlink", "t" * 3000, "long"], ["readlink", "long"],
        ["readlink", "a"], ["readlink", "d"],  # not symlinks
        ["readlink", "s"], ["readlink", "abs"], ["lstat", "sd"], ["stat", "sd"],
        ["listdir", "sd"], ["read_file", "sd/x"],
        ["write_file", "s", "through the link\n"], ["read_file", "a"], ["lstat", "s"],
        ["unlink", "s"], ["symlink", "d", "s"], ["readlink", "s"],
    ])
    out.assert_same()
    assert out.kernel[1]["ok"]["type"] == "l" and out.kernel[2] == {"ok": "a"}
    assert out.kernel[5] == out.kernel[6] == {"errno": "EEXIST"}
    assert out.kernel[9] == out.kernel[10] == {"errno": "EINVAL"}


def test_dangling_symlinks(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["lstat", "dangling"], ["stat", "dangling"], ["read_file", "dangling"],
        ["exists", "dangling"], ["stat", "abs"],
        ["write_file", "dangling", "created through a dangling link\n"],  # creates "nowhere"
        ["read_file", "nowhere"], ["lstat", "nowhere"], ["stat", "dangling"],
        ["write_file", "dangling-deep", "x"],  # missing parent: ENOENT
        ["open", "e", "dangling", ["O_WRONLY", "O_CREAT", "O_EXCL"]],
        ["symlink", "gone", "mine"], ["stat", "mine"], ["lstat", "mine"],
    ])
    out.assert_same()
    assert out.kernel[1] == out.kernel[2] == {"errno": "ENOENT"}
    assert out.kernel[6] == {"ok": "created through a dangling link\n"}
    assert out.kernel[9] == {"errno": "ENOENT"} and out.kernel[10] == {"errno": "EEXIST"}


def test_eloop_and_nofollow(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["stat", "loop1"], ["lstat", "loop1"], ["read_file", "loop2"],
        ["open", "n", "s", ["O_RDONLY", "O_NOFOLLOW"]],
        ["open", "n", "loop1", ["O_RDONLY", "O_NOFOLLOW"]],
        ["open", "p", "s", ["O_PATH", "O_NOFOLLOW"]], ["fstat", "p"],
        ["open", "n", "a", ["O_RDONLY", "O_NOFOLLOW"]], ["read", "n", 10],
        ["open", "n", "sd/x", ["O_RDONLY", "O_NOFOLLOW"]],  # only the last component counts
        ["symlink", "self", "self"], ["stat", "self"],
        ["write_file", "loop1", "x"],
    ])
    out.assert_same()
    assert [out.kernel[i] for i in (0, 2, 3, 4, 11, 12)] == [{"errno": "ELOOP"}] * 6
    assert out.kernel[6]["ok"]["type"] == "l" and out.kernel[8] == {"ok": "A\n"}


def test_open_flag_errors(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["open", "o", "a", ["O_RDONLY", "O_DIRECTORY"]],  # file: ENOTDIR
        ["open", "o", "s", ["O_RDONLY", "O_DIRECTORY"]],  # symlink to a file
        ["open", "o", "sd", ["O_RDONLY", "O_DIRECTORY"]],  # symlink to a dir: fine
        ["open", "o", "a", ["O_WRONLY", "O_CREAT", "O_EXCL"]],  # lower file
        ["write_file", "u", "u\n"], ["open", "o", "u", ["O_RDWR", "O_CREAT", "O_EXCL"]],
        ["open", "o", "d", ["O_WRONLY", "O_CREAT", "O_EXCL"]],
        ["open", "o", "s", ["O_WRONLY", "O_CREAT", "O_EXCL"]],
        ["open", "o", "d", ["O_WRONLY"]], ["open", "o", "d", ["O_RDWR"]],
        ["open", "o", "d", ["O_WRONLY", "O_CREAT"]], ["open", "o", "d", ["O_RDONLY", "O_TRUNC"]],
        ["mkdir", "n"], ["open", "o", "n", ["O_RDWR"]],
        ["open", "o", "a/", ["O_RDONLY"]], ["stat", "a/x"], ["stat", "d/"],
        ["open", "o", "n" * 256, ["O_WRONLY", "O_CREAT"]], ["statvfs", "."],
        ["read_file", "a"], ["listdir", "."],
    ])
    out.assert_same()
    assert out.kernel[0] == out.kernel[1] == {"errno": "ENOTDIR"} and out.kernel[2] == {"ok": None}
    assert [out.kernel[i] for i in (3, 5, 6, 7)] == [{"errno": "EEXIST"}] * 4
    assert [out.kernel[i] for i in (8, 9, 10, 11, 13)] == [{"errno": "EISDIR"}] * 5
    assert out.kernel[14] == out.kernel[15] == {"errno": "ENOTDIR"}
    assert out.kernel[17] == {"errno": "ENAMETOOLONG"}
    for side in ("kernel", "cowfs"):
        assert set(pair.upper_tree(side)) == {".", "u", "n"}, side

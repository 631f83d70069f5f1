"""Copy-up, differentially against kernel overlayfs (see tests/overlay.py)."""
from __future__ import annotations

import os

import overlay
from overlay import FIXED_ATIME_NS, FIXED_TIME_NS, Dir, Fifo, File, Hardlink, Symlink

LOWER = {
    "a.txt": "hello\n",
    "big.bin": File(b"x" * 300_000),
    "sparse": File("head", size=4 << 20),
    "ro.txt": File("read only\n", mode=0o444),
    "exe": File("#!/bin/sh\n", mode=0o755, xattrs={"user.origin": "lower"}),
    "pkg": Dir({"sub": Dir({"mod.py": "x = 1\n"}, mode=0o750, xattrs={"user.d": "1"})}),
    "link": Symlink("a.txt"),
    "root-rw": File("root but world-writable\n", mode=0o666, owner="root"),
    "root-ro": File("root only\n", mode=0o644, owner="root"),
    "rootdir": Dir({"f": "in a root dir\n"}, mode=0o777, owner="root"),
}


def test_read_does_not_copy_up(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["read_file", "a.txt"], ["stat", "a.txt"], ["stat_times", "a.txt"],
        ["read_file", "pkg/sub/mod.py"], ["lstat", "link"], ["readlink", "link"],
        ["getxattr", "exe", "user.origin"],
        ["listxattr", "exe"], ["read_file", "big.bin"], ["read_file", "root-ro"],
    ])
    out.assert_same()
    for side in ("kernel", "cowfs"):
        assert list(pair.upper_tree(side)) == ["."], f"{side}: a read changed the upper"


def test_write_copies_up(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["stat", "a.txt"],
        ["open", "r", "a.txt", ["O_RDONLY"]],  # opened before the copy-up
        ["open", "w", "a.txt", ["O_WRONLY"]],
        ["pwrite", "w", "J", 0],
        ["fsync", "w"],
        ["close", "w"],
        ["read", "r", 100],  # sees the copy
        ["close", "r"],
        ["stat", "a.txt"],  # same ino as before the copy-up
        ["stat_times", "a.txt"],
        ["read_file", "a.txt"],
        ["open", "t", "pkg/sub/mod.py", ["O_WRONLY", "O_APPEND"]],
        ["write", "t", "y = 2\n"],
        ["close", "t"],
        ["stat_times", "pkg/sub"], ["listxattr", "pkg/sub"], ["lstat", "pkg/sub/mod.py"],
        ["write_file", "big.bin", "short"],
        ["truncate", "sparse", 1 << 20], ["stat", "sparse"],
        ["open", "s", "sparse", ["O_RDONLY"]], ["lseek", "s", 0, "SEEK_HOLE"],
        ["lseek", "s", 8192, "SEEK_DATA"], ["close", "s"],
    ])
    out.assert_same()


def test_metadata_changes_copy_up(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["chmod", "exe", 0o700], ["stat", "exe"], ["stat_times", "exe"],
        ["getxattr", "exe", "user.origin"],
        ["setxattr", "a.txt", "user.new", "v"], ["listxattr", "a.txt"],
        ["utime", "ro.txt", 1_000_000_000_000_000_000, 1_100_000_000_000_000_000],
        ["stat_times", "ro.txt"],
        ["removexattr", "exe", "user.origin"], ["listxattr", "exe"],
        ["chmod", "pkg", 0o700], ["stat_times", "pkg"],
        ["chown", "a.txt", "root", "root"],  # not permitted for the user: EPERM on both
        ["chmod", "root-ro", 0o600],  # not the owner: EPERM
        ["open", "w", "root-ro", ["O_WRONLY"]],  # EACCES
    ])
    out.assert_same()


def test_copy_up_of_file_owned_by_another_user(overlay_pair):
    """Rootless cowfs cannot keep root as owner; the kernel reference (mounted by root) does.
    The copy-up itself must succeed (EXPECTED_DIFFERENCES: copyup-owner)."""
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["open", "w", "root-rw", ["O_WRONLY", "O_APPEND"]], ["write", "w", "more\n"],
        ["close", "w"], ["read_file", "root-rw"],
        ["write_file", "rootdir/new", "new\n"], ["lstat", "rootdir/new"],
        ["write_file", "rootdir/f", "changed\n"], ["read_file", "rootdir/f"],
    ])
    out.assert_same()


def test_hardlinked_lower_file(overlay_pair):
    """Kernel overlay (no index=on) reports lower hardlinks as one inode until a copy-up breaks
    the link; cowfs keeps them one object (EXPECTED lower-hardlink-copyup; test_hardlinks.py)."""
    pair = overlay_pair({**LOWER, "hard1": "shared\n", "hard2": Hardlink("hard1")})
    out = pair.run([
        ["stat", "hard1"], ["stat", "hard2"],
        ["write_file", "hard1", "changed\n"],
        ["read_file", "hard1"], ["read_file", "hard2"],
        ["link", "a.txt", "a-link"], ["stat", "a.txt"], ["stat", "a-link"],
    ])
    out.assert_same()


def test_mmap_write_copies_up(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["open", "m", "a.txt", ["O_RDWR"]], ["mmap_write", "m", 0, "J"], ["close", "m"],
        ["read_file", "a.txt"],
    ])
    out.assert_same()


# --- what a copy-up keeps ---------------------------------------------------------------------
T_OLD = 1_200_000_000_000_000_000  # a distinct fixed time for the deep tree below
KEEP = {
    "data.bin": File(bytes(range(256)) * 40, mode=0o640,
                     xattrs={"user.a": "1", "user.b": b"\x00\xff"}),
    "deep": Dir({"a": Dir({"b": Dir({"c": Dir({"f": File("deep\n", mode=0o600)},
                                                 mode=0o700, xattrs={"user.c": "c"})},
                                    mode=0o751)}, mode=0o711, xattrs={"user.a": "a"})}),
    "d": Dir({"one": "1\n", "two": "2\n", "three": "3\n"}, mode=0o775),
    "fifo": Fifo(0o640),
    "sym": Symlink("data.bin"),
    "dangling": Symlink("no/such/target"),
    "sparse": File("head", size=64 << 20),
    "big": File(b"0123456789" * 100_000),
    "ro": File("read-only\n", mode=0o444),
}


def _upper_stat(pair, side: str, path: str) -> os.stat_result:
    lay = pair.cowfs_layers if side == "cowfs" else pair.kernel_layers
    return os.lstat(os.path.join(lay.upper, path))


def _user_xattrs(entry: dict) -> dict:
    return {k: v for k, v in entry["xattrs"].items() if not k.startswith("user.overlay.")}


def test_copy_up_keeps_data_mode_times_xattrs(overlay_pair):
    """A metadata-only change copies up: the copy has the lower's data, mode, atime/mtime and
    user xattrs (also on disk in the upper)."""
    pair = overlay_pair(KEEP)
    out = pair.run([
        ["setxattr", "data.bin", "user.new", "n"],
        ["stat", "data.bin"], ["stat_times", "data.bin"], ["read_file", "data.bin"],
        ["listxattr", "data.bin"], ["getxattr", "data.bin", "user.b"],
        ["chmod", "ro", 0o400], ["stat", "ro"], ["stat_times", "ro"], ["read_file", "ro"],
    ])
    out.assert_same()
    for side in ("kernel", "cowfs"):
        up = pair.upper_tree(side)
        assert up["data.bin"]["mode"] == "0640" and up["ro"]["mode"] == "0400", side
        assert _user_xattrs(up["data.bin"]) == {"user.a": "1", "user.b": {
            "size": 2, "blake2b": up["data.bin"]["xattrs"]["user.b"]["blake2b"]},
            "user.new": "n"}, side
        for name in ("data.bin", "ro"):
            st = _upper_stat(pair, side, name)
            assert (st.st_atime_ns, st.st_mtime_ns) == (FIXED_ATIME_NS, FIXED_TIME_NS), \
                f"{side}: {name} times not kept by copy-up"


def test_copy_up_of_symlink(overlay_pair):
    """Symlinks copy up on lchown / utimensat(AT_SYMLINK_NOFOLLOW): target and times kept."""
    pair = overlay_pair(KEEP)
    out = pair.run([
        ["lchown", "sym", "user", "user"], ["lstat", "sym"], ["readlink", "sym"],
        ["lstat_times", "sym"], ["read_file", "sym"],
        ["utimensat", "dangling", T_OLD, T_OLD, False], ["lstat_times", "dangling"],
        ["readlink", "dangling"], ["lstat", "dangling"],
        ["lsetxattr", "sym", "user.x", "v"],  # user xattrs are not allowed on symlinks
    ])
    out.assert_same()
    for side in ("kernel", "cowfs"):
        up = pair.upper_tree(side)
        assert up["sym"]["type"] == "l" and up["sym"]["target"] == "data.bin", side
        assert up["dangling"]["target"] == "no/such/target", side
        st = _upper_stat(pair, side, "sym")
        assert (st.st_atime_ns, st.st_mtime_ns) == (FIXED_ATIME_NS, FIXED_TIME_NS), side


def test_copy_up_of_fifo(overlay_pair):
    """A fifo copies up on chmod/utime; using it (open, write, read) does not copy it up."""
    pair = overlay_pair(KEEP)
    out = pair.run([
        ["open", "p", "fifo", ["O_RDWR", "O_NONBLOCK"]], ["write", "p", "through\n"],
        ["read", "p", 100], ["close", "p"], ["exists", "fifo"],
    ])
    out.assert_same()
    for side in ("kernel", "cowfs"):
        assert "fifo" not in pair.upper_tree(side), f"{side}: using a fifo copied it up"
    out = pair.run([
        ["chmod", "fifo", 0o600], ["lstat", "fifo"], ["stat_times", "fifo"],
        ["utime", "fifo", T_OLD, T_OLD], ["stat_times", "fifo"],
        ["open", "p", "fifo", ["O_RDWR", "O_NONBLOCK"]], ["write", "p", "x"],
        ["read", "p", 10], ["close", "p"],
    ])
    out.assert_same()
    for side in ("kernel", "cowfs"):
        up = pair.upper_tree(side)
        assert up["fifo"]["type"] == "p" and up["fifo"]["mode"] == "0600", side


def test_copy_up_creates_parents_first(overlay_pair):
    """Writing a deep lower file creates every ancestor in upper with the lower's mode, times
    and user xattrs; the merged view shows them unchanged."""
    pair = overlay_pair(KEEP)
    out = pair.run([
        ["open", "w", "deep/a/b/c/f", ["O_WRONLY", "O_APPEND"]], ["write", "w", "more\n"],
        ["close", "w"], ["read_file", "deep/a/b/c/f"],
        ["stat", "deep"], ["stat", "deep/a"], ["stat", "deep/a/b"], ["stat", "deep/a/b/c"],
        ["stat_times", "deep"], ["stat_times", "deep/a"], ["stat_times", "deep/a/b"],
        ["stat_times", "deep/a/b/c"], ["listxattr", "deep/a"], ["listxattr", "deep/a/b/c"],
    ])
    out.assert_same()
    want = {"deep": "0755", "deep/a": "0711", "deep/a/b": "0751", "deep/a/b/c": "0700"}
    for side in ("kernel", "cowfs"):
        up = pair.upper_tree(side)
        assert {p: up[p]["mode"] for p in want if p in up} == want, side
        assert _user_xattrs(up["deep/a"]) == {"user.a": "a"}, side
        assert _user_xattrs(up["deep/a/b/c"]) == {"user.c": "c"}, side
        assert "deep/a/b/c/f" in up and "d" not in up, side
        for p in want:
            st = _upper_stat(pair, side, p)
            assert st.st_mtime_ns == FIXED_TIME_NS, f"{side}: {p} mtime changed by copy-up"


def test_copy_up_leaves_parent_mtime(overlay_pair):
    """Copy-up puts a new entry into the parent's upper dir; its times stay the lower's. A real
    change in the directory (a create) updates them as usual."""
    pair = overlay_pair(KEEP)
    out = pair.run([
        ["chmod", "d/one", 0o600], ["stat_times", "d"],  # parent copied up along with it
        ["setxattr", "d/two", "user.x", "y"], ["stat_times", "d"],  # parent already in upper
        ["truncate", "d/three", 1], ["stat_times", "d"], ["stat_times", "d/three"],
        ["write_file", "d/new", "n"], ["stat_times", "d"],
    ])
    out.assert_same()
    for side in ("kernel", "cowfs"):
        st = _upper_stat(pair, side, "d")
        assert st.st_atime_ns == FIXED_ATIME_NS, side
    assert out.cowfs[1] == out.cowfs[5] == {"ok": {"atime": FIXED_ATIME_NS,
                                                   "mtime": FIXED_TIME_NS}}


def test_sparse_file_stays_sparse(overlay_pair):
    """A 64 MiB file with 4 bytes of data: its copy-up allocates (almost) nothing, and the
    merged view still reports the holes (SEEK_HOLE/SEEK_DATA). Exact hole offsets are not
    compared: the kernel copies data in 1 MiB chunks, so its copy has a data run of 1 MiB."""
    pair = overlay_pair(KEEP)
    size = 64 << 20
    out = pair.run([
        ["chmod", "sparse", 0o600], ["stat", "sparse"],
        ["open", "s", "sparse", ["O_RDONLY"]], ["pread", "s", 8, 0],
        ["pread", "s", 8, size - 8], ["close", "s"],
        ["open", "w", "sparse", ["O_WRONLY"]], ["pwrite", "w", "tail", size - 4],
        ["close", "w"], ["stat", "sparse"],
    ])
    out.assert_same()
    for side in ("kernel", "cowfs"):
        st = _upper_stat(pair, side, "sparse")
        assert st.st_size == size, side
        assert st.st_blocks * 512 <= 2 << 20, \
            f"{side}: copy-up of a sparse file allocated {st.st_blocks * 512} bytes"
    # Through the mount only the kernel shows the holes: pyfuse3 has no lseek handler, so
    # cowfs gets the generic answer (EXPECTED "lseek-holes"); the copy on disk is sparse.
    seeks = [["open", "s", "sparse", ["O_RDONLY"]], ["lseek", "s", 0, "SEEK_HOLE"],
             ["lseek", "s", 2 << 20, "SEEK_DATA"], ["lseek", "s", size - 4, "SEEK_HOLE"]]
    got = [r.get("ok", r.get("errno")) for r in overlay.run_ops(pair.kernel.mnt, seeks)]
    assert got == [None, got[1], size - 4096, size] and got[1] <= 1 << 20, got
    got = [r.get("ok", r.get("errno")) for r in overlay.run_ops(pair.cowfs.mnt, seeks)]
    assert got == [None, size, 2 << 20, size], got


def test_open_with_o_trunc_copies_up_empty(overlay_pair):
    pair = overlay_pair(KEEP)
    out = pair.run([
        ["open", "t", "big", ["O_WRONLY", "O_TRUNC"]], ["fstat", "t"], ["write", "t", "new"],
        ["close", "t"], ["read_file", "big"], ["stat", "big"],
        ["open", "r", "data.bin", ["O_RDONLY", "O_TRUNC"]],  # not writable for the user: EACCES
        ["open", "r", "d/one", ["O_RDONLY", "O_TRUNC"]], ["read", "r", 10], ["close", "r"],
        ["stat", "d/one"], ["stat_times", "d/one"],
    ])
    out.assert_same()
    for side in ("kernel", "cowfs"):
        st = _upper_stat(pair, side, "big")
        assert st.st_size == 3 and st.st_blocks <= 8, side


def test_truncate_lower_files(overlay_pair):
    pair = overlay_pair(KEEP)
    out = pair.run([
        ["truncate", "big", 10], ["read_file", "big"], ["stat", "big"],
        ["truncate", "d/one", 5000], ["stat", "d/one"], ["read_file", "d/one"],
        ["truncate", "ro", 0],  # mode 0444: EACCES
        ["open", "f", "d/two", ["O_RDWR"]], ["ftruncate", "f", 1], ["read", "f", 10],
        ["fstat", "f"], ["ftruncate", "f", 0], ["pwrite", "f", "x", 3], ["close", "f"],
        ["read_file", "d/two"], ["stat_times", "d/two"],
        ["truncate", "d/three", 2], ["stat_times", "d/three"],
    ])
    out.assert_same()


def test_descriptor_opened_before_copy_up_sees_new_data(overlay_pair):
    """An O_RDONLY fd opened on the lower file reads what another fd wrote after the copy-up,
    before and after the writer closes; fstat on it reports the copy."""
    pair = overlay_pair(KEEP)
    out = pair.run([
        ["open", "r", "big", ["O_RDONLY"]], ["read", "r", 5], ["fstat", "r"],
        ["open", "w", "big", ["O_RDWR"]],
        ["pwrite", "w", "ABCDE", 5], ["pwrite", "w", "END", 1_000_000],
        ["pread", "r", 10, 0], ["read", "r", 5], ["fstat", "r"], ["pread", "r", 10, 999_998],
        ["ftruncate", "w", 7], ["close", "w"],
        ["pread", "r", 100, 0], ["fstat", "r"], ["close", "r"],
    ])
    out.assert_same()


def test_mmap_read_after_copy_up(overlay_pair):
    """A new shared mapping of an fd opened before the copy-up shows the copied-up data."""
    pair = overlay_pair(KEEP)
    out = pair.run([
        ["open", "r", "d/one", ["O_RDONLY"]], ["mmap_read", "r", 0, 2],
        ["write_file", "d/one", "written later\n"],
        ["mmap_read", "r", 0, 100], ["read", "r", 100],
        ["open", "r2", "d/one", ["O_RDONLY"]], ["mmap_read", "r2", 0, 100],
        ["close", "r"], ["close", "r2"],
    ])
    out.assert_same()


def test_append_to_lower_file(overlay_pair):
    pair = overlay_pair(KEEP)
    out = pair.run([
        ["open", "a", "d/one", ["O_WRONLY", "O_APPEND"]], ["write", "a", "two\n"],
        ["fstat", "a"], ["lseek", "a", 0, "SEEK_CUR"],
        ["pwrite", "a", "X", 0],  # O_APPEND: Linux appends anyway
        ["write", "a", "three\n"], ["close", "a"], ["read_file", "d/one"],
        ["open", "b", "big", ["O_RDWR", "O_APPEND"]], ["write", "b", "!"],
        ["pread", "b", 4, 999_998], ["fstat", "b"], ["close", "b"],
    ])
    out.assert_same()

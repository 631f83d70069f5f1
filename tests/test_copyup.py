"""Copy-up, differentially against kernel overlayfs (see tests/overlay.py)."""
from __future__ import annotations

from overlay import Dir, File, Hardlink, Symlink

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
    the link; SEMANTICS.md makes keeping them a cowfs goal (then an EXPECTED entry is due)."""
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

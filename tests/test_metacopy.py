"""Metadata-only copy-up (issue 16, item 4): `-o metacopy=on` against the kernel's metacopy=on.

The rootless kernel refuses metacopy=on, so the reference is the kernel mounted as root in its
trusted.overlay.* format with metacopy=on (overlay_pair(kernel_opts=...)). A metadata change of
a lower file (chmod, chown, utimens, setxattr, rename) leaves in the upper a hole of the file's
size marked user.overlay.metacopy; reads go to the lower data; the first data change copies it
in. Also: the on-disk format, the interchange with that kernel (overlay.trusted_copy), a kill
during the data copy-up, and an upper holding metacopy files mounted without the option
(compared with the rootless kernel, which refuses to follow them: EPERM).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time

import overlay
from overlay import Dir, File

# 1 MiB of bytes that differ from block to block: a copy that lost or moved data shows
DATA = b"".join(i.to_bytes(4, "little") * 16 for i in range(1 << 14))
KERNEL = ["metacopy=on"]
COWFS = ["-o", "metacopy=on"]
METACOPY = "user.overlay.metacopy"

LOWER = {n: File(DATA) for n in "abcdefghijk"}
LOWER["sub"] = Dir({"m": File(DATA), "n": File(DATA)})

OPS = [
    # metadata only: the data read afterwards is the lower's
    ["chmod", "a", 0o600], ["stat", "a"], ["read_file", "a"], ["stat_times", "a"],
    ["chown", "b", -1, "user"], ["stat", "b"], ["read_file", "b"],
    ["utime", "c", 1_000_000_000, 2_000_000_000], ["stat_times", "c"], ["read_file", "c"],
    ["setxattr", "d", "user.k", "v"], ["getxattr", "d", "user.k"], ["listxattr", "d"],
    ["read_file", "d"],
    # then the data changes: a write, an append, a truncate, a shared mapping
    ["open", "fa", "a", ["O_RDWR"]], ["pwrite", "fa", "XY", 10], ["fstat", "fa"],
    ["close", "fa"], ["read_file", "a"], ["stat", "a"],
    ["chmod", "e", 0o640], ["open", "fe", "e", ["O_WRONLY", "O_APPEND"]],
    ["write", "fe", "tail"], ["close", "fe"], ["read_file", "e"], ["stat", "e"],
    ["chmod", "f", 0o600], ["truncate", "f", 100], ["read_file", "f"], ["stat", "f"],
    ["chmod", "g", 0o666], ["open", "fg", "g", ["O_RDWR"]], ["mmap_write", "fg", 4096, "MM"],
    ["close", "fg"], ["read_file", "g"],
    # a descriptor opened before the metadata change, read after it and after the data's
    ["open", "rh", "h", ["O_RDONLY"]], ["chmod", "h", 0o600], ["pread", "rh", 8, 4096],
    ["fstat", "rh"], ["write_file", "h", "new"], ["pread", "rh", 8, 0], ["close", "rh"],
    # renamed metacopy files keep reading their lower data, also in another dir and twice
    ["chmod", "i", 0o600], ["rename", "i", "i2"], ["read_file", "i2"], ["stat", "i2"],
    ["stat", "i"], ["rename", "i2", "sub/i3"], ["read_file", "sub/i3"],
    ["rename", "j", "j2"], ["read_file", "j2"], ["stat", "j2"],
    ["open", "fj", "j2", ["O_WRONLY", "O_APPEND"]], ["write", "fj", "end"], ["close", "fj"],
    ["read_file", "j2"],
    # link(2) and unlink of a metacopy file
    ["chmod", "sub/m", 0o600], ["link", "sub/m", "m2"], ["stat", "m2"], ["stat", "sub/m"],
    ["read_file", "m2"], ["open", "fm", "m2", ["O_WRONLY", "O_APPEND"]],
    ["write", "fm", "both"], ["close", "fm"], ["read_file", "sub/m"],
    ["chmod", "sub/n", 0o600], ["unlink", "sub/n"], ["stat", "sub/n"], ["listdir", "sub"],
    ["chmod", "k", 0o400], ["read_file", "k"], ["stat", "k"],
]

READ_BACK = [["read_file", n] for n in "abcdefghk"] + [
    ["read_file", "i2"], ["read_file", "sub/i3"], ["read_file", "j2"], ["read_file", "m2"],
    ["read_file", "sub/m"], ["stat", "k"], ["stat", "sub/i3"], ["listdir", "."],
    ["listdir", "sub"],
]


def test_metacopy_against_the_kernel(overlay_pair):
    pair = overlay_pair(LOWER, kernel_opts=KERNEL, cowfs_opts=COWFS)
    out = pair.run(OPS)
    out.assert_same()
    assert out.cowfs[OPS.index(["read_file", "a"])] == out.cowfs[OPS.index(["read_file", "d"])]
    pair.remount()
    pair.run(READ_BACK).assert_same()


def test_metacopy_over_two_lowers(overlay_pair):
    """Data in the bottom lower, a top lower hiding a bottom file: the right layer's data."""
    top = {"t": File(DATA[:5000]), "both": File(b"top" + DATA), "d": Dir({"x": File(DATA)})}
    bottom = {"b": File(DATA[::-1]), "both": File(b"bottom"), "d": Dir({"y": File(DATA[7:])})}
    pair = overlay_pair(top, bottom, kernel_opts=KERNEL, cowfs_opts=COWFS)
    ops = [["chmod", n, 0o600] for n in ("t", "b", "both", "d/x", "d/y")] + [
        ["read_file", "t"], ["read_file", "b"], ["read_file", "both"], ["read_file", "d/y"],
        ["rename", "b", "d/b2"], ["rename", "d/y", "y2"], ["read_file", "d/b2"],
        ["read_file", "y2"], ["setxattr", "d/x", "user.a", "1"], ["read_file", "d/x"],
        ["open", "f", "y2", ["O_RDWR"]], ["pwrite", "f", "zz", 3], ["close", "f"],
        ["read_file", "y2"], ["stat", "y2"], ["stat", "d/b2"],
    ]
    pair.run(ops).assert_same()
    pair.remount()
    pair.run([["read_file", p] for p in ("t", "both", "d/b2", "y2", "d/x")]).assert_same()


def _xattrs(path: str) -> dict[str, bytes]:
    return {n: os.getxattr(path, n) for n in os.listxattr(path)}


def test_on_disk(overlay_pair):
    """After a chmod the upper file is a hole of the file's size with the marker; after a write
    it holds all the data and no marker. Renamed: an absolute redirect to its lower data."""
    pair = overlay_pair({"big": File(DATA * 8), "r": File(DATA), "l": File(DATA)},
                        kernel_opts=KERNEL, cowfs_opts=COWFS)
    upper = pair.cowfs_layers.upper
    pair.run([["chmod", "big", 0o600], ["rename", "r", "r2"], ["chmod", "l", 0o600],
              ["link", "l", "l2"]], trees=False)
    # link(2) of a metacopy file: cowfs copies the data first, the kernel links the metacopy
    # file (README "Differences"); the same through the mount (test_metacopy_against_the_kernel)
    assert METACOPY not in _xattrs(os.path.join(upper, "l"))
    assert os.stat(os.path.join(upper, "l2")).st_nlink == 2
    kernel_l = os.path.join(pair.kernel_layers.upper, "l")
    assert "trusted.overlay.metacopy" in os.listxattr(kernel_l)
    st = os.stat(os.path.join(upper, "big"))
    assert st.st_size == len(DATA) * 8 and st.st_blocks == 0, st
    assert _xattrs(os.path.join(upper, "big"))[METACOPY] == b""
    got = _xattrs(os.path.join(upper, "r2"))
    assert got[METACOPY] == b"" and got["user.overlay.redirect"] == b"/r", got
    # st_blocks through the mount: the lower's, as the kernel shows
    lower_blocks = os.stat(os.path.join(pair.cowfs_layers.lowers[0], "big")).st_blocks
    out = subprocess.run(overlay.as_user(["stat", "-c", "%b", os.path.join(pair.cowfs.mnt,
                                                                           "big")]),
                         capture_output=True, text=True, timeout=30)
    assert int(out.stdout) == lower_blocks, out
    res = pair.run([["open", "f", "big", ["O_WRONLY"]], ["pwrite", "f", "!", 0],
                    ["close", "f"], ["write_file", "r2", "short"]], trees=False)
    assert res.cowfs == res.kernel, res.report()
    for name in ("big", "r2"):
        path = os.path.join(upper, name)
        assert not any(n in _xattrs(path) for n in (METACOPY, "user.overlay.redirect")), name
    with open(os.path.join(upper, "big"), "rb") as f:
        assert f.read() == b"!" + (DATA * 8)[1:]
    assert os.stat(os.path.join(upper, "big")).st_blocks >= len(DATA) * 8 // 512
    assert os.listdir(os.path.join(pair.cowfs_layers.work, "work")) == []


def test_interchange_with_the_kernel(overlay_pair):
    """cowfs's upper, in root's trusted format, mounted by the kernel with metacopy=on, shows
    what the kernel's own upper shows (metacopy files, renamed ones, written ones)."""
    pair = overlay_pair(LOWER, kernel_opts=KERNEL, cowfs_opts=COWFS)
    ops = [["chmod", "a", 0o600], ["setxattr", "b", "user.x", "y"], ["rename", "c", "c2"],
           ["chmod", "d", 0o600], ["rename", "d", "sub/d2"], ["chmod", "e", 0o600],
           ["write_file", "e", "written"], ["utime", "f", 5, 6], ["unlink", "g"]]
    pair.run(ops).assert_same()
    kernel_tree = overlay.dump_tree(pair.kernel.mnt)
    pair.unmount()
    lay = overlay.make_layers("mc-interchange", [LOWER])
    lay.upper = overlay.trusted_copy(pair.cowfs_layers.upper,
                                     os.path.join(lay.base, "trusted-upper"))
    lay.new_work()
    with overlay.mount("kernel", lay, KERNEL, trusted=True):
        tree = overlay.dump_tree(lay.mnt)
    diffs = overlay.compare_trees(kernel_tree, tree)
    assert diffs == [], overlay.format_diffs(diffs, [])
    assert "c2" in tree and "sub/d2" in tree and "c" not in tree


def test_kill_during_data_copy_up(overlay_pair):
    """SIGKILL of the daemon while it copies a metacopy file's data in: the metacopy file is
    left as it was (its metadata, its lower data), the work dir's leftover is cleared by the
    next mount."""
    big = DATA * 256  # 256 MiB: the copy takes long enough to be caught in the middle
    pair = overlay_pair({"big": File(big)}, kernel_opts=KERNEL, cowfs_opts=COWFS)
    pair.run([["chmod", "big", 0o640]], trees=False)
    work = os.path.join(pair.cowfs_layers.work, "work")
    writer = subprocess.Popen(overlay.as_user(["sh", "-c", 'echo x >> "$1/big"', "sh",
                                               pair.cowfs.mnt]),
                              cwd="/", stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not os.listdir(work) and time.monotonic() < deadline:
        time.sleep(0.002)
    assert os.listdir(work), "no data copy-up seen in the work dir"
    os.kill(pair.cowfs.proc.pid, signal.SIGKILL)
    pair.cowfs.proc.wait(timeout=30)
    writer.wait(timeout=60)
    upper = os.path.join(pair.cowfs_layers.upper, "big")
    assert _xattrs(upper)[METACOPY] == b""
    assert os.stat(upper).st_blocks == 0
    subprocess.run(overlay.as_user(["fusermount3", "-uz", pair.cowfs.mnt]), check=True,
                   timeout=30, cwd="/")
    pair.cowfs = None  # killed and unmounted: only the kernel's mount is left to unmount
    pair.unmount()
    pair.kernel_layers.new_work()
    pair.mount()
    assert os.listdir(work) == []
    out = pair.run([["stat", "big"], ["read_file", "big"], ["stat_times", "big"]],
                   trees=False)
    assert out.cowfs[0]["ok"]["mode"] == "0640", out.cowfs
    assert out.cowfs == out.kernel, out.report()


def test_option_off_unchanged(overlay_pair):
    """Without the option a chmod copies the data up, as before: no marker."""
    pair = overlay_pair({"a": File(DATA)})
    pair.run([["chmod", "a", 0o600], ["read_file", "a"]]).assert_same()
    path = os.path.join(pair.cowfs_layers.upper, "a")
    assert METACOPY not in _xattrs(path)
    assert os.stat(path).st_blocks >= len(DATA) // 512


def test_metacopy_upper_without_the_option(overlay_pair):
    """An upper holding metacopy files, mounted without the option: each such file is refused
    (EPERM) where it is looked up and listed as a name only, as the rootless kernel does (it
    never follows user.overlay.metacopy); the rest of the tree works."""
    # as cowfs leaves it: with its origin (the kernel ignores that one)
    mc = File(b"", size=len(DATA), mode=0o600,
              xattrs={METACOPY: b"", "user.overlay.cowfs.origin": b"l:0:1:2"})
    pair = overlay_pair({"a": File(DATA), "b": File(DATA)}, upper={"a": mc, "c": "upper"})
    ops = [["stat", "a"], ["read_file", "a"], ["chmod", "a", 0o644], ["unlink", "a"],
           ["listdir", "."], ["read_file", "b"], ["read_file", "c"]]
    out = pair.run(ops)
    out.assert_same()
    assert out.cowfs[0] == {"errno": "EPERM"}, out.cowfs
    assert "a" in out.cowfs[4]["ok"], out.cowfs


def test_lower_data_gone(overlay_pair):
    """A metacopy file whose lower data is gone (the lower changed under the upper): EIO on
    lookup and left out of listings, as the kernel (it logs "no lower data")."""
    pair = overlay_pair({"a": File(DATA), "b": File(DATA), "keep": "k"},
                        kernel_opts=KERNEL, cowfs_opts=COWFS)
    pair.run([["chmod", "a", 0o600], ["chmod", "b", 0o600]]).assert_same()
    pair.unmount()
    for lay in (pair.kernel_layers, pair.cowfs_layers):
        low = lay.lowers[0]
        os.unlink(os.path.join(low, "a"))
        # changed on purpose, by the test: its new state is what must stay unwritten
        overlay.LOWERS[:] = [t for t in overlay.LOWERS if t[0] != low]
        overlay.register_lower(low)
    pair.kernel_layers.new_work()
    pair.mount()
    out = pair.run([["stat", "a"], ["read_file", "a"], ["listdir", "."], ["read_file", "b"]])
    out.assert_same()
    assert out.cowfs[0] == {"errno": "EIO"}, out.cowfs


def test_diff_and_fsck(overlay_pair):
    """`cowfs diff` shows a metacopy file as changed (C), a renamed one as deleted and added;
    `cowfs fsck` passes a well-formed upper and, given lowers that lack the data, reports the
    file (and --repair leaves it); a metacopy marker on a directory is garbage it removes."""
    from test_diff import cowfs, layer_args, ok  # noqa: PLC0415

    pair = overlay_pair(LOWER, kernel_opts=KERNEL, cowfs_opts=COWFS)
    pair.run([["chmod", "a", 0o600], ["rename", "b", "b2"], ["setxattr", "c", "user.x", "1"],
              ["chmod", "d", 0o600], ["write_file", "d", "data"]], trees=False)
    pair.unmount()
    lay = pair.cowfs_layers
    assert ok(cowfs("diff", *layer_args(lay))).splitlines() == [
        "C a", "D b", "A b2", "C c", "C d"]
    fsck = ["fsck", "--upper", lay.upper, "--work", lay.work]
    assert ok(cowfs(*fsck)) == ""
    assert ok(cowfs(*fsck, "--lower", lay.lowers[0])) == ""
    empty = os.path.join(lay.base, "empty-lower")
    os.mkdir(empty)
    for args in ([], ["--repair"]):
        res = cowfs(*fsck, "--lower", empty, *args)
        assert res.returncode == 1, res
        assert sorted(res.stdout.splitlines()) == [
            f"{lay.upper}/{n}: metadata-only copy-up whose lower data ({src}) is gone: reads "
            "as EIO" for n, src in (("a", "a"), ("b2", "b"), ("c", "c"))], res.stdout
    os.mkdir(os.path.join(lay.upper, "z"))
    os.setxattr(os.path.join(lay.upper, "z"), METACOPY, b"")
    res = cowfs(*fsck, "--repair")
    assert res.returncode == 0 and res.stdout == (
        f"{lay.upper}/z: user.overlay.metacopy on a dir: only regular files are "
        "metadata-only copy-ups: removed the xattr\n"), res
    assert METACOPY not in os.listxattr(os.path.join(lay.upper, "z"))
    assert METACOPY in os.listxattr(os.path.join(lay.upper, "a"))


def test_option_spelling(harness, tmp_path):
    """-o metacopy=on|off and --metacopy are taken; another value is one line, exit 2."""
    from test_diff import cowfs, usage_error  # noqa: PLC0415

    low, up, mnt = (tmp_path / n for n in ("l", "u", "m"))
    for d in (low, up, mnt):
        d.mkdir()
    res = cowfs("mount", "--lower", str(low), "--upper", str(up), "-o", "metacopy=yes",
                str(mnt))
    usage_error(res, "metacopy=yes")
    assert not os.listdir(up)
    for opt in (["-o", "metacopy=on"], ["-o", "metacopy=off"], ["--metacopy"]):
        res = cowfs("mount", "--lower", str(low), "--upper", str(up), *opt, "--help")
        assert res.returncode == 0, res


def test_data_copy_up_keeps_times(overlay_pair):
    """An open for writing that writes nothing copies the data in and keeps the file's mtime
    (cowfs assembles the copy and gives it the metacopy file's times); the kernel copies into
    the upper file itself, which moves its mtime and ctime to now (README "Differences")."""
    pair = overlay_pair({"f": File(DATA)}, kernel_opts=KERNEL, cowfs_opts=COWFS)
    out = pair.run([["chmod", "f", 0o600], ["times_mark", "t", "f"], ["sleep", 1.1],
                    ["open", "w", "f", ["O_RDWR"]], ["close", "w"],
                    ["times_cmp", "t", "f", ["mtime"]], ["read_file", "f"]], trees=False)
    assert out.kernel[5] == {"ok": {"mtime": "later"}}, out.kernel
    assert out.cowfs[5] == {"ok": {"mtime": "same"}}, out.cowfs
    assert out.cowfs[6] == out.kernel[6]
    upper = os.path.join(pair.cowfs_layers.upper, "f")
    assert METACOPY not in _xattrs(upper) and os.stat(upper).st_blocks >= len(DATA) // 512


def test_full_upper(overlay_pair):
    """On an upper too small for the data, a metadata change of a big lower file succeeds (no
    data copied), as on the kernel as root; the data copy-up then fails with ENOSPC and leaves
    the metacopy file as it was, the work dir empty and the space free. The kernel copies into
    the metacopy file itself and keeps what it copied before it ran out: the upper stays full
    (README "Differences")."""
    pair = overlay_pair({"big": File(DATA * 3), "small": "s\n"}, upper_fs="tmpfs:size=1m",
                        kernel_opts=KERNEL, cowfs_opts=COWFS)
    ops = [["chmod", "big", 0o600], ["setxattr", "big", "user.x", "1"], ["stat", "big"],
           ["read_file", "big"], ["open", "f", "big", ["O_WRONLY", "O_APPEND"]],
           ["stat", "big"], ["read_file", "big"], ["listxattr", "big"]]
    out = pair.run(ops, trees=False)
    out.assert_same(trees=False)
    assert out.cowfs[0] == {"ok": None} and out.cowfs[4] == {"errno": "ENOSPC"}, out.cowfs
    upper = os.path.join(pair.cowfs_layers.upper, "big")
    assert _xattrs(upper)[METACOPY] == b"" and os.stat(upper).st_blocks == 0
    assert os.listdir(os.path.join(pair.cowfs_layers.work, "work")) == []
    assert os.stat(os.path.join(pair.kernel_layers.upper, "big")).st_blocks > 0
    out = pair.run([["write_file", "small", "still fits\n"]], trees=False)
    assert out.cowfs == [{"ok": 11}] and out.kernel == [{"errno": "ENOSPC"}], out.report(False)

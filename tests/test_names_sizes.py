"""Names and sizes at the edges, differentially against kernel overlayfs: names with newlines and
bytes that are not UTF-8, a tree 4000 directories deep, a 100k-entry directory, a 2^40-byte
sparse file."""
from __future__ import annotations

import os

from overlay import Dir, File

ODD = ["new\nline", "\udcff\udcfe not utf-8", "tab\tand space ", "-dash", "é" * 127 + "x",
       "\\", "'\"", "\udce9t\udce9"]  # \udcXX: the byte XX (surrogateescape)


def cap(name: str) -> str:
    """NAME cut to NAME_MAX bytes (maybe inside a character: one more name that is not UTF-8)."""
    return os.fsdecode(os.fsencode(name)[:255])


def test_odd_names(overlay_pair):
    """Names with a newline, invalid UTF-8, 255 bytes of two-byte characters: looked up, listed,
    copied up, whited out, renamed, linked and made in the upper as the kernel does."""
    lower = {n: f"lower {i}\n" for i, n in enumerate(ODD)}
    lower["d"] = Dir({n: "in d\n" for n in ODD})
    pair = overlay_pair(lower)
    ops = [["listdir", "."], ["listdir", "d"], ["scandir", "d"]]
    for i, n in enumerate(ODD):
        ops += [["stat", n], ["read_file", n], ["write_file", f"d/{n}", f"changed {i}\n"],
                ["getxattr", f"d/{n}", "user.none"], ["rename", n, cap(f"mv{n}")],
                ["link", cap(f"mv{n}"), cap(f"ln\n{n}")], ["symlink", n, cap(f"s{n}")],
                ["mkdir", cap(f"m{n}")], ["write_file", cap(f"m{n}") + f"/{n}", "new\n"]]
    ops += [["unlink", f"d/{ODD[0]}"], ["rmdir", "d"], ["listdir", "."], ["listdir", "d"]]
    out = pair.run(ops)
    out.assert_same()
    errors = [(op[0], r["errno"]) for op, r in zip(ops, out.cowfs) if "errno" in r]
    assert errors == [("getxattr", "ENODATA")] * len(ODD) + [("rmdir", "ENOTEMPTY")]
    pair.remount()
    pair.run([["listdir", "."], ["listdir", "d"]]).assert_same()


DEPTH = 4000


def test_tree_4000_deep(overlay_pair):
    """A tree 4000 directories deep (8000-byte paths, twice PATH_MAX, reached one directory at a
    time): made, used at the bottom, renamed into a lower directory, listed after a remount."""
    pair = overlay_pair({"low": Dir({"f": "lower\n"})})
    down = [op for _ in range(DEPTH) for op in (["mkdir", "d"], ["chdir", "d"])]
    up = [["chdir", ".."]] * DEPTH
    at_bottom = [["write_file", "f", "at the bottom\n"], ["read_file", "f"], ["stat", "f"],
                 ["setxattr", "f", "user.x", "v"], ["getxattr", "f", "user.x"],
                 ["symlink", "f", "s"], ["readlink", "s"], ["mkfifo", "p"], ["link", "f", "g"],
                 ["rename", "g", "h"], ["listdir", "."], ["stat", ".."]]
    # no tree dumps: their paths would be too long; the state is compared after a remount
    out = pair.run(down + at_bottom + up + [["rename", "d", "low/d"], ["listdir", "low"]],
                   trees=False)
    out.assert_same(trees=False)
    assert all("ok" in r for r in out.cowfs), [r for r in out.cowfs if "ok" not in r][:3]
    pair.remount()
    out = pair.run([["chdir", "low"]] + [["chdir", "d"]] * DEPTH
                   + [["listdir", "."], ["read_file", "f"], ["readlink", "s"], ["stat", "h"]]
                   + up + [["unlink", "f"]], trees=False)
    out.assert_same(trees=False)
    assert out.cowfs[DEPTH + 2] == {"ok": "at the bottom\n"}


BIG = 100_000


def test_directory_of_100k_entries(overlay_pair):
    """A lower directory of 100k files: listed whole (readdir in many batches), entries looked
    up, removed (whiteouts) and added, listed again, merged with an upper of its own."""
    pair = overlay_pair({"big": Dir({f"f{i:06d}": "" for i in range(BIG)})},
                        upper={"big": Dir({"upper-only": "u\n"})})
    ops = [["listdir", "big"], ["stat", "big/f000000"], ["stat", f"big/f{BIG - 1:06d}"]]
    ops += [["unlink", f"big/f{i:06d}"] for i in range(0, BIG, 1000)]
    ops += [["write_file", f"big/n{i:06d}", "n"] for i in range(0, BIG, 1000)]
    ops += [["rename", f"big/f{i + 1:06d}", f"big/r{i:06d}"] for i in range(0, BIG, 5000)]
    ops += [["listdir", "big"], ["scandir", "big"], ["exists", "big/f001000"]]
    out = pair.run(ops, trees=False)  # two 100k-entry dumps say no more than the listings
    out.assert_same(trees=False)
    names = out.cowfs[-3]["ok"]
    assert len(names) == BIG + 1 and "upper-only" in names and "f000000" not in names
    pair.remount()
    pair.run([["listdir", "big"]], trees=False).assert_same(trees=False)


TIB = 1 << 40


def test_sparse_file_of_2_to_the_40_bytes(overlay_pair):
    """A 1 TiB lower file with a few bytes of data: read at both ends, copied up by an append
    (holes stay holes: the kernel writes its first MiB whole, no more), truncated, and a new
    sparse file of the same size made in the upper."""
    pair = overlay_pair({"huge": File("head", size=TIB)})
    out = pair.run([
        ["stat", "huge"], ["open", "r", "huge"], ["pread", "r", 4, 0], ["pread", "r", 8, TIB - 8],
        ["pread", "r", 8, TIB], ["close", "r"],
        ["open", "a", "huge", ["O_WRONLY", "O_APPEND"]], ["write", "a", "tail"], ["close", "a"],
        ["stat", "huge"], ["open", "r", "huge"], ["pread", "r", 4, TIB], ["pread", "r", 4, 0],
        ["pread", "r", 4096, 1 << 30], ["close", "r"],
        ["open", "n", "new", ["O_WRONLY", "O_CREAT"]], ["pwrite", "n", "end", TIB - 3],
        ["close", "n"], ["stat", "new"], ["truncate", "huge", TIB // 2], ["stat", "huge"],
    ], trees=False)  # a dump would read 1.5 TiB of zeros: the ops compare what matters
    out.assert_same(trees=False)
    assert out.cowfs[11] == {"ok": "tail"} and out.cowfs[3] == {"ok": "\0" * 8}
    for side in ("kernel", "cowfs"):
        upper = (pair.cowfs_layers if side == "cowfs" else pair.kernel_layers).upper
        for name in ("huge", "new"):
            st = os.stat(os.path.join(upper, name))
            assert st.st_blocks * 512 <= 4 << 20, (side, name, st.st_blocks)  # of 1 TiB

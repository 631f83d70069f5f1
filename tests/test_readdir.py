"""readdir of merged directories, differentially against kernel overlayfs.

Listings compare as sorted name lists (the order entries come in is not semantics). Partial
reads through one open directory stream (opendir/readdir/rewinddir ops of oprunner.py) check
the POSIX guarantees where the exact split depends on entry order: no name twice, every name
that existed throughout the listing exactly once.
"""
from __future__ import annotations

from overlay import Dir, File, Symlink, Whiteout

TOP = {
    "d": Dir({"top-only": "t", "both": "from top", "dir-both": Dir({"t": "t"}),
              "top-file-over-dir": "f", "wh-in-top": Whiteout()}),
    "plain": Dir({f"p{i}": str(i) for i in range(5)}),
}
BOTTOM = {
    "d": Dir({"bottom-only": "b", "both": "from bottom", "dir-both": Dir({"b": "b"}),
              "top-file-over-dir": Dir({"hidden": "h"}), "wh-in-top": "hidden by top",
              "link": Symlink("both")}),
    "only-bottom": Dir({"x": "x"}),
}
UPPER = {
    "d": Dir({"upper-only": "u", "both": "from upper", "gone": Whiteout(),
              "bottom-only": Whiteout()}),
}


def names(result: dict) -> list[str]:
    return [e[0] for e in result["ok"]]


def test_merged_listing(overlay_pair):
    pair = overlay_pair(TOP, BOTTOM, upper=UPPER)
    out = pair.run([
        ["listdir", "."], ["listdir", "d"], ["scandir", "d"], ["listdir", "d/dir-both"],
        ["scandir", "."], ["listdir", "plain"], ["listdir", "only-bottom"],
        ["unlink", "d/top-only"], ["write_file", "d/created", "c"], ["listdir", "d"],
    ])
    out.assert_same()
    assert out.cowfs[1] == {"ok": ["both", "dir-both", "link", "top-file-over-dir", "top-only",
                                   "upper-only"]}


def test_wide_directory(overlay_pair):
    """3000 lower entries, some removed and some added through the mount: every name, once."""
    n = 3000
    lower = {"wide": Dir({f"entry-{i:05d}-{'x' * (i % 40)}": File("") for i in range(n)})}
    pair = overlay_pair(lower)
    ops = [["unlink", f"wide/entry-{i:05d}-{'x' * (i % 40)}"] for i in range(0, n, 7)]
    ops += [["write_file", f"wide/new-{i:04d}", ""] for i in range(0, 300)]
    ops += [["listdir", "wide"], ["opendir", "w", "wide"], ["readdir", "w"], ["closedir", "w"]]
    out = pair.run(ops, trees=False)
    out.assert_same(trees=False)
    listed = out.cowfs[-4]["ok"]
    assert len(listed) == n - len(range(0, n, 7)) + 300
    got = names(out.cowfs[-2])
    assert sorted(got) == sorted([".", ".."] + listed), "readdir and listdir disagree"


def _partial_listing_ops(changes: list) -> list:
    return ([["opendir", "s", "wide"], ["readdir", "s", 700]] + changes
            + [["readdir", "s"], ["closedir", "s"], ["listdir", "wide"]])


def _check_stream(side: str, results: list, stable: set[str], changed: set[str]) -> None:
    seen = names(results[1]) + names(results[-3])
    dups = sorted({x for x in seen if seen.count(x) > 1})
    assert not dups, f"{side}: names returned twice by one directory stream: {dups[:10]}"
    missing = sorted(stable - set(seen))
    assert not missing, f"{side}: names that existed throughout were skipped: {missing[:10]}"
    extra = sorted(set(seen) - stable - changed)
    assert not extra, f"{side}: names that never existed: {extra[:10]}"


def test_listing_while_dir_changes(overlay_pair):
    """Read part of a big merged dir, create and delete entries, read the rest (POSIX: an entry
    added or removed meanwhile may or may not show up; every other entry shows up once)."""
    n = 2000
    lower = {"wide": Dir({f"lower-{i:04d}": "" for i in range(n)})}
    upper = {"wide": Dir({f"upper-{i:04d}": "" for i in range(200)})}
    pair = overlay_pair(lower, upper=upper)
    removed = ({f"lower-{i:04d}" for i in range(0, n, 5)}
               | {f"upper-{i:04d}" for i in range(0, 200, 5)})
    added = {f"added-{i:03d}" for i in range(300)}
    changes = [["unlink", f"wide/{x}"] for x in sorted(removed)]
    changes += [["write_file", f"wide/{x}", ""] for x in sorted(added)]
    out = pair.run(_partial_listing_ops(changes), trees=False)
    everything = {f"lower-{i:04d}" for i in range(n)} | {f"upper-{i:04d}" for i in range(200)}
    stable = (everything - removed) | {".", ".."}
    for side, results in (("kernel", out.kernel), ("cowfs", out.cowfs)):
        assert all("ok" in r for r in results), f"{side}: {[r for r in results if 'ok' not in r]}"
        _check_stream(side, results, stable, removed | added)
        assert set(results[-1]["ok"]) == (everything - removed) | added, side
    assert out.kernel[-1] == out.cowfs[-1]


def test_rewinddir_sees_changes(overlay_pair):
    pair = overlay_pair(TOP, BOTTOM, upper=UPPER)
    out = pair.run([
        ["opendir", "s", "d"], ["readdir", "s"],
        ["write_file", "d/new", "n"], ["unlink", "d/top-only"], ["rmdir", "d/dir-both/b"],
        ["rewinddir", "s"], ["readdir", "s"], ["readdir", "s"],  # at the end: nothing more
        ["rewinddir", "s"], ["readdir", "s", 2], ["closedir", "s"],
    ])
    for side, res in (("kernel", out.kernel), ("cowfs", out.cowfs)):
        first, again = set(names(res[1])), set(names(res[6]))
        assert {".", "..", "top-only", "both"} <= first and "new" not in first, side
        assert again == (first - {"top-only"}) | {"new"}, side
        assert res[7] == {"ok": []} and len(res[9]["ok"]) == 2, side
    assert sorted(names(out.kernel[6])) == sorted(names(out.cowfs[6]))


def test_dot_entries_and_d_ino(overlay_pair):
    """readdir returns "." and ".." and d_type/d_ino that match lstat, in merged, upper-only,
    lower-only and copied-up dirs and for copied-up entries. (".." of the mount root names a
    directory outside the mount: only its presence is checked.)"""
    pair = overlay_pair(TOP, BOTTOM, upper=UPPER)
    pair.run([["write_file", "d/both", "copied"], ["chmod", "d/link", 0o700],
              ["mkdir", "newdir"], ["write_file", "newdir/f", "f"],
              ["chmod", "only-bottom/x", 0o600]], trees=False)
    out = pair.run([["opendir", "r", "."], ["readdir", "r"]], trees=False)
    for side in ("kernel", "cowfs"):
        got = names(getattr(out, side)[1])
        assert sorted(got) == [".", "..", "d", "newdir", "only-bottom", "plain"], side
    dirs = ["d", "d/dir-both", "newdir", "only-bottom", "plain"]
    ops = []
    for d in dirs:
        ops += [["opendir", d, d], ["readdir", d]]
    listing = pair.run(ops, trees=False)
    stats = [["lstat", d if name == "." else f"{d}/{name}"]
             for i, d in enumerate(dirs) for name in names(listing.kernel[2 * i + 1])]
    # one run: readdir's d_ino labels and lstat's st_ino labels share the normalization table
    out = pair.run(ops + stats, trees=False)
    out.assert_same(trees=False)
    for side in ("kernel", "cowfs"):
        res = getattr(out, side)
        k = len(ops)
        for i, d in enumerate(dirs):
            for name, dtype, ino, _nlink in res[2 * i + 1]["ok"]:
                st = res[k]["ok"]
                k += 1
                assert st["type"] == dtype, f"{side}: d_type of {d}/{name}"
                assert st["ino"] == ino, f"{side}: d_ino of {d}/{name} != st_ino"

"""Directory rename with `-o redirect_dir=on` (issue 16 item 2), against the kernel mounted as
root with redirect_dir=on (its trusted.overlay.* format: the rootless kernel cannot follow
redirects) and, for the on-disk format, against that kernel reading cowfs's upper.

Renaming a lower or merged dir copies up the dir alone and writes user.overlay.redirect: its old
name when it stays in its dir, else its absolute path; lookups below it continue in the lowers at
that path. Without the option: EXDEV as before (test_rename.py), and an upper holding redirects
is refused at mount.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import overlay
from cowfs.cli import parse_o_options
from overlay import Dir

ON = {"kernel_opts": ["redirect_dir=on"], "cowfs_opts": ["-o", "redirect_dir=on"]}
BOTH = {"kernel_opts": ["redirect_dir=on", "metacopy=on"],
        "cowfs_opts": ["-o", "redirect_dir=on,metacopy=on"]}

LOWER = {
    "a": Dir({"f": "F\n", "g": "G\n", "sub": Dir({"s": "S\n", "deep": Dir({"z": "Z\n"})}),
              "ln": overlay.Symlink("f")}),
    "b": Dir({"x": "X\n"}),  # merged target parent
    "other": Dir({"y": "Y\n"}),
    "edir": Dir(),  # empty lower dir: a rename target
    "top": "T\n",
}
# two lowers: "m" is merged from both
UPPER_LOWER = {"m": Dir({"hi": "hi\n", "both": Dir({"one": "1"})}), "solo": Dir({"u": "u"})}
LOWER_LOWER = {"m": Dir({"lo": "lo\n", "both": Dir({"two": "2"})}), "base": Dir({"k": "k"})}


def _cowfs(*args: str) -> subprocess.CompletedProcess:
    """The venv's cowfs, as root."""
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "cowfs"), *args],
                          capture_output=True, text=True, timeout=120)


def upper_redirects(pair, side: str = "cowfs") -> dict:
    """path -> redirect of each dir in SIDE's raw upper (user. on cowfs, trusted. on kernel)."""
    lay = pair.cowfs_layers if side == "cowfs" else pair.kernel_layers
    name = "user.overlay.redirect" if side == "cowfs" else "trusted.overlay.redirect"
    out = {}
    for top, dirs, _ in os.walk(lay.upper):
        for d in dirs:
            path = os.path.join(top, d)
            if name in os.listxattr(path, follow_symlinks=False):
                out[os.path.relpath(path, lay.upper)] = os.getxattr(path, name).decode()
    return out


def test_same_parent(overlay_pair):
    pair = overlay_pair(LOWER, **ON)
    out = pair.run([
        ["stat", "a"], ["rename", "a", "a2"], ["stat", "a2"], ["exists", "a"],
        ["listdir", "a2"], ["read_file", "a2/f"], ["stat", "a2/f"], ["readlink", "a2/ln"],
        ["read_file", "a2/ln"], ["listdir", "a2/sub/deep"], ["read_file", "a2/sub/deep/z"],
        ["scandir", "a2"], ["listdir", "."],
    ])
    out.assert_same()
    assert out.kernel[1] == {"ok": None}
    assert out.kernel[2]["ok"]["ino"] == "op0"  # the same dir
    assert upper_redirects(pair) == upper_redirects(pair, "kernel") == {"a2": "a"}


def test_other_parent_absolute(overlay_pair):
    pair = overlay_pair(LOWER, **ON)
    out = pair.run([
        ["rename", "a/sub", "b/sub2"], ["listdir", "b"], ["listdir", "a"], ["listdir", "b/sub2"],
        ["read_file", "b/sub2/deep/z"], ["rename", "b/sub2/deep", "other/deep"],
        ["listdir", "other/deep"], ["read_file", "other/deep/z"],
        ["mkdir", "new"], ["rename", "a", "new/a"], ["listdir", "new/a"],
        ["read_file", "new/a/g"],
    ])
    out.assert_same()
    assert all("ok" in r for r in out.kernel), out.kernel
    red = upper_redirects(pair)
    assert red == upper_redirects(pair, "kernel"), red
    assert red["b/sub2"] == "/a/sub" and red["new/a"] == "/a"


def test_twice_and_back(overlay_pair):
    pair = overlay_pair(LOWER, **ON)
    out = pair.run([
        ["rename", "a", "a2"], ["rename", "a2", "a3"], ["listdir", "a3"], ["exists", "a2"],
        ["rename", "a3", "b/a4"], ["listdir", "b/a4"], ["rename", "b/a4", "a5"],
        ["read_file", "a5/sub/s"], ["rename", "a5", "a"], ["listdir", "a"],
        ["read_file", "a/f"], ["listdir", "."], ["rename", "other", "o2"],
        ["rename", "o2", "other"], ["listdir", "other"],
    ])
    out.assert_same()
    assert all("ok" in r for r in out.kernel), out.kernel
    assert upper_redirects(pair) == upper_redirects(pair, "kernel")


def test_children_after_rename(overlay_pair):
    """create, unlink, copy-up, rename of children below a moved dir."""
    pair = overlay_pair(LOWER, **ON)
    out = pair.run([
        ["rename", "a", "b/moved"],
        ["write_file", "b/moved/new", "N"], ["unlink", "b/moved/g"],
        ["open", "w", "b/moved/f", ["O_WRONLY", "O_APPEND"]], ["write", "w", "more\n"],
        ["close", "w"], ["read_file", "b/moved/f"], ["chmod", "b/moved/sub/s", 0o600],
        ["stat", "b/moved/sub/s"], ["setxattr", "b/moved/sub", "user.k", "v"],
        ["getxattr", "b/moved/sub", "user.k"],
        ["rename", "b/moved/sub", "b/moved/sub3"], ["listdir", "b/moved/sub3"],
        ["rename", "b/moved/sub3/deep", "deep2"], ["listdir", "deep2"],
        ["rename", "b/moved/sub3/s", "b/moved/s-out"], ["listdir", "b/moved"],
        ["unlink", "deep2/z"], ["rmdir", "deep2"], ["exists", "deep2"],
        ["listdir", "b/moved/sub3"], ["scandir", "b/moved"],
    ])
    out.assert_same()
    assert all("ok" in r for r in out.kernel), out.kernel
    assert upper_redirects(pair) == upper_redirects(pair, "kernel")


def test_rmdir_and_rename_over(overlay_pair):
    pair = overlay_pair(LOWER, **ON)
    out = pair.run([
        ["rename", "other", "o2"], ["rmdir", "o2"], ["unlink", "o2/y"], ["rmdir", "o2"],
        ["exists", "o2"], ["exists", "other"], ["listdir", "."],
        ["rename", "b", "edir"], ["listdir", "edir"], ["exists", "b"],
        ["rename", "a", "edir"], ["rename", "a/sub/deep", "a/sub/deep"],
        ["mkdir", "edir2"], ["rename", "a/sub", "edir2"], ["listdir", "edir2"],
        ["rename", "a", "a/sub/in"], ["listdir", "."],
    ])
    out.assert_same()
    assert out.kernel[1] == {"errno": "ENOTEMPTY"}
    assert out.kernel[10] == {"errno": "ENOTEMPTY"}
    assert out.kernel[15] == {"errno": "ENOENT"} or out.kernel[15] == {"errno": "EINVAL"}


def test_into_own_subtree(overlay_pair):
    pair = overlay_pair(LOWER, **ON)
    out = pair.run([["rename", "a", "a/sub/in"], ["rename", "a/sub", "a/sub/deep/x"],
                    ["listdir", "a"]])
    out.assert_same()
    assert out.kernel[0] == {"errno": "EINVAL"}


def test_exchange(overlay_pair):
    pair = overlay_pair(LOWER, **ON)
    out = pair.run([
        ["rename", "a", "other", "EXCHANGE"], ["listdir", "a"], ["listdir", "other"],
        ["read_file", "other/sub/s"], ["rename", "b", "other/sub", "EXCHANGE"],
        ["listdir", "b"], ["listdir", "other/sub"],
    ])
    out.assert_same()
    assert out.kernel[0] == {"ok": None}


def test_opaque_and_upper_only(overlay_pair):
    """A new (opaque) dir over a removed lower one moves as it did; a dir moved into an opaque
    dir, and an upper-only dir moved, need no redirect."""
    pair = overlay_pair(LOWER, **ON)
    out = pair.run([
        ["unlink", "other/y"], ["rmdir", "other"], ["mkdir", "other"],
        ["write_file", "other/n", "n"], ["rename", "other", "o3"], ["listdir", "o3"],
        ["rename", "a", "o3/a"], ["listdir", "o3/a"], ["read_file", "o3/a/sub/s"],
        ["mkdir", "up"], ["mkdir", "up/in"], ["rename", "up", "b/up"], ["listdir", "b/up"],
        ["listdir", "."],
    ])
    out.assert_same()
    assert all("ok" in r for r in out.kernel), out.kernel
    red = upper_redirects(pair)
    assert red == upper_redirects(pair, "kernel") == {"o3/a": "/a"}, red


def test_multiple_lowers(overlay_pair):
    pair = overlay_pair(UPPER_LOWER, LOWER_LOWER, **ON)
    out = pair.run([
        ["rename", "m", "m2"], ["listdir", "m2"], ["listdir", "m2/both"],
        ["read_file", "m2/lo"], ["rename", "m2/both", "solo/both"], ["listdir", "solo/both"],
        ["read_file", "solo/both/two"], ["rename", "base", "m2/base"], ["listdir", "m2/base"],
        ["unlink", "m2/hi"], ["listdir", "m2"], ["listdir", "."],
    ])
    out.assert_same()
    assert all("ok" in r for r in out.kernel), out.kernel
    assert upper_redirects(pair) == upper_redirects(pair, "kernel")


def test_redirects_persist(overlay_pair):
    pair = overlay_pair(UPPER_LOWER, LOWER_LOWER, **ON)
    ops = [["rename", "m", "m2"], ["rename", "m2/both", "solo/b2"], ["mkdir", "n"],
           ["rename", "base", "n/base"], ["rename", "solo", "n/solo"],
           ["write_file", "n/solo/b2/w", "w"]]
    pair.run(ops).assert_same()
    pair.remount()
    out = pair.run([["listdir", "."], ["listdir", "m2"], ["listdir", "n/solo/b2"],
                    ["read_file", "n/solo/b2/two"], ["listdir", "n/base"],
                    ["stat", "n/base"], ["exists", "m"], ["rename", "n/solo/b2", "b3"],
                    ["listdir", "b3"]])
    out.assert_same()
    assert all("ok" in r for r in out.kernel), out.kernel


def test_interchange_root_kernel_reads_cowfs_upper(overlay_pair):
    """cowfs's upper, its user.overlay.* made trusted.overlay.*, mounted by the root kernel
    with redirect_dir=on, shows the tree cowfs shows."""
    pair = overlay_pair(UPPER_LOWER, LOWER_LOWER, **ON)
    pair.run([["rename", "m", "m2"], ["rename", "m2/both", "solo/b2"], ["mkdir", "n"],
              ["rename", "base", "n/base"], ["rename", "solo", "n/solo"],
              ["unlink", "n/solo/b2/one"], ["rename", "n/solo/b2", "n/solo/b3"]]).assert_same()
    mine = overlay.dump_tree(pair.cowfs.mnt)
    pair.unmount()
    lay = overlay.make_layers("rd-interchange", [UPPER_LOWER, LOWER_LOWER])
    lay.upper = overlay.trusted_copy(pair.cowfs_layers.upper,
                                     os.path.join(lay.base, "trusted-upper"))
    lay.new_work()
    with overlay.mount("kernel", lay, ["redirect_dir=on"], trusted=True):
        theirs = overlay.dump_tree(lay.mnt)
    diffs = overlay.compare_trees(theirs, mine)
    assert not diffs, overlay.format_diffs(diffs)
    assert "n/solo/b3/two" in mine and "m" not in mine


def test_off_is_exdev_and_refuses_redirected_upper(overlay_pair):
    """Without the option: EXDEV as before; an upper holding redirects is refused (one line,
    exit 2, nothing made); the rootless kernel answers EPERM on its redirected dirs."""
    pair = overlay_pair(LOWER, **ON)
    pair.run([["rename", "a", "a2"]]).assert_same()
    pair.unmount()
    lay = pair.cowfs_layers
    lay.new_work()
    r = _cowfs("mount", "--lower", lay.lowers[0], "--upper", lay.upper, "--work", lay.work,
               lay.mnt)
    assert r.returncode == 2, r
    assert r.stderr.count("\n") == 1 and "redirect_dir=on" in r.stderr, r.stderr
    assert not os.path.ismount(lay.mnt) and os.listdir(lay.work) == []
    # the rootless kernel refuses to follow it ("refusing to follow redirect"): EPERM
    with overlay.mount("kernel", lay) as m:
        out = overlay.run_ops(m.mnt, [["stat", "a2"], ["listdir", "a2"], ["read_file", "top"]])
    assert out == [{"errno": "EPERM"}, {"errno": "EPERM"}, {"ok": "T\n"}], out
    off = overlay_pair(LOWER, kernel_opts=["redirect_dir=off"])
    out = off.run([["rename", "a", "a2"], ["rename", "a/sub", "b/sub"]])
    out.assert_same()
    assert out.kernel[0] == {"errno": "EXDEV"}


def test_lower_once_an_upper(overlay_pair):
    """An upper with redirects used as a lower: its redirects are followed into the lowers
    below it (cowfs reads the upper as it is, the root kernel its trusted copy)."""
    pair = overlay_pair(UPPER_LOWER, LOWER_LOWER, **ON)
    pair.run([["rename", "m", "m2"], ["mkdir", "n"], ["rename", "base", "n/base"],
              ["rename", "m2/both", "n/b2"], ["write_file", "n/b2/w", "w"]]).assert_same()
    pair.unmount()
    k, c = overlay.make_layers("rd-chain-kernel", []), overlay.make_layers("rd-chain-cowfs", [])
    k.lowers = [overlay.trusted_copy(pair.cowfs_layers.upper, os.path.join(k.base, "was-upper")),
                *pair.kernel_layers.lowers]
    c.lowers = [pair.cowfs_layers.upper, *pair.cowfs_layers.lowers]
    r = _cowfs("mount", *(a for low in c.lowers for a in ("--lower", low)), c.mnt)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r  # not without the option
    assert "lower directory" in r.stderr and "redirect_dir=on" in r.stderr, r.stderr
    ops = [["listdir", "."], ["listdir", "m2"], ["listdir", "n/b2"], ["read_file", "n/b2/two"],
           ["listdir", "n/base"], ["rename", "n", "n3"], ["listdir", "n3/b2"],
           ["rename", "n3/b2", "b4"], ["listdir", "b4"], ["read_file", "b4/one"],
           ["write_file", "b4/two", "2!"], ["rename", "m2", "n3/m"], ["listdir", "n3/m"]]
    with overlay.mount("kernel", k, ["redirect_dir=on"], trusted=True), \
            overlay.mount("cowfs", c, ["-o", "redirect_dir=on"]):
        theirs, mine = overlay.run_ops(k.mnt, ops), overlay.run_ops(c.mnt, ops)
        diffs = overlay.compare_trees(overlay.dump_tree(k.mnt), overlay.dump_tree(c.mnt))
    assert mine == theirs
    assert all("ok" in r for r in mine), [(o, r) for o, r in zip(ops, mine) if "ok" not in r]
    assert not diffs, overlay.format_diffs(diffs)


def test_malformed_redirect_is_einval(overlay_pair):
    """A redirect the kernel calls invalid fails the lookup of its dir with EINVAL on both; the
    kernel lists its name, cowfs leaves it out of the listing (README "Differences")."""
    pair = overlay_pair(LOWER, **ON)
    pair.run([["rename", "a", "a2"], ["rename", "other", "b/o"]]).assert_same()
    pair.unmount()
    up = pair.cowfs_layers.upper
    os.setxattr(os.path.join(up, "a2"), "user.overlay.redirect", b"a/f")
    os.setxattr(os.path.join(up, "b/o"), "user.overlay.redirect", b"//other")
    k = overlay.make_layers("rd-bad-kernel", [])
    k.lowers, k.upper = pair.kernel_layers.lowers, overlay.trusted_copy(
        up, os.path.join(k.base, "trusted-upper"))
    k.new_work()
    ops = [["stat", "a2"], ["listdir", "b"], ["stat", "b/o"], ["listdir", "."]]
    pair.cowfs_layers.new_work()
    with overlay.mount("kernel", k, ["redirect_dir=on"], trusted=True) as km, \
            overlay.mount("cowfs", pair.cowfs_layers, ["-o", "redirect_dir=on"]) as cm:
        theirs, mine = overlay.run_ops(km.mnt, ops), overlay.run_ops(cm.mnt, ops)
    assert mine[0] == mine[2] == theirs[0] == theirs[2] == {"errno": "EINVAL"}
    assert theirs[1] == {"ok": ["o", "x"]} and mine[1] == {"ok": ["x"]}
    assert mine[3] == {"ok": sorted(set(theirs[3]["ok"]) - {"a2"})}


def test_fsck_and_diff(overlay_pair):
    pair = overlay_pair(LOWER, **ON)
    pair.run([["rename", "a", "a2"], ["rename", "a2/sub", "b/sub"], ["unlink", "b/sub/s"],
              ["write_file", "b/sub/new", "n"], ["rename", "b", "edir"]]).assert_same()
    pair.unmount()
    lay = pair.cowfs_layers
    fsck = _cowfs("fsck", "--upper", lay.upper, "--work", lay.work)
    assert fsck.returncode == 0 and fsck.stdout == "", fsck
    diff = _cowfs("diff", "--upper", lay.upper, "--lower", lay.lowers[0])
    assert diff.returncode == 0, diff
    assert diff.stdout.splitlines() == [
        "D a", "A a2", "A a2/f", "A a2/g", "A a2/ln", "D b", "C edir",
        "A edir/sub", "A edir/sub/deep", "A edir/sub/deep/z", "A edir/sub/new", "A edir/x",
    ], diff.stdout
    os.setxattr(os.path.join(lay.upper, "a2"), "user.overlay.redirect", b"a/b")
    os.removexattr(lay.upper, "user.overlay.cowfs.redirects")
    fsck = _cowfs("fsck", "--upper", lay.upper, "--work", lay.work)
    assert fsck.returncode == 1, fsck
    lines = fsck.stdout.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"{lay.upper}: holds redirects"), lines
    assert lines[1].startswith(f"{lay.upper}/a2: user.overlay.redirect is 'a/b'"), lines


def test_option_spelling(harness, tmp_path):
    """-o redirect_dir takes on or off; the kernel's follow/nofollow are refused, one line."""
    for bad in ("redirect_dir=follow", "redirect_dir", "redirect_dir=nofollow"):
        r = _cowfs("mount", "--lower", str(tmp_path), "-o", bad, str(tmp_path))
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r
        assert "redirect_dir" in r.stderr, r.stderr
    assert parse_o_options(["redirect_dir=on"]).redirect_dir
    assert not parse_o_options(["redirect_dir=off"]).redirect_dir


RANDOM_LOWERS = (
    {"a": Dir({"b": Dir({"c": Dir({"f": "1"}), "f": "2"}), "c": Dir({"a": "3"})}),
     "b": Dir({"a": Dir({"b": "4"})}), "c": "5"},
    {"a": Dir({"b": Dir({"c": Dir({"g": "6"})}), "a": Dir({"c": "7"})}),
     "c": Dir({"c": Dir({"c": "8"})})},
)


def _flatten(spec: dict, prefix: str = "") -> dict:
    out = {}
    for name, e in spec.items():
        out[prefix + name] = isinstance(e, Dir)
        if isinstance(e, Dir):
            out.update(_flatten(e.children, prefix + name + "/"))
    return out


def _random_ops(seed: int, n: int) -> list:
    """N ops over the names a, b, c, d: most of them renames, of dirs of one or both lowers,
    files, or nothing, mixed with the changes and reads that look below a moved dir. A rough
    model of the merged tree (path -> is a dir, as if every op succeeded) aims most paths at
    something there."""
    import random

    rng = random.Random(seed)
    model = {}
    for spec in reversed(RANDOM_LOWERS):
        model.update(_flatten(spec))
    model = {p: d for p, d in model.items()  # a file hides what a lower below has under it
             if all(model[p[:i]] for i, c in enumerate(p) if c == "/")}
    names = ["a", "b", "c", "d"]

    def there(dirs: bool | None = None) -> str:
        pool = sorted(p for p, d in model.items() if dirs is None or d == dirs)
        if pool and rng.random() < 0.8:
            return rng.choice(pool)
        return "/".join(rng.choice(names) for _ in range(rng.randint(1, 3)))

    def fresh() -> str:
        parent = there(dirs=True) if rng.random() < 0.7 else ""
        return (parent + "/" if parent else "") + rng.choice(names)

    def drop(path: str) -> None:
        for p in [p for p in model if p == path or p.startswith(path + "/")]:
            del model[p]

    ops: list = []
    for _ in range(n):
        r = rng.random()
        if r < 0.45:
            src = there(dirs=rng.random() < 0.8)
            dst = fresh() if rng.random() < 0.7 else there()
            flags = rng.choice(["", "", "", "NOREPLACE", "EXCHANGE"])
            ops.append(["rename", src, dst, flags])
            if (flags == "" and src in model and not dst.startswith(src + "/")
                    and (dst.rpartition("/")[0] in model or "/" not in dst)):
                moved = {p: d for p, d in model.items() if p == src or p.startswith(src + "/")}
                drop(src)
                drop(dst)
                model.update({dst + p[len(src):]: d for p, d in moved.items()})
        elif r < 0.55:
            p = fresh()
            ops.append(["mkdir", p])
            model.setdefault(p, True)
        elif r < 0.62:
            p = there(dirs=True)
            ops.append(["rmdir", p])
            if not any(q.startswith(p + "/") for q in model):
                drop(p)
        elif r < 0.68:
            p = there(dirs=False)
            ops.append(["unlink", p])
            drop(p)
        elif r < 0.76:
            p = fresh()
            ops.append(["write_file", p, f"w{len(ops)}"])
            model.setdefault(p, False)
        elif r < 0.80:
            ops.append(["chmod", there(dirs=False), 0o600])  # a copy-up (metacopy=on: of meta)
        elif r < 0.90:
            ops.append(["listdir", there(dirs=True)])
        else:
            ops.append(["read_file", there(dirs=False)])
    return ops


@pytest.mark.parametrize("opts", [ON, BOTH], ids=["redirect", "redirect+metacopy"])
def test_random_renames(overlay_pair, opts):
    """Seeded random op lists, heavy on renames, against the root kernel; both remounted; then
    the kernel reads cowfs's upper (trusted copy) and shows the same tree. The trees' inode
    numbers are not compared: ext4 hands a freed inode number to the next new file at once, which the harness's
    inode labels cannot tell from an identity difference (a tmpfs upper instead has the kernel
    repeat numbers across layers: README "Differences", st_ino)."""
    for seed in range(6):
        pair = overlay_pair(*RANDOM_LOWERS, **opts)
        ops = _random_ops(seed, 60)
        out = pair.run(ops)
        bad = [d for d in out.diffs() if not (d.where == "tree" and d.field == "ino")]
        assert not bad, (seed, out.report())
        assert sum("ok" in r for r in out.kernel) >= 15, (seed, out.kernel)
        pair.remount()  # what cowfs reads back from its upper, not what it kept in memory
        theirs, mine = pair.trees()
        diffs = [d for d in overlay.compare_trees(theirs, mine) if d.field != "ino"]
        assert not diffs, (seed, "after a remount", overlay.format_diffs(diffs))
        pair.unmount()
        lay = overlay.make_layers(f"rd-random-{seed}", list(RANDOM_LOWERS))
        lay.upper = overlay.trusted_copy(pair.cowfs_layers.upper,
                                         os.path.join(lay.base, "trusted-upper"))
        lay.new_work()
        with overlay.mount("kernel", lay, opts["kernel_opts"], trusted=True):
            theirs = overlay.dump_tree(lay.mnt)
        diffs = [d for d in overlay.compare_trees(theirs, mine) if d.field != "ino"]
        assert not diffs, (seed, overlay.format_diffs(diffs))


def test_with_metacopy(overlay_pair):
    """With metacopy=on too: a metadata-only copy-up below a moved dir reads its data at the
    dir's lower path, before and after a remount, also once the file itself moves."""
    pair = overlay_pair(LOWER, **BOTH)
    out = pair.run([
        ["chmod", "a/f", 0o600], ["rename", "a", "b/a2"], ["read_file", "b/a2/f"],
        ["stat", "b/a2/f"], ["chmod", "b/a2/g", 0o640], ["read_file", "b/a2/g"],
        ["rename", "b/a2/sub", "sub2"], ["chmod", "sub2/s", 0o600], ["read_file", "sub2/s"],
        ["rename", "b/a2/g", "other/g2"], ["read_file", "other/g2"],
    ])
    out.assert_same()
    assert all("ok" in r for r in out.kernel), out.kernel
    up = pair.cowfs_layers.upper
    for path in ("b/a2/f", "sub2/s", "other/g2"):  # metadata-only copy-ups
        assert "user.overlay.metacopy" in os.listxattr(os.path.join(up, path)), path
    pair.remount()
    out = pair.run([["read_file", "b/a2/f"], ["read_file", "other/g2"], ["read_file", "sub2/s"],
                    ["stat", "sub2/s"], ["open", "w", "sub2/s", ["O_WRONLY", "O_APPEND"]],
                    ["write", "w", "+"], ["close", "w"], ["read_file", "sub2/s"]])
    out.assert_same()
    assert out.kernel[-1] == {"ok": "S\n+"}, out.kernel

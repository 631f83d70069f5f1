"""Extended attributes, differentially against kernel overlayfs (see tests/overlay.py).

setxattr/removexattr copy up first; user.overlay.* names are overlayfs' own: the private ones are
never shown through the mount, and a user's user.overlay.X is escaped (kernel 6.7+) as
user.overlay.overlay.X on disk.
"""
from __future__ import annotations

from overlay import Dir, File, Symlink

LOWER = {
    "f": File("f\n", xattrs={"user.a": "1", "user.b": "2"}),
    "plain": "p\n",
    "d": Dir({"x": "X\n"}, xattrs={"user.dir": "lower"}),
    "full": Dir({"k": "K\n"}),
    "s": Symlink("plain"),
    "esc": File("e\n", xattrs={"user.overlay.overlay.esc": "escaped"}),
    "odir": Dir({"o": "o"}, opaque=True),
}


def upper_xattrs(pair, side: str, path: str) -> dict | None:
    """All user.* xattrs of PATH in SIDE's raw upper (None: not in upper)."""
    e = pair.upper_tree(side).get(path)
    return None if e is None else e.get("xattrs")


def test_lower_file_copy_up(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["listxattr", "f"], ["getxattr", "f", "user.a"],
        ["setxattr", "f", "user.c", "3"], ["getxattr", "f", "user.c"], ["listxattr", "f"],
        ["setxattr", "f", "user.a", "one"], ["getxattr", "f", "user.a"],
        ["removexattr", "f", "user.b"], ["getxattr", "f", "user.b"], ["listxattr", "f"],
        ["stat", "f"], ["read_file", "f"],
    ])
    out.assert_same()
    assert out.kernel[9] == {"ok": ["user.a", "user.c"]}
    assert out.kernel[8] == {"errno": "ENODATA"}
    for side in ("kernel", "cowfs"):
        got = {k: v for k, v in upper_xattrs(pair, side, "f").items()
               if not k.startswith("user.overlay.")}
        assert got == {"user.a": "one", "user.c": "3"}, side


def test_lower_dir_copy_up(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["listxattr", "d"], ["setxattr", "d", "user.new", "n"], ["listxattr", "d"],
        ["removexattr", "d", "user.dir"], ["listxattr", "d"], ["getxattr", "d", "user.new"],
        ["listdir", "d"], ["read_file", "d/x"], ["stat", "d"],
    ])
    out.assert_same()
    assert out.kernel[4] == {"ok": ["user.new"]}
    for side in ("kernel", "cowfs"):
        assert upper_xattrs(pair, side, "d").get("user.new") == "n", side
        assert "d/x" not in pair.upper_tree(side), side


def test_upper_file(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["write_file", "u", "u\n"], ["listxattr", "u"], ["setxattr", "u", "user.k", "v"],
        ["getxattr", "u", "user.k"], ["setxattr", "u", "user.empty", ""],
        ["getxattr", "u", "user.empty"], ["listxattr", "u"], ["removexattr", "u", "user.k"],
        ["listxattr", "u"], ["mkdir", "n"], ["setxattr", "n", "user.k", "dir"],
        ["getxattr", "n", "user.k"],
    ])
    out.assert_same()
    assert out.kernel[6] == {"ok": ["user.empty", "user.k"]}


def test_create_replace_flags(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["write_file", "u", "u\n"],
        ["setxattr", "u", "user.k", "1", "REPLACE"],  # missing: ENODATA
        ["setxattr", "u", "user.k", "1", "CREATE"],
        ["setxattr", "u", "user.k", "2", "CREATE"],  # exists: EEXIST
        ["setxattr", "u", "user.k", "3", "REPLACE"], ["getxattr", "u", "user.k"],
        ["setxattr", "f", "user.a", "x", "CREATE"],  # lower, exists
        ["setxattr", "plain", "user.q", "x", "REPLACE"],  # lower, missing
        ["getxattr", "f", "user.a"], ["listxattr", "plain"],
        ["setxattr", "d", "user.dir", "upd", "REPLACE"], ["getxattr", "d", "user.dir"],
    ])
    out.assert_same()
    assert out.kernel[1] == out.kernel[7] == {"errno": "ENODATA"}
    assert out.kernel[3] == out.kernel[6] == {"errno": "EEXIST"}
    assert out.kernel[5] == {"ok": "3"} and out.kernel[11] == {"ok": "upd"}


def test_refused_setxattr_copies_nothing_up(overlay_pair):
    """The kernel copies up before it asks the upper fs, so a refused CREATE/REPLACE on a lower
    file leaves a copy in upper (with unchanged xattrs). In cowfs pyfuse3 answers the flag check
    before the filesystem sees the call: the same errno, and nothing is copied (README,
    differences)."""
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["setxattr", "f", "user.a", "x", "CREATE"],  # exists: EEXIST
        ["setxattr", "plain", "user.q", "x", "REPLACE"],  # missing: ENODATA
        ["listxattr", "f"], ["listxattr", "plain"],
    ])
    out.assert_same()
    tree = pair.upper_tree("kernel")
    assert set(tree) == {".", "f", "plain"}
    assert {k: v for k, v in tree["f"]["xattrs"].items()
            if not k.startswith("user.overlay.")} == {"user.a": "1", "user.b": "2"}
    assert set(pair.upper_tree("cowfs")) == {"."}


def test_enodata(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["getxattr", "plain", "user.none"], ["getxattr", "d", "user.none"],
        ["removexattr", "plain", "user.none"], ["removexattr", "d", "user.none"],
        ["write_file", "u", "u\n"], ["getxattr", "u", "user.none"],
        ["removexattr", "u", "user.none"], ["getxattr", "nope", "user.a"],
    ])
    out.assert_same()
    assert [r for r in out.kernel[:4]] == [{"errno": "ENODATA"}] * 4
    assert out.kernel[7] == {"errno": "ENOENT"}
    for side in ("kernel", "cowfs"):  # removing nothing copies nothing up
        assert set(pair.upper_tree(side)) == {".", "u"}, side


def test_user_overlay_names_are_escaped(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["write_file", "u", "u\n"],
        ["setxattr", "u", "user.overlay.foo", "bar"], ["getxattr", "u", "user.overlay.foo"],
        ["listxattr", "u"],
        ["setxattr", "plain", "user.overlay.foo", "low"], ["listxattr", "plain"],
        ["mkdir", "n"], ["write_file", "n/child", "c\n"],
        ["setxattr", "n", "user.overlay.opaque", "y"], ["listxattr", "n"],
        ["getxattr", "n", "user.overlay.opaque"],
        ["setxattr", "d", "user.overlay.opaque", "y"],  # must not hide d's lower entries
        ["listdir", "d"], ["getxattr", "d", "user.overlay.opaque"],
        ["removexattr", "u", "user.overlay.foo"], ["listxattr", "u"],
        ["listxattr", "esc"], ["getxattr", "esc", "user.overlay.esc"],  # escaped in a lower
    ])
    out.assert_same()
    assert out.kernel[3] == {"ok": ["user.overlay.foo"]}
    assert out.kernel[12] == {"ok": ["x"]}
    for side in ("kernel", "cowfs"):
        assert upper_xattrs(pair, side, "plain").get("user.overlay.overlay.foo") == "low", side
        assert upper_xattrs(pair, side, "d").get("user.overlay.overlay.opaque") == "y", side
        assert "user.overlay.opaque" not in upper_xattrs(pair, side, "d"), side


def test_private_xattrs_hidden(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["listxattr", "odir"], ["getxattr", "odir", "user.overlay.opaque"],
        ["unlink", "full/k"], ["rmdir", "full"], ["mkdir", "full"],  # opaque in upper
        ["listxattr", "full"], ["getxattr", "full", "user.overlay.opaque"],
        ["write_file", "d/x", "copied\n"], ["listxattr", "d/x"], ["listxattr", "d"],
        ["getxattr", "d/x", "user.overlay.origin"], ["listxattr", "."],
    ])
    out.assert_same()
    assert out.kernel[0] == out.kernel[5] == {"ok": []}
    assert out.kernel[1] == out.kernel[6] == {"errno": "ENODATA"}
    assert pair.upper_tree("cowfs")["full"]["xattrs"].get("user.overlay.opaque") == "y"


def test_large_values(overlay_pair):
    pair = overlay_pair({**LOWER, "big": File("b\n", xattrs={"user.big": b"L" * 3000})})
    out = pair.run([
        ["getxattr", "big", "user.big"],
        ["write_file", "u", "u\n"],
        ["setxattr", "u", "user.v", {"pattern": 1, "size": 3500}], ["getxattr", "u", "user.v"],
        ["setxattr", "u", "user.huge", {"pattern": 2, "size": 70000}],  # > XATTR_SIZE_MAX
        ["setxattr", "u", "user.w", {"pattern": 3, "size": 20000}],  # more than ext4 holds
        ["listxattr", "u"],
        ["setxattr", "big", "user.more", "m"], ["getxattr", "big", "user.big"],  # copy-up
        ["setxattr", "u", "user." + "n" * 250, "long name"],  # name > 255: ERANGE
        ["setxattr", "u", "user." + "n" * 200, "long name"], ["listxattr", "u"],
    ])
    out.assert_same()
    assert out.kernel[3]["ok"]["size"] == 3500
    assert out.kernel[4] == {"errno": "E2BIG"}


def test_symlinks(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["llistxattr", "s"], ["lgetxattr", "s", "user.a"],
        ["lsetxattr", "s", "user.a", "1"],  # user.* on a symlink: EPERM
        ["setxattr", "s", "user.a", "via link"],  # follows: sets on plain
        ["getxattr", "plain", "user.a"], ["llistxattr", "s"], ["lstat", "s"],
        ["symlink", "f", "us"], ["lsetxattr", "us", "user.a", "1"], ["llistxattr", "us"],
        ["listxattr", "us"], ["lremovexattr", "us", "user.a"],
    ])
    out.assert_same()
    assert out.kernel[2] == out.kernel[8] == {"errno": "EPERM"}
    assert out.kernel[4] == {"ok": "via link"}
    for side in ("kernel", "cowfs"):
        assert pair.upper_tree(side)["plain"]["xattrs"].get("user.a") == "via link", side


def test_other_namespaces_as_user(overlay_pair):
    pair = overlay_pair(LOWER)
    out = pair.run([
        ["setxattr", "plain", "trusted.x", "1"], ["getxattr", "plain", "trusted.overlay.opaque"],
        ["write_file", "u", "u\n"], ["setxattr", "u", "trusted.x", "1"],
        ["getxattr", "u", "trusted.x"], ["removexattr", "u", "trusted.x"],
        ["getxattr", "odir", "trusted.overlay.opaque"],
        ["setxattr", "u", "bogus.x", "1"], ["getxattr", "u", "bogus.x"],
        ["setxattr", "u", "security.x", "1"],
        ["listxattr", "u"], ["listxattr", "plain"],
    ])
    out.assert_same()
    assert out.kernel[0] == out.kernel[3] == {"errno": "EPERM"}
    assert out.kernel[7] == {"errno": "ENOTSUP"}  # errno.errorcode's name for EOPNOTSUPP

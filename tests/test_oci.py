"""OCI/AUFS whiteouts in lower layers (not differential: kernel overlayfs does not read them).

`.wh.NAME` in a lower hides NAME in the layers below it; `.wh..wh..opq` in a lower directory
hides that directory's entries in the layers below. Neither marker is ever visible through the
mount. Run with the harness's lower-level pieces on the implementation under test alone.
"""
from __future__ import annotations

import pytest

import overlay
from overlay import Dir

TOP = {
    ".wh.gone.txt": "",  # hides MIDDLE's and BOTTOM's gone.txt
    ".wh.gonedir": "",  # a whole directory below
    "d": Dir({".wh.mid-file": "", "top-file": "t\n"}),
    "opq": Dir({".wh..wh..opq": "", "top-in-opq": "t\n"}),
    "top.txt": "top\n",
}
MIDDLE = {
    "gone.txt": "middle's\n",
    "gonedir": Dir({"a": "a"}),
    "d": Dir({"mid-file": "hidden by top\n", "mid-keep": "m\n", ".wh.bottom-file": ""}),
    "opq": Dir({"mid-in-opq": "hidden\n"}),
    "mid.txt": "middle\n",
    ".wh.bottom.txt": "",
    "mdir": Dir({".wh..wh..opq": "", "m": "m\n"}),
}
BOTTOM = {
    "gone.txt": "bottom's\n",
    "gonedir": Dir({"b": "b"}),
    "d": Dir({"bottom-file": "hidden by middle\n", "bottom-keep": "b\n", "mid-file": "b"}),
    "opq": Dir({"bottom-in-opq": "hidden\n"}),
    "bottom.txt": "hidden by middle\n",
    "mdir": Dir({"hidden": "h\n"}),
    "b.txt": "bottom\n",
}


@pytest.fixture
def oci_mount(harness):
    mounts = []

    def make(*lowers, upper=True):
        lay = overlay.make_layers(f"oci-{harness.impl}", list(lowers), upper=upper)
        m = overlay.mount(harness.impl, lay)
        mounts.append(m)
        return m

    yield make
    for m in mounts:
        if overlay.mounted_at(m.mnt) is None:
            continue  # the test unmounted it already
        try:
            m.check_alive()
        finally:
            m.unmount()


def run(m, ops: list) -> list:
    """Results as plain values: the "ok" value, or the errno name."""
    return [r["ok"] if "ok" in r else r["errno"] for r in overlay.run_ops(m.mnt, ops)]


def no_markers(tree: dict) -> list[str]:
    return [p for p in tree if p.rsplit("/", 1)[-1].startswith(".wh.")]


def test_oci_whiteouts_hide_lower_layers(oci_mount):
    m = oci_mount(TOP, MIDDLE, BOTTOM)
    got = run(m, [
        ["listdir", "."], ["listdir", "d"], ["listdir", "opq"], ["listdir", "mdir"],
        ["exists", "gone.txt"], ["stat", "gonedir"], ["exists", "bottom.txt"],
        ["read_file", "d/mid-keep"], ["read_file", "d/bottom-keep"],
        ["exists", "d/mid-file"], ["exists", "d/bottom-file"], ["exists", "opq/mid-in-opq"],
        ["exists", "mdir/hidden"],
    ])
    assert got == [
        ["b.txt", "d", "mdir", "mid.txt", "opq", "top.txt"],
        ["bottom-keep", "mid-keep", "top-file"], ["top-in-opq"], ["m"],
        False, "ENOENT", False, "m\n", "b\n", False, False, False, False,
    ]
    tree = overlay.dump_tree(m.mnt)
    assert not no_markers(tree), f"OCI markers visible: {no_markers(tree)}"
    assert "gonedir/b" not in tree and "opq/bottom-in-opq" not in tree


def test_oci_markers_never_visible(oci_mount):
    m = oci_mount(TOP, MIDDLE, BOTTOM)
    got = run(m, [
        ["exists", ".wh.gone.txt"], ["stat", ".wh.gonedir"], ["read_file", "d/.wh.mid-file"],
        ["exists", "opq/.wh..wh..opq"], ["exists", ".wh.bottom.txt"],
        ["exists", "d/.wh.bottom-file"], ["exists", "mdir/.wh..wh..opq"],
        ["scandir", "opq"], ["listxattr", "opq"], ["listxattr", "mdir"],
    ])
    assert got[:7] == [False, "ENOENT", "ENOENT", False, False, False, False]
    assert [e[0] for e in got[7]] == ["top-in-opq"] and got[8] == [] and got[9] == []


def test_writes_over_oci_whiteouts(oci_mount):
    """A name hidden by an OCI whiteout can be created again and the hidden entries below stay
    hidden, also after a remount. A directory made over an upper whiteout (rmdir, then mkdir)
    is opaque in the upper (kernel format); one made where only a lower's whiteout hides the
    name need not be, as with the kernel's own whiteouts in a lower."""
    m = oci_mount(TOP, MIDDLE, BOTTOM)
    got = run(m, [
        ["write_file", "gone.txt", "new\n"], ["read_file", "gone.txt"],
        ["mkdir", "gonedir"], ["listdir", "gonedir"], ["exists", "gonedir/a"],
        ["write_file", "d/mid-file", "new mid\n"], ["read_file", "d/mid-file"],
        ["write_file", "opq/new", "n"], ["listdir", "opq"],
        ["write_file", "d/mid-keep", "copied up\n"], ["listdir", "d"],
        ["unlink", "opq/top-in-opq"], ["unlink", "opq/new"], ["rmdir", "opq"],  # empty
        ["exists", "opq"], ["mkdir", "opq"], ["listdir", "opq"],
        ["unlink", "mdir/m"], ["listdir", "mdir"], ["rmdir", "mdir"],
    ])
    assert got == [
        4, "new\n", None, [], False, 8, "new mid\n", 1, ["new", "top-in-opq"], 10,
        ["bottom-keep", "mid-file", "mid-keep", "top-file"],
        None, None, None, False, None, [], None, [], None,
    ]
    upper = overlay.dump_tree(m.layers.upper, user=False)
    assert upper["opq"]["xattrs"].get("user.overlay.opaque") == "y"
    assert upper["mdir"]["type"] == "c" and upper["mdir"]["rdev"] == [0, 0]
    assert not no_markers(upper), "OCI markers written to the upper"
    m.unmount()
    m.layers.new_work()
    m2 = overlay.mount(m.impl, m.layers)
    try:
        got = run(m2, [["listdir", "gonedir"], ["listdir", "opq"], ["listdir", "d"],
                       ["exists", "mdir"], ["listdir", "."]])
        assert got == [[], [], ["bottom-keep", "mid-file", "mid-keep", "top-file"], False,
                       ["b.txt", "d", "gone.txt", "gonedir", "mid.txt", "opq", "top.txt"]]
    finally:
        m2.unmount()


def test_oci_opaque_dir_survives_copy_up(oci_mount):
    """Copying up a directory made opaque by `.wh..wh..opq` (the marker itself is not copied)
    keeps the lower layers below it hidden."""
    m = oci_mount(TOP, MIDDLE, BOTTOM)
    got = run(m, [["setxattr", "opq", "user.x", "1"], ["write_file", "opq/top-in-opq", "c"],
                  ["listdir", "opq"], ["setxattr", "mdir", "user.y", "2"], ["listdir", "mdir"]])
    assert got == [None, 1, ["top-in-opq"], None, ["m"]]
    upper = overlay.dump_tree(m.layers.upper, user=False)
    assert not no_markers(upper), "OCI markers copied into the upper"


def test_oci_forms_without_upper(oci_mount):
    """Read-only (no upper) mounts read OCI layers the same way."""
    m = oci_mount(TOP, MIDDLE, BOTTOM, upper=False)
    got = run(m, [["listdir", "."], ["listdir", "d"], ["listdir", "opq"],
                  ["write_file", "gone.txt", "x"]])
    assert got == [["b.txt", "d", "mdir", "mid.txt", "opq", "top.txt"],
                   ["bottom-keep", "mid-keep", "top-file"], ["top-in-opq"], "EROFS"]

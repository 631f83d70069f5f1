"""Lower hard links are one object (issue 16, item 1; cowfs/hardlinks.py).

Every name of a lower inode shows one st_ino and the lower's st_nlink; a copy-up through any name
copies the object once and links every name the merged view shows, so a write through one name
shows through the others, and the links are plain upper hard links: they stay across remounts
and the rootless kernel reads them as one inode too. The rootless kernel itself breaks the link at
copy-up (EXPECTED `lower-hardlink-copyup`); the kernel mounted as root with index=on keeps it, and
is the reference here (`overlay_pair(..., kernel_opts=["index=on"])`), with a model where it
differs.
"""
from __future__ import annotations

import os
import subprocess

import overlay
from overlay import Dir, Fifo, File, Hardlink, Symlink, Whiteout

INDEX = {"kernel_opts": ["index=on"]}

LOWER = {
    "a": File("A\n"),
    "b": Hardlink("a"),
    "d": Dir({"c": Hardlink("a"), "x": "X\n"}),
    "s": Symlink("a"),
    "s2": Hardlink("s"),
    "p": Fifo(0o644),
    "e/p2": Hardlink("p"),
    "one": "1\n",
}


def stats(*paths):
    return [["lstat", p] for p in paths]


def upper_inos(pair, side: str, *paths) -> list[str]:
    """The tree labels of PATHS' inodes in SIDE's raw upper: equal labels = hard links."""
    tree = pair.upper_tree(side)
    return [tree[p]["ino"] if p in tree else None for p in paths]


def test_names_are_one_object_before_and_after_copy_up(overlay_pair):
    pair = overlay_pair(LOWER, **INDEX)
    out = pair.run([
        *stats("a", "b", "d/c", "s", "s2", "p", "e/p2"),
        ["scandir", "."], ["scandir", "d"],
        ["open", "f", "a", ["O_WRONLY", "O_APPEND"]], ["write", "f", "more\n"], ["close", "f"],
        ["read_file", "b"], ["read_file", "d/c"], *stats("a", "b", "d/c"), ["scandir", "d"],
    ])
    out.assert_same()
    k = out.kernel
    assert k[0]["ok"]["ino"] == k[1]["ok"]["ino"] == k[2]["ok"]["ino"] == "op0"
    assert k[0]["ok"]["nlink"] == 3 and k[3]["ok"]["ino"] == k[4]["ok"]["ino"]
    assert k[5]["ok"]["ino"] == k[6]["ok"]["ino"]
    assert k[12] == k[13] == {"ok": "A\nmore\n"}
    assert [k[i]["ok"]["ino"] for i in (14, 15, 16)] == ["op0"] * 3
    assert k[14]["ok"]["nlink"] == 3 and k[17]["ok"][0][2] == "op0"
    # cowfs linked every name at the copy-up: one upper inode
    assert len(set(upper_inos(pair, "cowfs", "a", "b", "d/c"))) == 1


def test_copy_up_of_symlink_and_fifo(overlay_pair):
    pair = overlay_pair(LOWER, **INDEX)
    out = pair.run([
        ["lchown", "s2", -1, -1],
        *stats("s", "s2"), ["readlink", "s"],
        ["chmod", "e/p2", 0o600], *stats("p", "e/p2"),
        ["link", "p", "p3"], *stats("p", "p3", "e/p2"),
    ])
    out.assert_same()
    assert out.kernel[1]["ok"]["ino"] == out.kernel[2]["ok"]["ino"]
    assert out.kernel[5]["ok"]["mode"] == "0600" and out.kernel[9]["ok"]["nlink"] == 3
    assert len(set(upper_inos(pair, "cowfs", "s", "s2"))) == 1
    assert len(set(upper_inos(pair, "cowfs", "p", "e/p2", "p3"))) == 1


def test_unlink_rename_and_link_of_lower_names(overlay_pair):
    pair = overlay_pair(LOWER, **INDEX)
    out = pair.run([
        ["lstat", "a"], ["rename", "d/c", "c2"], *stats("a", "b", "c2"),
        ["unlink", "b"], *stats("a", "c2"), ["rename", "a", "c2"], ["lstat", "c2"],
        ["link", "c2", "d/n"], *stats("c2", "d/n"), ["write_file", "d/n", "new\n"],
        ["read_file", "c2"], ["scandir", "."], ["scandir", "d"],
    ])
    out.assert_same()
    assert out.kernel[2]["ok"]["ino"] == out.kernel[4]["ok"]["ino"] == "op0"


def test_whiteout_and_shadow_are_kept(overlay_pair):
    """A name whited out before the copy-up is not resurrected, one shadowed by an upper file
    stays shadowed, one under an opaque dir stays hidden; the copy has one link per name the
    view shows. Against the rootless kernel (the index=on reference reads no user.overlay.*
    markers, and counts hidden lower names in st_nlink): everything but the copied object's
    own names agrees (EXPECTED lower-hardlink-copyup), and the counts are checked on the model:
    the names shown."""
    lower = {"a": File("A\n"), "b": Hardlink("a"), "c": Hardlink("a"), "o/d": Hardlink("a"),
             "w": Hardlink("a"), "k": Hardlink("a")}
    upper = {"c": "upper c\n", "o": Dir({}, opaque=True), "w": Whiteout()}
    pair = overlay_pair(lower, upper=upper)
    out = pair.run([
        ["unlink", "b"], ["exists", "b"], ["lstat", "a"],
        ["truncate", "a", 1], ["read_file", "a"], ["read_file", "k"], ["read_file", "c"],
        ["exists", "b"], ["exists", "w"], ["exists", "o/d"], ["lstat", "a"], ["lstat", "k"],
        ["listdir", "."], ["listdir", "o"],
    ])
    out.assert_same()
    c = out.cowfs
    assert c[2]["ok"]["nlink"] == 2  # the unlink copied it up: a and k are left in the view
    assert c[5] == {"ok": "A"} and c[6] == {"ok": "upper c\n"}
    assert c[10]["ok"]["nlink"] == c[11]["ok"]["nlink"] == 2  # a and k
    assert c[10]["ok"]["ino"] == c[11]["ok"]["ino"] == "op2"
    assert [c[i] for i in (7, 8, 9)] == [{"ok": False}] * 3
    tree = pair.upper_tree("cowfs")
    assert tree["a"]["ino"] == tree["k"]["ino"] and tree["a"]["nlink"] == 2
    assert tree["c"]["nlink"] == 1 and "o/d" not in tree
    assert tree["b"]["type"] == tree["w"]["type"] == "c"  # still whiteouts


def test_links_persist_and_interchange(overlay_pair):
    """After a copy-up and a remount the names are still one object; the rootless kernel
    mounting cowfs's upper shows them as one inode too."""
    pair = overlay_pair(LOWER, **INDEX)
    pair.run([["truncate", "d/c", 1], ["lchown", "s2", -1, -1],
              ["link", "b", "d/n"]], trees=False)
    pair.remount()
    ops = [*stats("a", "b", "d/c", "d/n", "s", "s2"), ["read_file", "b"],
           ["write_file", "d/n", "again\n"], ["read_file", "a"]]
    out = pair.run(ops)
    out.assert_same()
    c = out.cowfs
    assert [c[i]["ok"]["ino"] for i in range(4)] == ["op0"] * 4 and c[0]["ok"]["nlink"] == 4
    assert c[4]["ok"]["ino"] == c[5]["ok"]["ino"] and c[8] == {"ok": "again\n"}
    pair.unmount()
    lay = pair.cowfs_layers
    lay.new_work()
    with overlay.mount("kernel", lay) as m:
        seen = overlay.run_ops(m.mnt, ops[:7])
    assert [seen[i]["ok"]["ino"] for i in range(4)] == ["op0"] * 4
    assert seen[0]["ok"]["nlink"] == 4 and seen[6] == {"ok": "again\n"}
    assert seen[4]["ok"]["ino"] == seen[5]["ok"]["ino"]


def test_find_samefile_and_du_count_once(overlay_pair):
    """The issue's scenario: `ln a b` in the lower; du and find -samefile see one file."""
    big = {"a": File(b"x" * (1 << 20)),
           "b": Hardlink("a"), "sub/c": Hardlink("a")}
    pair = overlay_pair(big)
    for when in ("before", "after"):
        mnt = pair.cowfs.mnt
        r = subprocess.run(overlay.as_user(["find", mnt, "-samefile", os.path.join(mnt, "a")]),
                           capture_output=True, text=True, timeout=60)
        names = sorted(os.path.relpath(p, mnt) for p in r.stdout.split())
        assert names == ["a", "b", "sub/c"], (when, r.stdout, r.stderr)
        r = subprocess.run(overlay.as_user(["du", "-s", "--block-size=1K", mnt]),
                           capture_output=True, text=True, timeout=60)
        assert int(r.stdout.split()[0]) < 2048, (when, r.stdout, r.stderr)  # 1 MiB counted once
        pair.run([["open", "f", "b", ["O_WRONLY", "O_APPEND"]], ["write", "f", "y"],
                  ["close", "f"]], trees=False)


def test_snapshot_like_lower_copies_one_name(harness):
    """Every file has its other name outside the layer: its copy-up copies that one name, as
    before; nothing else is linked, the outside names untouched."""
    lay = overlay.make_layers("outside-links", [{"pkg": Dir({"m.py": "m\n", "n.py": "n\n"}),
                                                 "top": "t\n"}])
    lower = lay.lowers[0]
    outside = os.path.join(lay.base, "elsewhere")
    os.mkdir(outside)
    for i, rel in enumerate(("pkg/m.py", "pkg/n.py", "top")):
        os.link(os.path.join(lower, rel), os.path.join(outside, str(i)))
    overlay.LOWERS[:] = [x for x in overlay.LOWERS if x[0] != lower]
    overlay.register_lower(lower)
    with overlay.mount(harness.impl, lay) as m:
        got = overlay.run_ops(m.mnt, [
            ["lstat", "pkg/m.py"], ["lstat", "pkg/n.py"], ["write_file", "pkg/m.py", "M\n"],
            ["lstat", "pkg/m.py"], ["read_file", "pkg/m.py"], ["lstat", "pkg/n.py"],
            ["truncate", "top", 0], ["lstat", "top"], ["unlink", "pkg/n.py"]])
    assert got[0]["ok"]["nlink"] == 2 and got[0]["ok"]["ino"] != got[1]["ok"]["ino"]
    assert got[3]["ok"]["nlink"] == 1 and got[3]["ok"]["ino"] == "op0"
    assert got[4] == {"ok": "M\n"} and got[5]["ok"]["nlink"] == 2
    assert got[7]["ok"]["nlink"] == 1
    tree = overlay.dump_tree(lay.upper, user=False)
    assert sorted(p for p in tree if tree[p].get("type") == "f") == ["pkg/m.py", "top"]
    assert tree["pkg/n.py"]["type"] == "c"  # a whiteout: the unlink copied nothing up
    for i in range(3):
        assert os.stat(os.path.join(outside, str(i))).st_nlink == 2
    overlay.check_lowers([lower])


def test_store_layer_keeps_equal_files_apart(harness):
    """A snapshot (or image layer) in a cowfs content store: files of equal content are links to
    one store object (cowfs/store.py), so they share an inode in the layer without being one
    file. Each name is an object of its own there, and a write to one leaves the others alone,
    as on the rootless kernel."""
    lay = overlay.make_layers("store-layer", [{"pkg/__init__.py": "", "other/__init__.py": "",
                                               "LICENSE": "MIT\n", "b/LICENSE": "MIT\n"}])
    lower = lay.lowers[0]
    objects = os.path.join(lay.base, "store", "sha256")
    os.makedirs(objects)
    for first, second, obj in (("pkg/__init__.py", "other/__init__.py", "e3b0"),
                               ("LICENSE", "b/LICENSE", "49a1")):
        os.link(os.path.join(lower, first), os.path.join(objects, obj))
        os.unlink(os.path.join(lower, second))
        os.link(os.path.join(lower, first), os.path.join(lower, second))
    overlay.LOWERS[:] = [x for x in overlay.LOWERS if x[0] != lower]
    overlay.register_lower(lower)
    ops = [["lstat", "pkg/__init__.py"], ["lstat", "other/__init__.py"],
           ["write_file", "pkg/__init__.py", "x = 1\n"], ["read_file", "other/__init__.py"],
           ["lstat", "other/__init__.py"], ["unlink", "b/LICENSE"], ["lstat", "LICENSE"],
           ["read_file", "LICENSE"]]
    with overlay.mount(harness.impl, lay) as m:
        got = overlay.run_ops(m.mnt, ops)
    assert got[0]["ok"]["nlink"] == 3 and got[0]["ok"]["ino"] != got[1]["ok"]["ino"]
    assert got[3] == {"ok": ""} and got[4]["ok"]["nlink"] == 3 and got[4]["ok"]["ino"] == "op1"
    assert got[6]["ok"]["nlink"] == 3 and got[7] == {"ok": "MIT\n"}
    tree = overlay.dump_tree(lay.upper, user=False)
    assert sorted(p for p in tree if tree[p].get("type") == "f") == ["pkg/__init__.py"]
    overlay.check_lowers([lower])


def test_name_the_copy_up_could_not_see_is_linked_at_lookup(overlay_pair):
    """A directory the daemon may search but not list (mode 0711): the walk for the names
    misses the one inside, so the copy-up cannot link it; the first lookup that sees it next
    to the copied object links it (hardlinks.unite), and the view is the kernel's."""
    lower = {"a": File("A\n"), "locked": Dir({"b": Hardlink("a")}, mode=0o711)}
    pair = overlay_pair(lower, **INDEX)
    out = pair.run([
        ["write_file", "a", "new\n"], ["lstat", "a"], ["lstat", "locked/b"],
        ["read_file", "locked/b"], ["lstat", "a"], ["write_file", "locked/b", "newer\n"],
        ["read_file", "a"],
    ])
    out.assert_same()
    assert out.cowfs[2]["ok"]["ino"] == "op1" and out.cowfs[6] == {"ok": "newer\n"}
    tree = pair.upper_tree("cowfs")
    assert tree["locked/b"]["ino"] == tree["a"]["ino"]


def test_kill_between_the_names(harness):
    """What a kill between linking the first name and the last leaves: the copy at one name
    (with its ORIGIN), the other still lower. After the next mount they are one object, the
    other name linked to the copy when a lookup sees both, in either order (the lower name
    read before that shows the state before the interrupted copy-up)."""
    for first in ("a", "b"):
        lay = overlay.make_layers(f"kill-{first}", [{"a": File("A\n"), "b": Hardlink("a")}])
        st = os.lstat(os.path.join(lay.lowers[0], "a"))
        copy = os.path.join(lay.upper, "a")
        with open(copy, "w") as f:
            f.write("copied\n")
        os.chown(copy, harness.uid, harness.gid)
        os.setxattr(copy, "user.overlay.cowfs.origin", b"l:0:%d:%d" % (st.st_dev, st.st_ino))
        other = "b" if first == "a" else "a"
        with overlay.mount(harness.impl, lay) as m:
            got = overlay.run_ops(m.mnt, [["lstat", first], ["read_file", first],
                                          ["lstat", other], ["read_file", other],
                                          ["lstat", first], ["read_file", first]])
        assert got[2]["ok"]["ino"] == "op0" and got[4]["ok"]["nlink"] == 2, (first, got)
        assert got[3] == got[5] == {"ok": "copied\n"}, (first, got)
        tree = overlay.dump_tree(lay.upper, user=False)
        assert tree["a"]["ino"] == tree["b"]["ino"], first


def test_removing_a_name_counts_the_others(overlay_pair):
    """Unlinking a name of a lower hard link, or renaming over it: the names left show one link
    fewer. The kernel with index=on copies the object up first to count them; so does cowfs
    (a snapshot lower's files, of one name in their layer, are not copied for that)."""
    lower = {"a": File("A\n"), "d/b": Hardlink("a"), "c": Hardlink("a"), "x": "x\n",
             "s": Symlink("x"), "s2": Hardlink("s")}
    pair = overlay_pair(lower, **INDEX)
    out = pair.run([
        ["lstat", "a"], ["unlink", "d/b"], ["lstat", "a"], ["lstat", "c"],
        ["rename", "x", "c"], ["lstat", "a"], ["read_file", "a"], ["read_file", "c"],
        ["unlink", "s"], ["lstat", "s2"], ["listdir", "."], ["listdir", "d"],
    ])
    out.assert_same()
    k = out.kernel
    assert k[0]["ok"]["nlink"] == 3 and k[2]["ok"]["nlink"] == 2 and k[5]["ok"]["nlink"] == 1
    assert k[5]["ok"]["ino"] == "op0" and k[9]["ok"]["nlink"] == 1


def test_mount_finishes_a_link_up_a_kill_left(harness):
    """The copy waits in WORK/cowfs-links/KEY while its names are linked: after a kill there
    (one name linked, others not), the next mount links the rest before it serves anything, so
    even the first read of a name not yet linked shows the copy."""
    lay = overlay.make_layers("pending", [{"a": File("A\n"), "b": Hardlink("a"),
                                           "d/c": Hardlink("a"), "s": Symlink("a"),
                                           "s2": Hardlink("s")}])
    st = os.lstat(os.path.join(lay.lowers[0], "a"))
    sst = os.lstat(os.path.join(lay.lowers[0], "s"))
    links = os.path.join(lay.work, "cowfs-links")
    os.mkdir(links, 0o700)
    key = "l:0:%d:%d" % (st.st_dev, st.st_ino)
    pending = os.path.join(links, key)
    with open(pending, "w") as f:
        f.write("copied\n")
    os.setxattr(pending, "user.overlay.cowfs.origin", key.encode())
    os.link(pending, os.path.join(lay.upper, "b"))  # killed after the first name
    os.symlink("a", os.path.join(links, "l:0:%d:%d" % (sst.st_dev, sst.st_ino)))
    for p in [links, pending, os.path.join(lay.upper, "b")]:
        os.chown(p, harness.uid, harness.gid, follow_symlinks=False)
    os.lchown(os.path.join(links, "l:0:%d:%d" % (sst.st_dev, sst.st_ino)), harness.uid,
              harness.gid)
    with overlay.mount(harness.impl, lay) as m:
        got = overlay.run_ops(m.mnt, [["read_file", "d/c"], ["read_file", "a"], ["lstat", "a"],
                                      ["lstat", "d/c"], ["lstat", "b"], ["lstat", "s"],
                                      ["lstat", "s2"]])
    assert got[0] == got[1] == {"ok": "copied\n"}
    assert [got[i]["ok"]["ino"] for i in (3, 4)] == ["op2"] * 2 and got[2]["ok"]["nlink"] == 3
    assert got[5]["ok"]["ino"] == got[6]["ok"]["ino"] and got[5]["ok"]["nlink"] == 2
    assert os.listdir(links) == []
    tree = overlay.dump_tree(lay.upper, user=False)
    assert tree["a"]["ino"] == tree["b"]["ino"] == tree["d/c"]["ino"]
    assert tree["s"]["ino"] == tree["s2"]["ino"]


def test_unlink_of_an_unreadable_lower_hard_link(overlay_pair):
    """A lower hard link the mounting user cannot read cannot be copied up rootless (README):
    unlinking one of its names only whites it out, and the name left shows the lower's count,
    as on the rootless kernel (which does not copy up for an unlink)."""
    lower = {"d": Dir({"secret": File("s\n", mode=0o600, owner="root"),
                       "again": Hardlink("d/secret")})}
    pair = overlay_pair(lower)
    out = pair.run([["lstat", "d/again"], ["unlink", "d/secret"], ["lstat", "d/again"],
                    ["listdir", "d"]])
    out.assert_same()
    assert out.cowfs[1] == {"ok": None} and out.cowfs[2]["ok"]["nlink"] == 2


def test_metacopy_of_a_lower_hard_link_copies_the_data(overlay_pair):
    """With -o metacopy=on, a chmod of one name of a lower hard link copies it up with its data
    (not as a metacopy file), its names linked to the copy: they stay one object, as on the
    kernel with index=on and metacopy=on."""
    pair = overlay_pair({"a": File("A\n"), "d/b": Hardlink("a")},
                        kernel_opts=["index=on", "metacopy=on"],
                        cowfs_opts=["-o", "metacopy=on"])
    out = pair.run([["chmod", "a", 0o600], *stats("a", "d/b"), ["read_file", "d/b"],
                    ["write_file", "d/b", "B\n"], ["read_file", "a"], *stats("a", "d/b")])
    out.assert_same()
    assert out.kernel[2]["ok"]["mode"] == "0600" and out.kernel[2]["ok"]["ino"] == "op1"
    tree = pair.upper_tree("cowfs")
    assert tree["a"]["ino"] == tree["d/b"]["ino"]
    assert not any(k.endswith("metacopy") for k in tree["a"]["xattrs"])


def test_name_below_a_moved_dir(overlay_pair):
    """With -o redirect_dir=on a lower dir can move: the copy-up's walk finds the name at its
    path in the layer, which the view no longer shows there, so it is linked when a lookup sees
    it at its new place (hardlinks.unite): one object, as on the kernel with index=on."""
    pair = overlay_pair({"a": File("A\n"), "d/b": Hardlink("a")},
                        kernel_opts=["index=on", "redirect_dir=on"],
                        cowfs_opts=["-o", "redirect_dir=on"])
    out = pair.run([["rename", "d", "e"], ["lstat", "a"], ["write_file", "a", "new\n"],
                    ["read_file", "e/b"], *stats("a", "e/b"), ["write_file", "e/b", "newer\n"],
                    ["read_file", "a"]])
    out.assert_same()
    assert out.kernel[3] == {"ok": "new\n"} and out.kernel[5]["ok"]["ino"] == "op1"
    tree = pair.upper_tree("cowfs")
    assert tree["a"]["ino"] == tree["e/b"]["ino"]

"""`cowfs fsck`: uppers left by real operations (cowfs and kernel overlayfs) are clean; planted
leftovers and malformed markers are found, --repair removes only the garbage and the merged view
stays the same; an upper in use is refused."""
from __future__ import annotations

import os
import stat

import overlay
from test_diff import LOWER, LOWER2, OPS, cowfs, ok, usage_error


def fsck_args(lay: overlay.Layers) -> list[str]:
    return ["fsck", "--upper", lay.upper, "--work", lay.work]


def test_clean_after_real_operations(overlay_pair):
    pair = overlay_pair(LOWER, LOWER2)
    pair.run(OPS, trees=False)
    pair.unmount()
    for side, lay in (("kernel", pair.kernel_layers), ("cowfs", pair.cowfs_layers)):
        assert ok(cowfs(*fsck_args(lay))) == "", side
        assert ok(cowfs(*fsck_args(lay), "--repair")) == "", side


def _plant(lay: overlay.Layers) -> None:
    """Malformed markers in the upper (as root, straight on disk)."""
    up = lay.upper
    os.mknod(os.path.join(up, "etc/null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.setxattr(os.path.join(up, "etc/conf"), "user.overlay.opaque", b"y")  # a file
    os.setxattr(os.path.join(up, "moved.txt"), "user.overlay.cowfs.origin", b"garbage")
    os.setxattr(os.path.join(up, "new"), "user.overlay.cowfs.origin", b"l:0:1:2")  # a dir
    os.setxattr(os.path.join(up, "new/a"), "user.overlay.opaque", b"n")
    os.setxattr(os.path.join(up, "keep"), "user.overlay.frob", b"1")
    with open(os.path.join(up, "new/.wh.x"), "w") as f:
        f.write("oci\n")


def _plant_work(lay: overlay.Layers) -> None:
    """Leftovers of interrupted copy-ups (a mount would clear them: planted just before fsck)."""
    work = os.path.join(lay.work, "work")
    with open(os.path.join(work, "#cowfs-99999-1"), "w") as f:
        f.write("half a copy")
    os.makedirs(os.path.join(work, "#cowfs-99999-2/sub"))
    os.chmod(os.path.join(work, "#cowfs-99999-2/sub"), 0o555)


def test_problems_found_and_repaired(harness):
    lay = overlay.make_layers("repair", [LOWER, LOWER2])
    with overlay.mount("cowfs", lay) as m:
        overlay.run_ops(m.mnt, OPS)
    _plant(lay)
    with overlay.mount("cowfs", lay) as m:
        before = overlay.dump_tree(m.mnt)
    _plant_work(lay)
    up, work = lay.upper, os.path.join(lay.work, "work")
    garbage = [
        f"{work}/#cowfs-99999-1: leftover of an interrupted copy-up",
        f"{work}/#cowfs-99999-2: leftover of an interrupted copy-up",
        f"{up}/etc/conf: user.overlay.opaque on a file",
        f"{up}/moved.txt: user.overlay.cowfs.origin is 'garbage', not a lower object's key",
        f"{up}/new: user.overlay.cowfs.origin on a dir",
    ]
    kept = [
        f"{up}/etc/null: character device 1:3 in the upper: not a whiteout",
        f"{up}/keep: unknown overlay xattr user.overlay.frob",
        f"{up}/new/.wh.x: OCI whiteout name in the upper (file)",
        f"{up}/new/a: user.overlay.opaque is 'n', not 'y'",
    ]

    res = cowfs(*fsck_args(lay))
    assert res.returncode == 1 and res.stderr == "", res
    lines = res.stdout.splitlines()
    assert len(lines) == len(garbage + kept), res.stdout
    for want in garbage:
        assert any(ln.startswith(want) and ln.endswith(")") and "--repair removes" in ln
                   for ln in lines), (want, res.stdout)
    for want in kept:
        assert any(ln.startswith(want) and "--repair" not in ln for ln in lines), (want, lines)

    res = cowfs(*fsck_args(lay), "--repair")
    assert res.returncode == 1 and res.stderr == "", res  # what the view shows is left
    lines = res.stdout.splitlines()
    for want in garbage:
        assert any(ln.startswith(want) and ": removed " in ln for ln in lines), (want, lines)
    assert os.listdir(work) == []
    assert "user.overlay.opaque" not in os.listxattr(os.path.join(up, "etc/conf"))
    assert "user.overlay.cowfs.origin" not in os.listxattr(os.path.join(up, "moved.txt"))
    assert os.getxattr(os.path.join(up, "new/a"), "user.overlay.opaque") == b"n"

    res = cowfs(*fsck_args(lay))
    assert res.returncode == 1 and len(res.stdout.splitlines()) == len(kept), res
    with overlay.mount("cowfs", lay) as m:
        after = overlay.dump_tree(m.mnt)
    diffs = overlay.compare_trees(before, after)
    assert not diffs, overlay.format_diffs(diffs, [], title="merged view before | after repair")


def test_refuses_while_mounted(harness):
    lay = overlay.make_layers("in-use", [LOWER])
    klay = overlay.make_layers("in-use-kernel", [LOWER])
    with overlay.mount("cowfs", lay) as m, overlay.mount("kernel", klay) as km:
        leftover = os.path.join(lay.work, "work", "#cowfs-99999-1")
        open(leftover, "w").close()  # what a copy-up in progress looks like
        # root may not ask the mount (FUSE, no allow_other): the daemon's open upper gives it away
        usage_error(cowfs(*fsck_args(lay), "--repair"),
                    f"upper directory {lay.upper} is in use (process", "unmount it first")
        usage_error(cowfs(*fsck_args(lay), "--repair", user=True),
                    f"is in use (it is mounted by cowfs at {m.mnt})")
        usage_error(cowfs(*fsck_args(klay)), f"mounted by kernel overlayfs at {km.mnt}")
        assert os.path.exists(leftover)


def _plant_mode_notes(lay: overlay.Layers) -> None:
    """What a daemon killed while it lent itself a permission bit leaves (UpperLayer.mode_noted):
    the dir d (really 0555) still 0755, and a note to put it back; a note whose object is now a
    whiteout (the dir was exchanged away) is not carried out."""
    up, work = lay.upper, os.path.join(lay.work, "work")
    os.makedirs(work, mode=0o700, exist_ok=True)
    os.chown(work, harness_ids()[0], harness_ids()[1])
    os.chmod(os.path.join(up, "d"), 0o755)
    os.symlink("d555:d", os.path.join(work, "#cowfs-mode-99999-2"))
    os.symlink("d555:gone", os.path.join(work, "#cowfs-mode-99999-1"))


MODE_LOWER = {"d": overlay.Dir({"x": "x\n"}, mode=0o555), "gone": "gone\n"}
MODE_UPPER = {"d": overlay.Dir({"new": "new\n"}, mode=0o555), "gone": overlay.Whiteout()}


def test_mode_note_given_back_by_repair(harness):
    lay = overlay.make_layers("mode-note", [MODE_LOWER], MODE_UPPER)
    _plant_mode_notes(lay)
    work = os.path.join(lay.work, "work")
    res = cowfs(*fsck_args(lay))
    assert res.returncode == 1, res
    assert (f"{work}/#cowfs-mode-99999-2: leftover of an interrupted change: note of a lent mode "
            "(d is to get its mode 0555 back) (--repair removes it, giving the mode back)"
            in res.stdout.splitlines()), res.stdout
    res = cowfs(*fsck_args(lay), "--repair")
    assert res.returncode == 0, res
    assert stat.S_IMODE(os.stat(os.path.join(lay.upper, "d")).st_mode) == 0o555
    assert os.listdir(work) == []
    assert ok(cowfs(*fsck_args(lay))) == ""


def test_mode_note_given_back_by_mount(harness):
    lay = overlay.make_layers("mode-note-mount", [MODE_LOWER], MODE_UPPER)
    _plant_mode_notes(lay)
    with overlay.mount("cowfs", lay) as m:
        res = overlay.run_ops(m.mnt, [["stat", "d"], ["listdir", "."]])
        assert res[0]["ok"]["mode"] == "0555", res
        assert res[1]["ok"] == ["d"], res
        assert os.listdir(os.path.join(lay.work, "work")) == []
    assert stat.S_IMODE(os.stat(os.path.join(lay.upper, "d")).st_mode) == 0o555
    assert markers_whiteout(os.path.join(lay.upper, "gone"))
    assert ok(cowfs(*fsck_args(lay))) == ""


def harness_ids() -> tuple[int, int]:
    e = overlay.env()
    return e.uid, e.gid


def markers_whiteout(path: str) -> bool:
    st = os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0

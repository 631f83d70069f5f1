"""Long paths and long names, differentially against kernel overlayfs."""
from __future__ import annotations

import os

import overlay
from overlay import Dir

SEG = 99  # a 99-byte component plus "/" = 100 bytes of path
DEPTH = 38  # lower tree: 3800 bytes of directories (+ the harness's scratch prefix < 4096)


def seg(i: int, c: str = "d") -> str:
    return f"{c}{i:03d}" + c * (SEG - 4)


LOW_DIR = "/".join(seg(i) for i in range(DEPTH))
NAME255 = "n" * 255
NAME256 = "n" * 256
DEEP = {LOW_DIR + "/f": "deep lower file\n", "top.txt": "t\n"}
NAMES = {NAME255: "a 255-byte name\n", "d": Dir({NAME255: Dir({"x": "x\n"})})}


def test_long_relative_paths(overlay_pair):
    """~3800-byte lower paths: read, copy-up with all 38 parents, unlink; then directories
    created through the mount up to a ~4090-byte relative path (PATH_MAX is 4096)."""
    pair = overlay_pair(DEEP)
    lower_f = LOW_DIR + "/f"
    made = LOW_DIR + "/" + seg(DEPTH, "m")  # 3900 bytes
    last = made + "/" + "z" * (4090 - len(made) - 1 - 5)  # 4085 bytes
    assert len(last + "/file") == 4090
    too_long = last + "/" + "w" * 20  # 4105 > PATH_MAX
    out = pair.run([
        ["read_file", lower_f], ["stat", lower_f], ["stat_times", LOW_DIR],
        ["open", "w", lower_f, ["O_WRONLY", "O_APPEND"]], ["write", "w", "appended\n"],
        ["close", "w"], ["read_file", lower_f], ["stat_times", LOW_DIR],
        ["mkdir", made], ["mkdir", last], ["write_file", last + "/file", "at 4090 bytes\n"],
        ["read_file", last + "/file"], ["stat", last + "/file"], ["listdir", last],
        ["setxattr", last + "/file", "user.x", "v"], ["getxattr", last + "/file", "user.x"],
        ["symlink", "file", last + "/sl"], ["readlink", last + "/sl"],
        ["write_file", too_long, "x"], ["stat", too_long],
        ["unlink", lower_f], ["exists", lower_f], ["listdir", LOW_DIR],
    ])
    out.assert_same()
    assert out.cowfs[10] == {"ok": 14} and out.cowfs[18] == {"errno": "ENAMETOOLONG"}
    for side in ("kernel", "cowfs"):
        up = pair.upper_tree(side)
        assert up[lower_f]["type"] == "c" and up[last + "/file"]["type"] == "f", side
    pair.remount()
    pair.run([["read_file", last + "/file"], ["listdir", LOW_DIR],
              ["exists", lower_f]]).assert_same()


def test_name_length_limit(overlay_pair):
    """A 255-byte name works everywhere; a 256-byte one is ENAMETOOLONG, on lookup and on every
    kind of create, also below merged and lower-only directories."""
    pair = overlay_pair(NAMES)
    out = pair.run([
        ["read_file", NAME255], ["listdir", f"d/{NAME255}"],
        ["write_file", f"d/{NAME255}/x", "copied up below a 255-byte dir\n"],
        ["write_file", NAME255, "changed\n"], ["read_file", NAME255],
        ["mkdir", "m" * 255], ["write_file", "m" * 255 + "/" + NAME255, "n"],
        ["symlink", NAME255, "s" * 255], ["readlink", "s" * 255], ["read_file", "s" * 255],
        ["link", NAME255, "l" * 255], ["stat", "l" * 255],
        ["unlink", f"d/{NAME255}/x"], ["rmdir", f"d/{NAME255}"],  # whiteout with a 255-byte name
        ["exists", f"d/{NAME255}"],
        ["stat", NAME256], ["lstat", f"d/{NAME256}"], ["exists", NAME256],
        ["write_file", NAME256, "x"], ["write_file", f"d/{NAME256}", "x"],
        ["mkdir", NAME256], ["symlink", "x", NAME256], ["mkfifo", NAME256],
        ["link", NAME255, NAME256], ["unlink", NAME256], ["rmdir", NAME256],
        ["open", "c", NAME256, ["O_WRONLY", "O_CREAT", "O_EXCL"]],
        ["stat", "x" * 1000], ["write_file", "x" * 1025, "x"],  # beyond FUSE's 1024
        ["statvfs", "."], ["statvfs", "d"],
    ])
    out.assert_same()
    assert all(r == {"errno": "ENAMETOOLONG"} for r in out.cowfs[15:17] + out.cowfs[18:29])
    assert out.cowfs[-1] == {"ok": {"namemax": 255}}
    upper_names = {os.path.basename(p) for p in pair.upper_tree("cowfs")}
    assert NAME256 not in upper_names and len(max(upper_names, key=len)) == 255


def test_namemax_matches_kernel_without_upper(harness):
    """statvfs f_namemax of a read-only (no upper) mount: the lowers decide. (The kernel needs
    two lowers when there is no upper.)"""
    res = {}
    for impl in ("kernel", harness.impl):
        lay = overlay.make_layers(f"namemax-{impl}", [{"a": "a"}, {"b": "b"}], upper=False)
        with overlay.mount(impl, lay) as m:
            res[impl] = overlay.run_ops(m.mnt, [["statvfs", "."], ["stat", NAME256]])
    assert res["kernel"] == res[harness.impl]
    assert res[harness.impl][1] == {"errno": "ENAMETOOLONG"}

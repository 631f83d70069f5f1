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



def _path_max_parts(c: str, n: int = 16) -> list[str]:
    """n 255-byte names: joined, 16 of them make a 4095-byte path (PATH_MAX - 1)."""
    return [f"{c}{i:02d}" + c * 252 for i in range(n)]


def test_path_max_relative_to_a_subdirectory(overlay_pair):
    """pjdfstest's */03.t and rename/02.t: they work in a directory of the mount, so their
    4095-byte paths (PATH_MAX - 1) are longer than PATH_MAX from the root. Every kind of call on
    such a path, lower files copied up into it; 4096 bytes is ENAMETOOLONG."""
    pair = overlay_pair({"base": Dir({"f": "lower f\n", "g": "lower g\n", "h": "lower h\n"})})
    parts = _path_max_parts("n")
    dirs = ["/".join(parts[:i]) for i in range(1, 16)]
    d = dirs[-1] + "/"
    p, q, s_, f_, c_, m_ = (d + c * 255 for c in "pqsfcm")  # each 4095 bytes
    assert len(p) == 4095
    too_long = p + "x"
    # nothing is removed before the last stat: tmpfs reuses inode numbers at once, which the
    # kernel shows and cowfs (a fresh st_ino per object) does not; see test_identity
    ops = [["mkdir", "pjd"], ["chdir", "pjd"]] + [["mkdir", x] for x in dirs] + [
        ["mkdir", m_], ["stat", m_], ["chmod", m_, 0o700], ["listdir", m_],
        ["write_file", p, "at PATH_MAX - 1\n"], ["read_file", p], ["truncate", p, 3],
        ["stat", p], ["chown", p, -1, -1], ["utime", p, 10**18, 10**18], ["stat_times", p],
        ["setxattr", p, "user.x", "v"], ["getxattr", p, "user.x"], ["listxattr", p],
        ["removexattr", p, "user.x"], ["access", p, ["R_OK", "W_OK"]],
        ["link", p, q], ["stat", q], ["rename", q, c_], ["rename", c_, p, "EXCHANGE"],
        ["rename", c_, q], ["symlink", "target", s_], ["readlink", s_], ["lstat", s_],
        ["mkfifo", f_], ["lstat", f_],
        ["open", "c", c_, ["O_WRONLY", "O_CREAT", "O_EXCL"]], ["write", "c", "made"],
        ["close", "c"], ["read_file", c_], ["listdir", dirs[-1]],
        ["mkdir", too_long], ["write_file", too_long, "x"], ["stat", too_long],
        ["unlink", p], ["unlink", q], ["unlink", s_], ["unlink", f_], ["unlink", c_],
        ["rmdir", m_],
        ["rename", "../base/f", p], ["open", "a", p, ["O_WRONLY", "O_APPEND"]],
        ["write", "a", "appended\n"], ["close", "a"], ["read_file", p],
        ["link", "../base/g", q], ["chmod", q, 0o600], ["read_file", "../base/g"],
        ["rename", "../base/h", q, "EXCHANGE"], ["read_file", "../base/h"], ["read_file", q],
        ["listdir", "../base"], ["listdir", dirs[-1]],
    ]
    out = pair.run(ops)
    out.assert_same()
    for op, res in zip(ops, out.cowfs):
        if too_long in op:
            assert res == {"errno": "ENAMETOOLONG"}, op[0]
        else:
            assert "ok" in res, (op[0], res)
    assert {"ok": "lower f\nappended\n"} in out.cowfs
    pair.remount()
    pair.run([["chdir", "pjd"], ["read_file", p], ["read_file", q],
              ["listdir", dirs[-1]], ["listdir", "../base"]]).assert_same()

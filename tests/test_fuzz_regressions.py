"""Minimal cases found by the differential fuzzer (tests/fuzz.py), replayed against kernel overlay.

Each case is the shrunk op list of one divergence, checked by hand on a kernel overlay mount, and
runs as a regular differential test (overlay_pair: every op result and the merged tree compared).

Layer specs use the fuzzer's JSON form (fuzz.to_spec): {"t": "f"|"d"|"l"|"p"|"h"|"w", ...}.
"""
from __future__ import annotations

import pytest

import fuzz

F = {"t": "f", "data": ""}


def D(children=None, **kw):
    return {"t": "d", "children": children or {}, **kw}


NB = "O_NONBLOCK"


CASES = [
    pytest.param(
        [{"b": D({"c": F}, mode=0o555)}], {},
        [["truncate", "b/c", 100], ["stat", "b/c"]],
        id="copy-up-into-read-only-lower-dir"),
    pytest.param(
        [{"b": D({"c": F})}], {},
        [["stat", "."], ["opendir", "D0", "b"], ["readdir", "D0"]],
        id="readdir-dotdot-is-parent-ino"),
    pytest.param(
        [{}], {},
        [["opendir", "D0", "."], ["readdir", "D0"]],
        id="readdir-dotdot-of-mount-root"),
    pytest.param(
        [{"c": D(), "a": D({"c": D()})}], {"uf": F},
        [["chmod", "uf", 0], ["listdir", "."], ["stat", "uf"], ["mkdir", "uf"],
         ["chmod", "a/c", 0], ["exists", "a/c/"], ["listdir", "a"]],
        id="unreadable-upper-object"),
    pytest.param(
        [{"d": D({"x": D()})}], {},
        [["chmod", "d", 0o311], ["listdir", "."], ["mkdir", "d/y"], ["rmdir", "d/x"]],
        id="write-only-dir"),
    pytest.param(
        [{"a": D({"a": D()}), "b": D({"c": D({"c": F})})}], {},
        [["rename", "a/a", "b/c"]],
        id="rename-lower-dir-exdev-first"),
    pytest.param(
        [{"c": D({"a": D({"b": F})})}], {},
        [["utimensat", "c/a", 1500000000123456789, 1700000000999999999, False],
         ["listdir", "c/a"], ["lstat_times", "c/a"]],
        id="readdir-updates-upper-atime"),
    pytest.param(
        [{"a": D({"a": {"t": "l", "target": "a"}, "c": F})}], {},
        [["unlink", "a/c"], ["chmod", "a", 0o644], ["rmdir", "a"]],
        id="rmdir-unreadable-merged-dir"),
    pytest.param(
        [{}], {"b": D()},
        [["open", "f", "b/c", ["O_WRONLY", "O_CREAT", "O_TRUNC", NB], 0o644], ["write", "f", "hi"],
         ["open", "r", "b/c", ["O_RDONLY", NB]], ["chmod", "b", 0o644], ["fstat", "f"],
         ["read", "r", 10], ["ftruncate", "f", 1]],
        id="fd-ops-after-parent-loses-search"),
    pytest.param(
        [{"b": D({"b": F})}], {},
        [["unlink", "b/b"], ["mkdir", "b/b", 0o555], ["stat", "b/b"]],
        id="mkdir-read-only-over-whiteout"),
    pytest.param(
        [{}], {"c": F},
        [["chmod", "c", 0o4755], ["open", "f0", "c", ["O_RDWR", NB]], ["unlink", "c"],
         ["pwrite", "f0", "x", 10], ["fstat", "f0"]],
        id="setattr-open-unlinked-upper-file"),
    pytest.param(
        [{"b": F}], {},
        [["open", "f1", "b", ["O_RDWR", NB]], ["unlink", "b"], ["fchmod", "f1", 0o600],
         ["fstat", "f1"]],
        id="setattr-open-unlinked-lower-file"),
    pytest.param(
        [{"a": D({"b": D()})}], {},
        [["open", "f1", "a/b/b", ["O_WRONLY", "O_CREAT", "O_TRUNC", "O_NOFOLLOW", NB], 0o444],
         ["chmod", "a/b", 0o600], ["fchmod", "f1", 0o1777], ["fstat", "f1"]],
        id="fchmod-after-dir-loses-search"),
    pytest.param(
        [{}], {},
        [["mkdir", "b"], ["opendir", "D0", "b"], ["readdir", "D0"], ["rmdir", "b"],
         ["mkdir", "b"], ["lstat", "b"]],
        id="recreated-dir-while-old-open"),
    pytest.param(
        [{"b": D({"c": F}), "c": D({"b": {"t": "h", "target": "b/c"}})}], {},
        [["open", "f0", "c/b", ["O_WRONLY", "O_APPEND", NB]], ["stat", "c/b"]],
        id="nlink-after-copy-up-at-open"),
    pytest.param(
        [{"b": D({"c": {"t": "p"}})}], {},
        [["open", "f0", "b/c", ["O_RDONLY", NB]], ["unlink", "b/c"], ["fstat", "f0"]],
        id="fstat-open-unlinked-fifo"),
    pytest.param(
        [{"b": {"t": "p"}}], {"u": {"t": "p"}},
        [["open", "f0", "b", ["O_RDONLY", NB]], ["unlink", "b"], ["fchmod", "f0", 0o600],
         ["fstat", "f0"], ["open", "f1", "u", ["O_RDONLY", NB]], ["unlink", "u"],
         ["fchmod", "f1", 0o600], ["fstat", "f1"]],
        id="fchmod-open-unlinked-fifo"),
    pytest.param(
        [{"c": D({"a": {"t": "l", "target": "x"}})}], {},
        [["chmod", "c", 0o2755], ["unlink", "c/a"], ["mkdir", "c/a", 0o755], ["stat", "c/a"],
         ["mkdir", "c/n", 0o755], ["stat", "c/n"]],
        id="setgid-inherited-over-whiteout"),
    pytest.param(
        [{"c": D(), "d": D({"x": F})}], {},
        [["chmod", "c", 0], ["rmdir", "c"], ["unlink", "d/x"], ["chmod", "d", 0], ["rmdir", "d"]],
        id="rmdir-mode-000-dir"),
    pytest.param(
        [{"c": D({"b": D()})}], {},
        [["open", "f", "c/b/f", ["O_WRONLY", "O_CREAT", NB], 0o644], ["write", "f", "x"],
         ["link", "c/b/f", "a"], ["chmod", "c", 0o644], ["open", "r", "a", ["O_RDONLY", NB]],
         ["read", "r", 10], ["truncate", "a", 0]],
        id="hardlink-used-through-other-name"),
    pytest.param(
        [{"c": D()}], {},
        [["mkdir", "c/c/", 0o755], ["open", "c", "c/c/c", ["O_WRONLY", "O_CREAT", NB], 0o644],
         ["link", "c/c/c", "b"], ["chmod", "c/c", 0],
         ["open", "c", "b", ["O_WRONLY", "O_CREAT", NB], 0o755]],
        id="hardlink-opened-through-new-name"),
    pytest.param(
        [{"l": D({"x": D()})}], {},
        [["mkdir", "d"], ["open", "f", "d", ["O_RDONLY", NB]], ["rmdir", "d"], ["fstat", "f"],
         ["fchmod", "f", 0o700], ["open", "g", "l/x", ["O_RDONLY", NB]], ["rmdir", "l/x"],
         ["fstat", "g"], ["fchmod", "g", 0o700], ["fstat", "g"]],
        id="fd-of-removed-dir"),
    pytest.param(
        [{"c": F}], {},
        [["mkdir", "a", 0o1777], ["chmod", "a", 0], ["rename", "c", "a", "EXCHANGE"],
         ["chmod", "c", 0o755], ["listxattr", "c"]],
        id="exchange-mode-000-dir-into-merged-dir"),
    pytest.param(
        [{"c": F}], {},
        [["rename", "c", "a"], ["mkdir", "c", 0o700], ["open", "f0", "c", ["O_RDONLY", NB]],
         ["chmod", "c", 0], ["rmdir", "c"], ["fstat", "f0"]],
        id="fstat-of-removed-mode-000-dir"),
    pytest.param(
        [{"l": D({"x": F})}], {},
        [["mkdir", "a"], ["mkdir", "a/b"], ["write_file", "a/b/f", "x"],
         ["opendir", "D0", "a/b"], ["open", "f0", "a/b", ["O_RDONLY", NB]], ["chmod", "a", 0],
         ["fstat", "f0"], ["readdir", "D0"], ["closedir", "D0"], ["chmod", "a", 0o755]],
        id="readdir-after-parent-loses-search"),
    pytest.param(
        [{"b": D({"a": D({"c": F, "p": {"t": "p"}})})}], {},
        [["open", "f0", "b/a/c", ["O_RDONLY", NB]], ["open", "f1", "b/a/p", ["O_RDONLY", NB]],
         ["chmod", "b", 0o444], ["fchmod", "f0", 0o600], ["fchmod", "f1", 0o600],
         ["fstat", "f0"], ["fstat", "f1"], ["chmod", "b", 0o755], ["stat", "b/a"]],
        id="copy-up-through-dir-that-lost-search"),
    pytest.param(
        [{"l": F}], {"a": D(), "f": F},
        [["sleep", 0.01], ["times_mark", "t0", "a"], ["times_mark", "t1", "f"],
         ["times_mark", "t2", "l"], ["sleep", 0.01], ["chown", "a", -1, -1],
         ["chown", "f", -1, -1], ["chown", "l", -1, -1],
         ["times_cmp", "t0", "a", ["mtime", "ctime"]], ["times_cmp", "t1", "f", ["mtime", "ctime"]],
         ["times_cmp", "t2", "l", ["mtime", "ctime"]]],
        id="chown-minus-one-changes-ctime"),
    pytest.param(
        [{"b": D({"c": D({"c": F})})}], {},
        [["rename", "b/c/c", "b/c/a"], ["sleep", 0.01], ["times_mark", "t0", "."],
         ["times_mark", "t1", "b"], ["sleep", 0.01], ["listdir", "."], ["listdir", "b"],
         ["times_cmp", "t0", ".", ["mtime", "ctime"]],
         ["times_cmp", "t1", "b", ["mtime", "ctime"]]],
        id="copy-up-parent-ctime-not-stale"),
    pytest.param(
        [{"b": D(), "d": D({"x": F})}], {"b": D({"b": {"t": "w"}}), "c": D()},
        [["chmod", "b", 0o444], ["rename", "c", "b"], ["listdir", "b"],
         ["unlink", "d/x"], ["chmod", "d", 0o555], ["rmdir", "d"]],
        id="rename-over-read-only-dir-with-whiteouts"),
    pytest.param(
        [{"a": D(), "c": {"t": "l", "target": "c/a"}}], {},
        [["rename", "c", "a/a", "NOREPLACE"], ["rename", "a/a", "a/b"], ["link", "a/b", "a/a"],
         ["rename", "a", "a"], ["chmod", "a", 0o444], ["opendir", "D1", "a"],
         ["readdir", "D1"]],
        id="link-history-survives-rename-onto-itself"),
]


@pytest.mark.parametrize(("lowers", "upper", "ops"), CASES)
def test_fuzz_regression(overlay_pair, lowers, upper, ops):
    pair = overlay_pair(*[fuzz.to_spec(js) for js in lowers], upper=fuzz.to_spec(upper))
    pair.run(ops).assert_same()

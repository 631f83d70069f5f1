"""`-o own_lowers` / `--own-lowers` (what `cowfs sandbox mount` uses): a read-only tree of another
user's (root's, here) is shown as the mounting user's own, with the owner's write bit, so the
user may write anywhere in it; every change lands in the upper, owner-writable as the view showed
it, and the lower is never written. Without the option the same tree refuses the user."""
from __future__ import annotations

import os
import stat

import pytest

import overlay
from overlay import Dir, File, Symlink
from test_sandbox import cowfs, ok, unmount_below, user_dir

LOWER = Dir({
    "cache": Dir({"entry": File("cached\n", mode=0o444, owner="root"),
                  "sub": Dir({}, mode=0o555, owner="root")}, mode=0o555, owner="root"),
    "link": Symlink("cache/entry", owner="root"),
}, mode=0o555, owner="root")


@pytest.fixture
def lower(harness, request):
    base = overlay.new_dir(f"own-{request.node.name}")
    low = os.path.join(base, "lower")
    overlay.build_tree(LOWER, low)
    overlay.register_lower(low)
    home = user_dir(os.path.join(base, "home"))
    yield low, home
    unmount_below(home)


def mount(low: str, home: str, name: str, *opts: str) -> str:
    upper, mnt = user_dir(os.path.join(home, f"upper-{name}")), user_dir(
        os.path.join(home, f"mnt-{name}"))
    ok(cowfs("mount", "--lower", low, "--upper", upper, *opts, mnt))
    return mnt


def test_a_read_only_tree_of_root_becomes_the_users_own(lower):
    low, home = lower
    e = overlay.env()
    mnt = mount(low, home, "own", "--own-lowers")
    out = overlay.run_ops(mnt, [
        ["stat", "cache"], ["stat", "cache/entry"], ["lstat", "link"],
        ["write_file", "cache/new", "added\n"], ["mkdir", "cache/sub/deeper"],
        ["open", "f", "cache/entry", ["O_WRONLY", "O_APPEND"]], ["write", "f", "more\n"],
        ["close", "f"], ["read_file", "cache/entry"],
        ["chmod", "cache/sub", 0o700], ["stat", "cache/sub"], ["stat", "cache/entry"],
    ])
    assert all("ok" in r for r in out), out
    (d, f, link), after = out[:3], out[-2:]
    assert (d["ok"]["uid"], d["ok"]["gid"], d["ok"]["mode"]) == (e.uid, e.gid, "0755"), d
    assert (f["ok"]["uid"], f["ok"]["mode"]) == (e.uid, "0644"), f
    assert link["ok"]["type"] == "l" and link["ok"]["uid"] == e.uid, link
    assert out[8] == {"ok": "cached\nmore\n"}, out
    assert after[0]["ok"]["mode"] == "0700" and after[1]["ok"]["mode"] == "0644", after
    upper = os.path.join(home, "upper-own")
    st = os.lstat(os.path.join(upper, "cache", "entry"))
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (e.uid, 0o644)
    assert stat.S_IMODE(os.lstat(os.path.join(upper, "cache")).st_mode) == 0o755
    ok(cowfs("umount", mnt))
    overlay.check_lowers([low])


def test_without_the_option_the_tree_stays_roots(lower):
    low, home = lower
    mnt = mount(low, home, "plain")
    out = overlay.run_ops(mnt, [["stat", "cache/entry"], ["write_file", "cache/new", "x\n"],
                                ["open", "f", "cache/entry", ["O_WRONLY", "O_APPEND"]]])
    assert (out[0]["ok"]["uid"], out[0]["ok"]["mode"]) == (0, "0444"), out
    assert out[1] == {"errno": "EACCES"} and out[2] == {"errno": "EACCES"}, out
    ok(cowfs("umount", mnt))


def test_the_mount_option_form(lower):
    low, home = lower
    mnt = mount(low, home, "opt", "-o", "own_lowers")
    out = overlay.run_ops(mnt, [["write_file", "cache/new", "x\n"]])
    assert out == [{"ok": 2}], out
    ok(cowfs("umount", mnt))

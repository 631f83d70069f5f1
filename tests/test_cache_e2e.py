"""The job cowfs exists for, end to end and offline: `cowfs snapshot build` fills a snapshot
from real packages (wheels and an sdist built here, through --find-links), the unprivileged user
mounts two sandboxes over it with `cowfs sandbox mount`, and pip installs into a venv with the
sandbox as its cache and wheelhouse: tinysrc's wheel comes from the snapshot's pip cache (built
there during the snapshot build), and the sandbox may add to the cache. Afterwards the snapshot
verifies, and the other sandbox saw nothing."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import overlay
from test_sandbox import Sandbox, as_user, ok, unmount_below, user_dir
from test_snapshot import build, current, wheels  # noqa: F401 - wheels is a fixture

COWFS = os.path.join(os.path.dirname(overlay.sys.executable), "cowfs")


def test_pip_installs_from_a_sandbox_over_a_snapshot(harness, wheels):  # noqa: F811
    base = overlay.new_dir("e2e")
    # the packages' source, where the user can read it too: pip keys its cache of built
    # wheels by the sdist's location, so the build and the sandbox use the same one
    finds = Path(user_dir(os.path.join(base, "find-links")))
    for w in wheels.iterdir():
        (finds / w.name).write_bytes(w.read_bytes())
        os.chmod(finds / w.name, 0o644)
    root = Path(base) / "root"
    res = build(root, finds, "tiny==1.0", "tinysrc")
    assert res.returncode == 0, res.stdout + res.stderr
    snap = current(root)
    home = user_dir(os.path.join(base, "home"))
    a = Sandbox(os.path.join(home, "state-a"), user_dir(os.path.join(home, "mnt-a")))
    b = Sandbox(os.path.join(home, "state-b"), user_dir(os.path.join(home, "mnt-b")))
    try:
        ok(a.mount(str(root)))
        ok(b.mount(str(root)))
        b_view = overlay.dump_tree(b.mnt)
        venv = os.path.join(home, "venv")
        r = as_user("/usr/bin/python3", "-m", "venv", venv, timeout=180)
        assert r.returncode == 0, r.stderr
        pip = ["env", f"PIP_CACHE_DIR={a.mnt}/pip", f"{venv}/bin/python", "-m", "pip",
               "install", "--no-index"]
        # tinysrc from its sdist: pip takes the wheel it built into the snapshot's cache
        r = as_user(*pip, "--find-links", str(finds), "tiny==1.0", "tinysrc==1.0", timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "Using cached tinysrc-1.0-py3-none-any.whl" in r.stdout, r.stdout
        assert "Building wheel" not in r.stdout and "disabled" not in r.stdout + r.stderr, (
            r.stdout + r.stderr)
        # and both from the snapshot's wheelhouse
        r = as_user(*pip, "--force-reinstall", "--find-links", f"{a.mnt}/wheels", "tiny==1.0",
                    "tinysrc==1.0", timeout=180)
        assert r.returncode == 0 and "mnt-a/wheels/tiny-1.0-py3-none-any.whl" in r.stdout, (
            r.stdout + r.stderr)
        r = as_user(f"{venv}/bin/python", "-c",
                    "import tiny, tinysrc; print(tiny.VERSION, tinysrc.VERSION)")
        assert r.stdout == "1.0 1.0\n", r.stdout + r.stderr
        # pip may add to the cache in its sandbox: a file of its own there
        r = as_user("sh", "-c", f"echo mine > {a.mnt}/pip/added-by-a && cat {a.mnt}/pip/added-by-a")
        assert r.stdout == "mine\n", r.stderr
        assert overlay.dump_tree(b.mnt) == b_view, "the other sandbox saw a change"
        a.umount()
        b.umount()
    finally:
        unmount_below(home)
    v = subprocess.run([COWFS, "verify", str(root)], capture_output=True, text=True, timeout=120)
    assert v.returncode == 0, v.stdout + v.stderr
    assert not (snap / "pip" / "added-by-a").exists()

"""Data integrity, fsx-style: random I/O through the mount checked against an in-memory model.

tests/fsx.py is the driver (stdlib only, run as the test user: the cowfs mount has no allow_other,
so only the mounting user can use it). It writes, appends, truncates (shrink and sparse extend),
writes far past EOF, reads, and reads/writes through MAP_SHARED mappings with and without msync,
over several descriptors per file (one read-only descriptor opened before the first write, i.e.
before the copy-up of a lower file, must see every later write), on files that start in a lower,
in the upper, or are created by the run. After every step the whole file is compared with the
model. See its docstring for the op list.

Each sequence runs on a kernel overlay mount too: the same seed must pass there, a check of the
driver itself. After the cowfs run the mount is taken down and the upper is checked as well: each
file's bytes on disk (upper copy, or the lower for a file never written) are the model's, and the
upper mounted by kernel overlayfs shows the same contents.

Also here: test_hard_link_names_stay_one_file (differential): a write through one name of an
upper hard link is read through the other name at once, both names one st_ino.

The seed is printed and is part of every failure message. Replay:
    COWFS_FSX_SEED=<seed> make test PYTEST_ARGS=tests/test_fsx.py
Knobs: COWFS_FSX_SEED, COWFS_FSX_OPS (steps of the long-lived-descriptor run; the
reopen-every-step run does a third), COWFS_FSX_SECONDS (cap per run; a run that hits it stops
early and passes with what it did; the default keeps this file near a minute on 2 cores).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import time

import pytest

import fsx
import overlay
from overlay import File, Hardlink

SEED = int(os.environ.get("COWFS_FSX_SEED") or random.SystemRandom().randrange(1 << 32))
OPS = int(os.environ.get("COWFS_FSX_OPS", "8000"))
SECONDS = float(os.environ.get("COWFS_FSX_SECONDS", "12"))
HERE = os.path.dirname(os.path.abspath(__file__))

MODES = {
    # name: (extra driver args, steps)
    "long-lived-fds": ([], OPS),
    "reopen-every-step": (["--reopen-every-step"], max(1, OPS // 3)),
}


def _specs() -> tuple[dict, dict]:
    lower = {n: File(d, size=s) for n, (d, s) in fsx.spec("lower").items()}
    upper = {n: File(d, size=s) for n, (d, s) in fsx.spec("upper").items()}
    return lower, upper


@pytest.fixture(scope="module")
def driver(harness: overlay.Env) -> str:
    """fsx.py where the test user can read it."""
    path = os.path.join(harness.base, "fsx.py")
    shutil.copyfile(os.path.join(HERE, "fsx.py"), path)
    os.chmod(path, 0o644)
    return path


def _run_fsx(harness: overlay.Env, driver: str, m: overlay.Mount, mode: str) -> dict:
    extra, steps = MODES[mode]
    log = os.path.join(m.layers.base, f"fsx-{m.impl}-{mode}.log")
    cmd = [harness.python, driver, m.mnt, "--seed", str(SEED), "--ops", str(steps),
           "--seconds", str(SECONDS), "--log", log, *extra]
    print(f"fsx on {m.impl} ({mode}): seed {SEED}, {steps} steps: {' '.join(cmd)}")
    replay = (f"replay: COWFS_FSX_SEED={SEED} COWFS_FSX_OPS={OPS} make test "
              f"PYTEST_ARGS='tests/test_fsx.py -k \"{m.impl} and {mode}\"'")
    p = subprocess.Popen(overlay.as_user(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=harness.base, env=overlay.user_env(harness))
    try:
        out, err = p.communicate(timeout=SECONDS + 30)
    except subprocess.TimeoutExpired:
        stacks = _hang_report(m)
        p.kill()
        p.communicate()
        raise AssertionError(f"fsx on {m.impl} hung (seed {SEED}); {replay}\n"
                             f"{_tail(log)}\n{stacks}") from None
    r = subprocess.CompletedProcess(cmd, p.returncode, out, err)
    daemon = ""
    if m.proc is not None:
        daemon = m.log_tail(40)
        assert m.alive(), f"{m.impl} daemon died during fsx (seed {SEED}); {replay}\n{daemon}"
    if r.returncode != 0:
        out = r.stdout if r.returncode == 1 else f"exit {r.returncode}\n{r.stdout}\n{_tail(log)}"
        raise AssertionError(f"fsx on {m.impl} ({mode}), seed {SEED}: {replay}\n{out}\n"
                             f"{r.stderr}\n{daemon}")
    summary = json.loads(r.stdout)
    print(f"fsx on {m.impl} ({mode}): {summary['ops']} steps in {summary['seconds']} s: "
          f"{summary['counts']}")
    return summary


def _hang_report(m: overlay.Mount) -> str:
    """A hung daemon's Python stacks (faulthandler on SIGUSR1, into its log); then kill it so
    the requests stuck on it fail."""
    if m.proc is None or m.proc.poll() is not None:
        return ""
    os.kill(m.proc.pid, signal.SIGUSR1)
    time.sleep(1.0)
    text = f"{m.impl} daemon stacks at the hang:\n{m.log_tail(40)}"
    m.proc.kill()
    return text


def _tail(log: str, n: int = 40) -> str:
    try:
        with open(log, errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return "(no op log)"
    return f"--- op log {log} (last {n}) ---\n" + "".join(lines[-n:])


def _daemon_log_clean(m: overlay.Mount) -> None:
    with open(m.log, errors="replace") as f:
        text = f.read()
    for bad in ("Traceback", "internal error", "Internal error"):
        assert bad not in text, f"{m.impl} daemon log has {bad!r} (seed {SEED}):\n{m.log_tail()}"


def _on_disk(layers: overlay.Layers, name: str) -> bytes:
    """The bytes of NAME as an overlay would show them: upper copy, else the top lower's."""
    for d in [layers.upper, *layers.lowers]:
        p = os.path.join(d, name)
        if os.path.lexists(p):
            with open(p, "rb") as f:
                return f.read()
    raise AssertionError(f"{name}: in no layer")


def _check_layers(layers: overlay.Layers, summary: dict, impl: str) -> None:
    bad = []
    for name, want in summary["files"].items():
        data = _on_disk(layers, name)
        if len(data) != want["size"] or hashlib.sha256(data).hexdigest() != want["sha256"]:
            bad.append(f"{name}: {len(data)} bytes on disk, model {want['size']} "
                       f"(content {'differs' if len(data) == want['size'] else 'size differs'})")
    assert not bad, (f"after unmounting {impl} (seed {SEED}), the layers do not hold the "
                     "model's data:\n  " + "\n  ".join(bad))


@pytest.mark.parametrize("mode", list(MODES))
def test_fsx_kernel_overlay(harness, driver, mode):
    """The driver itself: the same sequence passes on kernel overlayfs (the reference)."""
    lower, upper = _specs()
    lay = overlay.make_layers(f"fsx-kernel-{mode}", [lower], upper)
    with overlay.mount("kernel", lay) as m:
        summary = _run_fsx(harness, driver, m, mode)
    _check_layers(lay, summary, "kernel")


@pytest.mark.parametrize("mode", list(MODES))
def test_fsx_cowfs(harness, driver, mode):
    lower, upper = _specs()
    lay = overlay.make_layers(f"fsx-{harness.impl}-{mode}", [lower], upper)
    with overlay.mount(harness.impl, lay) as m:
        summary = _run_fsx(harness, driver, m, mode)
        # the daemon answers after the run
        assert overlay.run_ops(m.mnt, [["stat", "."]])[0].get("ok"), "mount does not answer"
        m.check_alive()
    if m.proc is not None:
        _daemon_log_clean(m)
    _check_layers(lay, summary, harness.impl)
    # the upper, mounted by kernel overlayfs, shows the model's contents
    lay.new_work()
    with overlay.mount("kernel", lay) as k:
        tree = overlay.dump_tree(k.mnt)
    bad = [f"{name}: kernel shows {tree.get(name)}, model size {want['size']} blake2b "
           f"{want['blake2b']}"
           for name, want in summary["files"].items()
           if tree.get(name, {}).get("content") != want["blake2b"]
           or tree[name].get("size") != want["size"]]
    assert not bad, (f"upper written by {harness.impl} (seed {SEED}), mounted by kernel "
                     "overlayfs:\n  " + "\n  ".join(bad))


def test_hard_link_names_stay_one_file(overlay_pair):
    """Two names of one upper file: after the name in use is unlinked (still open), the other
    name is the same file: same st_ino, and a write through the open descriptor is read through
    the other name at once (one inode, one page cache), as on the kernel overlay."""
    pair = overlay_pair({"lowerfile": "x"}, upper={"d": {"x": "data", "y": Hardlink("d/x")}})
    pair.run([
        ["open", "x", "d/x", ["O_RDWR"]], ["fstat", "x"],
        ["unlink", "d/x"],
        ["stat", "d/y"],  # first lookup of the other name
        ["open", "y", "d/y"], ["pread", "y", 100, 0],
        ["pwrite", "x", "NEW!", 0],
        ["pread", "y", 100, 0],
        ["fstat", "x"], ["fstat", "y"],
        ["close", "x"], ["close", "y"], ["read_file", "d/y"],
    ]).assert_same()

"""Bounded differential fuzzing in CI: tests/fuzz.py, RUNS runs x OPS random ops each.

Every run builds random layers, runs the same random op list on kernel overlayfs (userxattr, the
reference) and on cowfs, compares every result and the merged trees, then mounts the upper cowfs
wrote with kernel overlayfs and compares that tree too (see tests/fuzz.py). Differences declared in
EXPECTED_DIFFERENCES are tolerated and counted; any other fails its run with the shrunk, replayable
case (JSON + the command that replays it).

The seed is fixed so that CI is deterministic: COWFS_FUZZ_SEED=... picks another one, "random" a
fresh one per session. It is printed with every run and in the summary line at the end of the
module. COWFS_FUZZ_RUNS / COWFS_FUZZ_OPS change the size, COWFS_FUZZ_FS=disk puts the layers on
the disk instead of a tmpfs (fuzz.tmpfs_at says why tmpfs). For long sessions: `make fuzz`.
"""
from __future__ import annotations

import os
import random

import pytest

import fuzz

SEED = os.environ.get("COWFS_FUZZ_SEED", "20251125")
if SEED == "random":
    SEED = str(random.SystemRandom().randrange(1 << 32))
RUNS = int(os.environ.get("COWFS_FUZZ_RUNS", "15"))
OPS = int(os.environ.get("COWFS_FUZZ_OPS", "300"))
FS = os.environ.get("COWFS_FUZZ_FS", "tmpfs")  # or "disk" (see fuzz.tmpfs_at)
SHRINK_SECONDS = 30.0  # per divergence
SHRINK_BUDGET = 60.0  # for the whole module: a failing CI run stays under 2 minutes too


@pytest.fixture(scope="module")
def session(harness, request: pytest.FixtureRequest):
    sess = fuzz.Session(SEED, ops_per_run=OPS, shrink_seconds=SHRINK_SECONDS,
                        shrink_budget=SHRINK_BUDGET, log=lambda msg: None)
    if FS == "tmpfs":  # the layers go to the module's scratch dir (conftest): a tmpfs here
        name = request.module.__name__.rsplit(".", 1)[-1]
        with fuzz.tmpfs_at(os.path.join(harness.base, name)):
            yield sess
    else:
        yield sess
    lines = (sess.tolerated_line(), sess.summary())
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if tr is None or capman is None:
        print("\n".join(lines))
        return
    with capman.global_and_fixture_disabled():  # shown even when every run passed
        tr.write_line("")
        for line in lines:
            tr.write_line(line)


@pytest.mark.parametrize("run", range(RUNS))
def test_fuzz_run(session: fuzz.Session, run: int):
    print(f"fuzz: seed {SEED}, run {run}, {OPS} ops "
          f"(replay the whole run: python tests/fuzz.py --seed {SEED} --first-run {run} --runs 1)")
    before = len(session.reports)
    res = session.run_one(run)
    print(f"fuzz: {len(res.tolerated)} tolerated difference(s), {res.seconds:.1f} s")
    if res.diverged:
        pytest.fail("\n".join(session.reports[before:]), pytrace=False)


# Shrunk cases whose divergence shows on tmpfs layers only (test_fuzz_regressions.py runs on
# the disk): replayed on this module's tmpfs with every result, both trees and the cross-check.
TMPFS_CASES = [
    pytest.param(
        [{}], {"c": {"t": "f", "data": ""}},
        [["rename", "c", "a"], ["mkdir", "c", 0o755], ["rename", "a", "c/c"],
         ["truncate", "c/c", 0], ["stat_times", "c/c"], ["truncate", "c/c", 1],
         ["stat_times", "c/c"]],
        id="truncate-to-same-size-keeps-mtime"),
    pytest.param(
        [{"b": {"t": "d", "children": {"a": {"t": "f", "data": "zz23f"},
                                       "e": {"t": "f", "data": ""},
                                       "r": {"t": "f", "data": "xy"}}}}], {},
        [["truncate", "b/a", 0], ["stat_times", "b/a"], ["truncate", "b/e", 0],
         ["stat_times", "b/e"], ["open", "f0", "b/r", ["O_RDONLY", "O_NONBLOCK"]],
         ["truncate", "b/r", 0], ["stat_times", "b/r"], ["fstat", "f0"]],
        id="truncate-lower-file-to-zero"),
    pytest.param(
        [{"c": {"t": "d", "children": {}}}, {"c": {"t": "d", "children": {}}}], {},
        [["opendir", "D1", "c"], ["readdir", "D1"], ["mkdir", "b", 0o755],
         ["opendir", "D0", "b"], ["readdir", "D0"]],
        id="dotdot-of-dir-merged-from-two-lowers"),
]


@pytest.mark.parametrize(("lowers", "upper", "ops"), TMPFS_CASES)
def test_tmpfs_regression(session: fuzz.Session, lowers, upper, ops):
    res = fuzz.run_case(fuzz.Case("regression", 0, lowers, upper, ops))
    if res.diverged:
        pytest.fail(res.report(), pytrace=False)

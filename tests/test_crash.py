"""Kill at any point (issue 14 item 2), bounded for CI: tests/crash.py.

For every scenario (copy-up of data, metadata and parents, whiteout over an upper entry, opaque
dir creation, rename with whiteout, rename over a merged dir, RENAME_EXCHANGE, rmdir of merged
dirs, link of lower files, xattr changes, fsync), the daemon is SIGKILLed just before one of the
changes it makes to the disk (tests/crashkill.c counts them), then remounted: the merged tree must
be the state before or after the interrupted op, `cowfs fsck` clean, the work dir emptied.

CI kills at COWFS_CRASH_SAMPLE (default 2) points per scenario drawn with COWFS_CRASH_SEED, plus
the regression points below (each: the matching change and the one after it). `make crash` kills
at every point of every scenario.
"""
from __future__ import annotations

import os

import pytest

import crash

SAMPLE = int(os.environ.get("COWFS_CRASH_SAMPLE", "2"))
SEED = int(os.environ.get("COWFS_CRASH_SEED", "20261206"))

# Kill points that once broke crash safety, as regexes over the change ("renameat2 /upper/a"):
# each is killed at in CI, with the change after it.
REGRESSIONS = {
    # rename of a lower file: renamed, then a whiteout made at the old name; a kill between showed
    # the lower file again beside the renamed copy (now one renameat2 with RENAME_WHITEOUT)
    "rename-whiteout": [r"^renameat2 /upper/a$", r"^renameat2 /upper/sl$"],
    # a copied-up parent dir was renamed into place before its chmod: a kill left it 0700
    # (now mode and times are set in the work dir; a 0555 one gets a mode note)
    "copyup-parents": [r"^renameat2 /work/#tmp", r"^fchmodat /upper/p/q$"],
    # mkdir 0555 over a whiteout: exchanged into place with u+rwx, then chmod (a mode note now)
    "opaque-dir": [r"^unlinkat /work/#tmp", r"^fchmodat /upper/o$"],
    # rmdir of a 0555 merged dir: lent u+rwx for the exchange with a whiteout (a mode note now)
    "rmdir-merged": [r"^fchmodat /upper/ro$"],
    # rename over an empty merged dir: its whiteouts were removed before the rename, a kill
    # showed its lower entries again (now made opaque first)
    "rename-over-dir": [r"^unlinkat /upper/md/[ab]$"],
    # truncate(0) of a lower file: copied up without the data but with the lower's mtime, so a
    # kill before the truncate showed the new (empty) content with the old mtime (now the copy
    # gets the truncate's mtime)
    # mkdir over a whiteout in a setgid dir: the group and S_ISGID were given after it was in
    # place, a kill between showed a dir without them (now given in the work dir)
    "setgid-dir": [r"^renameat2 /work/#tmp"],
    "fsync": [r"^ftruncate64 /upper/keep$"],
}


@pytest.mark.parametrize("name", [sc.name for sc in crash.SCENARIOS])
def test_kill_at_sampled_points(harness, name: str):
    sc = crash.BY_NAME[name]
    kills, fails = crash.run_scenario(sc, sample=SAMPLE, seed=SEED,
                                      select=REGRESSIONS.get(name, ()), log=print)
    print(f"{name}: {kills} kills, {len(fails)} failed")
    assert not fails, "\n\n".join(fails)


def test_scenarios_cover_the_issue():
    """Every multi-step change the issue names has a scenario."""
    names = {sc.name for sc in crash.SCENARIOS}
    assert {"copyup-data", "copyup-meta", "copyup-parents", "whiteout-over-upper", "opaque-dir",
            "rename-whiteout", "rename-exchange", "rmdir-merged", "link-lower", "xattr",
            "fsync"} <= names

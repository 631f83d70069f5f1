"""Soak (issue 14 item 8), bounded for CI: tests/soak.py for COWFS_SOAK_SECONDS (default 120).

Three workers, each in its own subtree of a ~500-entry lower, mix every operation (writes,
appends, truncates, creates, save-by-rename, unlink, mkdir, rmdir, renames over existing names,
link, symlink, mkfifo, chmod, utime, xattrs, and reads that compare) on the mount and on a model
directory; every 10-20 s the daemon is SIGKILLed (or, one time in three, unmounted cleanly)
between two operations and the same upper remounted. At the end the merged tree equals the
model, the lower's hash is unchanged, the work dir is empty and `cowfs fsck` is clean.

The seed is fixed so that CI is deterministic in what it does (how many ops fit in the time
still varies with the machine): COWFS_SOAK_SEED=... picks another one. Longer runs:
`make soak SECONDS=N [SEED=S]`.
"""
from __future__ import annotations

import os

import soak

SECONDS = float(os.environ.get("COWFS_SOAK_SECONDS", "120"))
SEED = os.environ.get("COWFS_SOAK_SEED", "20261206")


def test_soak(harness):
    res = soak.Soak(SECONDS, SEED, procs=3, log=print).run()
    print(res.summary())
    print("ops by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(res.counts.items())))
    assert not res.failures, (f"{res.summary()}\nreplay: make soak SECONDS={SECONDS:.0f} "
                              f"SEED={SEED}\n\n" + "\n\n".join(res.failures))
    assert res.kills + res.remounts >= 2, res.summary()
    assert res.ops > 1000, res.summary()
    # every kind of operation ran, and succeeded at least sometimes
    assert set(res.counts) == set(soak.KINDS), sorted(set(soak.KINDS) - set(res.counts))

"""Soak (issue 14 item 8), bounded for CI: tests/soak.py for COWFS_SOAK_SECONDS (default 120).

Three workers, each in its own subtree of a ~500-entry lower, mix every operation (writes,
appends, truncates, creates, save-by-rename, unlink, mkdir, rmdir, renames over existing names,
link, symlink, mkfifo, chmod, utime, xattrs, and reads that compare) on the mount and on a model
directory; every 10-20 s the daemon is SIGKILLed (or, one time in three, unmounted cleanly)
between two operations, the same upper remounted and every subtree compared with the model. At
the end the merged tree equals the model (through cowfs, and through a kernel overlay mount of the
upper), the lower's hash is unchanged, the work dir is empty and `cowfs fsck` is clean.
test_soak_notices_a_lost_write is the harness's own check: it must see a byte the upper lost.

The seed is fixed so that CI is deterministic in what it does (how many ops fit in the time
still varies with the machine): COWFS_SOAK_SEED=... picks another one. Longer runs:
`make soak SECONDS=N [SEED=S]`.
"""
from __future__ import annotations

import os
import stat

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


def test_soak_notices_a_lost_write(harness):
    """The harness's own check: a file of the upper shortened by one byte between two mounts (as
    a lost write would leave it) fails the soak, in the compares after the remount."""
    hit: list[str] = []

    def tamper(lay):
        if hit:
            return
        for d, _, files in sorted(os.walk(os.path.join(lay.upper, "w0"))):
            for f in sorted(files):
                p = os.path.join(d, f)
                st = os.lstat(p)
                # one name only: a hard link's damage may be reported under another name
                if stat.S_ISREG(st.st_mode) and st.st_size > 0 and st.st_nlink == 1:
                    os.truncate(p, st.st_size - 1)
                    hit.append(os.path.relpath(p, lay.upper))
                    return

    res = soak.Soak(15, SEED, procs=1, interval=(4.0, 5.0), log=print, tamper=tamper).run()
    print(res.summary())
    assert hit, "no file in the upper to change"
    assert any(f'"{hit[0]}"' in f for f in res.failures), \
        f"the change to {hit[0]} went unnoticed: " + res.summary() + "\n".join(res.failures)

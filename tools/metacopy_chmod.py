#!/usr/bin/env python3
"""chmod of a big lower file: metadata-only copy-up against a full one (README "Differences").

    python3 tools/metacopy_chmod.py [--gib 1] [--rounds 5] [--dir /var/tmp] [--user cowfs-test]

As root. One lower holding one file of GIB GiB (written, not sparse), owned by the test user.
Each round mounts every target on a fresh upper, in a rotated order (machine drift hits all
alike), and times one chmod(2) of the file by the test user, after a stat of it (the lookup is
not timed):

  cowfs-metacopy   cowfs --metacopy, rootless: the upper gets a hole and the marker
  cowfs            cowfs without it, rootless: the data is copied up (and fsync'ed)
  kernel           kernel overlayfs, userxattr (the rootless format; no metacopy there)
  kernel-metacopy  kernel overlayfs as root, metacopy=on (trusted.overlay.* format)

Prints the median and the spread of each. The lower file stays in the page cache (read once
first): what is timed is the copy-up, not the disk's read speed.
"""
from __future__ import annotations

import argparse
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile

TARGETS = ("cowfs-metacopy", "cowfs", "kernel", "kernel-metacopy")
TIMED = ("import os, sys, time; p = sys.argv[1]; os.stat(p); t = time.perf_counter(); "
         "os.chmod(p, 0o600); print(time.perf_counter() - t)")


def as_user(user: str, cmd: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *cmd]


def run(cmd: list[str], **kw) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def one(target: str, base: str, lower: str, user: str, cowfs: str) -> float:
    """A fresh upper under BASE, TARGET mounted on it, the chmod timed, unmounted, removed."""
    pw = pwd.getpwnam(user)
    up, work, mnt = (os.path.join(base, n) for n in ("upper", "work", "mnt"))
    for d in (up, work, mnt):
        os.mkdir(d)
        os.chown(d, pw.pw_uid, pw.pw_gid)
    run(["sync"])
    if target.startswith("kernel"):
        opts = f"lowerdir={lower},upperdir={up},workdir={work}"
        opts += ",metacopy=on" if target == "kernel-metacopy" else ",userxattr"
        run(["mount", "-t", "overlay", "overlay", "-o", opts, mnt])
        umount = ["umount", mnt]
    else:
        extra = ["--metacopy"] if target == "cowfs-metacopy" else []
        run(as_user(user, [cowfs, "mount", "--lower", lower, "--upper", up, "--work", work,
                           *extra, mnt]), cwd="/")
        umount = as_user(user, [cowfs, "umount", mnt])
    try:
        took = float(run(as_user(user, [sys.executable, "-c", TIMED,
                                        os.path.join(mnt, "big")]), cwd="/"))
    finally:
        run(umount, cwd="/")
    shutil.rmtree(base)
    os.mkdir(base)
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", default="/var/tmp", help="where the layers go (a disk, not tmpfs)")
    ap.add_argument("--user", default="cowfs-test")
    ap.add_argument("--cowfs", default=os.path.join(os.path.dirname(sys.executable), "cowfs"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (the kernel overlay is mounted by root)")
    pw = pwd.getpwnam(args.user)
    top = tempfile.mkdtemp(prefix="metacopy-chmod-", dir=args.dir)
    os.chmod(top, 0o755)
    try:
        lower = os.path.join(top, "lower")
        os.mkdir(lower)
        big = os.path.join(lower, "big")
        size, chunk = int(args.gib * (1 << 30)), os.urandom(1 << 20)
        with open(big, "wb") as f:
            for _ in range(size // len(chunk)):
                f.write(chunk)
        os.chown(big, pw.pw_uid, pw.pw_gid)
        with open(big, "rb") as f:  # into the page cache
            while f.read(1 << 24):
                pass
        times: dict[str, list[float]] = {t: [] for t in TARGETS}
        for r in range(args.rounds):
            order = TARGETS[r % len(TARGETS):] + TARGETS[:r % len(TARGETS)]
            for target in order:
                base = os.path.join(top, target)
                os.makedirs(base, exist_ok=True)
                times[target].append(one(target, base, lower, args.user, args.cowfs))
            print(f"round {r + 1}: " + ", ".join(f"{t} {times[t][-1] * 1e3:.1f} ms"
                                                  for t in TARGETS), flush=True)
        print(f"\nchmod of a {args.gib:g} GiB lower file, {args.rounds} rounds "
              "(median, min-max):")
        for t in TARGETS:
            v = times[t]
            print(f"  {t:16} {statistics.median(v) * 1e3:10.2f} ms   "
                  f"({min(v) * 1e3:.2f}-{max(v) * 1e3:.2f})")
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()

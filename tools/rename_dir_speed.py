#!/usr/bin/env python3
"""How long `mv` of a directory of many files takes through cowfs (README "Differences":
directory rename), interleaved round by round so that machine drift hits all alike.

    unshare -m --propagation private .venv/bin/python tools/rename_dir_speed.py \
        [--files 10000] [--rounds 5] [--base /var/tmp/rdspeed]

Run as root (the kernel reference needs it; cowfs runs as root too here). Every round, each case
gets a fresh upper and work dir and a fresh mount, then one timed `mv DIR DIR2` (the whole
command: what a user waits for):

  redirect   cowfs -o redirect_dir=on, DIR in the lower: the dir alone is copied up and moved
  upper      cowfs, DIR only in the upper: a plain rename(2) in the upper
  exdev      cowfs without the option, DIR in the lower: EXDEV, then mv copies every file
             and removes the originals (whiteouts)
  kernel     kernel overlayfs mounted by root with redirect_dir=on (trusted format), DIR in
             the lower: the reference

It prints the median and best of each and the median's ratio to `upper`.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

COWFS = os.path.join(os.path.dirname(sys.executable), "cowfs")
CASES = ("redirect", "upper", "exdev", "kernel")


def make_dir(top: str, files: int) -> None:
    os.makedirs(top)
    for i in range(files):
        sub = os.path.join(top, f"d{i // 1000:02d}")
        if i % 1000 == 0:
            os.mkdir(sub)
        with open(os.path.join(sub, f"f{i:05d}"), "wb") as f:
            f.write(b"x" * 100)


def fresh(path: str) -> str:
    if os.path.lexists(path):
        shutil.rmtree(path)
    os.makedirs(path)
    return path


def run_case(case: str, base: str, lower: str, files: int) -> float:
    upper, work, mnt = (fresh(os.path.join(base, n)) for n in ("upper", "work", "mnt"))
    if case == "upper":
        make_dir(os.path.join(upper, "up"), files)
    src = "up" if case == "upper" else "tree"
    if case == "kernel":
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"redirect_dir=on,lowerdir={lower},upperdir={upper},workdir={work}", mnt],
                       check=True, timeout=60)
    else:
        opts = ["-o", "redirect_dir=on"] if case == "redirect" else []
        subprocess.run([COWFS, "mount", "--lower", lower, "--upper", upper, "--work", work,
                        *opts, mnt], check=True, timeout=60)
    try:
        t0 = time.perf_counter()
        subprocess.run(["mv", os.path.join(mnt, src), os.path.join(mnt, "moved")], check=True,
                       timeout=600)
        took = time.perf_counter() - t0
        n = sum(len(f) for _, _, f in os.walk(os.path.join(mnt, "moved")))
        if n != files:
            raise SystemExit(f"{case}: {n} files after the move, not {files}")
    finally:
        if case == "kernel":
            subprocess.run(["umount", mnt], check=True, timeout=60)
        else:
            subprocess.run([COWFS, "umount", mnt], check=True, timeout=60)
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--base", default="/var/tmp/rdspeed")
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (the kernel reference mounts an overlay)")
    cases = args.cases.split(",")
    base = fresh(args.base)
    lower = os.path.join(base, "lower")
    os.makedirs(lower)
    make_dir(os.path.join(lower, "tree"), args.files)
    times: dict[str, list[float]] = {c: [] for c in cases}
    try:
        for r in range(args.rounds):
            for case in cases:
                times[case].append(run_case(case, base, lower, args.files))
            print(f"round {r + 1}: " + "  ".join(f"{c} {times[c][-1]:.3f}s" for c in cases),
                  flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    ref = statistics.median(times["upper"]) if "upper" in times else None
    print(f"mv of a dir of {args.files} files, {args.rounds} rounds:")
    for case in cases:
        med = statistics.median(times[case])
        ratio = f"  {med / ref:.2f}x upper" if ref else ""
        print(f"  {case:9s} median {med:8.3f}s  best {min(times[case]):8.3f}s{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

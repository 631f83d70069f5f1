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

With --walk, what the option costs elsewhere: a cold walk (`find DIR -printf '%s\n'`: a lookup
and attributes per entry, on a fresh mount) of the lower dir:

  walk-off   cowfs without the option
  walk-on    cowfs -o redirect_dir=on
  walk-moved cowfs -o redirect_dir=on, of the dir once moved (each lookup below it follows
             the redirect)

It prints the median and best of each and the median's ratio to `upper` (`walk-off`).
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
WALKS = ("walk-off", "walk-on", "walk-moved")


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
    if case in WALKS:
        return walk_case(case, lower, upper, work, mnt)
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


def walk_case(case: str, lower: str, upper: str, work: str, mnt: str) -> float:
    opts = [] if case == "walk-off" else ["-o", "redirect_dir=on"]
    top = os.path.join(mnt, "tree")
    if case == "walk-moved":  # moved in a mount of its own: the walk's mount starts cold
        subprocess.run([COWFS, "mount", "--lower", lower, "--upper", upper, "--work", work,
                        *opts, mnt], check=True, timeout=60)
        subprocess.run(["mv", top, os.path.join(mnt, "moved")], check=True, timeout=60)
        subprocess.run([COWFS, "umount", mnt], check=True, timeout=60)
        top = os.path.join(mnt, "moved")
    subprocess.run([COWFS, "mount", "--lower", lower, "--upper", upper, "--work", work, *opts,
                    mnt], check=True, timeout=60)
    try:
        t0 = time.perf_counter()
        subprocess.run(["find", top, "-printf", "%s\n"], check=True, timeout=600,
                       stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0
    finally:
        subprocess.run([COWFS, "umount", mnt], check=True, timeout=60)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--base", default="/var/tmp/rdspeed")
    ap.add_argument("--cases", default=None,
                    help="comma separated, of: " + ", ".join(CASES + WALKS))
    ap.add_argument("--walk", action="store_true", help="the walk cases (default: the mv ones)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (the kernel reference mounts an overlay)")
    cases = args.cases.split(",") if args.cases else list(WALKS if args.walk else CASES)
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
    ref_case = next((c for c in ("upper", "walk-off") if c in times), None)
    ref = statistics.median(times[ref_case]) if ref_case else None
    what = "cold walk" if cases[0] in WALKS else "mv"
    print(f"{what} of a dir of {args.files} files, {args.rounds} rounds:")
    for case in cases:
        med = statistics.median(times[case])
        ratio = f"  {med / ref:.2f}x {ref_case}" if ref else ""
        print(f"  {case:9s} median {med:8.3f}s  best {min(times[case]):8.3f}s{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

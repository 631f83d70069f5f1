"""What finding the names of lower hard links costs (cowfs/hardlinks.py: one walk of a lower layer,
at the first copy-up of a lower file with st_nlink > 1).

    .venv/bin/python tools/hardlink_scan.py [--files 20000] [--runs 7] [--dir /var/tmp/scan]

Builds two lowers of FILES files in 200 directories: "snapshot", every file with a second name
outside the layer (as cowfs/store.py makes them: the walk keeps nothing), and "linked", every
tenth file with a second name inside the layer. Runs the walk on each, interleaved (warm cache),
and prints the median time, the peak of memory the walk allocates (tracemalloc) and how many
inodes it keeps.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cowfs.hardlinks import scan  # noqa: E402
from cowfs.layers import Layer  # noqa: E402


def build(root: str, files: int, kind: str) -> str:
    lower, outside = os.path.join(root, kind), os.path.join(root, kind + "-store")
    for d in (lower, outside):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    for i in range(files):
        d = os.path.join(lower, f"d{i % 200}", "sub" if i % 3 else "")
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, f"f{i}.py")
        with open(p, "w") as f:
            f.write("x")
        if kind == "snapshot":
            os.link(p, os.path.join(outside, str(i)))
        elif i % 10 == 0:
            os.link(p, p + ".2")
    return lower


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--dir", default="/var/tmp/hardlink-scan")
    args = ap.parse_args()
    layers = {k: Layer(build(args.dir, args.files, k), 0) for k in ("snapshot", "linked")}
    times: dict[str, list[float]] = {k: [] for k in layers}
    peak, kept = {}, {}
    for _ in range(args.runs):
        for k, layer in layers.items():  # interleaved: drift hits both alike
            t = time.perf_counter()
            found = scan(layer)
            times[k].append(time.perf_counter() - t)
            kept[k] = len(found)
    for k, layer in layers.items():
        tracemalloc.start()
        scan(layer)
        peak[k] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    for k in layers:
        print(f"{k}: {args.files} files, walk median {statistics.median(times[k]):.3f} s "
              f"(min {min(times[k]):.3f}, max {max(times[k]):.3f}, {args.runs} runs), "
              f"peak {peak[k] / 2**20:.1f} MiB, inodes kept {kept[k]}")
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Snapshots through an OCI registry, measured (README "Snapshots"): a real docker-registry on
loopback (tests/registry_server.py), the `cowfs` commands as a user runs them.

1. Bytes: a snapshot of FILES random files (1 KiB to 1 MiB, log-uniform) pushed and pulled,
   then 10% of its files changed: bytes that push sends and pull fetches for the new snapshot
   (every blob, the index, MANIFEST, its seal and the OCI manifest counted), as a ratio of the
   changed files' bytes.
2. Time: `cowfs snapshot pull` of a --mib snapshot (5 MiB random files) into an empty ROOT
   (fetch, link, verify, switch) against `cp -a` of the same snapshot dir, `cp -a` + sync
   (pull makes its objects durable before it names them), and curl fetching the same blobs
   into /dev/null (what the registry alone takes). Runs interleaved, medians; warm page cache.

    .venv/bin/python -m bench.registry [--runs 5] [--mib 1024] [--files 1000]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from registry_server import RegistryServer, make_snapshot  # noqa: E402

from cowfs import registry  # noqa: E402

COWFS = os.path.join(os.path.dirname(sys.executable), "cowfs")
RESULTS = Path(__file__).resolve().parent / "results" / "registry.json"


def cowfs(*args: str) -> str:
    res = subprocess.run([COWFS, *args], capture_output=True, text=True, timeout=1800,
                         stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise SystemExit(f"cowfs {' '.join(args)} failed: {res.stdout}{res.stderr}")
    return res.stdout


def numbers(out: str, verb: str) -> tuple[int, int]:
    """(blobs, bytes) of the 'push: ... uploaded N blobs, B bytes' line (pull: fetched)."""
    m = re.search(rf"^{verb}: .* = snapshot .*: \w+ ([0-9]+) blobs, ([0-9]+) bytes", out, re.M)
    assert m, out
    return int(m[1]), int(m[2])


def oci_manifest(server: RegistryServer, repo: str, tag: str) -> bytes:
    req = urllib.request.Request(f"http://{server.host}/v2/{repo}/manifests/{tag}",
                                 headers={"Accept": registry.OCI_MANIFEST})
    with urllib.request.urlopen(req) as resp:
        return resp.read()


def bytes_figures(server: RegistryServer, base: Path, nfiles: int) -> dict:
    rng = random.Random(15)
    week1 = {f"{'pip' if i % 3 else 'wheels'}/d{i % 40}/f{i}":
             os.urandom(int(2 ** rng.uniform(10, 20))) for i in range(nfiles)}
    a, b = base / "a", base / "b"
    make_snapshot(a, week1)
    ref = f"{server.host}/bench/bytes"
    cowfs("snapshot", "push", str(a), f"{ref}:1")
    cowfs("snapshot", "pull", f"{ref}:1", str(b))
    week2 = dict(week1)
    changed = rng.sample(sorted(week1), nfiles // 10)
    for p in changed:
        week2[p] = os.urandom(len(week1[p]))
    changed_bytes = sum(len(week2[p]) for p in changed)
    make_snapshot(a, week2)
    _, pushed = numbers(cowfs("snapshot", "push", str(a), f"{ref}:2"), "push")
    raw = oci_manifest(server, "bench/bytes", "2")
    doc = json.loads(raw)
    meta = doc["config"]["size"] + sum(d["size"] for d in doc["layers"][:2])
    _, fetched = numbers(cowfs("snapshot", "pull", f"{ref}:2", str(b)), "pull")
    sent, got = pushed + len(raw), fetched + meta + len(raw)
    return {"files": nfiles, "total_bytes": sum(map(len, week2.values())),
            "changed_files": len(changed), "changed_bytes": changed_bytes,
            "push_bytes": sent, "push_ratio": sent / changed_bytes,
            "pull_bytes": got, "pull_ratio": got / changed_bytes,
            "metadata_bytes": meta + len(raw)}


def timed(cmd: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    return time.monotonic() - started


def time_figures(server: RegistryServer, base: Path, mib: int, runs: int) -> dict:
    src = base / "big"
    snap = make_snapshot(src, {f"wheels/f{i:03d}.whl": os.urandom(5 << 20)
                               for i in range(mib // 5)})
    ref = f"{server.host}/bench/time:1"
    cowfs("snapshot", "push", str(src), ref)
    # the floor the registry sets: curl fetching every blob once, into /dev/null
    urls = base / "curl-urls"
    urls.write_text("".join(f"url = http://{server.host}/v2/bench/time/blobs/sha256:{d}\n"
                            "output = /dev/null\n"
                            for d in os.listdir(src / "store" / "sha256")))
    kinds = {
        "pull": lambda d: [COWFS, "snapshot", "pull", ref, str(d)],
        "cp -a": lambda d: ["cp", "-a", str(snap), str(d)],
        "cp -a; sync": lambda d: ["sh", "-c", f"cp -a '{snap}' '{d}' && sync"],
        "curl > /dev/null": lambda d: ["sh", "-c", f"mkdir '{d}' && curl -sf -K '{urls}'"],
    }
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for run in range(runs):
        order = list(kinds) if run % 2 == 0 else list(reversed(kinds))  # interleaved
        for kind in order:
            dest = base / f"run-{run}-{list(kinds).index(kind)}"
            subprocess.run(["sync"], check=True)  # nobody else's dirty pages in our time
            times[kind].append(timed(kinds[kind](dest)))
            shutil.rmtree(dest)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"mib": mib, "runs": runs, "seconds": times, "median": med,
            "pull_over_cp": med["pull"] / med["cp -a"],
            "pull_over_cp_sync": med["pull"] / med["cp -a; sync"],
            "curl_over_cp": med["curl > /dev/null"] / med["cp -a"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--mib", type=int, default=1024, help="size of the timed snapshot")
    ap.add_argument("--files", type=int, default=1000, help="files of the bytes snapshot")
    ap.add_argument("--dir", default="/var/tmp", help="where ROOTs and the registry live")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="cowfs-bench-registry-", dir=args.dir))
    server = RegistryServer(base / "registry").start()
    try:
        load_before = os.getloadavg()
        result = {"bytes": bytes_figures(server, base / "bytes", args.files),
                  "time": time_figures(server, base / "time", args.mib, args.runs)}
        result["load"] = [load_before, os.getloadavg()]
        result["cpus"] = len(os.sched_getaffinity(0))
    finally:
        server.stop()
        shutil.rmtree(base)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    by, t = result["bytes"], result["time"]
    print(f"bytes: {by['changed_files']} of {by['files']} files changed, "
          f"{by['changed_bytes']} bytes: push sent {by['push_bytes']} "
          f"({by['push_ratio']:.3f}x), pull fetched {by['pull_bytes']} ({by['pull_ratio']:.3f}x)")
    print(f"time, {t['mib']} MiB, median of {t['runs']}: " + ", ".join(
        f"{k} {v:.2f} s" for k, v in t["median"].items()) +
        f"; pull/cp -a {t['pull_over_cp']:.2f}x, pull/(cp -a; sync) {t['pull_over_cp_sync']:.2f}x"
        f", curl/cp -a {t['curl_over_cp']:.2f}x")
    print(f"load average before {result['load'][0][0]:.1f}, after {result['load'][1][0]:.1f} "
          f"on {result['cpus']} CPUs; results in {RESULTS}")


if __name__ == "__main__":
    main()

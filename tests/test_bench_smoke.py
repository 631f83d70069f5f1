"""Smoke test of the benchmark harness (bench/): two cheap workloads, quick sizes, one run, all
four targets. No network: these workloads do not need the wheelhouse."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKLOADS = ("smallfiles", "seqread")


@pytest.mark.skipif(os.geteuid() != 0, reason="the bench needs root (drop_caches, kernel mounts)")
def test_quick_bench_gives_a_time_for_every_target_and_workload(tmp_path):
    subprocess.run([sys.executable, "-m", "bench", "--quick", "--runs", "1",
                    "--only", ",".join(WORKLOADS), "--out", str(tmp_path)],
                   cwd=REPO, check=True, timeout=120, stdout=subprocess.DEVNULL)
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert {(r["workload"], r["target"]) for r in runs} == {
        (w, t) for w in WORKLOADS for t in ("raw", "kernel", "fuse-overlayfs", "cowfs")}
    for r in runs:
        assert r["error"] is None, r
        assert r["seconds"] and all(v > 0 for v in r["seconds"].values()), r

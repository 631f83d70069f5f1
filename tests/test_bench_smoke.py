"""Smoke tests of the benchmarks (bench/): two cheap workloads of `python -m bench`, quick sizes,
one run, all four targets; one round of `python -m bench.pipcache` against a local index of one
wheel. No network: these need neither the wheelhouse nor PyPI."""
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


def _tiny_wheel(where: Path, name: str, version: str) -> Path:
    """A pure-python wheel, written by hand (no build backend, no network)."""
    import base64
    import hashlib
    import zipfile

    dist = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": f'VERSION = "{version}"\n',
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n"}

    def digest(text: str) -> str:
        raw = hashlib.sha256(text.encode()).digest()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    record = [f"{path},sha256={digest(text)},{len(text.encode())}"
              for path, text in files.items()] + [f"{dist}/RECORD,,"]
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    whl = where / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return whl


@pytest.mark.skipif(os.geteuid() != 0, reason="the bench needs root (mounts as the test user)")
def test_pipcache_bench_runs_every_variant_offline(harness, tmp_path):
    """bench/pipcache.py end to end, one round, against a local index (file://) of one wheel:
    no network. Checks the machinery (snapshot, sandbox mounts, the three installs, results),
    not the speed."""
    import overlay

    top = Path(overlay.new_dir("pipcache-bench"))   # readable by the test user
    name = "cowfs_pipbench_tiny"
    project = top / "simple" / name.replace("_", "-")
    project.mkdir(parents=True)
    whl = _tiny_wheel(top, name, "1.0")
    (project / "index.html").write_text(f'<a href="../../{whl.name}">{whl.name}</a>\n')
    reqs = top / "requirements.txt"
    reqs.write_text(f"{name}==1.0\n")
    for p in [top, *top.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "bench.pipcache", "--rounds", "1", "--requirements",
                    str(reqs), "--index-url", (top / "simple").as_uri(), "--out", str(out)],
                   cwd=REPO, check=True, timeout=120, stdout=subprocess.DEVNULL,
                   env={**os.environ, "COWFS_BENCH_USER": overlay.TEST_USER})
    res = json.loads((out / "results.json").read_text())
    assert res["prep"]["wheels"] == 1 and res["snapshot_verify"]["status"] == 0, res
    got = {r["variant"]: r for r in res["runs"]}
    assert set(got) == {"cache", "wheelhouse", "empty"}
    for v, r in got.items():
        assert r["error"] is None and r["install_s"] > 0 and r["installed"] == 1, r
        assert (r["mount_s"] is None) == (v == "empty"), r
    assert got["wheelhouse"]["local"] == 1, got
    assert "| empty |" in (out / "results.md").read_text()

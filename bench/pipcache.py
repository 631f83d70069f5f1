"""pip install with the shared cache snapshot against an empty cache (issue 15, "Measure").

    python -m bench.pipcache [--rounds 6] [--requirements FILE] [--variants V,...] [--out DIR]
    make bench-pipcache PIPCACHE_ARGS="--rounds 6"

Root orchestrates, inside a private mount namespace (it re-executes itself under `unshare -m`);
every venv, mount and pip run is the unprivileged test user's (`make testenv`), as a sandbox's.
Once: a venv template (`/usr/bin/python3 -m venv`, the pip it brings is the one measured) and a
snapshot, `cowfs snapshot build ROOT -r REQS` by root with that pip (pip cache + wheelhouse,
read-only to the user). Then ROUNDS rounds; each runs every variant once, the order rotating
from round to round, and every run gets a fresh venv (a copy of the template, not timed) and a
fresh cache:

    cache      `cowfs sandbox mount --snapshot ROOT --state STATE --subdir pip MNT` (a fresh
               state dir), then `PIP_CACHE_DIR=MNT pip install -r REQS`: the index is consulted,
               the wheels come from the snapshot's cache (what a sandbox gets)
    wheelhouse the same mount as PIP_CACHE_DIR, `pip install --no-index --find-links
               SNAP/wheels -r REQS`: offline, from the snapshot's wheelhouse
    empty      `PIP_CACHE_DIR=<a fresh empty dir> pip install -r REQS`: everything downloaded

The install is timed alone, and the sandbox mount beside it. pip runs with no configuration of
this machine's (PIP_CONFIG_FILE=/dev/null): the index is PyPI unless --index-url says otherwise.
A pip run that fails (a network hiccup) is retried on a fresh run dir, up to --retries times,
and the retries are reported. Output: DIR/results.json (every run) and DIR/results.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import report
from .fixtures import clean_pip_env
from .targets import USER, as_user, log, mounts_below, remove, user_dir

NS_MARK = "COWFS_PIPCACHE_IN_NS"
HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "pipcache-requirements.txt"
VARIANTS = ("cache", "wheelhouse", "empty")
MOUNT_TIMEOUT = 60
PIP_TIMEOUT = 900
USER_PATH = "/usr/local/bin:/usr/bin:/bin"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.pipcache",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=6,
                   help="rounds, each runs every variant once (default 6: with 3 variants, each "
                   "twice in each place of the order)")
    p.add_argument("--requirements", type=Path, default=REQUIREMENTS,
                   help=f"what is installed (default {REQUIREMENTS.relative_to(HERE.parent)})")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma separated, of {','.join(VARIANTS)} (default all)")
    p.add_argument("--index-url", help="pip's index (default: pip's own, PyPI)")
    p.add_argument("--retries", type=int, default=2, help="retries of a failed run")
    p.add_argument("--out", type=Path, default=HERE / "results" / "pipcache",
                   help="results folder (default bench/results/pipcache)")
    p.add_argument("--cowfs", default=str(Path(sys.executable).parent / "cowfs"),
                   help="the cowfs executable (default: beside this python)")
    a = p.parse_args(argv)
    a.variants = a.variants.split(",")
    bad = [v for v in a.variants if v not in VARIANTS]
    if bad:
        p.error(f"--variants: unknown {', '.join(bad)}")
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    a.requirements = a.requirements.resolve()
    a.out = a.out.resolve()
    return a


def pip_env(cache: str | None, home: str, index_url: str | None) -> dict[str, str]:
    env = clean_pip_env(USER_PATH, home)
    del env["PIP_NO_CACHE_DIR"]
    env["PIP_NO_INPUT"] = "1"
    if cache:
        env["PIP_CACHE_DIR"] = cache
    if index_url:
        env["PIP_INDEX_URL"] = index_url
    return env


def run(cmd: list[str], timeout: float, env: dict | None = None,
        cwd: str = "/") -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       timeout=timeout, env=env, cwd=cwd)
    if r.returncode:
        tail = " | ".join((r.stderr or r.stdout).strip().splitlines()[-4:])
        raise RuntimeError(f"{' '.join(cmd[-4:])}: exit {r.returncode}: {tail}")
    return r


def count_lines(out: str) -> dict[str, int]:
    """How pip got each distribution, from its own report (pip 23: "Downloading x.whl (1 MB)",
    "Using cached x.whl (1 MB)", "Processing /path/x.whl")."""
    return {"downloaded": len(re.findall(r"^\s*Downloading \S+\.whl", out, re.M)),
            "cached": len(re.findall(r"^\s*Using cached \S+\.whl", out, re.M)),
            "local": len(re.findall(r"^\s*Processing \S+\.whl", out, re.M))}


class Lab:
    def __init__(self, a: argparse.Namespace, base: Path):
        self.a, self.base = a, base
        self.user = user_dir(base / "user")
        self.reqs = base / "requirements.txt"
        shutil.copyfile(a.requirements, self.reqs)
        os.chmod(self.reqs, 0o644)
        self.template = self.user / "venv-template"
        self.root = base / "snapshot-root"

    def prepare(self) -> dict:
        t0 = time.perf_counter()
        run(as_user(["/usr/bin/python3", "-m", "venv", str(self.template)]), 600,
            env={"PATH": USER_PATH, "HOME": str(self.user), "LANG": "C.UTF-8"})
        venv_s = time.perf_counter() - t0
        py = str(self.template / "bin" / "python")
        probe = "import pip, sys; print(pip.__version__, sys.version.split()[0])"
        pip_version, python_version = run(as_user([py, "-c", probe]), 60).stdout.split()
        t0 = time.perf_counter()
        built = run([self.a.cowfs, "snapshot", "build", str(self.root), "-r", str(self.reqs),
                     "--python", py], PIP_TIMEOUT,
                    env=pip_env(None, "/root", self.a.index_url) | {"PATH": os.environ["PATH"]})
        build_s = time.perf_counter() - t0
        self.snap = Path(os.path.realpath(self.root / "current"))
        wheels = sorted((self.snap / "wheels").glob("*.whl"))
        cached = [f for f in (self.snap / "pip").rglob("*") if f.is_file()]
        cache_bytes = sum(f.stat().st_size for f in cached)
        info = {"pip": pip_version, "python": python_version, "venv_create_s": venv_s,
                "snapshot_build_s": build_s, "snapshot": str(self.snap),
                "snapshot_log": built.stdout.strip().splitlines(),
                "wheels": len(wheels), "wheel_bytes": sum(w.stat().st_size for w in wheels),
                "pip_cache_bytes": cache_bytes, "pip_cache_files": len(cached),
                "requirements": [x for x in self.reqs.read_text().splitlines()
                                 if x.strip() and not x.startswith("#")]}
        log(f"pip {pip_version}, python {python_version}; snapshot {self.snap.name}: "
            f"{info['wheels']} wheels, {info['wheel_bytes'] / 1e6:.1f} MB, pip cache "
            f"{cache_bytes / 1e6:.1f} MB in {len(cached)} files, built in {build_s:.1f} s")
        return info

    def one(self, variant: str, name: str) -> dict:
        """One run of VARIANT in a fresh dir: fresh venv, fresh cache or sandbox."""
        d = user_dir(self.user / name)
        try:
            venv = d / "venv"
            run(as_user(["cp", "-a", str(self.template), str(venv)]), 300)
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-r", str(self.reqs)]
            rec: dict = {"mount_s": None}
            if variant == "empty":
                cache = user_dir(d / "cache")
            else:
                cache = user_dir(d / "mnt")
                t0 = time.perf_counter()
                run(as_user([self.a.cowfs, "sandbox", "mount", "--snapshot", str(self.root),
                             "--state", str(d / "state"), "--subdir", "pip", str(cache)]),
                    MOUNT_TIMEOUT, env={"PATH": USER_PATH, "HOME": str(d), "LANG": "C.UTF-8"})
                rec["mount_s"] = time.perf_counter() - t0
                if not mounts_below(cache):
                    raise RuntimeError(f"{cache} is not mounted after sandbox mount returned")
                if variant == "wheelhouse":
                    pip += ["--no-index", "--find-links", str(self.snap / "wheels")]
            env = pip_env(str(cache), str(d), self.a.index_url)
            try:
                t0 = time.perf_counter()
                r = run(as_user(pip), PIP_TIMEOUT, env=env, cwd=str(d))
                rec["install_s"] = time.perf_counter() - t0
            finally:
                if variant != "empty":
                    self.umount(cache)
            # what pip left in its cache: the sandbox's upper, or the plain cache dir
            written = [f for f in (d / "state" / "upper" if variant != "empty" else cache)
                       .rglob("*") if f.is_file()]
            rec["cache_written_files"] = len(written)
            rec["cache_written_bytes"] = sum(f.stat().st_size for f in written)
            rec.update(count_lines(r.stdout))
            rec["installed"] = len(next((line for line in r.stdout.splitlines()
                                         if line.startswith("Successfully installed")),
                                        "x").split()) - 2
            return rec
        finally:
            remove(d)

    def umount(self, mnt: Path) -> None:
        r = subprocess.run(as_user([self.a.cowfs, "sandbox", "umount", str(mnt)]),
                           capture_output=True, text=True, timeout=MOUNT_TIMEOUT,
                           stdin=subprocess.DEVNULL)
        if r.returncode and mounts_below(mnt):
            subprocess.run(["umount", "-l", str(mnt)], timeout=MOUNT_TIMEOUT, check=False)
            raise RuntimeError(f"sandbox umount {mnt}: {r.stderr.strip()}")


def summarize(runs: list[dict], variants: list[str]) -> dict:
    out: dict = {}
    for v in variants:
        ok = [r for r in runs if r["variant"] == v and r["error"] is None]
        if not ok:
            continue
        inst = [r["install_s"] for r in ok]
        s = {"n": len(ok), "install_s": statistics.median(inst), "min_s": min(inst),
             "max_s": max(inst)}
        if ok[0]["mount_s"] is not None:
            s["mount_s"] = statistics.median(r["mount_s"] for r in ok)
            s["total_s"] = statistics.median(r["mount_s"] + r["install_s"] for r in ok)
        else:
            s["total_s"] = s["install_s"]
        for k in ("downloaded", "cached", "local", "installed", "cache_written_files",
                  "cache_written_bytes"):
            s[k] = statistics.median(r[k] for r in ok)
        out[v] = s
    base = out.get("empty")
    if base:
        empty = {r["round"]: r["install_s"] for r in runs
                 if r["variant"] == "empty" and r["error"] is None}
        for v, s in out.items():
            s["ratio"] = s["install_s"] / base["install_s"]
            s["total_ratio"] = s["total_s"] / base["total_s"]
            # the same ratio within each round (neighbours in time), then their median
            paired = [r["install_s"] / empty[r["round"]] for r in runs if r["variant"] == v
                      and r["error"] is None and r["round"] in empty]
            s["round_ratio"] = statistics.median(paired) if paired else None
    return out


WHAT = {"cache": "sandbox over the snapshot as PIP_CACHE_DIR, index consulted",
        "wheelhouse": "same sandbox, `--no-index --find-links SNAP/wheels` (offline)",
        "empty": "empty PIP_CACHE_DIR, everything from the index"}


def markdown(res: dict) -> str:
    p, s = res["prep"], res["summary"]
    loads = [r["load"] for r in res["runs"]]
    lines = [
        "# pip install: shared cache snapshot vs empty cache (`python -m bench.pipcache`)", "",
        f"{res['date']}; {res['machine']['cpu']}, {res['machine']['cores']} cores; pip "
        f"{p['pip']}, python {p['python']}; cowfs {res['machine']['cowfs']}; index "
        f"{res['config']['index_url'] or 'PyPI (pip default)'}; {res['config']['rounds']} "
        f"rounds interleaved, order rotating; load average (1 min) {res['load_start']:.1f} at "
        f"start, {min(loads):.1f}-{max(loads):.1f} over the runs, {res['load_end']:.1f} at end.",
        "",
        f"Installed: {len(p['requirements'])} pinned requirements, {p['wheels']} wheels, "
        f"{p['wheel_bytes'] / 1e6:.1f} MB (snapshot: pip cache {p['pip_cache_bytes'] / 1e6:.1f}"
        f" MB in {p['pip_cache_files']} files, + the wheelhouse; built once in "
        f"{p['snapshot_build_s']:.1f} s). Every run: a fresh venv, a fresh cache or sandbox; "
        "the install alone timed, the mount beside it.", "",
        "| variant | what | pip install s, median (min-max) | sandbox mount s | mount + install s "
        "| install / empty (of the medians; median per round) | faster than empty "
        "| wheels downloaded / from cache / local | written to the cache |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|"]
    for v, x in s.items():
        ratio = x.get("ratio")
        lines.append(
            f"| {v} | {WHAT[v]} | {x['install_s']:.2f} ({x['min_s']:.2f}-{x['max_s']:.2f}) | "
            + (f"{x['mount_s']:.2f}" if "mount_s" in x else "-") + f" | {x['total_s']:.2f} | "
            + (f"{ratio:.2f}; {x['round_ratio']:.2f}" if ratio else "-") + " | "
            + (f"{(1 - ratio) * 100:.0f}%" if ratio and v != "empty" else "-")
            + f" | {x['downloaded']:.0f} / {x['cached']:.0f} / {x['local']:.0f} | "
            f"{x['cache_written_files']:.0f} files, {x['cache_written_bytes'] / 1e6:.2f} MB |")
    if not p["pip_cache_files"]:
        lines += ["", "The snapshot's pip cache is empty: pip stored no HTTP response while "
                  "building it, so the `cache` variant downloads every wheel again. pip caches "
                  "a response only when it comes with caching headers (PyPI's have them); the "
                  "path to the index here strips them. The wheelhouse is what serves a sandbox "
                  "then."]
    failed = [r for r in res["runs"] if r["error"]]
    retried = sum(r["attempts"] - 1 for r in res["runs"])
    lines += ["", f"Runs failed: {len(failed)}; retries: {retried}."
              + "".join(f"\n- {r['variant']} round {r['round'] + 1}: {r['error']}" for r in failed)
              + "\n"]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench.pipcache: run as root (the mounts and installs are the test user's)")
    if not os.access(a.cowfs, os.X_OK):
        sys.exit(f"bench.pipcache: no cowfs executable at {a.cowfs} (`make venv`, or --cowfs)")
    if os.environ.get(NS_MARK) != "1":  # every mount dies with the namespace
        env = {**os.environ, NS_MARK: "1", "PYTHONPATH": str(HERE.parent)}
        os.execvpe("unshare", ["unshare", "-m", "--propagation", "private", sys.executable,
                               "-m", "bench.pipcache", *argv], env)
    base = Path(tempfile.mkdtemp(prefix="cowfs-pipcache-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "machine": report.machine(a.cowfs), "load_start": os.getloadavg()[0],
                 "config": {"rounds": a.rounds, "variants": a.variants, "user": USER,
                            "index_url": a.index_url, "command": "python -m bench.pipcache "
                            + " ".join(argv)}}
    try:
        lab = Lab(a, base)
        res["prep"] = lab.prepare()
        runs = res["runs"] = []
        for i in range(a.rounds):
            order = a.variants[i % len(a.variants):] + a.variants[:i % len(a.variants)]
            for v in order:
                rec = {"round": i, "variant": v, "load": os.getloadavg()[0], "error": None}
                for attempt in range(1, a.retries + 2):
                    rec["attempts"] = attempt
                    try:
                        rec.update(lab.one(v, f"r{i}-{v}-{attempt}"))
                        rec["error"] = None
                        break
                    except (RuntimeError, subprocess.TimeoutExpired) as e:
                        rec["error"] = str(e)
                        log(f"round {i + 1} {v} attempt {attempt} failed: {e}")
                runs.append(rec)
                log(f"round {i + 1}/{a.rounds} {v}: " + (
                    f"FAILED {rec['error']}" if rec["error"] else
                    f"install {rec['install_s']:.2f} s"
                    + (f", mount {rec['mount_s']:.2f} s" if rec["mount_s"] else "")
                    + f" ({rec['downloaded']} downloaded, {rec['cached']} cached, "
                      f"{rec['local']} local; load {rec['load']:.1f})"))
        verify = subprocess.run([a.cowfs, "verify", str(lab.root)], capture_output=True,
                                text=True, timeout=300, stdin=subprocess.DEVNULL)
        res["snapshot_verify"] = {"status": verify.returncode,
                                  "out": (verify.stdout + verify.stderr).strip()[-2000:]}
    finally:
        remove(base)
    res["load_end"] = os.getloadavg()[0]
    res["summary"] = summarize(res["runs"], a.variants)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    md = markdown(res)
    (a.out / "results.md").write_text(md)
    print(md)
    if res["snapshot_verify"]["status"] != 0:
        log(f"the snapshot changed: {res['snapshot_verify']['out']}")
        return 1
    return 0 if all(r["error"] is None for r in res["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

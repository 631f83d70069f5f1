"""npm install with the shared cache snapshot against an empty cache (issue 17, "Measure").

    python -m bench.npmcache [--rounds 5] [--packages FILE] [--variants V,...] [--out DIR]
    make bench-npmcache NPMCACHE_ARGS="--rounds 5"

Root orchestrates, inside a private mount namespace (it re-executes itself under `unshare -m`);
every mount and npm run is the unprivileged test user's (`make testenv`), as a sandbox's. Once:
a snapshot, `cowfs snapshot build ROOT --kind npm -r PACKAGES` by root (npm's cache of the
packages and their dependencies, read-only to the user). Then ROUNDS rounds; each runs every
variant once, the order rotating from round to round, and every run gets a fresh project (a
package.json and nothing else) and a fresh ~/.npm:

    offline         `cowfs sandbox mount --snapshot ROOT --subdir npm --state STATE ~/.npm` (a
                    fresh state dir), then `npm install --offline PACKAGES` in a network
                    namespace with no network: the cache alone serves it
    prefer-offline  the same mount, `npm install --prefer-offline PACKAGES` with the network:
                    cached packuments are taken without asking the registry
    cache           the same mount, `npm install PACKAGES`: npm revalidates every packument
                    with the registry, the tarballs come from the snapshot
    copy            a plain copy of the snapshot's npm/ as ~/.npm (made before the clock
                    starts), `npm install --offline PACKAGES`, no network: npm's own cost of
                    a warm cache, without cowfs in the way
    empty           an empty ~/.npm, `npm install PACKAGES`: everything from the registry

The install is timed alone, and the sandbox mount beside it. npm runs with the machine's global
configuration only (an empty user config; `--ignore-scripts --no-audit --no-fund`, no update
check): the registry is npm's default. A run that fails (a network hiccup) is retried on a fresh
run dir, up to --retries times, and the retries are reported. Output: DIR/results.json and
DIR/results.md.
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
from .targets import USER, as_user, log, mounts_below, remove, user_dir

NS_MARK = "COWFS_NPMCACHE_IN_NS"
HERE = Path(__file__).resolve().parent
PACKAGES = HERE / "npmcache-packages.txt"
VARIANTS = ("offline", "prefer-offline", "cache", "copy", "empty")
MOUNT_TIMEOUT = 60
NPM_TIMEOUT = 900
USER_PATH = "/usr/local/bin:/usr/bin:/bin"
FLAGS = ["--ignore-scripts", "--no-audit", "--no-fund", "--logs-max=0",
         "--update-notifier=false"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.npmcache",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="rounds, each runs every variant once")
    p.add_argument("--packages", type=Path, default=PACKAGES,
                   help=f"what is installed (default {PACKAGES.relative_to(HERE.parent)})")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma separated, of {','.join(VARIANTS)} (default all)")
    p.add_argument("--retries", type=int, default=2, help="retries of a failed run")
    p.add_argument("--out", type=Path, default=HERE / "results" / "npmcache",
                   help="results folder (default bench/results/npmcache)")
    p.add_argument("--cowfs", default=str(Path(sys.executable).parent / "cowfs"),
                   help="the cowfs executable (default: beside this python)")
    a = p.parse_args(argv)
    a.variants = a.variants.split(",")
    bad = [v for v in a.variants if v not in VARIANTS]
    if bad:
        p.error(f"--variants: unknown {', '.join(bad)}")
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    a.packages = a.packages.resolve()
    a.out = a.out.resolve()
    return a


def run(cmd: list[str], timeout: float, env: dict | None = None,
        cwd: str = "/") -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       timeout=timeout, env=env, cwd=cwd)
    if r.returncode:
        tail = " | ".join((r.stderr or r.stdout).strip().splitlines()[-4:])
        raise RuntimeError(f"{' '.join(cmd[-4:])}: exit {r.returncode}: {tail}")
    return r


def npm_env(home: Path, userconfig: Path) -> dict[str, str]:
    return {"PATH": USER_PATH, "HOME": str(home), "LANG": "C.UTF-8",
            "npm_config_userconfig": str(userconfig)}


class Lab:
    def __init__(self, a: argparse.Namespace, base: Path):
        self.a, self.base = a, base
        self.user = user_dir(base / "user")
        self.packages = [line.strip() for line in a.packages.read_text().splitlines()
                         if line.strip() and not line.startswith("#")]
        self.list = base / "packages.txt"
        shutil.copyfile(a.packages, self.list)
        self.npmrc = base / "npmrc"  # empty: root's own npm configuration stays out
        self.npmrc.write_text("")
        os.chmod(self.npmrc, 0o644)
        self.root = base / "snapshot-root"

    def prepare(self) -> dict:
        version = run(["npm", "--version"], 60).stdout.strip()
        t0 = time.perf_counter()
        built = run([self.a.cowfs, "snapshot", "build", str(self.root), "--kind", "npm", "-r",
                     str(self.list)], NPM_TIMEOUT,
                    env={**npm_env(Path("/root"), self.npmrc), "PATH": os.environ["PATH"]})
        build_s = time.perf_counter() - t0
        self.snap = Path(os.path.realpath(self.root / "current"))
        files = [f for f in (self.snap / "npm").rglob("*") if f.is_file()]
        tarballs = [f for f in (self.snap / "npm" / "_cacache" / "content-v2").rglob("*")
                    if f.is_file()]
        info = {"npm": version, "node": run(["node", "--version"], 60).stdout.strip(),
                "snapshot_build_s": build_s, "snapshot": str(self.snap),
                "snapshot_log": built.stdout.strip().splitlines(), "packages": self.packages,
                "cache_files": len(files), "cache_bytes": sum(f.stat().st_size for f in files),
                "content_entries": len(tarballs)}
        log(f"npm {version}; snapshot {self.snap.name}: {len(files)} files, "
            f"{info['cache_bytes'] / 1e6:.1f} MB, built in {build_s:.1f} s")
        return info

    def one(self, variant: str, name: str) -> dict:
        """One run of VARIANT in a fresh dir: a fresh project, a fresh ~/.npm."""
        d = user_dir(self.user / name)
        try:
            project = user_dir(d / "project")
            (project / "package.json").write_text('{"private": true}\n')
            shutil.chown(project / "package.json", USER, USER)
            npm_home = user_dir(d / ".npm")
            rec: dict = {"mount_s": None}
            if variant == "copy":
                os.rmdir(npm_home)
                run(as_user(["cp", "-r", str(self.snap / "npm"), str(npm_home)]), NPM_TIMEOUT)
                run(as_user(["chmod", "-R", "u+w", str(npm_home)]), NPM_TIMEOUT)
            elif variant != "empty":
                t0 = time.perf_counter()
                run(as_user([self.a.cowfs, "sandbox", "mount", "--snapshot", str(self.root),
                             "--state", str(d / "state"), "--subdir", "npm", str(npm_home)]),
                    MOUNT_TIMEOUT, env={"PATH": USER_PATH, "HOME": str(d), "LANG": "C.UTF-8"})
                rec["mount_s"] = time.perf_counter() - t0
                if not mounts_below(npm_home):
                    raise RuntimeError(f"{npm_home} is not mounted after sandbox mount returned")
            mode = {"offline": ["--offline"], "prefer-offline": ["--prefer-offline"],
                    "copy": ["--offline"]}.get(variant, [])
            cmd = as_user(["npm", "install", *FLAGS, *mode, *self.packages])
            if variant in ("offline", "copy"):
                cmd = ["unshare", "-n", *cmd]  # no network: only the cache can serve it
            try:
                t0 = time.perf_counter()
                r = run(cmd, NPM_TIMEOUT, env=npm_env(d, self.npmrc), cwd=str(project))
                rec["install_s"] = time.perf_counter() - t0
            finally:
                if variant not in ("empty", "copy"):
                    self.umount(npm_home)
            added = re.search(r"added (\d+) packages?\b", r.stdout)
            rec["added"] = int(added.group(1)) if added else 0
            # what npm wrote: the sandbox's upper, or the plain cache dir (copy: the copy too)
            written = [f for f in (npm_home if variant in ("empty", "copy") else
                                   d / "state" / "upper").rglob("*") if f.is_file()]
            rec["cache_written_files"] = len(written)
            rec["cache_written_bytes"] = sum(f.stat().st_size for f in written)
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
        for k in ("added", "cache_written_files", "cache_written_bytes"):
            s[k] = statistics.median(r[k] for r in ok)
        out[v] = s
    if "empty" in out:
        empty = {r["round"]: r["install_s"] for r in runs
                 if r["variant"] == "empty" and r["error"] is None}
        for v, s in out.items():
            s["ratio"] = s["install_s"] / out["empty"]["install_s"]
            # the same ratio within each round (neighbours in time), then their median
            paired = [r["install_s"] / empty[r["round"]] for r in runs if r["variant"] == v
                      and r["error"] is None and r["round"] in empty]
            s["round_ratio"] = statistics.median(paired) if paired else None
    return out


WHAT = {"offline": "sandbox over the snapshot as ~/.npm, `--offline`, no network",
        "prefer-offline": "same sandbox, `--prefer-offline`",
        "cache": "same sandbox, plain `npm install` (packuments revalidated)",
        "copy": "plain copy of the snapshot's cache as ~/.npm, `--offline`, no network",
        "empty": "empty ~/.npm, everything from the registry"}


def markdown(res: dict) -> str:
    p, s = res["prep"], res["summary"]
    loads = [r["load"] for r in res["runs"]]
    lines = [
        "# npm install: shared cache snapshot vs empty cache (`python -m bench.npmcache`)", "",
        f"{res['date']}; {res['machine']['cpu']}, {res['machine']['cores']} cores; npm "
        f"{p['npm']}, node {p['node']}; cowfs {res['machine']['cowfs']}; registry: npm's "
        f"default; {res['config']['rounds']} rounds interleaved, order rotating; load average "
        f"(1 min) {res['load_start']:.1f} at start, {min(loads):.1f}-{max(loads):.1f} over the "
        f"runs, {res['load_end']:.1f} at end.", "",
        f"Installed: {len(p['packages'])} packages ({', '.join(p['packages'])}) with their "
        f"dependencies; snapshot: npm cache {p['cache_bytes'] / 1e6:.1f} MB in "
        f"{p['cache_files']} files, built once in {p['snapshot_build_s']:.1f} s. Every run: a "
        "fresh project, a fresh ~/.npm (sandbox or empty dir); the install alone timed, the "
        "mount beside it.", "",
        "| variant | what | npm install s, median (min-max) | sandbox mount s | mount + install s "
        "| install / empty (of the medians; median per round) | packages added "
        "| written to the cache |",
        "|---|---|---:|---:|---:|---:|---:|---:|"]
    for v, x in s.items():
        ratio = x.get("ratio")
        lines.append(
            f"| {v} | {WHAT[v]} | {x['install_s']:.2f} ({x['min_s']:.2f}-{x['max_s']:.2f}) | "
            + (f"{x['mount_s']:.2f}" if "mount_s" in x else "-") + f" | {x['total_s']:.2f} | "
            + (f"{ratio:.2f}; {x['round_ratio']:.2f}" if ratio else "-")
            + f" | {x['added']:.0f} | " + (  # copy: the copied cache dir, not npm's writes
                "-" if v == "copy" else f"{x['cache_written_files']:.0f} files, "
                f"{x['cache_written_bytes'] / 1e6:.2f} MB") + " |")
    failed = [r for r in res["runs"] if r["error"]]
    retried = sum(r["attempts"] - 1 for r in res["runs"])
    lines += ["", f"Runs failed: {len(failed)}; retries: {retried}."
              + "".join(f"\n- {r['variant']} round {r['round'] + 1}: {r['error']}" for r in failed)
              + "\n"]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench.npmcache: run as root (the mounts and installs are the test user's)")
    if not os.access(a.cowfs, os.X_OK):
        sys.exit(f"bench.npmcache: no cowfs executable at {a.cowfs} (`make venv`, or --cowfs)")
    if shutil.which("npm") is None:
        sys.exit("bench.npmcache: npm is not installed (make deps)")
    if os.environ.get(NS_MARK) != "1":  # every mount dies with the namespace
        env = {**os.environ, NS_MARK: "1", "PYTHONPATH": str(HERE.parent)}
        os.execvpe("unshare", ["unshare", "-m", "--propagation", "private", sys.executable,
                               "-m", "bench.npmcache", *argv], env)
    base = Path(tempfile.mkdtemp(prefix="cowfs-npmcache-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "machine": report.machine(a.cowfs), "load_start": os.getloadavg()[0],
                 "config": {"rounds": a.rounds, "variants": a.variants, "user": USER,
                            "command": "python -m bench.npmcache " + " ".join(argv)}}
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
                    + f" ({rec['added']} added; load {rec['load']:.1f})"))
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

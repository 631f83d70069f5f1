"""python -m bench [--runs N] [--only W,...] [--targets T,...] [--out DIR] [--quick]

Runs as root inside a private mount namespace (it re-executes itself under `unshare -m`), so no
mount outlives it. For each workload, runs are interleaved over the targets (A B C D A B C D ...)
so machine drift hits all alike; every run is a fresh mount with a fresh upper.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import os
import pwd
import shutil
import stat
import sys
import time
from pathlib import Path

from . import fixtures, report
from .targets import TARGETS, USER, BenchError, Mount, log, remove
from .workloads import WORKLOADS, Ctx

NS_MARK = "COWFS_BENCH_IN_NS"
RESULTS = Path(__file__).with_name("results")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[1])
    p.add_argument("--runs", type=int, default=5, help="runs per (workload, target); default 5")
    p.add_argument("--only", default=",".join(WORKLOADS),
                   help=f"comma separated workloads (default all: {','.join(WORKLOADS)})")
    default = ",".join(t for t in TARGETS if t != "cowfs-base")
    p.add_argument("--targets", default=default,
                   help=f"comma separated targets (default {default}; cowfs-base with --cowfs-base)")
    p.add_argument("--out", type=Path,
                   help="results folder (default bench/results/<date>[-quick])")
    p.add_argument("--quick", action="store_true",
                   help="small sizes, for iterating (seconds, not minutes)")
    p.add_argument("--cowfs", default=_default_cowfs(), help="the cowfs executable")
    p.add_argument("--cowfs-base", metavar="EXE",
                   help="a second cowfs (e.g. an earlier commit's venv) run as target cowfs-base, "
                        "interleaved with the others: before and after in one run")
    a = p.parse_args(argv)
    for name, value, allowed in (("--only", a.only, WORKLOADS), ("--targets", a.targets, TARGETS)):
        bad = [x for x in value.split(",") if x not in allowed]
        if bad:
            p.error(f"{name}: unknown {', '.join(bad)} (choose from {', '.join(allowed)})")
    a.only = a.only.split(",")
    wanted = a.targets.split(",") + (["cowfs-base"] if a.cowfs_base else [])
    a.targets = [t for t in TARGETS if t in wanted]
    if "cowfs-base" in a.targets and not a.cowfs_base:
        p.error("target cowfs-base needs --cowfs-base EXE")
    if a.runs < 1:
        p.error("--runs must be at least 1")
    if a.out is None:
        a.out = RESULTS / (datetime.date.today().isoformat() + ("-quick" if a.quick else ""))
    return a


def _default_cowfs() -> str:
    beside = Path(sys.executable).parent / "cowfs"   # the venv's, when run by the venv python
    return str(beside) if beside.exists() else (shutil.which("cowfs") or "cowfs")


def preflight(a: argparse.Namespace) -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append("run as root (drop_caches, kernel overlay mounts)")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        problems.append(f"user {USER} missing (`make testenv` creates it)")
    if not os.stat("/dev/fuse").st_mode & stat.S_IWOTH:
        problems.append("/dev/fuse is not 0666 (`make testenv` fixes it)")
    if "cowfs" in a.targets and not os.access(a.cowfs, os.X_OK):
        problems.append(f"no cowfs executable at {a.cowfs} (`make venv`, or --cowfs PATH)")
    if a.cowfs_base and not os.access(a.cowfs_base, os.X_OK):
        problems.append(f"no cowfs executable at {a.cowfs_base} (--cowfs-base)")
    if problems:
        sys.exit("bench: " + "; ".join(problems))


def main(argv: list[str]) -> None:
    a = parse_args(argv)
    preflight(a)
    if os.environ.get(NS_MARK) != "1":
        env = {**os.environ, NS_MARK: "1",
               "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        os.execvpe("unshare", ["unshare", "-m", "--propagation", "private", sys.executable,
                               "-m", "bench", *argv], env)
    sizes = fixtures.QUICK if a.quick else fixtures.FULL
    if a.runs < 5 and not a.quick:
        log(f"only {a.runs} run(s) each: medians of fewer than 5 runs are noisy")
    workloads = [WORKLOADS[n] for n in a.only]
    if any(w.needs_wheels for w in workloads):
        if a.quick and not fixtures.have_wheels():
            skipped = [w.name for w in workloads if w.needs_wheels]
            log(f"skipping {', '.join(skipped)}: no wheel cache in {fixtures.wheels_dir()} "
                "(quick mode does not download; a full run or `make bench` fills it)")
            workloads = [w for w in workloads if not w.needs_wheels]
        else:
            fixtures.download_wheels()
    ctx = Ctx(sizes, fixtures.build_lower(sizes, a.quick), a.cowfs, a.cowfs_base)
    fixtures.tool_venv()
    scratch = fixtures.CACHE / f"scratch-{os.getpid()}"   # several benches may run at once
    info = report.machine(a.cowfs)
    config = {"runs": a.runs, "quick": a.quick, "targets": a.targets, "cowfs-base": a.cowfs_base,
              "workloads": [w.name for w in workloads], "sizes": dataclasses.asdict(sizes)}
    runs: list[dict] = []
    total, t_start = len(workloads) * a.runs * len(a.targets), time.monotonic()
    for w in workloads:
        for i in range(a.runs):
            for target in a.targets:
                base = scratch / f"{w.name}-{target}-{i}"
                rec = run_one(ctx, w, target, base)
                rec["run"] = i
                runs.append(rec)
                elapsed = time.monotonic() - t_start
                figs = " ".join(f"[{k}] {v:.3f}s" for k, v in rec["seconds"].items())
                log(f"{len(runs)}/{total} {elapsed:6.0f}s {w.name} run {i + 1}/{a.runs} {target}: "
                    + (f"FAILED {rec['error']}" if rec["error"] else figs))
                report.write(a.out, runs, info, config, final=False)
    remove(scratch)
    md = report.write(a.out, runs, info, config, final=True)
    print(md)
    log(f"done in {time.monotonic() - t_start:.0f} s; results in {a.out}")


def run_one(ctx: Ctx, w, target: str, base: Path) -> dict:
    """One run of W on TARGET; an error becomes part of the record, not the end of the bench."""
    rec = {"workload": w.name, "target": target, "seconds": {}, "mib": {}, "error": None}
    try:
        if w.own_mounts:
            res = w.run(ctx, target, base)
        else:
            m = Mount(target, ctx.lower, base, ctx.bin_for(target), w.writes)
            try:
                m.mount()
                res = w.run(ctx, m)
            except BaseException:
                with contextlib.suppress(BenchError):   # the first error is the one to report
                    m.unmount()
                raise
            m.unmount()
        rec["seconds"], rec["mib"] = res.seconds, res.mib
    except Exception as e:   # an errno, a timeout, a dead daemon: that run failed, go on
        rec["error"] = str(e) if isinstance(e, BenchError) else f"{type(e).__name__}: {e}"
    finally:
        remove(base)
    return rec


if __name__ == "__main__":
    main(sys.argv[1:])

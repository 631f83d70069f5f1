"""The workloads. Each run gets a fresh mount (cold figures: the page cache is dropped after
mounting) and returns {figure: seconds} plus {figure: MiB} for daemon memory.

A run measuring cold then warm does both on its one mount: the warm figure is the second pass.
Commands run as the bench user; the worker (worker.py) times in-process where startup would blur
a sub-second figure, whole commands are timed here where startup is part of the work (pip,
python imports, find, fio).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import fixtures
from .fixtures import Sizes, size_label
from .targets import BenchError, Mount, as_user, chown_to_user, drop_caches

SYSTEM_PYTHON = "/usr/bin/python3"
WORKER = Path(__file__).with_name("worker.py")


@dataclass
class Result:
    seconds: dict[str, float] = field(default_factory=dict)
    mib: dict[str, float] = field(default_factory=dict)


@dataclass
class Ctx:
    sizes: Sizes
    lower: Path
    cowfs_bin: str
    cowfs_base_bin: str | None = None

    def bin_for(self, target: str) -> str:
        """The cowfs executable TARGET mounts with."""
        return self.cowfs_base_bin if target == "cowfs-base" else self.cowfs_bin

    def env(self, home: Path) -> dict:
        return fixtures.clean_pip_env("/usr/local/bin:/usr/bin:/bin", str(home))

    def run(self, cmd: list[str], home: Path, env: dict | None = None) -> tuple[float, str]:
        """Run CMD as the bench user; (wall seconds, stdout). BenchError on failure."""
        t = time.perf_counter()
        try:
            r = subprocess.run(as_user(cmd), capture_output=True, text=True, cwd=home,
                               env={**self.env(home), **(env or {})}, stdin=subprocess.DEVNULL,
                               timeout=self.sizes.timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{cmd[0]}: still running after {self.sizes.timeout} s") from None
        elapsed = time.perf_counter() - t
        if r.returncode:
            tail = (r.stderr.strip() or r.stdout.strip()).splitlines()[-3:]
            raise BenchError(f"{Path(cmd[0]).name} exit {r.returncode}: {' | '.join(tail)}")
        return elapsed, r.stdout

    def worker(self, m: Mount, *args: str) -> dict[str, float]:
        return json.loads(self.run([SYSTEM_PYTHON, str(WORKER), *args], m.base)[1])


def pip_install(python: str, m: Mount, packages, *extra: str) -> list[str]:
    return [python, "-m", "pip", "install", "-q", "--no-index", "--find-links",
            str(m.mnt / "wheels"), *extra, *packages]


def fresh_venv_outside(m: Mount) -> Path:
    venv = m.base / "venv-outside"
    shutil.copytree(fixtures.tool_venv(), venv, symlinks=True)
    chown_to_user(venv)
    return venv


def pip_outside(ctx: Ctx, m: Mount) -> Result:
    venv = fresh_venv_outside(m)
    subprocess.run(["sync"], check=True)
    t, _ = ctx.run(pip_install(str(venv / "bin/python"), m, ctx.sizes.pip_packages), m.base)
    return Result({"pip-install (venv outside)": t})


def pip_inside(ctx: Ctx, m: Mount) -> Result:
    venv = m.mnt / "newvenv"
    t_venv, _ = ctx.run([SYSTEM_PYTHON, "-m", "venv", str(venv)], m.base)
    t_pip, _ = ctx.run(pip_install(str(venv / "bin/python"), m, ctx.sizes.pip_packages), m.base)
    return Result({"venv-create (inside)": t_venv, "pip-install (venv inside)": t_pip})


def import_numpy_pandas(ctx: Ctx, m: Mount) -> Result:
    site = m.mnt / "venv/lib/python3.11/site-packages"
    # the assert keeps us honest: the modules must come from the mount, not the system
    cmd = [SYSTEM_PYTHON, "-c", "import numpy, pandas; "
           f"assert numpy.__file__.startswith({str(site)!r}), numpy.__file__"]
    env = {"PYTHONPATH": str(site)}
    drop_caches()
    cold, _ = ctx.run(cmd, m.base, env)
    warm, _ = ctx.run(cmd, m.base, env)
    return Result({"import cold": cold, "import warm": warm})


def _daemon_hwm(m: Mount) -> dict[str, float]:
    kib = m.status_kib("VmHWM")
    return {} if kib is None else {"daemon peak RSS": kib / 1024}


def walk(ctx: Ctx, m: Mount) -> Result:
    # %s and %m need a stat of every entry
    cmd = ["find", str(m.mnt / ctx.sizes.walk_root), "-printf", "%s %m\n"]
    drop_caches()
    cold, out = ctx.run(cmd, m.base)
    if len(out.splitlines()) < 100:
        raise BenchError(f"walk saw only {len(out.splitlines())} entries")
    warm, _ = ctx.run(cmd, m.base)
    return Result({"walk cold": cold, "walk warm": warm},
                  {f"walk: {k}": v for k, v in _daemon_hwm(m).items()})


def readall(ctx: Ctx, m: Mount) -> Result:
    root = str(m.mnt / ctx.sizes.walk_root)
    drop_caches()
    cold = ctx.worker(m, "read", root)["read"]
    warm = ctx.worker(m, "read", root)["read"]
    return Result({"read-all cold": cold, "read-all warm": warm},
                  {f"read-all: {k}": v for k, v in _daemon_hwm(m).items()})


def big_files(m: Mount) -> list[tuple[str, int]]:
    """(name, bytes) of the lower's big files, smallest first."""
    return sorted(((p.name, p.stat().st_size) for p in (m.lower / "big").iterdir()),
                  key=lambda f: f[1])


def seqread(ctx: Ctx, m: Mount) -> Result:
    label, _ = big_files(m)[-1]
    path = m.mnt / "big" / label
    drop_caches()
    cold = ctx.worker(m, "read", str(path))["read"]
    warm = ctx.worker(m, "read", str(path))["read"]
    return Result({f"seq-read {label} cold": cold, f"seq-read {label} warm": warm})


def randread(ctx: Ctx, m: Mount) -> Result:
    label, size = big_files(m)[-1]
    # fixed seed: the warm pass reads the very blocks the cold pass brought in; invalidate=0
    # or fio would drop the cache itself
    cmd = ["fio", "--name=randread", f"--filename={m.mnt / 'big' / label}", "--readonly", "--rw=randread",
           "--bs=4k", f"--size={size}",
           f"--io_size={ctx.sizes.fio_io}", "--ioengine=psync", "--randrepeat=1",
           "--norandommap", "--invalidate=0", "--output-format=terse"]
    io = size_label(ctx.sizes.fio_io)
    drop_caches()
    cold, _ = ctx.run(cmd, m.base)
    warm, _ = ctx.run(cmd, m.base)
    return Result({f"rand-read 4k x {io} cold": cold, f"rand-read 4k x {io} warm": warm})


def copyup(ctx: Ctx, m: Mount) -> Result:
    # the lower files in page cache: the figure is the copy, not the disk's read speed
    for p in (m.lower / "big").iterdir():
        with open(p, "rb") as f:
            while f.read(1 << 20):
                pass
    subprocess.run(["sync"], check=True)
    paths = [str(m.mnt / "big" / name) for name, _ in big_files(m)]
    res = ctx.worker(m, "firstwrite", *paths)
    return Result({f"copy-up {name} (first write+fsync)": t for name, t in res.items()})


def smallfiles(ctx: Ctx, m: Mount) -> Result:
    n = ctx.sizes.smallfiles
    res = ctx.worker(m, "smallfiles", str(m.mnt / "smallfiles"), str(n))
    return Result({f"{n} small files: {phase}": t for phase, t in res.items()})


def churn(ctx: Ctx, m: Mount) -> Result:
    subprocess.run(["sync"], check=True)
    res = ctx.worker(m, "churn", str(m.mnt / "churn"))
    return Result({f"{ctx.sizes.churn} lower files: {op}": t for op, t in res.items()})


def manymounts(ctx: Ctx, target: str, base: Path) -> Result:
    """N mounts of one lower at once, each a small pip install: total time, summed RSS."""
    n = ctx.sizes.mounts
    pip = str(fixtures.tool_venv() / "bin/python")
    mounts = [Mount(target, ctx.lower, base / f"m{i:02d}", ctx.bin_for(target)) for i in range(n)]
    procs: list[subprocess.Popen] = []
    try:
        t0 = time.perf_counter()
        for m in mounts:
            m.start()
        for m in mounts:
            m.wait_live()
        t_mount = time.perf_counter() - t0
        for m in mounts:
            cmd = pip_install(pip, m, [fixtures.MANY_MOUNTS_PACKAGE], "--target", str(m.mnt / "site"))
            procs.append(subprocess.Popen(as_user(cmd), cwd=m.base, env=ctx.env(m.base),
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True))
        errors = []
        for p in procs:
            _, err = p.communicate(timeout=ctx.sizes.timeout)
            if p.returncode:
                errors.append((err.strip().splitlines() or [f"exit {p.returncode}"])[-1])
        t_total = time.perf_counter() - t0
        if errors:
            raise BenchError(f"{len(errors)} of {n} pip installs failed: {errors[0]}")
        rss = [m.status_kib("VmRSS") for m in mounts]
        mib = {} if rss[0] is None else {f"{n} mounts: summed daemon RSS": sum(rss) / 1024}
        return Result({f"{n} mounts: mount all": t_mount,
                       f"{n} mounts: mount + pip install each": t_total}, mib)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        problems = []
        for m in mounts:
            try:
                m.unmount()
            except BenchError as e:
                problems.append(str(e))
        if problems:
            raise BenchError(problems[0])


@dataclass(frozen=True)
class Workload:
    name: str
    run: Callable
    needs_wheels: bool = False
    writes: tuple[str, ...] = ()     # lower entries the raw target must copy, not bind
    own_mounts: bool = False         # run(ctx, target, base) mounts by itself


WORKLOADS = {w.name: w for w in (
    Workload("pip-outside", pip_outside, needs_wheels=True),
    Workload("pip-inside", pip_inside, needs_wheels=True),
    Workload("import", import_numpy_pandas, needs_wheels=True),
    Workload("walk", walk, needs_wheels=True),
    Workload("readall", readall, needs_wheels=True),
    Workload("seqread", seqread),
    Workload("randread", randread),
    Workload("copyup", copyup, writes=("big",)),
    Workload("smallfiles", smallfiles),
    Workload("churn", churn, writes=("churn",)),
    Workload("manymounts", manymounts, needs_wheels=True, own_mounts=True),
)}

"""What the workloads read: the sizes of a run, the wheel cache and the shared lower layer.

The lower is built once per size set and reused while its recipe (sizes, wheels.txt) is
unchanged; every mount gets a fresh upper, the lower itself is never written.

    LOWER/wheels/*.whl         the wheelhouse (pip-install, many mounts)
    LOWER/venv/                a venv with every wheel installed (import, walk, read-all)
    LOWER/big/<size>           incompressible files (sequential/random reads, copy-up)
    LOWER/churn/{chmod,rename,unlink}/dNN/fNNNNN   small files for metadata churn
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .targets import chown_to_user, log

CACHE = Path(os.environ.get("COWFS_BENCH_CACHE", "/var/cache/cowfs-bench"))
WHEELS_TXT = Path(__file__).with_name("wheels.txt")
MiB = 1 << 20


@dataclass(frozen=True)
class Sizes:
    big: tuple[int, ...]            # bytes of the big lower files; the last one is read
    fio_io: int                     # bytes fio reads in 4 KiB random reads
    smallfiles: int
    churn: int                      # files per churn operation
    mounts: int                     # simultaneous mounts in `manymounts`
    pip_packages: tuple[str, ...]   # what the pip workloads install (with dependencies)
    walk_root: str                  # tree walked and read, relative to the lower
    timeout: int                    # seconds one command may take


FULL = Sizes(
    big=(100 * MiB, 1024 * MiB), fio_io=32 * MiB, smallfiles=5000, churn=2000, mounts=20,
    # 17 of the wheels: numpy, requests, flask, rich and their dependencies. The rest (pandas,
    # scipy, sympy, botocore, ...) fill the walked tree to 20k files; installing them all makes a
    # pip run ~35 s and the full bench hours long. 5000 small files and 20 mounts (not 10k, 50)
    # for the same reason: a full run in about half an hour on a 2-core machine.
    pip_packages=("numpy", "requests", "flask", "rich"),
    walk_root="venv", timeout=900)
QUICK = Sizes(
    big=(8 * MiB, 64 * MiB), fio_io=4 * MiB, smallfiles=1000, churn=200, mounts=4,
    pip_packages=("requests",), walk_root="venv/lib/python3.11/site-packages/pandas", timeout=120)

#: the small pip install each of the many mounts does
MANY_MOUNTS_PACKAGE = "idna"


def size_label(n: int) -> str:
    return f"{n // 1024 // MiB}GiB" if n >= 1024 * MiB else f"{n // MiB}MiB"


def wheels_dir() -> Path:
    return CACHE / "wheels"


def have_wheels() -> bool:
    done = wheels_dir() / ".complete"
    return done.exists() and done.read_text() == _wheels_hash()


def _wheels_hash() -> str:
    return hashlib.sha256(WHEELS_TXT.read_bytes()).hexdigest()


def download_wheels() -> None:
    """pip download the pinned wheels (the only network use); checks the list is closed."""
    if have_wheels():
        return
    d = wheels_dir()
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    log(f"downloading the wheelhouse into {d}")
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                    "--python-version", "3.11", "--platform", "manylinux2014_x86_64",
                    "-d", str(d), "-r", str(WHEELS_TXT)], check=True)
    pinned = {line.split("==")[0].lower().replace("-", "_")
              for line in WHEELS_TXT.read_text().splitlines() if "==" in line}
    got = {w.name.split("-")[0].lower() for w in d.glob("*.whl")}
    if got != pinned:
        raise SystemExit(f"bench: wheels.txt is not closed: downloaded {sorted(got - pinned)}, "
                         f"missing {sorted(pinned - got)}")
    (d / ".complete").write_text(_wheels_hash())


def tool_venv() -> Path:
    """A plain venv outside every mount: its pip runs the many-mounts installs, and copies of
    it are the 'venv outside the mount' of pip-outside (copying beats a 5-10 s ensurepip)."""
    v = CACHE / "toolvenv"
    if not (v / ".complete").exists():
        shutil.rmtree(v, ignore_errors=True)
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(v)], check=True)
        (v / ".complete").touch()
    return v


def build_lower(sizes: Sizes, quick: bool) -> Path:
    """The lower for SIZES, built if missing or stale; owned by the bench user."""
    # what shapes the lower, through JSON so tuples compare equal to the lists read back
    recipe = json.loads(json.dumps({"big": sizes.big, "churn": sizes.churn,
                                    "wheels": have_wheels() and _wheels_hash(), "v": 1}))
    lower = CACHE / ("lower-quick" if quick else "lower-full")
    stamp = lower.with_suffix(".json")
    if stamp.exists() and json.loads(stamp.read_text()) == recipe and lower.is_dir():
        return lower
    log(f"building the lower layer {lower}")
    stamp.unlink(missing_ok=True)
    shutil.rmtree(lower, ignore_errors=True)
    (lower / "big").mkdir(parents=True)
    for n in sizes.big:
        _random_file(lower / "big" / size_label(n), n)
    for op in ("chmod", "rename", "unlink"):
        for i in range(sizes.churn):
            d = lower / "churn" / op / f"d{i // 100:02d}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"f{i:05d}").write_bytes(b"c" * 4096)
    if have_wheels():
        shutil.copytree(wheels_dir(), lower / "wheels", ignore=shutil.ignore_patterns(".*"))
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(lower / "venv")], check=True)
        subprocess.run([str(lower / "venv/bin/python"), "-m", "pip", "install", "-q",
                        "--no-index", "--find-links", str(lower / "wheels"), "-r", str(WHEELS_TXT)],
                       check=True, env=clean_pip_env(os.environ["PATH"], "/root"))
    chown_to_user(lower)
    subprocess.run(["sync"], check=True)
    stamp.write_text(json.dumps(recipe))
    return lower


def clean_pip_env(path: str, home: str) -> dict:
    """No pip config, constraints or cache of this machine's: every pip run does the same."""
    return {"PATH": path, "HOME": home, "LANG": "C.UTF-8", "PIP_CONFIG_FILE": os.devnull,
            "PIP_NO_CACHE_DIR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _random_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        for off in range(0, size, 4 * MiB):
            f.write(os.urandom(min(4 * MiB, size - off)))

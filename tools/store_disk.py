#!/usr/bin/env python3
"""How much disk weekly snapshots take with the shared store (README "Snapshots").

    python3 tools/store_disk.py [--projects 50] [--weeks 4] [--changed 5] [--keep DIR]

Makes PROJECTS wheels of random (incompressible) content, 200 KiB to 2 MiB (log-uniform), then
builds one snapshot a week with `cowfs snapshot build --no-index --find-links`, offline; each week
CHANGED projects (others each week) get a new version. After each build it prints the disk ROOT
takes (`du -s`, which counts a hard-linked file once) next to what as many full copies take (the
sum of `du -s` of each snapshot on its own); then it runs `cowfs snapshot gc ROOT --keep 2` and
prints ROOT's disk again. Needs cowfs installed for this python (make venv; run it with
.venv/bin/python).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import zipfile

COWFS = [sys.executable, "-m", "cowfs"]
MIB = 1 << 20


def write_wheel(out: str, name: str, version: str, size: int, seed: int) -> str:
    """A valid pure-python wheel of NAME==VERSION in OUT holding SIZE random bytes; its path."""
    data = random.Random(seed).randbytes(size)
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{name}/data.bin": data,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()}"
        f",{len(d)}\n" for p, d in files.items()) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    path = os.path.join(out, f"{name}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:  # random bytes do not compress
        for p, d in files.items():
            z.writestr(p, d)
    return path


def du(path: str) -> int:
    """Bytes on disk under PATH, each hard-linked file once (du -s)."""
    out = subprocess.run(["du", "-s", "--block-size=1", path], check=True, capture_output=True,
                         text=True).stdout
    return int(out.split()[0])


def build(root: str, wheels: str, pins: dict[str, str]) -> str:
    req = os.path.join(os.path.dirname(root), "requirements.txt")
    with open(req, "w") as f:
        f.writelines(f"{n}=={v}\n" for n, v in sorted(pins.items()))
    subprocess.run([*COWFS, "snapshot", "build", root, "-r", req, "--find-links", wheels,
                    "--no-index"], check=True, stdout=subprocess.DEVNULL)
    return os.path.realpath(os.path.join(root, "current"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--projects", type=int, default=50)
    ap.add_argument("--weeks", type=int, default=4)
    ap.add_argument("--changed", type=int, default=5, help="projects with a new version a week")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--keep", metavar="DIR", help="work in DIR (kept) instead of a temporary dir")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    base = args.keep or tempfile.mkdtemp(prefix="cowfs-store-disk-")
    wheels, root = os.path.join(base, "wheels"), os.path.join(base, "root")
    os.makedirs(wheels, exist_ok=True)
    names = [f"proj{i:02d}" for i in range(args.projects)]
    sizes = {n: int(200 * 1024 * 10 ** rng.uniform(0, 1)) for n in names}  # 200 KiB .. 2 MiB
    pins = dict.fromkeys(names, "1.0")
    try:
        copies = 0
        print(f"{'week':>4} {'changed':>7} {'snapshot MiB':>12} {'ROOT du MiB':>11} "
              f"{'full copies MiB':>15} {'ratio':>6}")
        for week in range(1, args.weeks + 1):
            changed = rng.sample(names, args.changed) if week > 1 else names
            for n in changed:
                pins[n] = f"{week}.0"
                write_wheel(wheels, n, pins[n], sizes[n], rng.getrandbits(32))
            snap = build(root, wheels, pins)
            one = du(snap)
            copies += one
            total = du(root)
            print(f"{week:>4} {len(changed):>7} {one / MIB:>12.1f} {total / MIB:>11.1f} "
                  f"{copies / MIB:>15.1f} {total / copies:>6.2f}", flush=True)
        subprocess.run([*COWFS, "snapshot", "gc", root, "--keep", "2"], check=True)
        print(f"after gc --keep 2: ROOT du {du(root) / MIB:.1f} MiB")
    finally:
        if not args.keep:
            subprocess.run(["chmod", "-R", "u+w", base], check=True)
            shutil.rmtree(base)
    return 0


if __name__ == "__main__":
    sys.exit(main())

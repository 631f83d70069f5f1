"""Time of an image layer tarball as a lower: the first `cowfs mount` (unpacks it), a second one
(the layer is there: hashes the tarball only), `tar -xf` of the same tarball (also followed by
`sync -f`, as cowfs syncs before it names store objects), and `cowfs mount` of the unpacked
directory (the mount's own cost), interleaved, medians of --rounds.

    unshare -m --propagation private .venv/bin/python tools/layer_unpack_speed.py [--files N]
        [--mib M] [--rounds R] [--compression gzip|zstd|tar] [--dir DIR]

Run as root (mounts of root's are made with allow_other) or as any user who may use FUSE; in a
private mount namespace so no mount outlives it. Each mount is unmounted right after `cowfs
mount` returns (the figure is the time until the mount is live). The layer: N files in 50
dirs, M MiB of incompressible data in all (a third of the files empty or tiny, as in real
layers), written once; warm page cache.
"""
from __future__ import annotations

import argparse
import gzip
import io
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

COWFS = os.path.join(os.path.dirname(sys.executable), "cowfs")


def make_layer(path: str, files: int, mib: int, how: str) -> None:
    rng = random.Random(16)
    big = files * 2 // 3
    size = (mib << 20) // max(big, 1)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in range(50):
            ti = tarfile.TarInfo(f"usr/lib/d{d:02d}")
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1_600_000_000
            tf.addfile(ti)
        for i in range(files):
            data = rng.randbytes(rng.randrange(size // 2, size * 3 // 2)) if i < big else b"#\n"
            ti = tarfile.TarInfo(f"usr/lib/d{i % 50:02d}/f{i:06d}")
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1_600_000_000
            tf.addfile(ti, io.BytesIO(data))
    data = buf.getvalue()
    if how == "gzip":
        data = gzip.compress(data, compresslevel=6)
    elif how == "zstd":
        import zstandard

        data = zstandard.ZstdCompressor().compress(data)
    with open(path, "wb") as f:
        f.write(data)


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=600)
    return time.perf_counter() - t


def mount_time(lower: str, store: str, mnt: str) -> float:
    took = timed([COWFS, "mount", "--layer-store", store, "--lower", lower, mnt])
    subprocess.run([COWFS, "umount", mnt], check=True, timeout=60)
    return took


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=3000)
    p.add_argument("--mib", type=int, default=100)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--compression", choices=("gzip", "zstd", "tar"), default="gzip")
    p.add_argument("--dir", default=None, help="scratch dir (default: a temp dir in /var/tmp)")
    a = p.parse_args()
    base = tempfile.mkdtemp(prefix="layer-speed-", dir=a.dir or "/var/tmp")
    try:
        layer = os.path.join(base, f"layer.{a.compression}")
        make_layer(layer, a.files, a.mib, a.compression)
        mnt = os.path.join(base, "mnt")
        os.mkdir(mnt)
        flag = {"gzip": "-z", "zstd": "--zstd", "tar": ""}[a.compression]
        warm = os.path.join(base, "warm-store")
        mount_time(layer, warm, mnt)  # the store for the second-mount runs
        unpacked = os.path.join(warm, "layers", "sha256", os.listdir(
            os.path.join(warm, "layers", "sha256"))[0])
        runs: dict[str, list[float]] = {"tar -xf": [], "tar -xf, then sync -f": [],
                                        "cowfs mount, first (unpack)": [],
                                        "cowfs mount, second (layer there)": [],
                                        "cowfs mount of the unpacked dir": []}
        order = list(runs)
        for r in range(a.rounds):
            for name in order[r % 5:] + order[:r % 5]:  # a rotating order
                fresh = os.path.join(base, f"run{r}")
                if name.startswith("tar -xf"):
                    os.mkdir(fresh)
                    took = timed(["tar", "-x", *([flag] if flag else []), "-f", layer, "-C",
                                  fresh])
                    if name.endswith("sync -f"):  # what cowfs does before it names objects
                        took += timed(["sync", "-f", fresh])
                elif name.startswith("cowfs mount, first"):
                    took = mount_time(layer, fresh, mnt)
                elif name.startswith("cowfs mount, second"):
                    took = mount_time(layer, warm, mnt)
                else:
                    took = mount_time(unpacked, warm, mnt)
                runs[name].append(took)
                shutil.rmtree(fresh, ignore_errors=True)
                subprocess.run(["chmod", "-R", "u+w", base], check=False)
                shutil.rmtree(fresh, ignore_errors=True)
        size = os.path.getsize(layer)
        print(f"layer: {a.files} files, {a.mib} MiB, {a.compression}, {size / 2**20:.1f} MiB "
              f"on disk; medians of {a.rounds} interleaved rounds")
        for name, times in runs.items():
            print(f"  {name:36s} {statistics.median(times):7.3f} s  "
                  f"(min {min(times):.3f}, max {max(times):.3f})")
    finally:
        subprocess.run(["chmod", "-R", "u+w", base], check=False)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

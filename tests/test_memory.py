"""Memory stays bounded: once the kernel forgets what a walk of a big tree made it look up, the
daemon's RSS returns to near its idle figure (README "Reliability"; bench/footprint.py reports
the same figures for a tree of any size, e.g. --files 1000000)."""
from __future__ import annotations

import subprocess
import time

import overlay
from overlay import Dir

DIRS, FILES = 100, 1000  # 100k entries: ~90 MiB more at the peak

WALK = """
import os, sys
n = 0
for root, dirs, files in os.walk(sys.argv[1]):
    for name in files:
        os.lstat(os.path.join(root, name))
        n += 1
print(n)
"""


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def settled_rss(pid: int, limit: float = 20.0) -> float:
    """RSS once it has not fallen for 2 s (forgets arrive in batches; the daemon gives memory
    back a second after a burst)."""
    deadline = time.monotonic() + limit
    last = rss_mib(pid)
    while time.monotonic() < deadline:
        time.sleep(2)
        now = rss_mib(pid)
        if now > last - 0.5:
            return now
        last = now
    raise AssertionError(f"RSS of {pid} still falling after {limit} s: {last:.1f} MiB")


def drop_caches() -> None:
    subprocess.run(["sync"], check=True, timeout=60)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2\n")


def test_forgotten_nodes_give_memory_back():
    """Walk + lstat of 100k lower entries, then the kernel forgets them all (drop_caches: a
    FORGET for every node): what the daemon grew by is given back, but for a small rest (the
    root's kept listing, what allocator arenas keep for blocks still alive)."""
    tree = {f"d{i:03d}": Dir({f"f{j:04d}": "" for j in range(FILES)}) for i in range(DIRS)}
    lay = overlay.make_layers("memory", [tree])
    with overlay.mount("cowfs", lay) as m:
        pid = m.proc.pid
        idle = settled_rss(pid)
        e = overlay.env()
        r = subprocess.run(overlay.as_user([e.python, "-c", WALK, m.mnt]), capture_output=True,
                           text=True, env=overlay.user_env(e), cwd=e.base, timeout=300)
        assert r.returncode == 0 and int(r.stdout) == DIRS * FILES, r.stderr
        peak = rss_mib(pid)
        drop_caches()
        after = settled_rss(pid)
        m.check_alive()
    grown, kept = peak - idle, after - idle
    print(f"RSS idle {idle:.1f} MiB, after the walk {peak:.1f}, after the forget {after:.1f}")
    assert grown > 50, f"the walk grew the daemon by {grown:.1f} MiB only: nothing measured"
    assert kept < 0.25 * grown, \
        f"after the forget the daemon keeps {kept:.1f} of the {grown:.1f} MiB the walk took " \
        f"(idle {idle:.1f}, peak {peak:.1f}, after {after:.1f} MiB)"

"""python -m bench.perreq [--runs N] [--quick] [--ops OP,...] [--targets T,...] [--out DIR]

Per-request micro-benchmark: the same micro-operations against the trivial pyfuse3 filesystem
(bench/trivialfs.py, the floor of a pyfuse3+trio daemon), cowfs, fuse-overlayfs and kernel
overlayfs, in one run. Every run of an operation is a fresh mount with a fresh upper and work dir;
runs are interleaved over the targets round by round (the order rotates each round) and each
figure is the median over the runs. Reports microseconds per syscall, requests per syscall by
FUSE opcode and microseconds per listing entry.

Runs as root inside a private mount namespace (it re-executes itself under `unshare -m`). The
FUSE daemons (trivial, cowfs, fuse-overlayfs) are mounted rootless by the bench user; root mounts
kernel overlay (userxattr). The operations run as the bench user (bench/perreq_worker.py), timed
in-process around the syscalls alone. Cold operations drop the kernel's caches (`sync; echo 3 >
/proc/sys/vm/drop_caches`) after mounting, just before the timed loop.

Requests are counted in separate passes, never while timing: one more fresh mount per operation
and FUSE target, with libfuse's per-request trace on (cowfs --debug-fuse, fuse-overlayfs -d,
trivialfs --debug), counting the "opcode:" lines between the start and the end of the timed loop.

One lower, built at the start under /tmp and removed at the end, serves every run: no target
writes to a lower, so every run sees the same lower (its page cache is warmed before the warm
operations and dropped before the cold ones).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python bench/perreq.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import report  # noqa: E402
from bench.targets import (USER, BenchError, Mount, as_user, chown_to_user, drop_caches,  # noqa: E402
                           log, remove)

TARGETS = ("trivial", "cowfs", "fuse-overlayfs", "kernel")
FUSE_TARGETS = ("trivial", "cowfs", "fuse-overlayfs")
NS_MARK = "COWFS_PERREQ_IN_NS"
HERE = Path(__file__).resolve().parent
WORKER, TRIVIALFS = HERE / "perreq_worker.py", HERE / "trivialfs.py"
SYSTEM_PYTHON = "/usr/bin/python3"
RESULTS = HERE / "results"
MiB = 1 << 20
STEP_TIMEOUT = 300   # seconds for one worker step (prepare, or the timed loop)
MAX_ATTEMPTS = 3   # runs disturbed by someone else's drop_caches are repeated up to this
OPCODE = re.compile(r"opcode: (\w+) \(\d+\)")


@dataclass(frozen=True)
class Sizes:
    files: int        # files a run touches (small files read or stat'ed, lower files changed, ...)
    list_entries: int  # entries of the listed lower directory
    listings: int     # timed listings a run
    small: int        # bytes of a small lower file
    big: int          # bytes of the sequentially read file


FULL = Sizes(files=1000, list_entries=1000, listings=50, small=4096, big=1024 * MiB)
QUICK = Sizes(files=200, list_entries=1000, listings=20, small=4096, big=256 * MiB)

# op -> (what one timed call is, cold?, the lower directory it reads or changes)
OPS = {
    "listdir-warm": ("os.listdir of a {list_entries}-entry lower dir", False, "list"),
    "read-warm": ("open+read+close of a {small_kib} KiB lower file", False, "small"),
    "read-cold": ("open+read+close of a {small_kib} KiB lower file", True, "small"),
    "stat-cold": ("stat of a lower file", True, "small"),
    "unlink": ("unlink of a lower file", False, "unlink"),
    "create": ("open(O_CREAT+O_EXCL)+close, in a lower dir", False, "create"),
    "mkdir": ("mkdir, in a lower dir", False, "mkdir"),
    "rename": ("rename of a lower file in its dir", False, "rename"),
    "chmod": ("chmod of a lower file", False, "chmod"),
    "seqread-cold": ("read(1 MiB) of a {big_mib} MiB lower file, sequential", True, "big"),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.perreq",
                                description=__doc__.split("\n\n")[1])
    p.add_argument("--runs", type=int, help="timed runs per (operation, target); default 7, "
                   "5 with --quick")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK.files} files, {QUICK.big // MiB} MiB sequential read (~2 min)")
    p.add_argument("--ops", default=",".join(OPS), help=f"comma separated (default all: "
                   f"{','.join(OPS)})")
    p.add_argument("--targets", default=",".join(TARGETS),
                   help=f"comma separated (default {','.join(TARGETS)})")
    p.add_argument("--no-count", action="store_true", help="skip the request counting passes")
    p.add_argument("--out", type=Path,
                   help="results folder (default bench/results/perreq[-quick])")
    p.add_argument("--cowfs", default=str(Path(sys.executable).parent / "cowfs"),
                   help="the cowfs executable (default: beside this python)")
    a = p.parse_args(argv)
    for name, value, allowed in (("--ops", a.ops, OPS), ("--targets", a.targets, TARGETS)):
        bad = [x for x in value.split(",") if x not in allowed]
        if bad:
            p.error(f"{name}: unknown {', '.join(bad)} (choose from {', '.join(allowed)})")
    a.ops = [o for o in OPS if o in a.ops.split(",")]
    a.targets = [t for t in TARGETS if t in a.targets.split(",")]
    if a.runs is None:
        a.runs = 5 if a.quick else 7
    if a.runs < 1:
        p.error("--runs must be at least 1")
    if a.out is None:
        a.out = RESULTS / ("perreq-quick" if a.quick else "perreq")
    return a


def preflight(a: argparse.Namespace) -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append("run as root (drop_caches, kernel overlay mounts)")
    if subprocess.run(["id", "-u", USER], capture_output=True).returncode:
        problems.append(f"user {USER} missing (`make testenv` creates it)")
    if os.stat("/dev/fuse").st_mode & 0o006 != 0o006:
        problems.append("/dev/fuse is not 0666 (`make testenv` fixes it)")
    if "cowfs" in a.targets and not os.access(a.cowfs, os.X_OK):
        problems.append(f"no cowfs executable at {a.cowfs} (`make venv`, or --cowfs PATH)")
    if "trivial" in a.targets and subprocess.run(
            as_user([sys.executable, "-c", "import pyfuse3, trio"]), capture_output=True).returncode:
        problems.append(f"{USER} cannot import pyfuse3 and trio with {sys.executable} "
                        "(run this with the venv's python: `make venv`)")
    if "fuse-overlayfs" in a.targets and not shutil.which("fuse-overlayfs"):
        problems.append("fuse-overlayfs missing (`make deps`)")
    if problems:
        sys.exit("perreq: " + "; ".join(problems))


class PerreqMount(Mount):
    """A bench Mount that also knows the trivial filesystem and, if asked, traces requests."""

    def __init__(self, target: str, lower: Path, base: Path, cowfs_bin: str, trace: bool):
        super().__init__(target, lower, base, cowfs_bin)
        self.trace = trace

    def daemon_cmd(self, upper: Path, work: Path) -> list[str]:
        if self.target == "trivial":
            return [sys.executable, str(TRIVIALFS), *(["--debug"] if self.trace else []),
                    str(self.lower), str(self.mnt)]
        cmd = super().daemon_cmd(upper, work)
        if self.trace:
            cmd.insert(2 if self.target == "cowfs" else 1,
                       "--debug-fuse" if self.target == "cowfs" else "-d")
        return cmd


# --- the lower --------------------------------------------------------------------------------

def build_lower(lower: Path, s: Sizes) -> None:
    log(f"building the lower in {lower} ({s.big // MiB} MiB file + {4 * s.files + s.list_entries}"
        " small ones)")
    for d in ("list", "small", "unlink", "rename", "chmod", "create", "mkdir"):
        (lower / d).mkdir(parents=True)
    for i in range(s.list_entries):
        (lower / "list" / f"e{i:04d}").touch()
    data = os.urandom(s.small)
    for d in ("small", "unlink", "rename", "chmod"):
        for i in range(s.files):
            (lower / d / f"f{i:04d}").write_bytes(data)
    chunk = os.urandom(4 * MiB)
    with open(lower / "big", "wb") as f:
        for off in range(0, s.big, len(chunk)):
            f.write(chunk[:min(len(chunk), s.big - off)])
    chown_to_user(lower)
    subprocess.run(["sync"], check=True)


def warm_lower(path: Path) -> None:
    """Bring a lower directory's entries and inodes into the kernel's caches (outside a mount)."""
    if path.is_dir():
        for e in os.scandir(path):
            e.stat(follow_symlinks=False)


# --- one run ----------------------------------------------------------------------------------

def read_line(proc: subprocess.Popen, timeout: float) -> str:
    """One line of the worker's stdout, or BenchError after TIMEOUT seconds (a hung mount)."""
    fd, data, deadline = proc.stdout.fileno(), b"", time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise BenchError(f"worker: no answer after {timeout} s")
        chunk = os.read(fd, 65536)
        if not chunk:
            err = proc.stderr.read().decode(errors="replace").strip().splitlines()[-3:]
            raise BenchError(f"worker exited: {' | '.join(err)}")
        data += chunk
    return data.decode()


def cache_drops() -> int:
    """How often anyone on the machine has dropped the kernel's caches since boot."""
    with open("/proc/vmstat") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("drop_slab "))


def opcodes_since(m: PerreqMount, offset: int) -> collections.Counter:
    with open(m.log, "rb") as f:
        f.seek(offset)
        return collections.Counter(op.lower() for op in OPCODE.findall(f.read().decode(
            errors="replace")))


def run_one(op: str, target: str, lower: Path, base: Path, a, s: Sizes, trace: bool) -> dict:
    """One fresh mount of TARGET, one timed loop of OP on it. An error is recorded, not raised."""
    rec: dict = {"op": op, "target": target, "error": None,
                 "load": float(open("/proc/loadavg").read().split()[0])}
    _, cold, sub = OPS[op]
    n = s.listings if op == "listdir-warm" else s.files
    if not cold:
        warm_lower(lower / sub)
    m = PerreqMount(target, lower, base, a.cowfs, trace)
    worker, drops = None, cache_drops()
    try:
        m.mount()
        worker = subprocess.Popen(as_user([SYSTEM_PYTHON, str(WORKER), op, str(m.mnt), str(n)]),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, cwd=base, start_new_session=True)
        if read_line(worker, STEP_TIMEOUT).strip() != "ready":
            raise BenchError("worker: unexpected output")
        if cold:
            drop_caches()
        if trace:
            time.sleep(0.3)   # requests the preparation or the drop set off are not counted
            offset = m.log.stat().st_size
        worker.stdin.write(b"go\n")
        worker.stdin.flush()
        res = json.loads(read_line(worker, STEP_TIMEOUT))
        worker.wait(STEP_TIMEOUT)
        # another process dropping caches meanwhile turns a warm figure into a cold one
        rec["foreign_drops"] = cache_drops() - drops - cold
        rec.update(res)
        rec["us_per_call"] = res["seconds"] / res["calls"] * 1e6
        if trace:
            time.sleep(0.3)   # releases and forgets the loop set off arrive asynchronously
            counts = opcodes_since(m, offset)
            rec["requests_per_call"] = {k: v / res["calls"] for k, v in counts.most_common()}
    except Exception as e:   # noqa: BLE001 - a failed run is recorded; the bench goes on
        rec["error"] = str(e) if isinstance(e, BenchError) else f"{type(e).__name__}: {e}"
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        try:
            m.unmount()
        except BenchError as e:
            rec["error"] = rec["error"] or str(e)
        remove(base)
    return rec


# --- results ----------------------------------------------------------------------------------

def summarize(runs: list[dict], ops: list[str], targets: list[str]) -> dict:
    out: dict = {}
    for op in ops:
        row: dict = {"us_per_call": {}, "us_per_entry": {}, "requests_per_call": {}, "errors": {},
                     "disturbed": {}}
        for t in targets:
            timed = [r for r in runs if r["op"] == op and r["target"] == t and "run" in r]
            ok = [r for r in timed if not r["error"]]
            if ok:
                row["us_per_call"][t] = statistics.median(r["us_per_call"] for r in ok)
                if op == "listdir-warm":
                    row["us_per_entry"][t] = statistics.median(
                        r["us_per_call"] / r["entries"] for r in ok)
            disturbed = [r for r in ok if r.get("foreign_drops")]
            if disturbed:
                row["disturbed"][t] = len(disturbed)
            errs = [r["error"] for r in timed if r["error"]]
            if errs:
                row["errors"][t] = errs
            counted = [r for r in runs if r["op"] == op and r["target"] == t and "run" not in r]
            if counted and not counted[0]["error"]:
                row["requests_per_call"][t] = counted[0]["requests_per_call"]
        out[op] = row
    return out


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def _requests(counts: dict | None) -> str:
    if counts is None:
        return "-"
    shown = [f"{k} {v:.2f}" for k, v in counts.items() if v >= 0.005]
    return f"**{sum(counts.values()):.2f}**: " + ", ".join(shown) if shown else "0"


def markdown(summary: dict, info: dict, config: dict, s: Sizes) -> str:
    fmt = {"list_entries": s.list_entries, "small_kib": s.small // 1024, "big_mib": s.big // MiB}
    lines = [
        "# Per-request micro-benchmark (`python -m bench.perreq`)", "",
        f"Microseconds per syscall, median of {config['runs']} fresh mounts per operation and "
        "target, targets interleaved round by round. Requests per syscall by FUSE opcode from one "
        "separate counting pass (libfuse's trace), bold: all requests. Run as root; the FUSE "
        f"daemons run as `{USER}`, the operations too.", "",
        "| op | one syscall is | trivial | cowfs | fuse-overlayfs | kernel | cowfs/trivial "
        "| cowfs/fuse-overlayfs | requests/syscall: trivial | cowfs | fuse-overlayfs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for op, row in summary.items():
        us, rq = row["us_per_call"], row["requests_per_call"]
        cells = [op, OPS[op][0].format(**fmt), *(_num(us.get(t)) for t in TARGETS),
                 _ratio(us.get("cowfs"), us.get("trivial")),
                 _ratio(us.get("cowfs"), us.get("fuse-overlayfs")),
                 *(_requests(rq.get(t)) for t in FUSE_TARGETS)]
        lines.append("| " + " | ".join(cells) + " |")
        if row["us_per_entry"]:
            pe = row["us_per_entry"]
            cells = [f"{op}, per entry", "us per listed entry", *(_num(pe.get(t)) for t in TARGETS),
                     _ratio(pe.get("cowfs"), pe.get("trivial")),
                     _ratio(pe.get("cowfs"), pe.get("fuse-overlayfs")), "", "", ""]
            lines.append("| " + " | ".join(cells) + " |")
    errors = [(op, t, e) for op, row in summary.items() for t, es in row["errors"].items()
              for e in es]
    if errors:
        lines += ["", "Failed runs:", ""] + [f"- {op} on {t}: {e}" for op, t, e in errors]
    disturbed = [f"{op} on {t}: {n}" for op, row in summary.items()
                 for t, n in row["disturbed"].items()]
    if disturbed:
        lines += ["", f"Runs kept although another process dropped the caches during each of "
                  f"their {MAX_ATTEMPTS} attempts: " + "; ".join(disturbed)]
    lines += ["", "Sizes: " + ", ".join(f"{k} {v}" for k, v in config["sizes"].items()), "",
              "Machine:", ""] + [f"- {k}: {v}" for k, v in info.items()]
    return "\n".join(lines) + "\n"


def write(out: Path, runs: list[dict], info: dict, config: dict, s: Sizes) -> str:
    summary = summarize(runs, config["ops"], config["targets"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(
        {"machine": info, "config": config, "summary": summary, "runs": runs}, indent=1) + "\n")
    md = markdown(summary, info, config, s)
    (out / "results.md").write_text(md)
    return md


# --- main -------------------------------------------------------------------------------------

def main(argv: list[str]) -> None:
    a = parse_args(argv)
    preflight(a)
    if os.environ.get(NS_MARK) != "1":
        env = {**os.environ, NS_MARK: "1", "PYTHONPATH": str(HERE.parent)}
        os.execvpe("unshare", ["unshare", "-m", "--propagation", "private", sys.executable,
                               "-m", "bench.perreq", *argv], env)
    s = QUICK if a.quick else FULL
    scratch = Path(tempfile.mkdtemp(prefix="cowfs-perreq-", dir="/tmp"))
    scratch.chmod(0o755)
    t_start = time.monotonic()
    try:
        lower = scratch / "lower"
        build_lower(lower, s)
        info = report.machine(a.cowfs)
        info["filesystem"] = subprocess.run(["findmnt", "-no", "FSTYPE,SOURCE", "-T", str(scratch)],
                                            capture_output=True, text=True).stdout.strip()
        config = {"runs": a.runs, "quick": a.quick, "ops": a.ops, "targets": a.targets,
                  "count": not a.no_count, "sizes": asdict(s)}
        runs: list[dict] = []
        passes = [(op, i) for op in a.ops for i in range(a.runs)]
        if not a.no_count:
            passes += [(op, None) for op in a.ops]
        total = len(a.ops) * a.runs * len(a.targets) + (
            0 if a.no_count else len(a.ops) * len([t for t in a.targets if t in FUSE_TARGETS]))
        for op, i in passes:
            if i is None:   # the counting pass
                order = [t for t in a.targets if t in FUSE_TARGETS]
            else:           # the order rotates each round
                order = a.targets[i % len(a.targets):] + a.targets[:i % len(a.targets)]
            for t in order:
                for attempt in range(1, MAX_ATTEMPTS + 1):
                    rec = run_one(op, t, lower, scratch / f"{op}-{t}-{i}", a, s, trace=i is None)
                    if not rec.get("foreign_drops"):
                        break
                    log(f"{op} {t}: another process dropped the caches during the run "
                        f"(attempt {attempt}/{MAX_ATTEMPTS})")
                if i is not None:
                    rec["run"] = i
                runs.append(rec)
                what = (f"FAILED {rec['error']}" if rec["error"] else
                        f"{rec['us_per_call']:.1f} us/syscall" + (
                            f", {sum(rec['requests_per_call'].values()):.2f} requests/syscall"
                            if i is None else ""))
                log(f"{len(runs)}/{total} {time.monotonic() - t_start:5.0f}s {op} "
                    f"{'count' if i is None else f'run {i + 1}/{a.runs}'} {t}: {what}")
        info["load average at end"] = " ".join(open("/proc/loadavg").read().split()[:3])
        md = write(a.out, runs, info, config, s)
        print(md)
        log(f"done in {time.monotonic() - t_start:.0f} s; results in {a.out}")
    finally:
        remove(scratch)


if __name__ == "__main__":
    main(sys.argv[1:])

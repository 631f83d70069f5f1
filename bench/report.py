"""Results: every run as JSON, medians as a markdown table, ratio charts, the machine."""
from __future__ import annotations

import datetime
import json
import os
from math import nan
import platform
import statistics
import subprocess
from pathlib import Path

from .targets import TARGETS, log


def _first_line(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return ((r.stdout or r.stderr).strip().splitlines() or ["?"])[0]
    except OSError as e:
        return f"? ({e})"


def _fuse_overlayfs_version() -> str:
    r = subprocess.run(["fuse-overlayfs", "--version"], capture_output=True, text=True)
    # it prints fusermount3's and libfuse's versions too
    return next((line for line in (r.stdout + r.stderr).splitlines()
                 if line.startswith("fuse-overlayfs")), "?")


def _s(v: float) -> str:
    """Seconds: three decimals, more for sub-10ms figures (a raw first write is ~0.0003 s)."""
    return f"{v:.3f}" if v >= 0.01 else f"{v:.5f}"


def machine(cowfs_bin: str) -> dict:
    meminfo = dict(line.split(":", 1) for line in open("/proc/meminfo"))
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    repo = Path(__file__).resolve().parents[1]
    commit = _first_line(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "cowfs"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram": f"{int(meminfo['MemTotal'].split()[0]) / 1024**2:.1f} GiB",
        "kernel": platform.release(),
        "fuse-overlayfs": _fuse_overlayfs_version(),
        "python (workloads)": _first_line(["/usr/bin/python3", "--version"]),
        "python (cowfs)": _first_line([str(Path(cowfs_bin).parent / "python"), "--version"]),
        "cowfs": commit + (" + uncommitted changes in cowfs/" if dirty else ""),
        "filesystem": _first_line(["findmnt", "-no", "FSTYPE,SOURCE", "-T", "/var/cache"]),
        # other work on the machine skews every figure: worth knowing when reading them
        "load average at start": " ".join(open("/proc/loadavg").read().split()[:3]),
    }


class Summary:
    """Runs grouped: the figures of each workload (first-seen order), the values of each
    (kind, figure, target), and the errors of each (workload, target)."""

    def __init__(self, runs: list[dict]):
        self.figures: dict[str, list[tuple[str, str]]] = {}
        self.values: dict[tuple[str, str, str], list[float]] = {}
        self.errors: dict[tuple[str, str], list[str]] = {}
        self.targets = [t for t in TARGETS if any(r["target"] == t for r in runs)]
        for r in runs:
            figs = self.figures.setdefault(r["workload"], [])
            for kind in ("seconds", "mib"):
                for fig, v in r[kind].items():
                    if (kind, fig) not in figs:
                        figs.append((kind, fig))
                    self.values.setdefault((kind, fig, r["target"]), []).append(v)
            if r["error"]:
                self.errors.setdefault((r["workload"], r["target"]), []).append(r["error"])

    def median(self, kind: str, fig: str, target: str) -> float | None:
        v = self.values.get((kind, fig, target))
        return statistics.median(v) if v else None


def _ratio(x: float | None, ref: float | None) -> str:
    return f"{x / ref:.2f}" if x is not None and ref else "–"


def _note(s: Summary, workload: str, target: str) -> str:
    errs = s.errors.get((workload, target))
    return f"{len(errs)} run(s) failed: {errs[0]}".replace("|", "/") if errs else ""


def markdown(s: Summary, info: dict, config: dict) -> str:
    lines = ["# cowfs benchmark", "", "| machine | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in info.items()]
    lines += ["", f"Configuration: {json.dumps(config)}", "",
              "Seconds, median of the runs (min–max); ratios are medians over the raw and "
              "kernel medians (lower is better).", "",
              "| figure | target | median s | min–max s | × raw | × kernel | runs | notes |",
              "|---|---|---:|---:|---:|---:|---:|---|"]
    mem = ["", "Daemon memory, MiB (median of the runs, min–max).", "",
           "| figure | target | median MiB | min–max MiB | runs |", "|---|---|---:|---:|---:|"]
    for workload, figs in s.figures.items():
        if not figs:   # failed everywhere: one row per target with the error
            lines += [f"| {workload} | {t} | failed | | | | 0 | {_note(s, workload, t)} |"
                      for t in s.targets]
        for kind, fig in figs:
            raw, kern = s.median(kind, fig, "raw"), s.median(kind, fig, "kernel")
            for t in s.targets:
                v = s.values.get((kind, fig, t))
                note = _note(s, workload, t)
                if kind == "mib":
                    if v:
                        mem.append(f"| {fig} | {t} | {statistics.median(v):.1f} | "
                                   f"{min(v):.1f}–{max(v):.1f} | {len(v)} |")
                elif not v:
                    lines.append(f"| {fig} | {t} | failed | | | | 0 | {note} |")
                else:
                    med = statistics.median(v)
                    lines.append(f"| {fig} | {t} | {_s(med)} | {_s(min(v))}–{_s(max(v))} | "
                                 f"{_ratio(med, raw)} | {_ratio(med, kern)} | {len(v)} | {note} |")
    return "\n".join(lines + (mem if len(mem) > 5 else [])) + "\n"


def charts(s: Summary, out: Path) -> list[str]:
    """Bar charts: time ratio vs kernel per figure, and daemon memory. [] without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("charts skipped: matplotlib is not installed (make bench installs it)")
        return []
    made = []
    figs = [f for fl in s.figures.values() for k, f in fl if k == "seconds"]
    others = [t for t in s.targets if t != "kernel"]
    if figs and "kernel" in s.targets:
        fig, ax = plt.subplots(figsize=(10, 0.45 * len(figs) * max(1, len(others)) / 2 + 1.5))
        h = 0.8 / max(1, len(others))
        for i, t in enumerate(others):
            # nan: no bar where either median is missing (failed runs)
            ratios = [(s.median("seconds", f, t) or nan) / (s.median("seconds", f, "kernel") or nan)
                      for f in figs]
            ax.barh([y + i * h for y in range(len(figs))], ratios, height=h, label=t)
        ax.axvline(1, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_yticks([y + h * (len(others) - 1) / 2 for y in range(len(figs))], figs, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("time relative to kernel overlayfs (log scale; 1 = kernel, lower is better)")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(out / "ratio-vs-kernel.png", dpi=110)
        plt.close(fig)
        made.append("ratio-vs-kernel.png")
    mems = [f for fl in s.figures.values() for k, f in fl if k == "mib"]
    if mems:
        fig, ax = plt.subplots(figsize=(9, 0.6 * len(mems) + 1.5))
        daemons = [t for t in s.targets if any(s.values.get(("mib", f, t)) for f in mems)]
        h = 0.8 / max(1, len(daemons))
        for i, t in enumerate(daemons):
            ax.barh([y + i * h for y in range(len(mems))],
                    [s.median("mib", f, t) or 0 for f in mems], height=h, label=t)
        ax.set_yticks([y + h * (len(daemons) - 1) / 2 for y in range(len(mems))], mems, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("MiB (median)")
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(out / "daemon-memory.png", dpi=110)
        plt.close(fig)
        made.append("daemon-memory.png")
    return made


def write(out: Path, runs: list[dict], info: dict, config: dict, final: bool) -> str:
    """Save results.json (every run); when FINAL also results.md and the charts."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(
        {"machine": info, "config": config, "runs": runs}, indent=1) + "\n")
    if not final:
        return ""
    s = Summary(runs)
    md = markdown(s, info, config)
    pngs = charts(s, out)
    md += "".join(f"\n![{p}]({p})\n" for p in pngs)
    (out / "results.md").write_text(md)
    return md

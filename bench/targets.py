"""The four targets: mount each on a fresh directory with a fresh upper, unmount, find daemons.

    raw             the lower as plain directories (bind mounts of the lower's entries; the
                    entries a workload writes are copied fresh): the physical limit
    kernel          kernel overlayfs, userxattr mode, mounted by root
    fuse-overlayfs  the C FUSE peer, mounted rootless by the bench user
    cowfs           this project, mounted rootless by the bench user
    cowfs-base      another cowfs (`--cowfs-base`, e.g. an earlier commit's venv), the same way:
                    before and after in one interleaved run

Everything a workload does runs as the unprivileged bench user (as sandboxes use it).
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

USER = os.environ.get("COWFS_BENCH_USER", "cowfs-test")
TARGETS = ("raw", "kernel", "fuse-overlayfs", "cowfs-base", "cowfs")
MOUNT_TIMEOUT = 60
UMOUNT_TIMEOUT = 30


class BenchError(Exception):
    """A failed mount, unmount or workload command: recorded for that run, the bench goes on."""


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def as_user(cmd: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups", *cmd]


def chown_to_user(path: Path) -> None:
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(path)], check=True)


def user_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    pw = pwd.getpwnam(USER)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def mounts_below(path: Path) -> list[str]:
    """Mount points at or below PATH in this namespace, deepest first."""
    prefix = str(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == prefix or mp.startswith(prefix + "/"):
                found.append(mp)
    return sorted(found, key=len, reverse=True)


def _run(cmd: list[str], timeout: float = UMOUNT_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


class Mount:
    """TARGET over LOWER at BASE/mnt, upper BASE/upper. start() then wait_live(), or mount()."""

    def __init__(self, target: str, lower: Path, base: Path, cowfs_bin: str,
                 writes: tuple[str, ...] = ()):
        self.target, self.lower, self.base = target, lower, base
        self.cowfs_bin, self.writes = cowfs_bin, writes
        self.mnt = base / "mnt"
        self.proc: subprocess.Popen | None = None
        self.log = base / "daemon.log"

    def mount(self) -> "Mount":
        self.start()
        self.wait_live()
        return self

    def start(self) -> "Mount":
        user_dir(self.base)
        for d in ("mnt", "upper", "work"):
            user_dir(self.base / d)
        lower, upper, work = self.lower, self.base / "upper", self.base / "work"
        if self.target == "raw":
            self._raw()
        elif self.target == "kernel":
            r = _run(["mount", "-t", "overlay", "overlay", "-o",
                      f"userxattr,lowerdir={lower},upperdir={upper},workdir={work}",
                      str(self.mnt)])
            if r.returncode:
                raise BenchError(f"kernel overlay mount failed: {r.stderr.strip()}")
        else:
            with open(self.log, "wb") as logf:
                self.proc = subprocess.Popen(as_user(self.daemon_cmd(upper, work)),
                                             stdin=subprocess.DEVNULL, stdout=logf,
                                             stderr=subprocess.STDOUT, cwd=self.base,
                                             start_new_session=True)
        return self

    def daemon_cmd(self, upper: Path, work: Path) -> list[str]:
        """The command of a FUSE target's daemon, run in the foreground as the bench user."""
        if self.target in ("cowfs", "cowfs-base"):
            # --foreground: the daemon is our child, so its pid (for RSS) is known
            return [self.cowfs_bin, "mount", "--foreground", "--lower", str(self.lower),
                    "--upper", str(upper), "--work", str(work), str(self.mnt)]
        if self.target == "fuse-overlayfs":
            return ["fuse-overlayfs", "-f", "-o",
                    f"lowerdir={self.lower},upperdir={upper},workdir={work}", str(self.mnt)]
        raise BenchError(f"unknown target {self.target!r}")

    def _raw(self) -> None:
        for entry in sorted(os.listdir(self.lower)):
            src, dst = self.lower / entry, self.mnt / entry
            if entry in self.writes:
                r = _run(["cp", "-a", str(src), str(dst)], timeout=600)
                if r.returncode:
                    raise BenchError(f"raw copy of {entry} failed: {r.stderr.strip()}")
                continue
            dst.mkdir() if src.is_dir() else dst.touch()
            r = _run(["mount", "--bind", str(src), str(dst)])
            if r.returncode:
                raise BenchError(f"raw bind mount of {entry} failed: {r.stderr.strip()}")

    def wait_live(self) -> None:
        if self.proc is None:
            return
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not mounts_below(self.mnt):
            if self.proc.poll() is not None:
                raise BenchError(f"{self.target} exited with {self.proc.returncode} before "
                                 f"mounting: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"{self.target}: not mounted after {MOUNT_TIMEOUT} s")
            time.sleep(0.005)

    def log_tail(self) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-5:])
        except FileNotFoundError:
            return "(no log)"

    def status_kib(self, field: str) -> int | None:
        """VmRSS / VmHWM of the daemon in KiB (None for targets without one)."""
        if self.proc is None:
            return None
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise BenchError(f"{self.target}: no {field} for pid {self.proc.pid}")

    def unmount(self) -> None:
        """Unmount; raise BenchError if that needed force (the daemon misbehaved)."""
        problems = []
        if self.proc is not None:
            if mounts_below(self.mnt):
                r = _run(as_user(["fusermount3", "-u", str(self.mnt)]))
                if r.returncode:
                    problems.append(f"fusermount3 -u: {r.stderr.strip()}")
            try:
                rc = self.proc.wait(timeout=UMOUNT_TIMEOUT)
                if rc:
                    problems.append(f"daemon exit status {rc}: {self.log_tail()}")
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append("daemon still running after unmount: killed")
        for mp in mounts_below(self.mnt):
            r = _run(["umount", mp])
            if r.returncode:
                problems.append(f"umount {mp}: {r.stderr.strip()}")
                _run(["umount", "-l", mp])
        if problems:
            raise BenchError(f"{self.target} unmount: " + "; ".join(problems))


def remove(base: Path) -> None:
    """Remove a run's directory; lazily unmount anything a failure left there first."""
    for mp in mounts_below(base):
        _run(["umount", "-l", mp])
    shutil.rmtree(base, ignore_errors=True)

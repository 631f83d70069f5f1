"""The pip kind: `pip wheel` with its cache in the snapshot.

    pip/               pip's cache dir, filled by pip itself (HTTP responses, wheels it built
                       from sdists): a sandbox mounts it as PIP_CACHE_DIR
    wheels/            the wheelhouse (pip install --no-index --find-links)
    requirements.txt   the input list (--top: what went in, pinned)
    BUILD.json         --top only: what went in, what was left out and why
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from .. import popular
from ..config import UsageError
from . import LeftOut


def default_requirements() -> bytes:
    # beside the package (package data); not importlib.resources, 30 ms to import
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "default-requirements.txt")
    with open(path, "rb") as f:
        return f.read()


@dataclass(frozen=True)
class Pip:
    """`python -m pip wheel` with its cache in building/pip: pip writes its own cache entries,
    so a later pip on this cache finds them."""
    OPTIONS = ("python", "find_links", "no_index")
    name = "pip"
    tool = "pip wheel"
    owns = ("pip", "wheels", "requirements.txt", "BUILD.json")
    pins = "requirements.txt"
    record = "BUILD.json"
    names = popular.PYPI

    python: str = sys.executable
    find_links: tuple[str, ...] = ()
    no_index: bool = False

    def check(self) -> str:
        for d in self.find_links:
            if not os.path.isdir(d):
                raise UsageError(f"--find-links {d} is not a directory")
        if shutil.which(self.python) is None:
            raise UsageError(f"--python {self.python} is not an executable")
        # importing pip tells the same as `-m pip --version`, a second faster (pip's CLI is big)
        probe = "import pip, sys; print(f'pip {pip.__version__}, python {sys.version.split()[0]}')"
        res = subprocess.run([self.python, "-c", probe], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            lines = res.stderr.strip().splitlines() or ["?"]
            raise UsageError(f"--python {self.python} has no pip: {lines[-1]}")
        return f"{res.stdout.strip()} ({self.python})"

    def default_list(self) -> bytes:
        return default_requirements()

    def prepare(self, building: str) -> None:
        os.mkdir(os.path.join(building, "pip"))
        os.mkdir(os.path.join(building, "wheels"))

    def fill(self, building: str, list_path: str, count: int,
             say: Callable[[str], None]) -> None:
        from ..snapshot import SnapshotError  # noqa: PLC0415 - snapshot imports kinds

        say(f"snapshot: pip wheel of {count} requirement{'s' * (count != 1)} into {building}")
        # the original list: pip resolves `-r other.txt` and `./dir` lines from it
        status = self._wheel(building, os.path.join(building, "wheels"),
                             ["--requirement", list_path], capture=False).returncode
        if status != 0:
            raise SnapshotError(f"snapshot build failed: pip wheel exited with status {status}")

    def add(self, building: str, name: str) -> str:
        # its own dir: a failed run's wheels stay out, and its wheel tells the version
        scratch = tempfile.mkdtemp(prefix=".wheels-", dir=building)
        try:
            res = self._wheel(building, scratch, [name], capture=True)
            version = _version_in(scratch, name)
            if res.returncode != 0 or version is None:
                raise LeftOut(_reason(res, name))
            wheels = os.path.join(building, "wheels")
            for filename in os.listdir(scratch):
                if not os.path.exists(os.path.join(wheels, filename)):  # a shared dependency
                    os.rename(os.path.join(scratch, filename), os.path.join(wheels, filename))
            return version
        finally:
            shutil.rmtree(scratch)

    def pin(self, name: str, version: str) -> str:
        return f"{name}=={version}"

    def usage(self, root: str) -> str:
        return (f"cowfs sandbox mount --snapshot {root} --subdir pip --state STATE MNT; "
                f"PIP_CACHE_DIR=MNT pip install ... (offline: --no-index --find-links "
                f"{root}/current/wheels)")

    def _wheel(self, building: str, wheel_dir: str, requirement: list[str],
               capture: bool) -> subprocess.CompletedProcess:
        """A captured stderr (the reason for a failure is in it) is passed on as well."""
        env = dict(os.environ, PIP_CACHE_DIR=os.path.join(building, "pip"))
        env.pop("PIP_NO_CACHE_DIR", None)
        cmd = [self.python, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
               "--no-input", "--wheel-dir", wheel_dir, *requirement]
        for d in self.find_links:
            cmd += ["--find-links", os.path.abspath(d)]
        if self.no_index:
            cmd.append("--no-index")
        res = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, text=True, errors="replace",
                             stderr=subprocess.PIPE if capture else None)
        if capture:
            sys.stderr.write(res.stderr)
            sys.stderr.flush()
        return res


def _version_in(wheel_dir: str, name: str) -> str | None:
    """The version of name's wheel in wheel_dir (file names: NAME-VERSION-...whl)."""
    for filename in os.listdir(wheel_dir):
        dist, version = filename.split("-")[:2]
        if popular.normalize(dist) == popular.normalize(name):
            return version
    return None


def _reason(res: subprocess.CompletedProcess, name: str) -> str:
    """One line from pip's stderr: its first ERROR (the later ones sum up), else the code of its
    first unindented `error: ` (e.g. metadata-generation-failed), else its last line; then the
    last line a failed build printed (a compiler's or setup.py's complaint), if there is one."""
    if res.returncode == 0:
        return f"pip wheel made no wheel named {name}"
    lines = [line.rstrip() for line in res.stderr.splitlines() if line.strip()]
    stripped = [line.strip() for line in lines]
    errors = [line.removeprefix("ERROR: ") for line in stripped if line.startswith("ERROR: ")]
    codes = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    if not errors and not codes:
        return stripped[-1] if lines else f"pip wheel exited with status {res.returncode}"
    what = (errors or codes)[0]
    if "[end of output]" in stripped:
        said = stripped[stripped.index("[end of output]") - 1]
        if not said.endswith("lines of output]"):
            return f"{what}: {said}"
    return what

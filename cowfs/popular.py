"""`cowfs snapshot build ROOT --top N --stats FILE`: the N most downloaded projects that build.

FILE is CSV with the header `project,downloads` (the shape of the public PyPI download
datasets), one project a line. Projects are tried in download order (ties: file order), each
with a `pip wheel` of its own into a scratch dir: a project that fails to download or build is
left out with pip's reason and the next one is tried, until N went in or the list ends.

One pip run per project, not one for all: the N projects need not install together (a joint
resolve fails, or picks older versions, when two of them pin a dependency differently), and a
failure costs only its own project. The record of what went in and what was left out, BUILD.json,
is written into the snapshot before it is sealed, so the MANIFEST covers it.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass

from .config import UsageError

RECORD = "BUILD.json"
HEADER = ["project", "downloads"]
# PEP 508 names: nothing pip could read as an option, a path or a URL
_NAME = re.compile(r"[A-Z0-9]([A-Z0-9._-]*[A-Z0-9])?", re.IGNORECASE)


@dataclass(frozen=True)
class Project:
    name: str
    downloads: int


@dataclass(frozen=True)
class Included:
    project: str
    version: str
    downloads: int


@dataclass(frozen=True)
class Excluded:
    project: str
    downloads: int
    reason: str


@dataclass(frozen=True)
class Record:
    top: int
    included: list[Included]
    excluded: list[Excluded]


def normalize(name: str) -> str:
    """PEP 503: the name pip and wheel files compare by."""
    return re.sub(r"[-_.]+", "-", name).lower()


def ranked(stats: str | None, top: int | None, requirements: str | None) -> list[Project]:
    """The projects of the stats file, most downloaded first; UsageError for bad input."""
    if stats is None:
        raise UsageError("--top needs --stats FILE: the download counts to rank by")
    if top is None:
        raise UsageError("--stats needs --top N: how many projects to build")
    if requirements is not None:
        raise UsageError("--stats and --requirements exclude each other: one list or the other")
    if top <= 0:
        raise UsageError(f"--top must be at least 1, not {top}")
    projects = read_stats(stats)
    return sorted(projects, key=lambda p: -p.downloads)  # stable: ties keep file order


def read_stats(path: str) -> list[Project]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # -sig: a spreadsheet's BOM
            return _parse(path, csv.reader(f))
    except OSError as e:
        raise UsageError(f"cannot read stats file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"stats file {path} is not UTF-8 text") from None
    except csv.Error as e:
        raise UsageError(f"stats file {path}: {e}") from None


def _parse(path: str, reader) -> list[Project]:
    header = [field.strip() for field in next(reader, [])]
    if header != HEADER:
        raise UsageError(f"stats file {path} line 1: header is {','.join(header)!r}, "
                         f"expected {','.join(HEADER)!r}")
    projects: list[Project] = []
    first_seen: dict[str, int] = {}
    for row in reader:
        if not row:
            continue
        where = f"stats file {path} line {reader.line_num}"
        if len(row) != 2:
            raise UsageError(f"{where}: {len(row)} fields, expected 2 (project,downloads)")
        name, downloads = (field.strip() for field in row)
        if not _NAME.fullmatch(name):
            raise UsageError(f"{where}: {name!r} is not a project name")
        if not re.fullmatch(r"[0-9]+", downloads):
            raise UsageError(f"{where}: downloads {downloads!r} is not a whole number")
        seen = first_seen.setdefault(normalize(name), reader.line_num)
        if seen != reader.line_num:
            raise UsageError(f"{where}: {name} is listed twice (first on line {seen})")
        projects.append(Project(name, int(downloads)))
    if not projects:
        raise UsageError(f"stats file {path} lists no projects")
    return projects


def fill(building: str, projects: list[Project], top: int,
         wheel: Callable[[str, str], subprocess.CompletedProcess],
         say: Callable[[str], None]) -> Record:
    """Build wheels of the first `top` projects that build into building/wheels, with
    wheel(scratch_dir, name) (a pip wheel run); write the record and requirements.txt."""
    wheels = os.path.join(building, "wheels")
    os.mkdir(wheels)
    included: list[Included] = []
    excluded: list[Excluded] = []
    for project in projects:
        if len(included) == top:
            break
        # its own dir: a failed run's wheels stay out, and its wheel tells the version
        scratch = tempfile.mkdtemp(prefix=".wheels-", dir=building)
        try:
            res = wheel(scratch, project.name)
            version = _version_in(scratch, project.name)
            if res.returncode != 0 or version is None:
                reason = _reason(res, project.name)
                excluded.append(Excluded(project.name, project.downloads, reason))
                say(f"snapshot: left out {project.name}: {reason}")
                continue
            for name in os.listdir(scratch):
                if not os.path.exists(os.path.join(wheels, name)):  # a shared dependency
                    os.rename(os.path.join(scratch, name), os.path.join(wheels, name))
            included.append(Included(project.name, version, project.downloads))
            say(f"snapshot: [{len(included)}/{top}] {project.name} {version}")
        finally:
            shutil.rmtree(scratch)
    record = Record(top, included, excluded)
    with open(os.path.join(building, RECORD), "w") as f:
        json.dump(asdict(record), f, indent=1)
        f.write("\n")
    with open(os.path.join(building, "requirements.txt"), "w") as f:
        f.writelines(f"{p.project}=={p.version}\n" for p in included)
    return record


def _version_in(wheel_dir: str, name: str) -> str | None:
    """The version of name's wheel in wheel_dir (file names: NAME-VERSION-...whl)."""
    for filename in os.listdir(wheel_dir):
        dist, version = filename.split("-")[:2]
        if normalize(dist) == normalize(name):
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

"""`cowfs snapshot build ROOT --top N --stats FILE`: the N most downloaded projects that build.

FILE is CSV with the header `project,downloads` (the shape of the public PyPI download
datasets), one project a line. Projects are tried in download order (ties: file order), each
with a run of the kind's tool of its own (kinds/: `pip wheel` into a scratch dir, an npm install
into a scratch project): a project that fails to download or build is left out with the tool's
reason and the next one is tried, until N went in or the list ends.

One run per project, not one for all: the N projects need not install together (a joint
resolve fails, or picks older versions, when two of them pin a dependency differently), and a
failure costs only its own project. The record of what went in and what was left out (the
kind's record, pip's BUILD.json) is written into the snapshot before it is sealed, so the
MANIFEST covers it.
"""
from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from .config import UsageError

if TYPE_CHECKING:
    from .kinds import Kind

HEADER = ["project", "downloads"]


@dataclass(frozen=True)
class Names:
    """The project names of one ecosystem: which a stats file may hold (nothing its tool could
    read as an option, a path or a URL) and when two are the same project."""
    pattern: re.Pattern[str]
    normalize: Callable[[str], str]


def normalize(name: str) -> str:
    """PEP 503: the name pip and wheel files compare by."""
    return re.sub(r"[-_.]+", "-", name).lower()


#: PEP 508 names
PYPI = Names(re.compile(r"[A-Z0-9]([A-Z0-9._-]*[A-Z0-9])?", re.IGNORECASE), normalize)


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


def ranked(stats: str | None, top: int | None, requirements: str | None,
           names: Names = PYPI) -> list[Project]:
    """The projects of the stats file, most downloaded first; UsageError for bad input."""
    if stats is None:
        raise UsageError("--top needs --stats FILE: the download counts to rank by")
    if top is None:
        raise UsageError("--stats needs --top N: how many projects to build")
    if requirements is not None:
        raise UsageError("--stats and --requirements exclude each other: one list or the other")
    if top <= 0:
        raise UsageError(f"--top must be at least 1, not {top}")
    projects = read_stats(stats, names)
    return sorted(projects, key=lambda p: -p.downloads)  # stable: ties keep file order


def read_stats(path: str, names: Names = PYPI) -> list[Project]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # -sig: a spreadsheet's BOM
            return _parse(path, csv.reader(f), names)
    except OSError as e:
        raise UsageError(f"cannot read stats file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"stats file {path} is not UTF-8 text") from None
    except csv.Error as e:
        raise UsageError(f"stats file {path}: {e}") from None


def _parse(path: str, reader, names: Names) -> list[Project]:
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
        if not names.pattern.fullmatch(name):
            raise UsageError(f"{where}: {name!r} is not a project name")
        if not re.fullmatch(r"[0-9]+", downloads):
            raise UsageError(f"{where}: downloads {downloads!r} is not a whole number")
        seen = first_seen.setdefault(names.normalize(name), reader.line_num)
        if seen != reader.line_num:
            raise UsageError(f"{where}: {name} is listed twice (first on line {seen})")
        projects.append(Project(name, int(downloads)))
    if not projects:
        raise UsageError(f"stats file {path} lists no projects")
    return projects


def fill(building: str, projects: list[Project], top: int, kind: Kind,
         say: Callable[[str], None]) -> Record:
    """Add the first `top` projects that the kind can add (kind.add) into building; write the
    kind's record and its pinned list."""
    from .kinds import LeftOut  # noqa: PLC0415 - kinds imports this module

    included: list[Included] = []
    excluded: list[Excluded] = []
    for project in projects:
        if len(included) == top:
            break
        try:
            version = kind.add(building, project.name)
        except LeftOut as e:
            excluded.append(Excluded(project.name, project.downloads, str(e)))
            say(f"snapshot: left out {project.name}: {e}")
            continue
        included.append(Included(project.name, version, project.downloads))
        say(f"snapshot: [{len(included)}/{top}] {project.name} {version}")
    record = Record(top, included, excluded)
    with open(os.path.join(building, kind.record), "w") as f:
        json.dump(asdict(record), f, indent=1)
        f.write("\n")
    with open(os.path.join(building, kind.pins), "w") as f:
        f.writelines(kind.pin(p.project, p.version) + "\n" for p in included)
    return record

"""The npm kind: an npm install with its cache in the snapshot.

    npm/               npm's cache dir (`--cache`; what ~/.npm is by default): _cacache, the
                       packuments and tarballs the installs fetched, keyed by URL and integrity
                       (no absolute path in it: it works mounted anywhere, e.g. a user's ~/.npm)
    npm-packages.txt   the input list, one package spec a line (--top: what went in, pinned)
    npm-BUILD.json     --top only: what went in, what was left out and why

An install, not `npm cache add`: it caches exactly what a sandbox's `npm install` of the same
packages asks for (the abbreviated packuments of every package of the tree and its tarballs), so
`npm install --offline` there resolves and installs from the cache alone. Each install runs in a
scratch project inside the building snapshot, removed afterwards, with scripts off (the cache
needs no build step, and the builder runs no package's code) and no log files (npm writes them
into the cache dir).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from .. import popular
from ..config import UsageError
from . import LeftOut

CACHE = "npm"
#: npm package names, scoped or not: nothing npm could read as an option, a path, a URL or a tag
NPM = popular.Names(re.compile(r"(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*", re.IGNORECASE),
                    str.lower)
_ERROR = re.compile(r"npm (?:error|ERR!) ?")


def default_packages() -> bytes:
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "default-npm-packages.txt")
    with open(path, "rb") as f:
        return f.read()


@dataclass(frozen=True)
class Npm:
    OPTIONS = ()
    name = "npm"
    tool = "npm install"
    owns = (CACHE, "npm-packages.txt", "npm-BUILD.json")
    pins = "npm-packages.txt"
    record = "npm-BUILD.json"
    names = NPM

    def check(self) -> str:
        found = {tool: shutil.which(tool) for tool in ("npm", "node")}
        missing = [tool for tool, path in found.items() if path is None]
        if missing:
            raise UsageError(f"--kind npm needs {' and '.join(missing)}, not installed here "
                             "(as root: apt-get install -y npm)")
        versions = []
        for tool, path in found.items():
            res = subprocess.run([path, "--version"], capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL)
            if res.returncode != 0:
                said = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
                raise UsageError(f"--kind npm: {path} --version failed: {said}")
            versions.append(f"{tool} {res.stdout.strip()}")
        return f"{', '.join(versions)} ({found['npm']})"

    def default_list(self) -> bytes:
        return default_packages()

    def prepare(self, building: str) -> None:
        os.mkdir(os.path.join(building, CACHE))

    def fill(self, building: str, list_path: str, count: int,
             say: Callable[[str], None]) -> None:
        from ..snapshot import SnapshotError  # noqa: PLC0415 - snapshot imports kinds

        with open(list_path, encoding="utf-8", errors="replace") as f:
            specs = [line.strip() for line in f if line.strip()[:1] not in ("", "#")]
        say(f"snapshot: npm install of {count} package{'s' * (count != 1)} into {building}")
        res, _ = self._install(building, specs)
        if res.returncode != 0:
            raise SnapshotError(f"snapshot build failed: npm install exited with status "
                                f"{res.returncode}")

    def add(self, building: str, name: str) -> str:
        res, version = self._install(building, [name], version_of=name)
        if res.returncode != 0 or version is None:
            raise LeftOut(_reason(res, name))
        return version

    def pin(self, name: str, version: str) -> str:
        return f"{name}@{version}"

    def usage(self, root: str) -> str:
        return (f"cowfs sandbox mount --snapshot {root} --subdir npm --state STATE ~/.npm; "
                f"npm install --offline ...")

    def _install(self, building: str, specs: list[str], version_of: str | None = None
                 ) -> tuple[subprocess.CompletedProcess, str | None]:
        """npm install SPECS in a scratch project of its own (a package.json, so npm does not
        look for one above it), with the cache in building/npm; and the version of package
        version_of it installed (None if none). With version_of, stderr is captured (the reason
        for a failure is in it) and passed on as well."""
        capture = version_of is not None
        project = tempfile.mkdtemp(prefix=".npm-project-", dir=building)
        try:
            with open(os.path.join(project, "package.json"), "w") as f:
                f.write('{"private": true}\n')
            cmd = ["npm", "install", "--cache", os.path.join(building, CACHE), "--ignore-scripts",
                   "--no-audit", "--no-fund", "--logs-max=0", "--update-notifier=false",
                   "--loglevel=error", "--", *specs]
            res = subprocess.run(cmd, cwd=project, stdin=subprocess.DEVNULL, text=True,
                                 errors="replace", stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE if capture else None)
            if capture:
                sys.stderr.write(res.stderr)
                sys.stderr.flush()
            return res, _installed_version(project, version_of) if capture else None
        finally:
            shutil.rmtree(project)


def _installed_version(project: str, name: str) -> str | None:
    try:
        with open(os.path.join(project, "node_modules", name, "package.json")) as f:
            return json.load(f).get("version")
    except (OSError, ValueError):
        return None


def _reason(res: subprocess.CompletedProcess, name: str) -> str:
    """One line from npm's stderr: its error code and the line after it (`E404: 404 Not Found -
    GET https://...`), else its first error line."""
    if res.returncode == 0:
        return f"npm install installed no package named {name}"
    said = [_ERROR.sub("", line, count=1).strip() for line in res.stderr.splitlines()
            if _ERROR.match(line)]
    said = [line for line in said if line]
    if said and said[0].startswith("code ") and len(said) > 1:
        return f"{said[0].removeprefix('code ')}: {said[1]}"
    return said[0] if said else f"npm install exited with status {res.returncode}"

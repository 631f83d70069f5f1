"""Snapshot kinds: what differs from one package ecosystem to the next, one small module each.

The builder (snapshot.py) is the same for every kind: a .building dir, the kind fills it,
seal, MANIFEST, publish, `current`. A snapshot root holds every kind at once: a build of one kind
carries the other kinds' entries of the current snapshot over (hard links, no copy), so
ROOT/current has the pip cache and the npm cache side by side and a sandbox mounts the one it
needs with `--subdir`. A kind module says:

- which top-level entries of a snapshot it owns (`owns`: its cache dir first, the one a sandbox
  mounts, then what else it writes; two kinds never own the same name);
- how its tool is checked and named (`check`), and how a list of packages fills the cache
  (`fill`: one run over the whole list) or one package does (`add`: for --top, a package that
  fails is left out with its reason, LeftOut);
- which package names a stats file may hold (`names`) and how a pin is written (`pin`);
- how a sandbox uses it (`usage`, printed after a build).

Adding a kind (Maven, cargo, Go): a module here with a class like pip.Pip or npm.Npm, an entry
in KINDS, a default list beside the package, and a test that installs offline from a sandbox.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol

from ..config import UsageError
from ..popular import Names


class LeftOut(Exception):
    """A package that `add` could not put in the cache: its reason, one line."""


class Kind(Protocol):
    OPTIONS: tuple[str, ...]  # the build options it takes (dest names)
    name: str             # --kind NAME
    tool: str             # what fills the cache, for the build's messages
    owns: tuple[str, ...]  # top-level snapshot entries: the cache dir (--subdir) first
    pins: str             # the list that went in (a copy of -r, or --top's pinned list)
    record: str           # --top's record of what went in and what was left out
    names: Names          # the package names a stats file may hold

    def check(self) -> str:
        """The tool's version line; UsageError if it cannot run here."""

    def default_list(self) -> bytes:
        """What a build without -r or --top takes."""

    def prepare(self, building: str) -> None:
        """Create the dirs the kind fills."""

    def fill(self, building: str, list_path: str, count: int,
             say: Callable[[str], None]) -> None:
        """Fill the cache with the `count` packages of list_path and their dependencies;
        SnapshotError if the tool fails."""

    def add(self, building: str, name: str) -> str:
        """Add one package and its dependencies; its version. LeftOut with the tool's reason if
        it fails (then nothing of it goes in but cache entries the tool wrote)."""

    def pin(self, name: str, version: str) -> str:
        """One line of the pinned list."""

    def usage(self, root: str) -> str:
        """How a sandbox uses the cache, one line."""


KINDS = ("pip", "npm")


def make(name: str, options: dict[str, object]) -> Kind:
    """The kind called name, built with the options given (by their dest name: python,
    find_links, ...); UsageError for an unknown kind or an option it has not."""
    if name not in KINDS:
        raise UsageError(f"--kind {name}: unknown (kinds: {', '.join(KINDS)})")
    # only the kind asked for is imported
    cls = getattr(importlib.import_module(f".{name}", __name__), name.capitalize())
    for option in options:
        if option not in cls.OPTIONS:
            raise UsageError(f"--{option.replace('_', '-')} is not an option of --kind {name}")
    return cls(**options)

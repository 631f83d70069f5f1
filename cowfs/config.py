"""Mount configuration: what `cowfs mount` was asked to do, validated before anything is created.

INTERFACE (shared by cli/mount and the filesystem core):
  MountConfig(lowers, upper, work, mountpoint, debug, allow_other, fuse_options)
  - lowers: absolute real paths, top first (at least one)
  - upper: absolute real path or None (None: read-only merged view)
  - work: absolute path of the work dir or None (None iff upper is None). The core uses
    WORK/work/ as its scratch area (the same layout kernel overlayfs uses) and empties it at mount.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MountConfig:
    lowers: tuple[str, ...]
    upper: str | None
    work: str | None
    mountpoint: str
    debug: bool = False
    allow_other: bool = False
    fuse_options: frozenset[str] = field(default_factory=frozenset)

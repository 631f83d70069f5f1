"""`cowfs diff`: what an upper adds, changes and deletes relative to its lowers, as `docker diff`.

The merged view is compared with the view of the lowers alone, path by path, walking only the
upper (a path the upper does not touch is unchanged):
- a path only the merged view has is added (A), one only the lowers had is deleted (D), listed
  at its top only: a deleted directory's entries are not listed one by one;
- a non-directory in the upper over a lower object is changed (C), with or without new content:
  a copy-up is a change, as in docker;
- a directory in both is C when its type, mode, mtime or xattrs differ (docker's rule: a parent
  copied up on the way keeps its lower mtime and is not listed; a new or removed entry changes
  its mtime). Owners are not compared: a rootless copy-up changes them without anyone asking;
- an opaque directory over a lower one is C; everything of the upper below it is A, and every
  lower entry below it that no longer shows is D;
- a renamed directory (redirect_dir=on: an upper dir with a redirect) is shown as `mv` by copy
  would leave it: its new path is A (C over a directory that was there, as an opaque one),
  everything the merged view shows below it is A, lower content there that no longer shows is
  D, and its old path is D (the whiteout left there).
Whiteouts in an upper are the kernel's 0/0 character devices only; lowers are read as the mount
reads them (namei), OCI `.wh.*` markers included. Everything is read from the layer directories,
never through a mount, and nothing is written.
"""
from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from . import markers, namei
from .config import FSTYPE, UsageError, mount_at, require_dir
from .layers import WHITEOUT, Layer

ADDED, MODIFIED, DELETED = "added", "modified", "deleted"
LETTER = {ADDED: "A", MODIFIED: "C", DELETED: "D"}
TYPES = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink",
         stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket", stat.S_IFCHR: "char-device",
         stat.S_IFBLK: "block-device"}


@dataclass(frozen=True, order=True)
class Change:
    path: bytes  # relative to the root
    kind: str  # ADDED | MODIFIED | DELETED
    type: str  # TYPES: of the object in the merged view; of the lower one for DELETED


def changes(upper: str, lowers: Sequence[str]) -> list[Change]:
    """Every change of the merged view of `upper` over `lowers` (top first), sorted by path."""
    up = Layer(upper, -1)  # read-only: an UpperLayer would set up (and empty) a work dir
    lows: list[Layer] = []
    try:
        for i, path in enumerate(lowers):
            lows.append(Layer(path, i))
        return sorted(_walk(up, lows))
    finally:
        for layer in [up, *lows]:
            layer.close()


def _walk(up: Layer, lows: list[Layer]) -> list[Change]:
    out: list[Change] = []
    root_opaque = markers.is_opaque_value(up.try_getxattr(b".", markers.OPAQUE))
    # (upper dir, the lower dirs that made up that path without the upper, whether the merged
    # view still merges them: False below an opaque dir); a stack, not recursion: any depth
    todo: list[tuple[bytes, tuple[int, ...], bool]] = [
        (b"", tuple(range(len(lows))), not root_opaque)]
    while todo:
        dirpath, old, merged = todo.pop()
        shown: set[bytes] = set()
        marks: dict = {}
        for name, kind in up.listdir(dirpath or b"."):
            path = dirpath + name
            before = namei.resolve(None, lows, {}, False, old, path, name, marks) if old else None
            if kind == WHITEOUT:
                if merged and before is not None:
                    out.append(Change(path, DELETED, TYPES[before.kind]))
                continue
            shown.add(name)
            was_dir = before is not None and before.kind == stat.S_IFDIR
            merged_below = merged
            redirected = (kind == stat.S_IFDIR
                          and up.try_getxattr(path, markers.REDIRECT) is not None)
            if before is None or not merged:
                how = ADDED
            elif kind != stat.S_IFDIR or not was_dir:
                how = MODIFIED
            elif markers.is_opaque_value(up.try_getxattr(path, markers.OPAQUE)):
                how, merged_below = MODIFIED, False
            elif redirected:
                how = MODIFIED
            else:
                how = MODIFIED if _dir_changed(up, lows, path, before) else None
            if how is not None:
                out.append(Change(path, how, TYPES[kind]))
            if redirected:
                moved = namei.resolve_following(up, lows, {}, True, old if merged else (), None,
                                                path, name, marks)
                shown_below = _moved(up, lows, path, moved, out)
                if was_dir and merged:
                    out.extend(_hidden(lows, before.lowers, path + b"/", shown_below))
                continue
            if kind == stat.S_IFDIR:
                todo.append((path + b"/", before.lowers if was_dir else (), merged_below))
        if not merged and old:
            out.extend(_hidden(lows, old, dirpath, shown))
    return out


def _moved(up: Layer, lows: list[Layer], top: bytes, entry: namei.Entry,
           out: list[Change]) -> set[bytes]:
    """Everything the merged view shows below TOP, a dir whose redirect (ENTRY: how it
    resolved) took its lower dirs elsewhere, as added; returns the names shown in TOP."""
    shown_top: set[bytes] = set()
    todo = [(top, entry, entry.lpaths or ())]
    while todo:
        path, e, lpaths = todo.pop()
        lprefix = {i: p + b"/" for i, p in zip(e.lowers, lpaths)}
        names = set()
        if e.upper:
            names.update(name for name, _ in up.listdir(path))
        for i, lpath in zip(e.lowers, lpaths):
            names.update(name for name, _ in lows[i].listdir(lpath))
        marks: dict = {}
        for name in sorted(names):
            child = namei.resolve_following(up, lows, {}, e.upper, e.lowers, lprefix,
                                            path + b"/" + name, name, marks)
            if child is None:
                continue
            if path == top:
                shown_top.add(name)
            out.append(Change(path + b"/" + name, ADDED, TYPES[child.kind]))
            if child.kind == stat.S_IFDIR:
                todo.append((path + b"/" + name, child,
                             child.lpaths or tuple(lprefix[i] + name for i in child.lowers)))
    return shown_top


def _hidden(lows: list[Layer], old: tuple[int, ...], dirpath: bytes,
            shown: set[bytes]) -> list[Change]:
    """The lower entries of a directory the upper replaced (opaque) that no longer show."""
    names = {name for i in old for name, _ in lows[i].listdir(dirpath or b".")}
    out = []
    marks: dict = {}
    for name in names - shown:
        before = namei.resolve(None, lows, {}, False, old, dirpath + name, name, marks)
        if before is not None:  # not a whiteout or an OCI marker
            out.append(Change(dirpath + name, DELETED, TYPES[before.kind]))
    return out


def _dir_changed(up: Layer, lows: list[Layer], path: bytes, before: namei.Entry) -> bool:
    now, was = up.lstat(path), before.st
    if now.st_mode != was.st_mode or now.st_mtime_ns != was.st_mtime_ns:
        return True
    return _xattrs(up, path) != _xattrs(lows[before.lowers[0]], path)


def _xattrs(layer: Layer, path: bytes) -> dict[bytes, bytes | None]:
    """The xattrs the merged view shows of a layer's object (the overlay's own left out)."""
    return {name: layer.try_getxattr(path, disk) for disk in layer.listxattr(path)
            if (name := markers.from_disk_xattr(disk)) is not None}


def show_path(path: bytes) -> bytes:
    """A path on one line of output: a backslash or newline in a name is written \\\\ or \\n."""
    return path.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")


def render(found: list[Change], as_json: bool) -> bytes:
    if as_json:
        return json.dumps([{"path": os.fsdecode(c.path), "kind": c.kind, "type": c.type}
                           for c in found]).encode() + b"\n"
    return b"".join(b"%s %s\n" % (LETTER[c.kind].encode(), show_path(c.path)) for c in found)


# ---------------------------------------------------------------------------------------------
# a live mount


def read_layers(mountpoint: str) -> dict:
    """{"lowers": [...], "upper": path or None, "work": path or None} of a cowfs mount, from the
    root's virtual xattr; OSError where there is none (not a cowfs mount, not ours to ask)."""
    return json.loads(os.getxattr(mountpoint, markers.LAYERS))


def mount_layers(mountpoint: str) -> tuple[list[str], str | None]:
    """(lowers, upper) of the live cowfs mount at `mountpoint`; UsageError if it is none."""
    real = os.path.realpath(mountpoint)
    m = mount_at(real)
    if m is None or m.fstype != FSTYPE:
        if not os.path.lexists(mountpoint):
            raise UsageError(f"{mountpoint} does not exist")
        raise UsageError(f"{mountpoint} is not a cowfs mount point (for layers that are not "
                         "mounted, give --upper and --lower)")
    try:
        layers = read_layers(real)
    except OSError as e:
        if e.errno == errno.EACCES:
            raise UsageError(f"cannot ask the cowfs mount at {mountpoint} for its layers: "
                             f"{e.strerror} (a FUSE mount answers only the user who mounted it)"
                             ) from None
        raise UsageError(f"the cowfs mount at {mountpoint} does not tell its layers "
                         f"({e.strerror}: an older cowfs?): give --upper and --lower") from None
    return layers["lowers"], layers["upper"]


def layer_dirs(upper: str | None, lowers: Sequence[str]) -> tuple[str | None, list[str]]:
    """Real paths of existing layer directories, or UsageError."""
    return (None if upper is None else require_dir("upper directory", upper),
            [require_dir("lower directory", low) for low in lowers])

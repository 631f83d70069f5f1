"""Lookup of a name in a merged directory: the per-layer rules of kernel overlayfs (ovl_lookup).

Upper first: a whiteout hides the name, a non-directory hides every lower, a directory merges
with the lower directories of the same name unless it is opaque. Then each lower, top first, until
a whiteout (0/0 device or OCI `.wh.NAME`), a non-directory, or an opaque directory stops it.
"""
from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass

from . import markers
from .layers import Layer, UpperLayer

NAME_MAX = 255


@dataclass(slots=True)
class Entry:
    kind: int  # S_IFMT
    st: os.stat_result | Attrs  # of the topmost real object
    upper: bool
    lowers: tuple[int, ...]  # lower layers taking part, top first
    opaque: bool
    key: bytes
    lpaths: tuple[bytes, ...] | None = None  # Node.lpaths: set where a redirect was followed
    # a metacopy file's data (metacopy.lower_data): (lower index, path in that lower)
    data: tuple[int, bytes] | None = None


class Attrs:
    """The stat fields attributes are made of, in a third of a stat result's memory: what a
    cached listing keeps per entry."""

    __slots__ = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_rdev", "st_size", "st_blksize",
                 "st_blocks", "st_atime_ns", "st_mtime_ns", "st_ctime_ns")

    def __init__(self, st: os.stat_result):
        self.st_mode, self.st_nlink, self.st_uid, self.st_gid = (
            st.st_mode, st.st_nlink, st.st_uid, st.st_gid)
        self.st_rdev, self.st_size, self.st_blksize, self.st_blocks = (
            st.st_rdev, st.st_size, st.st_blksize, st.st_blocks)
        self.st_atime_ns, self.st_mtime_ns, self.st_ctime_ns = (
            st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns)


def kept(entry: Entry | None) -> Entry | None:
    """An entry to keep in a listing: its stat result shrunk to Attrs."""
    if entry is not None:
        entry.st = Attrs(entry.st)
    return entry


def upper_key(st: os.stat_result) -> bytes:
    return upper_key_at(st.st_dev, st.st_ino)


def upper_key_at(dev: int, ino: int) -> bytes:
    return b"u:%d:%d" % (dev, ino)


def _upper_key(upper: UpperLayer, path: bytes, st: os.stat_result,
               origins: dict[bytes, bytes]) -> bytes:
    key = upper_key(st)
    if stat.S_ISREG(st.st_mode):
        return upper.try_getxattr(path, markers.ORIGIN) or key
    # no user xattrs on symlinks and special files: their origins are kept in memory
    return origins.get(key, key)


def lower_key(layer: Layer, path: bytes, st: os.stat_result) -> bytes:
    """A lower object's key: every name of a lower hard link is one object (hardlinks.py), but
    in a deduplicated layer, where each name is an object of its own (a copy-up breaks the
    link, as the kernel does)."""
    key = b"l:%d:%d:%d" % (layer.index, st.st_dev, st.st_ino)
    if layer.deduplicated and st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
        key += b":" + path
    return key


# ":PATH": one name of a deduplicated layer's object (or an ORIGIN from before lower hard links
# were one object)
_LOWER_KEY = re.compile(rb"l:\d+:\d+:\d+(:.+)?\Z", re.DOTALL)


def is_origin_key(value: bytes) -> bool:
    """Whether an ORIGIN xattr holds what copy-up stores there: a lower_key."""
    return _LOWER_KEY.match(value) is not None


def lower_is_opaque(layer: Layer, path: bytes) -> bool:
    if markers.is_opaque_value(layer.try_getxattr(path, markers.OPAQUE)):
        return True
    return layer.try_lstat(path + b"/" + markers.OCI_OPAQUE) is not None


def resolve(upper: UpperLayer | None, lowers: list[Layer], origins: dict[bytes, bytes],
            parent_upper: bool, parent_lowers: tuple[int, ...], path: bytes,
            name: bytes, marks: dict) -> Entry | None:
    """What `path` (= parent path + name) is in the merged view; None if it does not exist.
    MARKS keeps the parent's OCI `.wh.*` names by lower index (a dict the caller owns, one per
    directory): one listing of a lower dir is cheaper than a probe for every name in it."""
    top: Entry | None = None
    if parent_upper and upper is not None:
        top, final, _ = _upper_part(upper, origins, parent_lowers, path, False)
        if final:
            return top
    found = _lower_stack(lowers, parent_lowers, path, name, top is not None, marks)
    if not found:
        return top
    index, st = found[0]
    if top is None:
        if not stat.S_ISDIR(st.st_mode):
            return Entry(stat.S_IFMT(st.st_mode), st, False, (index,), False,
                         lower_key(lowers[index], path, st))
        top = Entry(stat.S_IFDIR, st, False, (), False, b"")
    elif not stat.S_ISDIR(st.st_mode):
        return top  # an upper dir hides a lower non-directory
    top.lowers = tuple(i for i, s in found)
    top.key = lower_key(lowers[index], path, st)
    return top


def _upper_part(upper: UpperLayer, origins: dict[bytes, bytes], parent_lowers: tuple[int, ...],
                path: bytes, redirects: bool) -> tuple[Entry | None, bool, bytes | None]:
    """The upper's object at PATH: (its entry, whether the lowers below cannot take part (a
    whiteout, a non-directory, an opaque dir, a dir with nothing below), its redirect if
    REDIRECTS)."""
    st = upper.try_lstat(path)
    if st is None:
        return None, False, None
    if markers.is_whiteout(st):
        return None, True, None
    if not stat.S_ISDIR(st.st_mode):
        return Entry(stat.S_IFMT(st.st_mode), st, True, (), False,
                     _upper_key(upper, path, st, origins)), True, None
    redirect = redirect_of(upper, path) if redirects else None
    if not parent_lowers and redirect is None:  # nothing below to merge with: no marker to read
        return Entry(stat.S_IFDIR, st, True, (), False, upper_key(st)), True, None
    opaque = markers.is_opaque_value(upper.try_getxattr(path, markers.OPAQUE))
    return Entry(stat.S_IFDIR, st, True, (), opaque, upper_key(st)), opaque, redirect


def _lower_stack(lowers: list[Layer], parent_lowers: tuple[int, ...], path: bytes, name: bytes,
                 below_dir: bool, marks: dict) -> list[tuple[int, os.stat_result]]:
    """The lower objects at `path` that take part, top first: one non-directory, or directories."""
    if name.startswith(markers.OCI_PREFIX):
        return []  # OCI markers are never names in the merged view
    found: list[tuple[int, os.stat_result]] = []
    dirpath = path[: len(path) - len(name)]
    oci_whiteout = markers.OCI_PREFIX + name
    for n, index in enumerate(parent_lowers, 1):
        layer = lowers[index]
        if _oci_whiteout_in(layer, dirpath, oci_whiteout, marks):
            break
        st = layer.try_lstat(path)
        if st is None:
            continue
        if markers.is_whiteout(st):
            break
        if not stat.S_ISDIR(st.st_mode):
            if not found and not below_dir:
                found.append((index, st))
            break
        found.append((index, st))
        if n < len(parent_lowers) and lower_is_opaque(layer, path):  # only hides what is below
            break
    return found


def _oci_whiteout_in(layer: Layer, dirpath: bytes, marker: bytes, marks: dict) -> bool:
    if len(marker) > NAME_MAX:
        return False  # a name too long for a `.wh.NAME` marker
    try:
        found = marks[layer.index]
    except KeyError:
        found = marks[layer.index] = layer.oci_marks(dirpath)
    if found is None:  # a dir we may search but not list: ask for the one name
        return layer.try_lstat(dirpath + marker) is not None
    return marker in found


def lower_positive(lowers: list[Layer], parent_lowers: tuple[int, ...], path: bytes,
                   name: bytes, marks: dict) -> bool:
    """Whether a lower shows something at `path`, so removing it must leave a whiteout."""
    return bool(_lower_stack(lowers, parent_lowers, path, name, False, marks))


def valid_redirect(value: bytes) -> bool:
    """A redirect the kernel accepts: a name, or "/a/b" with no empty component. "." and ".."
    are refused too (the kernel does not check them): a path must not leave its layer."""
    if value.startswith(b"/"):
        parts = value[1:].split(b"/")
    else:
        parts = [value]
    return all(p and p not in (b".", b"..") and b"/" not in p for p in parts)


def redirect_of(layer: Layer, path: bytes) -> bytes | None:
    """The redirect xattr of a dir; EINVAL for a malformed one, as the kernel fails that lookup."""
    value = layer.try_getxattr(path, markers.REDIRECT)
    if value is not None and not valid_redirect(value):
        raise OSError(errno.EINVAL, f"invalid redirect {value!r} on {path!r}")
    return value


def resolve_following(upper: UpperLayer | None, lowers: list[Layer], origins: dict[bytes, bytes],
                      parent_upper: bool, parent_lowers: tuple[int, ...],
                      lprefix: dict[int, bytes] | None, path: bytes, name: bytes,
                      marks: dict) -> Entry | None:
    """resolve() with redirect_dir=on (the kernel's ovl_lookup): a dir's redirect xattr, on
    the upper dir or on a lower one (a lower that was once an upper), says where the lower dirs
    below it are: "name" in the parent's lower dirs, or "/a/b" from the root of every lower
    below. LPREFIX: the parent's path and "/" in each of its lowers, None where that is its
    merged path (no redirect above)."""
    top: Entry | None = None
    redirect = None
    if parent_upper and upper is not None:
        top, final, redirect = _upper_part(upper, origins, parent_lowers, path, True)
        if final:
            return top
    if name.startswith(markers.OCI_PREFIX):
        return top  # OCI markers are never names in the merged view
    found, moved = _stack_following(lowers, parent_lowers, lprefix, path[: len(path) - len(name)],
                                    name, redirect, top is not None, marks)
    if not found:
        return top
    index, st, lpath = found[0]
    if top is None:
        if not stat.S_ISDIR(st.st_mode):
            return Entry(stat.S_IFMT(st.st_mode), st, False, (index,), False,
                         lower_key(lowers[index], lpath, st))
        top = Entry(stat.S_IFDIR, st, False, (), False, b"")
    elif not stat.S_ISDIR(st.st_mode):
        return top  # an upper dir hides a lower non-directory
    top.lowers = tuple(i for i, _, _ in found)
    top.key = lower_key(lowers[index], lpath, st)
    if moved:
        top.lpaths = tuple(p for _, _, p in found)
    return top


def _stack_following(lowers: list[Layer], parent_lowers: tuple[int, ...],
                     lprefix: dict[int, bytes] | None, prefix: bytes, name: bytes,
                     redirect: bytes | None, below_dir: bool, marks: dict) -> tuple[list, bool]:
    """_lower_stack() following redirects: [(index, stat, path in that lower)] top first, and
    whether a redirect took a path elsewhere than below the parent's (PREFIX: its merged path
    and "/")."""
    found: list[tuple[int, os.stat_result, bytes]] = []
    order = list(parent_lowers)
    absolute = None  # the path from the layer root, once a redirect was absolute
    rel = name  # else the name in the parent's lower dir
    moved = redirect is not None

    def follow(value: bytes, done: int) -> None:
        nonlocal absolute, rel, order
        if value.startswith(b"/"):
            # from the root: every lower below this one, not only the parent's
            absolute = value[1:]
            order = [*order[:done], *range(order[done - 1] + 1 if done else 0, len(lowers))]
        elif absolute is not None:
            head = absolute.rpartition(b"/")[0]
            absolute = head + b"/" + value if head else value
        else:
            rel = value

    if redirect is not None:
        follow(redirect, 0)
    i = 0
    while i < len(order):
        index = order[i]
        i += 1
        layer = lowers[index]
        if absolute is not None:
            lpath = absolute
        else:
            dirpath = prefix if lprefix is None else lprefix[index]
            if _oci_whiteout_in(layer, dirpath, markers.OCI_PREFIX + rel, marks):
                break
            lpath = dirpath + rel
        st = layer.try_lstat(lpath)
        if st is None:
            continue
        if markers.is_whiteout(st):
            break
        if not stat.S_ISDIR(st.st_mode):
            if not found and not below_dir:
                found.append((index, st, lpath))
            break
        found.append((index, st, lpath))
        if index == len(lowers) - 1 or lower_is_opaque(layer, lpath):
            break
        value = redirect_of(layer, lpath)
        if value is not None:
            moved = True
            follow(value, i)
    return found, moved


def lower_positive_following(lowers: list[Layer], parent_lowers: tuple[int, ...],
                             lprefix: dict[int, bytes] | None, path: bytes, name: bytes,
                             marks: dict) -> bool:
    """lower_positive() where the parent's lower dirs may be elsewhere (LPREFIX)."""
    return bool(_stack_following(lowers, parent_lowers, lprefix, path[: len(path) - len(name)],
                                 name, None, False, marks)[0])

"""Merged directory listings: upper first, then each lower that takes part, each name once,
whiteouts and the names they hide left out, OCI markers never shown."""
from __future__ import annotations

import errno
import itertools
import logging

import pyfuse3

from . import markers, namei
from .inodes import ROOT, ROOT_PARENT, Node
from .layers import WHITEOUT, Layer
from .metacopy import DataError
from .overlay import Listing, Overlay

log = logging.getLogger(__name__)


class DirHandle:
    __slots__ = ("fh", "node", "fd", "upper", "names")

    def __init__(self, fh: int, node: Node):
        self.fh = fh
        self.node = node
        self.fd = None  # listings are taken by path; no descriptor is held
        self.upper = True
        self.names: list[bytes] | None = None


def merged_names(ov: Overlay, node: Node) -> list[bytes]:
    path = node.path()
    lpaths = ov.lower_paths(node)
    out: list[bytes] = []
    seen: set[bytes] = set()  # shown, or hidden by a whiteout
    if node.upper:
        _merge_layer(ov.upper, path, out, seen, oci=False)
    for index in node.lowers:
        _merge_layer(ov.lowers[index], path if lpaths is None else lpaths[index], out, seen,
                     oci=True)
    return out


def _merge_layer(layer: Layer, path: bytes, out: list[bytes], seen: set[bytes], oci: bool) -> None:
    hidden_below: list[bytes] = []
    for name, kind in layer.listdir(path):
        if oci and name.startswith(markers.OCI_PREFIX):
            if name != markers.OCI_OPAQUE:
                hidden_below.append(name[len(markers.OCI_PREFIX):])
            continue
        if name in seen:
            continue
        seen.add(name)
        if kind == WHITEOUT:
            continue
        out.append(name)
    seen.update(hidden_below)


def is_empty(ov: Overlay, node: Node) -> bool:
    return not merged_names(ov, node)


def _listed_entry(ov: Overlay, parent: Node, prefix: bytes, name: bytes) -> namei.Entry | None:
    """resolve_at() of a listed name. A dir whose redirect is malformed (EINVAL) is left out
    of its parent's listing (the kernel lists the name, and fails its lookup as we do): the
    rest of the dir stays listable; `cowfs fsck` names it."""
    try:
        return ov.resolve_at(parent, prefix, name)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        log.warning("%r left out of its directory's listing: %s", prefix + name, e.strerror)
        return None


class DirHandles:
    def __init__(self, ov: Overlay):
        self.ov = ov
        self.by_fh: dict[int, DirHandle] = {}
        self._next = itertools.count(1)

    def open(self, node: Node) -> DirHandle:
        if not node.is_dir:
            raise NotADirectoryError(20, "not a directory")
        h = DirHandle(next(self._next), node)
        self.by_fh[h.fh] = h
        node.add_handle(h)
        return h

    def __getitem__(self, fh: int) -> DirHandle:
        return self.by_fh[fh]

    def entries(self, fh: int, start: int):
        """(offset, name, attributes, node to count or None) from `start` on. The listing is
        taken afresh at offset 0; "." and ".." come first and are not counted (the kernel does
        not count them)."""
        h = self.by_fh[fh]
        if start == 0 or h.names is None:
            h.names = [b".", b".."] + self._reaching(h.node, self._names, h.node)
        for i in range(start, 2):
            yield i, h.names[i], self._dot_attrs(h.node, i), None
        start = max(start, 2)
        listing = h.node.listing
        if listing is not None and not h.node.upper:
            # lower-only and so unchanged since listed: nodes and attributes built once
            parent, names, listed = h.node, h.names, self.ov.listed
            for i in range(start, len(names)):
                name = names[i]
                entry = listing.get(name)
                if entry is not None:
                    node, a = listed(parent, name, entry)
                    yield i, name, a, node
            return
        if start >= len(h.names):
            return
        parent, ov = h.node, self.ov
        path = parent.path()
        prefix = b"" if parent.ino == ROOT else path + b"/"
        for i in range(start, len(h.names)):
            name = h.names[i]
            try:
                if parent.upper:
                    entry = ov.reaching(path, _listed_entry, ov, parent, prefix, name)
                else:
                    entry = _listed_entry(ov, parent, prefix, name)
            except DataError as e:
                # a metacopy file that cannot be shown, as on the kernel: one that lost its
                # lower data is left out; one not followed (no -o metacopy=on) is listed, with
                # attributes the kernel may not keep, so that its stat asks (EPERM)
                if e.errno == errno.EIO or e.entry is None:
                    continue
                node = ov.node_for(parent, name, e.entry)
                a = ov.attrs(node, e.entry.st)
                a.entry_timeout = a.attr_timeout = 0
                yield i, name, a, node
                continue
            if entry is None:
                continue  # removed since the listing was taken
            node = ov.node_for(parent, name, entry)
            yield i, name, ov.attrs(node, entry.st), node

    def _reaching(self, node: Node, fn, *args):
        """FN(*ARGS) inside an open dir, also once it or a dir above lost search permission."""
        if not node.upper:
            return fn(*args)
        return self.ov.reaching(node.path(), fn, *args)

    def _names(self, node: Node) -> list[bytes]:
        if node.upper:
            return merged_names(self.ov, node)
        listing = node.listing  # kept on the node: see Node.listing
        if listing is not None and not self.ov.listing_current(node, listing):
            node.listing = listing = node.marks = None
        if listing is None:
            stamp = self.ov.lower_stamp(node)  # before: a change while listing is seen next time
            prefix = node.child_prefix()
            ov = self.ov
            listing = Listing((name, namei.kept(_listed_entry(ov, node, prefix, name)))
                              for name in merged_names(self.ov, node))
            listing.stamp = stamp
            node.listing = listing
        return list(listing)

    def _dot_attrs(self, node: Node, i: int) -> pyfuse3.EntryAttributes:
        if i == 0:
            return self.ov.attrs(node)
        if node.aliases:
            return self.ov.attrs(node.aliases[0][0])
        a = self.ov.attrs(node)  # the root's "..": the dir above the mount is not ours
        a.st_ino = ROOT_PARENT  # (the kernel ignores the node id of a ".." entry)
        return a

    def release(self, fh: int) -> None:
        h = self.by_fh.pop(fh)
        h.node.drop_handle(h)
        self.ov.table.maybe_drop(h.node)


"""Lower hard links are one object: every name of a lower inode is one node (namei.lower_key has
no path), and its copy-up links every name the merged view shows to the one upper copy.

The names of an inode are found by one walk of its lower layer, made when a copy-up first needs
it (in a worker thread) and kept for the mount: lowers never change. Only inodes with two or more
names inside the layer are kept, so a snapshot lower (every file has a second name outside the
layer, in the store) costs one walk and no memory after it.

A name the copy-up could not link (a kill between the first name and the last, a directory the
daemon could not read) shows the lower object under the key of an upper one: `unite` links it
the moment a lookup sees both, so two different objects never show one st_ino.
"""
from __future__ import annotations

import logging
import os
import stat

import trio

from . import markers
from .inodes import Node
from .layers import Layer

log = logging.getLogger(__name__)


def scan(layer: Layer) -> dict[tuple[int, int], tuple[bytes, ...]]:
    """(st_dev, st_ino) -> its paths in LAYER, for every non-directory with two or more names
    there. What the daemon may not list or stat is left out (see `unite`)."""
    first: dict[tuple[int, int], bytes] = {}  # inodes of st_nlink > 1 seen once so far
    found: dict[tuple[int, int], list[bytes]] = {}
    todo = [b""]
    while todo:
        rel = todo.pop()
        try:
            fd = layer.open_read(rel or b".", os.O_DIRECTORY)
        except OSError:
            continue
        prefix = rel + b"/" if rel else b""
        try:
            with os.scandir(fd) as it:
                for e in it:
                    name = os.fsencode(e.name)
                    try:
                        if e.is_dir(follow_symlinks=False):
                            todo.append(prefix + name)
                            continue
                        if name.startswith(markers.OCI_PREFIX):
                            continue
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if st.st_nlink < 2 or markers.is_whiteout(st):
                        continue
                    key = (st.st_dev, st.st_ino)
                    path = prefix + name
                    if key in found:
                        found[key].append(path)
                    elif key in first:
                        found[key] = [first.pop(key), path]
                    else:
                        first[key] = path
        except OSError:
            pass
        finally:
            os.close(fd)
    return {key: tuple(paths) for key, paths in found.items()}


class LowerLinks:
    """The names of lower hard links, per lower layer, found once per mount."""

    def __init__(self) -> None:
        self._by_layer: dict[int, dict[tuple[int, int], tuple[bytes, ...]]] = {}
        self._lock: trio.Lock | None = None

    async def names(self, layer: Layer, st: os.stat_result) -> tuple[bytes, ...]:
        """The paths in LAYER of the object ST (nothing for an object of one name there)."""
        if st.st_nlink < 2:
            return ()
        if layer.index not in self._by_layer:
            if self._lock is None:
                self._lock = trio.Lock()
            async with self._lock:  # one walk, however many copy-ups wait for it
                if layer.index not in self._by_layer:
                    self._by_layer[layer.index] = await trio.to_thread.run_sync(scan, layer)
        return self._by_layer[layer.index].get((st.st_dev, st.st_ino), ())


def link_names(ov, node: Node, src: bytes, paths) -> None:
    """Make each of PATHS that the merged view still shows as NODE's lower object (not whited
    out, not shadowed, not under an opaque dir) a hard link of its upper copy at SRC, copying up
    the directories on the way. A name that fails is left to `unite`."""
    for path in paths:
        if path == src:
            continue
        made: list[Node] = []  # dir nodes made on the way, the deepest last
        try:
            parent, name = _walk(ov, path, made)
            if parent is None:
                continue
            entry = ov.resolve(parent, name)
            if entry is None or entry.upper or entry.key != node.key:
                continue
            _link(ov, src, parent, name)
        except OSError as e:
            log.warning("hard link %r of %r not made at copy-up: %s", path, src, e)
        finally:
            if made:  # the kernel does not know them: dropping the deepest drops them all
                ov.table.maybe_drop(made[-1])


def _walk(ov, path: bytes, made: list[Node]) -> tuple[Node | None, bytes]:
    """The directory node holding PATH in the merged view and the last name (None if a name on
    the way is missing or not a directory). Nodes made on the way are appended to MADE."""
    parent = ov.table.root
    *dirs, name = path.split(b"/")
    for d in dirs:
        known = len(ov.table.by_ino)
        entry = ov.resolve(parent, d)
        if entry is None or entry.kind != stat.S_IFDIR:
            return None, name
        parent = ov.node_for(parent, d, entry)
        if len(ov.table.by_ino) != known:
            made.append(parent)
    return parent, name


def _link(ov, src: bytes, parent: Node, name: bytes) -> None:
    """Link the upper object at SRC as parent/name, leaving the parent's times as they were (a
    copy-up does not change the view of a directory)."""
    from .copyup import ensure_upper_dir  # noqa: PLC0415 (copyup imports this module)

    upper = ov.writable
    ensure_upper_dir(ov, parent)
    ppath = parent.path()
    pst = upper.lstat(ppath)
    with upper.granted(ppath, stat.S_IWUSR | stat.S_IXUSR, pst):
        upper.link(src, parent.child_path(name))
    upper.utime(ppath, (pst.st_atime_ns, pst.st_mtime_ns))
    ov.attrs_changed(parent)


def unite(ov, node: Node, parent: Node, name: bytes, entry) -> Node:
    """ENTRY (parent/name) and NODE share a lower object's key, but one is in the upper and the
    other not: a name the copy-up missed. Link the lower names to the upper copy, so that they
    are one object; if that fails, the entry gets a node of its own (the two are two objects)."""
    from .copyup import reopen_handles  # noqa: PLC0415

    path = parent.child_path(name)
    try:
        if node.upper:  # the entry is the name left behind
            _link(ov, ov.path_of(node), parent, name)
            entry.st = ov.upper.lstat(path)
            entry.upper, entry.lowers = True, ()
            return node
        for p, n in node.aliases:  # the node's names are left behind: link each to the entry
            got = ov.resolve(p, n)
            if got is not None and not got.upper and got.key == node.key:
                _link(ov, path, p, n)
        entry.st = ov.upper.lstat(path)  # its link count now counts them
        node.upper, node.lowers = True, ()
        reopen_handles(ov, node)
        ov.attrs_changed(node)
        return node
    except OSError as e:
        log.warning("%r and another name of its lower object not linked: %s", path, e)
        return ov.table.get_or_add(entry.key + b":" + path, entry.kind)

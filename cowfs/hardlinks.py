"""Lower hard links are one object: every name of a lower inode is one node (namei.lower_key has
no path), and its copy-up links every name the merged view shows to the one upper copy.

The names of an inode are found by one walk of its lower layer, made when a copy-up first needs
it (in a worker thread) and kept for the mount: lowers never change. Only inodes with two or more
names inside the layer are kept. Not in a deduplicated layer (a snapshot or an image layer in a
cowfs content store): there, files of equal content are links to one store object without being
one file, so each name is an object of its own, whose copy-up breaks the link (as the kernel's).

Crash safety: the finished copy goes first to WORK/cowfs-links/KEY, the names are linked from
there, and it is removed last. A kill in between leaves it there: the next mount links the names
still showing the lower object before it serves anything (`finish`), so all names show the copy.
A name the copy-up could not link anyway (in a directory the daemon could not list) shows the
lower object under the key of an upper one: `unite` links it the moment a lookup sees both, so
two different objects never show one st_ino.
"""
from __future__ import annotations

import logging
import os
import stat

import trio

from . import markers, store
from .config import LINKS_DIR
from .inodes import Node
from .layers import Layer, renameat2

log = logging.getLogger(__name__)


def deduplicated(path: str) -> bool:
    """Whether PATH is in a cowfs content store's root (a snapshot root or a layer store: an
    ancestor holding store/sha256): its regular files are hard links to the store's objects, so
    files of equal content share an inode there without being one file (Layer.deduplicated)."""
    d = os.path.realpath(path)
    while True:
        if os.path.isdir(store.objects_dir(d)):
            return True
        parent = os.path.dirname(d)
        if parent == d:
            return False
        d = parent


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
    """The names of lower hard links, per lower layer, found once per mount; and the work dir's
    WORK/cowfs-links, where a copy waits while its names are linked."""

    def __init__(self, work: str | None) -> None:
        self._by_layer: dict[int, dict[tuple[int, int], tuple[bytes, ...]]] = {}
        self._lock: trio.Lock | None = None
        self._dir = os.path.join(work, LINKS_DIR) if work else None
        self._fd: int | None = None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)

    @property
    def fd(self) -> int:
        """WORK/cowfs-links, made when first needed."""
        if self._fd is None:
            try:
                os.mkdir(self._dir, 0o700)
            except FileExistsError:
                pass
            self._fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return self._fd

    def pending(self) -> list[str]:
        """Copies left by a kill before all their names were linked."""
        if self._dir is None or not os.path.isdir(self._dir):
            return []
        return sorted(os.listdir(self.fd))

    async def names(self, layer: Layer, st: os.stat_result) -> tuple[bytes, ...]:
        """The paths in LAYER of the object ST (nothing for an object of one name there, or in a
        deduplicated layer)."""
        if st.st_nlink < 2 or layer.deduplicated:
            return ()
        if layer.index not in self._by_layer:
            if self._lock is None:
                self._lock = trio.Lock()
            async with self._lock:  # one walk, however many copy-ups wait for it
                if layer.index not in self._by_layer:
                    self._by_layer[layer.index] = await trio.to_thread.run_sync(scan, layer)
        return self._by_layer[layer.index].get((st.st_dev, st.st_ino), ())

    def names_now(self, layer: Layer, dev: int, ino: int) -> tuple[bytes, ...]:
        """names(), walking in this thread (at mount, before anything is served)."""
        if layer.index not in self._by_layer:
            self._by_layer[layer.index] = scan(layer)
        return self._by_layer[layer.index].get((dev, ino), ())


async def has_other_names(ov, node: Node) -> bool:
    """Whether NODE is a lower object with other names in its layer: once one name goes, only
    its copy (every name linked) can show the others' link count, as the kernel does with
    index=on, which copies up such an object before it unlinks one of its names."""
    if node.upper or node.is_dir or not node.lowers:
        return False
    layer = ov.lowers[node.lowers[0]]
    return len(await ov.lower_links.names(layer, layer.lstat(ov.lower_path(node)))) > 1


def place(ov, node: Node, tmp: bytes, path: bytes, names: tuple[bytes, ...]) -> None:
    """Put the finished copy TMP (in WORK/work) of NODE, a lower hard link of NAMES, at PATH and
    at every other name the view shows of it, through WORK/cowfs-links/KEY."""
    upper = ov.writable
    links = ov.lower_links
    key = node.key
    renameat2(upper.work_fd, tmp, links.fd, key)
    st = None
    try:
        st = os.stat(key, dir_fd=links.fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            ov.note_origin(st, key)  # no xattr on it: its origin is a record
        parent, name = node.aliases[0]
        _link(ov, parent, name, _from_pending(links.fd, key))
    except BaseException:
        os.unlink(key, dir_fd=links.fd)
        ov.forget_origin(st)
        raise
    link_names(ov, key, _from_pending(links.fd, key), names, path)
    os.unlink(key, dir_fd=links.fd)


def finish(ov) -> None:
    """At mount: link the names of copies a kill left in WORK/cowfs-links, then drop them."""
    links = ov.lower_links
    try:
        pending = links.pending()
    except OSError as e:
        log.warning("%s not read: %s", LINKS_DIR, e)
        return
    for name in pending:
        key = os.fsencode(name)
        try:
            index, dev, ino = (int(x) for x in key.split(b":")[1:])
            layer = ov.lowers[index]
        except (ValueError, IndexError):
            log.warning("%s/%r: not a copy of a lower hard link, removed", LINKS_DIR, key)
        else:
            try:
                st = os.stat(key, dir_fd=links.fd, follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):  # a kill may have come before its record
                    ov.note_origin(st, key)
                names = links.names_now(layer, dev, ino)
                link_names(ov, key, _from_pending(links.fd, key), names, None)
                log.info("linked the names of %r a kill had left (%d in its layer)", key,
                         len(names))
            except OSError as e:
                log.warning("%s/%r: names not linked: %s", LINKS_DIR, key, e)
        try:
            os.unlink(key, dir_fd=links.fd)
        except OSError as e:
            log.warning("%s/%r not removed: %s", LINKS_DIR, key, e)


def _from_pending(fd: int, key: bytes):
    def link(dirfd: int, tail: bytes) -> None:
        os.link(key, tail, src_dir_fd=fd, dst_dir_fd=dirfd, follow_symlinks=False)
    return link


def _from_upper(ov, src: bytes):
    def link(dirfd: int, tail: bytes) -> None:
        with ov.upper.at(src) as (sfd, stail):
            os.link(stail, tail, src_dir_fd=sfd, dst_dir_fd=dirfd, follow_symlinks=False)
    return link


def link_names(ov, key: bytes, link, paths, done: bytes | None) -> None:
    """Make each of PATHS (but DONE) that the merged view still shows as the lower object KEY
    (not whited out, not shadowed, not under an opaque dir) a hard link of its copy (LINK makes
    one), copying up the directories on the way. A name that fails is left to `unite`."""
    for path in paths:
        if path == done:
            continue
        made: list[Node] = []  # dir nodes made on the way, the deepest last
        try:
            parent, name = _walk(ov, path, made)
            if parent is None:
                continue
            entry = ov.resolve(parent, name)
            if entry is None or entry.upper or entry.key != key:
                continue
            _link(ov, parent, name, link)
        except OSError as e:
            log.warning("hard link %r of %r not made: %s", path, key, e)
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


def _link(ov, parent: Node, name: bytes, link) -> None:
    """LINK(dir fd, name) the copy as parent/name, leaving the parent's times as they were (a
    copy-up does not change the view of a directory)."""
    from .copyup import ensure_upper_dir  # noqa: PLC0415 (copyup imports this module)

    upper = ov.writable
    ensure_upper_dir(ov, parent)
    ppath = parent.path()
    pst = upper.lstat(ppath)
    with upper.granted(ppath, stat.S_IWUSR | stat.S_IXUSR, pst):
        with upper.at(parent.child_path(name)) as (fd, tail):
            link(fd, tail)
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
            _link(ov, parent, name, _from_upper(ov, ov.path_of(node)))
            entry.st = ov.upper.lstat(path)
            entry.upper, entry.lowers = True, ()
            return node
        for p, n in node.aliases:  # the node's names are left behind: link each to the entry
            got = ov.resolve(p, n)
            if got is not None and not got.upper and got.key == node.key:
                _link(ov, p, n, _from_upper(ov, path))
        entry.st = ov.upper.lstat(path)  # its link count now counts them
        node.upper, node.lowers = True, ()
        reopen_handles(ov, node)
        ov.attrs_changed(node)
        return node
    except OSError as e:
        log.warning("%r and another name of its lower object not linked: %s", path, e)
        return ov.table.get_or_add(entry.key + b":" + path, entry.kind)

"""The mounted overlay's state: its layers and inode table, and the lookups every operation uses."""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import weakref

import pyfuse3
import trio

from . import hardlinks, markers, metacopy, namei
from .config import MountConfig
from .inodes import Node, NodeTable
from .layers import Layer, UpperLayer
from .originmap import OriginMap

log = logging.getLogger(__name__)


class Listing(dict):
    """A kept listing (Node.listing: name -> namei.Entry) and the stamp of the real lower dirs
    it was made from (Overlay.lower_stamp): the premise that a lower never changes is checked
    against it where cowfs stats the dir anyway, so a lower dir changed, removed or replaced
    (ext4 may give its inode number, and so its node key, to another dir) under a running mount
    is listed again rather than answered from the old listing."""

    __slots__ = ("stamp",)


def _stamp(st) -> tuple[int, int, int]:
    return st.st_ino, st.st_mtime_ns, st.st_ctime_ns


def _marks(node: Node) -> dict:
    """The dir's OCI marks (Node.marks), made when first needed."""
    if node.marks is None:
        node.marks = {}
    return node.marks


# How long the kernel may trust what we told it of names and attributes. Every change to the
# merged tree comes through this mount (the lower is immutable, the upper ours alone), and the
# ones the kernel cannot see coming (copy-up) are invalidated explicitly: as long as it likes.
TIMEOUT = 86400.0


class Overlay:
    def __init__(self, cfg: MountConfig, timeout: float = TIMEOUT):
        self.lowers = [Layer(path, i) for i, path in enumerate(cfg.lowers)]
        for layer in self.lowers:
            layer.deduplicated = hardlinks.deduplicated(layer.path)
        self.upper = UpperLayer(cfg.upper, cfg.work) if cfg.upper else None
        self.timeout = timeout
        # upper key -> origin key, for copied-up objects that cannot carry the ORIGIN xattr,
        # kept across mounts in the work dir (originmap.py)
        self.origins: dict[bytes, bytes] = {}
        self.origin_map: OriginMap | None = None
        self.lower_links = hardlinks.LowerLinks(cfg.work if cfg.upper else None)
        if self.upper is not None:
            top_st = self.upper.lstat(b".")
            dev = top_st.st_dev
            self.origin_map = OriginMap(cfg.work, self.upper.work_fd, top_st.st_ino)
            for ino, origin in self.origin_map.load().items():
                if namei.is_origin_key(origin):
                    self.origins[namei.upper_key_at(dev, ino)] = origin
        # called when a change made attributes the kernel has cached wrong (set by the glue)
        self.attrs_changed = lambda node: None
        self.am_root = os.geteuid() == 0
        self.own_lowers = cfg.own_lowers
        self.metacopy = cfg.metacopy
        # renaming a lower or merged dir records a redirect, and lookups follow them
        self.redirect_dir = cfg.redirect_dir
        # whether a node ever had Node.lpaths: until then no lower path needs a walk
        self.moved_dirs = False
        self.redirects_noted = self.upper is not None and markers.redirects_used(cfg.upper)
        self.uid, self.gid = os.geteuid(), os.getegid()
        # whether a lower object's attributes say who owns it (see getattr)
        self.atime_fixed = not cfg.own_lowers and bool(Layer.NOATIME)
        # unlinked objects whose pin holds their inode and data (space_after_forgets)
        self.pins: weakref.WeakSet[Node] = weakref.WeakSet()
        root_upper = self.upper is not None
        root_opaque = root_upper and namei.markers.is_opaque_value(
            self.upper.try_getxattr(b".", namei.markers.OPAQUE))
        top = self.upper or self.lowers[0]
        st = top.lstat(b".")
        self.table = NodeTable(b"root")
        root = self.table.root
        root.upper = root_upper
        root.opaque = root_opaque
        root.lowers = () if root_opaque else tuple(range(len(self.lowers)))
        self.root_dev = st.st_dev
        # what getxattr of markers.LAYERS on the root answers (attrs.getxattr)
        self.layers_xattr = json.dumps(
            {"lowers": list(cfg.lowers), "upper": cfg.upper, "work": cfg.work}).encode()
        if self.upper is not None:
            hardlinks.finish(self)  # what a kill left half linked, before anything is served

    def close(self) -> None:
        self.lower_links.close()
        if self.origin_map is not None:
            self.origin_map.close()
        for layer in self.lowers:
            layer.close()
        if self.upper is not None:
            self.upper.close()

    @property
    def writable(self) -> UpperLayer:
        if self.upper is None:
            raise OSError(errno.EROFS, "read-only overlay")
        return self.upper

    # resolution ------------------------------------------------------------------------------
    def resolve(self, parent: Node, name: bytes) -> namei.Entry | None:
        if not parent.is_dir:
            raise OSError(errno.ENOTDIR, "not a directory")
        if parent.listing is not None and not parent.upper:
            return parent.listing.get(name)
        return self.resolve_at(parent, parent.child_prefix(), name)

    def resolve_at(self, parent: Node, prefix: bytes, name: bytes) -> namei.Entry | None:
        """resolve() of a name in a directory being listed, PREFIX its path plus "/" (b"" for
        the root): the path is walked once per listing, not once per entry."""
        lprefix = None
        if self.redirect_dir:
            lprefix = self.lower_prefixes(parent)
            entry = namei.resolve_following(
                self.upper, self.lowers, self.origins, parent.upper, parent.lowers, lprefix,
                prefix + name, name, _marks(parent))
        else:
            entry = namei.resolve(self.upper, self.lowers, self.origins, parent.upper,
                                  parent.lowers, prefix + name, name, _marks(parent))
        # a metacopy file is a copy-up, so it carries its origin (its key is a lower key):
        # files made in the upper cost no extra syscall here
        if (entry is not None and entry.upper and entry.kind == stat.S_IFREG
                and entry.key.startswith(b"l:")):
            # below a moved dir its data is below the dir's lower path (its top lower's)
            lpath = None if not lprefix else lprefix[parent.lowers[0]] + name
            try:
                entry.data = metacopy.lower_data(self, prefix + name, lpath)
            except metacopy.DataError as e:
                e.entry = entry
                raise
        return entry

    def lower_paths(self, node: Node) -> dict[int, bytes] | None:
        """node's path in each of its lowers (index -> path) where a redirect on it or above
        it took that elsewhere than its merged path; None where none did (always without
        redirect_dir). O(depth), like Node.path()."""
        if not self.moved_dirs:
            return None
        names = []
        at = node
        while at.lpaths is None:
            if at.ino == pyfuse3.ROOT_INODE:
                return None
            if not at.aliases:
                raise FileNotFoundError(errno.ENOENT, "unlinked")
            at, name = at.aliases[0]
            names.append(name)
        tail = b"/".join(reversed(names))
        base = dict(zip(at.lowers, at.lpaths))
        return {i: base[i] + b"/" + tail if tail else base[i] for i in node.lowers}

    def lower_path(self, node: Node, index: int | None = None) -> bytes:
        """node's path in its lower INDEX (default: its top one)."""
        paths = self.lower_paths(node)
        if paths is None:
            return node.path()
        return paths[node.lowers[0] if index is None else index]

    def lower_prefixes(self, parent: Node) -> dict[int, bytes] | None:
        """What a child's path in each of parent's lowers starts with, or None: see
        lower_paths."""
        paths = self.lower_paths(parent)
        if paths is None:
            return None
        return {i: b"" if p == b"." else p + b"/" for i, p in paths.items()}

    def note_redirects(self) -> None:
        """A redirect is about to be written: mark the upper as needing redirect_dir=on."""
        if not self.redirects_noted:
            with self.upper.granted(b".", stat.S_IWUSR):
                self.upper.setxattr(b".", markers.REDIRECTS_USED, b"y")
            self.redirects_noted = True

    def forget_origin(self, st: os.stat_result | None) -> None:
        """An upper object is going away: its inode number may be reused by an unrelated one."""
        if (st is not None and st.st_nlink == 1
                and self.origins.pop(namei.upper_key(st), None) is not None):
            self.origin_map.drop(st.st_ino)

    def note_origin(self, st: os.stat_result, origin: bytes) -> None:
        """A copied-up object that cannot carry the ORIGIN xattr (a symlink, a special file)."""
        self.origins[namei.upper_key(st)] = origin
        self.origin_map.add(st.st_ino, origin)

    def lower_positive(self, parent: Node, name: bytes) -> bool:
        if self.redirect_dir:
            return namei.lower_positive_following(
                self.lowers, parent.lowers, self.lower_prefixes(parent), parent.child_path(name),
                name, _marks(parent))
        return namei.lower_positive(self.lowers, parent.lowers, parent.child_path(name), name,
                                    _marks(parent))

    def node_for(self, parent: Node, name: bytes, entry: namei.Entry) -> Node:
        """The node for a resolved entry, attached under parent/name (no lookup count taken)."""
        node = self.table.get_or_add(entry.key, entry.kind)
        if node.upper != entry.upper and node.kind != stat.S_IFDIR and node.aliases:
            # one lower object's key in the upper and in a lower: a name its copy-up missed
            node = hardlinks.unite(self, node, parent, name, entry)
        aliases = node.aliases
        if (aliases and aliases[0] != (parent, name)
                and (node.kind == stat.S_IFDIR or entry.st.st_nlink == 1)
                and (parent, name) not in aliases):
            node = self._known_elsewhere(node, parent, name, entry)
        listing = node.listing
        if listing is not None:
            if entry.upper or entry.lowers != node.lowers or entry.lpaths != node.lpaths:
                node.listing = None
            else:
                st, (_, mtime, ctime) = entry.st, listing.stamp[0]
                if st.st_mtime_ns != mtime or st.st_ctime_ns != ctime:
                    log.warning("lower directory %r changed under the mount: listed again",
                                parent.child_path(name))
                    node.listing = node.marks = None
        node.upper = entry.upper
        node.data = entry.data
        if entry.upper:
            node.listing = None
        node.lowers = entry.lowers
        node.lpaths = entry.lpaths
        if entry.lpaths is not None:
            self.moved_dirs = True
        node.opaque = entry.opaque
        self.table.attach(node, parent, name)
        return node

    def _known_elsewhere(self, node: Node, parent: Node, name: bytes,
                         entry: namei.Entry) -> Node:
        """entry (a dir, or a file of one link) has the key of a node known by another name:
        every change through the mount moves a node's name along, so a layer changed behind
        the mount: the real object was moved there, or (the usual case) its inode number went
        to another object, as ext4 does with a freed one. The old node keeps its identity (what
        the kernel knows by it answers for what is at its old name: ENOENT once that is gone);
        the entry gets a node of its own."""
        was_parent, was_name = node.aliases[0]
        if not was_parent.key.startswith(b"stale:"):  # else its dir's line said it already
            log.warning("%r is not the object last known by that key (at %r): a layer "
                        "changed under the mount", parent.child_path(name), was_name)
        self.table.retire(node)
        node.listing = node.marks = None  # its own dir is gone or elsewhere: read afresh
        return self.table.get_or_add(entry.key, entry.kind)

    def lower_stamp(self, node: Node) -> tuple:
        """What identifies the state of the lower dirs of a dir (Listing.stamp): (st_ino,
        st_mtime_ns, st_ctime_ns) of each, top first. OSError once one is gone."""
        paths = self.lower_paths(node)
        if paths is None:
            path = node.path()
            return tuple(_stamp(self.lowers[i].lstat(path)) for i in node.lowers)
        return tuple(_stamp(self.lowers[i].lstat(paths[i])) for i in node.lowers)

    def listing_current(self, node: Node, listing: Listing) -> bool:
        """Whether node's kept listing was made from the lower dirs that are there now."""
        try:
            if self.lower_stamp(node) == listing.stamp:
                return True
        except OSError:
            pass
        log.warning("lower directory %r changed under the mount: listed again",
                    node.path() if node.aliases or node.ino == pyfuse3.ROOT_INODE else node.key)
        return False

    def lookup(self, parent: Node, name: bytes) -> tuple[Node, os.stat_result]:
        entry = self.resolve(parent, name)
        if entry is None:
            raise OSError(errno.ENOENT, "no such entry")
        return self.node_for(parent, name, entry), entry.st

    def lookup_attrs(self, parent: Node, name: bytes) -> tuple[Node, pyfuse3.EntryAttributes]:
        """The node at parent/name (no lookup count taken) and the attributes to reply with."""
        if parent.listing is not None and not parent.upper and parent.is_dir:
            entry = parent.listing.get(name)
            if entry is None:
                raise OSError(errno.ENOENT, "no such entry")
            return self.listed(parent, name, entry)
        entry = self.resolve(parent, name)
        if entry is None:
            raise OSError(errno.ENOENT, "no such entry")
        node = self.node_for(parent, name, entry)
        return node, self.attrs(node, entry.st)

    def listed(self, parent: Node, name: bytes,
               entry: namei.Entry) -> tuple[Node, pyfuse3.EntryAttributes]:
        """node_for and attrs of an entry of a lower-only directory's kept listing (the
        caller checked parent.listing is current), built once: nothing of a lower object can
        change before a copy-up, and a copy-up of anything in the dir copies the dir up first
        (which drops the listing). The attributes replace the entry's stat fields and name its
        node by st_ino; the node is looked up again by it, for the kernel may have forgotten it
        since (then it is made afresh)."""
        a = entry.st
        if type(a) is pyfuse3.EntryAttributes:
            node = self.table.by_ino.get(a.st_ino)
            if (node is not None and node.key == entry.key and node.aliases
                    and node.aliases[0][0] is parent):
                return node, a
        node = self.node_for(parent, name, entry)
        a = entry.st = self.attrs(node, a)
        return node, a

    def negative_entry(self) -> pyfuse3.EntryAttributes:
        """The reply for a missing name that lets the kernel remember that it is missing."""
        a = pyfuse3.EntryAttributes()
        a.st_ino = 0
        a.entry_timeout = self.timeout
        return a

    def child(self, parent: Node, name: bytes) -> Node | None:
        """The node currently at parent/name in the merged view, or None."""
        entry = self.resolve(parent, name)
        return None if entry is None else self.node_for(parent, name, entry)

    # the real object behind a node -------------------------------------------------------------
    def layer_of(self, node: Node) -> Layer:
        return self.upper if node.upper else self.lowers[node.lowers[0]]

    def path_of(self, node: Node) -> bytes:
        """The node's path in its layer. FUSE names no path, only the inode, where the kernel
        overlay would use the name it was given: a hard link whose first name's directory the
        daemon cannot search is reached through another of its names. A lower object's path
        is its lower path (lower_path) once a redirect took that elsewhere."""
        if not node.upper and self.redirect_dir and node.aliases:
            return self.lower_path(node)
        if len(node.aliases) < 2:
            return node.path()
        layer = self.layer_of(node)
        for path in node.paths():
            try:
                layer.lstat(path)
                return path
            except PermissionError:
                continue
        return node.path()

    def stat(self, node: Node) -> os.stat_result:
        """The real object's stat: through an open descriptor where there is one (no path walk,
        and it works once the file is unlinked or its directory has lost search permission)."""
        for handle in node.handles:
            if handle.fd is not None and (handle.upper or not node.upper):  # not metacopy data
                return os.fstat(handle.fd)
        if not node.aliases and node.ino != pyfuse3.ROOT_INODE:
            if node.pin is not None:
                return os.fstat(node.pin)
            raise OSError(errno.ENOENT, "unlinked")
        path = self.path_of(node)
        if not node.upper:
            return self.layer_of(node).lstat(path)
        return self.reaching(path.rpartition(b"/")[0], self.upper.lstat, path)

    def reaching(self, rel: bytes, fn, *args):
        """FN(*ARGS) on upper objects at or below the upper dir REL; if the daemon is refused on
        the way, again with search permission lent on REL and the dirs above it. The kernel's
        overlay reaches what it was asked for by inode (an open descriptor, a file being
        copied up) with privileges, whatever happened to the modes of the dirs on the way;
        a rootless daemon has the owner's right to chmod its own dirs."""
        try:
            return fn(*args)
        except PermissionError as e:
            if e.errno != errno.EACCES:
                raise  # EPERM: not a matter of search permission
            with self.writable.searchable(rel):
                return fn(*args)

    @contextlib.contextmanager
    def pinned(self, node: Node | None, last_name: bool):
        """Around the removal of a name: keep the real object reachable once its last name is
        gone (Node.pin), for the kernel may still ask for its attributes with no open file of
        ours to answer through."""
        mine = (node is not None and last_name and node.nlookup and node.pin is None
                and len(node.aliases) == 1)
        if mine:
            try:
                node.pin = self.layer_of(node).open(self.path_of(node), os.O_PATH)
            except OSError:
                mine = False  # unreachable already: its attributes are ENOENT, as before
            else:
                self.pins.add(node)
        try:
            yield
        except BaseException:
            if mine:
                os.close(node.pin)
                node.pin = None
            raise

    def getattr(self, node: Node) -> pyfuse3.EntryAttributes:
        """attrs(node), answered without a syscall for a lower-only object whose directory's
        listing is kept (Overlay.listed built its attributes; they cannot change before a
        copy-up, and a copy-up drops the listing). Not where our own reads may move its atime
        (relatime): the daemon opens lower objects O_NOATIME, which only their owner (or root)
        may; the kernel asks getattr after a read precisely for the atime."""
        if not node.upper and node.aliases and self.atime_fixed:
            parent, name = node.aliases[0]
            listing = parent.listing
            if listing is not None and not parent.upper:
                entry = listing.get(name)
                if entry is not None:
                    a = entry.st
                    if (type(a) is pyfuse3.EntryAttributes and a.st_ino == node.ino
                            and (self.am_root or a.st_uid == self.uid)):
                        return a
        return self.attrs(node)

    async def space_after_forgets(self, wait: float = 1.0) -> bool:
        """After ENOSPC: True once the space of an unlinked object came back. A pin (above)
        holds a removed object's inode and data until the kernel forgets it, and the kernel may
        send that FORGET after the caller's next requests (it lets queued requests go first),
        where the kernel's own overlay frees them at unlink: wait for the FORGETs (other worker
        tasks read them) of pinned objects no one has open, up to WAIT s. One still pinned
        after that is held for real (an O_PATH descriptor, a cwd): never waited for again."""
        held = [n for n in self.pins if n.pin is not None and not n.handles]
        if not held:
            return False
        deadline = trio.current_time() + wait
        while trio.current_time() < deadline:
            await trio.sleep(0.002)
            if any(n.pin is None for n in held):
                return True
        for n in held:
            self.pins.discard(n)
        return False

    def owned_mode(self, mode: int) -> int:
        """The mode a lower object has in the view (and its copy-up in the upper)."""
        if self.own_lowers and not stat.S_ISLNK(mode):
            return mode | stat.S_IWUSR
        return mode

    def attrs(self, node: Node, st: os.stat_result | None = None) -> pyfuse3.EntryAttributes:
        if st is None:
            st = self.stat(node)
        a = pyfuse3.EntryAttributes()
        a.st_ino = node.ino
        a.generation = 0
        a.entry_timeout = self.timeout
        a.attr_timeout = self.timeout
        # a merged directory's link count cannot be known cheaply: 1, as the kernel reports
        merged = node.is_dir and len(node.lowers) + node.upper > 1
        a.st_nlink = 1 if merged else st.st_nlink
        if self.own_lowers and not node.upper:
            a.st_mode = self.owned_mode(st.st_mode)
            a.st_uid, a.st_gid = self.uid, self.gid
        else:
            a.st_mode = st.st_mode
            a.st_uid = st.st_uid
            a.st_gid = st.st_gid
        a.st_rdev = st.st_rdev
        a.st_size = st.st_size
        a.st_blksize = st.st_blksize
        a.st_blocks = st.st_blocks
        if node.data is not None:  # a metacopy file's data blocks are its lower's, as the kernel
            with contextlib.suppress(OSError):
                a.st_blocks = self.lowers[node.data[0]].lstat(node.data[1]).st_blocks
        a.st_atime_ns = st.st_atime_ns
        a.st_mtime_ns = st.st_mtime_ns
        a.st_ctime_ns = st.st_ctime_ns
        return a

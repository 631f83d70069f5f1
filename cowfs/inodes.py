"""The inode table: one Node per merged object the kernel knows, with exact lookup counting.

A node's identity (its key) is the real object behind it: the topmost lower object for anything
that has a lower (a copied-up file keeps its origin's key through the ORIGIN marker), else the
upper object. st_ino, which pyfuse3 also uses as the FUSE node id, is a hash of that key, so it
is stable for the life of the mount, survives copy-up and is the same for hardlinks.
"""
from __future__ import annotations

import errno
import functools
import gc
import logging
import os
import stat

import pyfuse3
import trio
import xxhash

log = logging.getLogger(__name__)

ROOT = pyfuse3.ROOT_INODE


class Node:
    """A merged object. Its location is derived from its aliases, never stored as a path."""

    # __weakref__: Overlay.pins holds unlinked, pinned nodes weakly (space_after_forgets)
    __slots__ = ("ino", "key", "kind", "aliases", "upper", "lowers", "lpaths", "opaque", "nlookup",
                 "nchild", "handles", "_lock", "listing", "marks", "pin", "data", "__weakref__")

    def __init__(self, ino: int, key: bytes, kind: int):
        self.ino = ino
        self.key = key
        self.kind = kind  # S_IFMT bits
        # (parent Node, name) for every name this object is known under; a dir has at most one.
        # A tuple, replaced on change: most nodes have one name, and a 1-tuple is the smallest
        # container for it (a node per entry the kernel knows is what the daemon's memory is)
        self.aliases: tuple[tuple[Node, bytes], ...] = ()
        self.upper = False  # exists in upper at its path
        self.lowers: tuple[int, ...] = ()  # lower layers taking part, top first
        # its path in each of those lowers where a redirect (redirect_dir=on) took them
        # elsewhere than its parent's there and its name; None: below its parent's (most nodes)
        self.lpaths: tuple[bytes, ...] | None = None
        self.opaque = False
        self.nlookup = 0
        self.nchild = 0  # aliases of live nodes that name this node as parent
        # open file and dir handles; a set once there has been one (most nodes never have one,
        # and a node per entry the kernel knows is what the daemon's memory is made of)
        self.handles: set | tuple = ()
        self._lock: trio.Lock | None = None  # made when first needed, likewise
        # a directory only lowers make up cannot change until it is copied up: its resolved
        # entries (name -> namei.Entry), once listed, answer lookups and listings until then
        # (an overlay.Listing: its stamp tells a lower changed under the mount anyway)
        self.listing: dict | None = None
        # a directory's OCI `.wh.*` names by lower index (namei.resolve): read once, and gone
        # with the node, so memory follows what the kernel knows
        self.marks: dict | None = None
        # an O_PATH fd of the real object, taken when its last name goes while the kernel
        # still knows it: fstat of an open fifo or of a removed directory works through it
        self.pin: int | None = None
        # a metadata-only copy-up's data: (lower index, path) of the lower file (metacopy.py)
        self.data: tuple[int, bytes] | None = None

    @property
    def lock(self) -> trio.Lock:
        """Held across copy-up and the changes that must not overlap one."""
        if self._lock is None:
            self._lock = trio.Lock()
        return self._lock

    def busy(self) -> bool:
        return self._lock is not None and self._lock.locked()

    def add_handle(self, handle) -> None:
        if not self.handles:
            self.handles = set()
        self.handles.add(handle)

    def drop_handle(self, handle) -> None:
        if self.handles:
            self.handles.discard(handle)

    @property
    def is_dir(self) -> bool:
        return self.kind == stat.S_IFDIR

    def path(self) -> bytes:
        """Relative path in every layer ('.' for the root); ENOENT once the object is unlinked."""
        if self.ino == ROOT:
            return b"."
        parts = []
        node = self
        while node.ino != ROOT:
            if not node.aliases:
                raise FileNotFoundError(errno.ENOENT, "unlinked")
            node, name = node.aliases[0][0], node.aliases[0][1]
            parts.append(name)
        return b"/".join(reversed(parts))

    def paths(self):
        """Its relative path through each of its names (hard links have several)."""
        for parent, name in self.aliases:
            yield parent.child_path(name)

    def child_prefix(self) -> bytes:
        """What a child's path starts with: its own path and "/" (nothing for the root)."""
        return b"" if self.ino == ROOT else self.path() + b"/"

    def child_path(self, name: bytes) -> bytes:
        return self.child_prefix() + name

    def __repr__(self) -> str:
        return f"<Node {self.ino} {self.key} upper={self.upper} lowers={self.lowers}>"


def _without(aliases: tuple, alias: tuple) -> tuple:
    """ALIASES less the first ALIAS in it."""
    i = aliases.index(alias)
    return aliases[:i] + aliases[i + 1:]


def ino_of(key: bytes) -> int:
    return xxhash.xxh64_intdigest(key) & 0x7FFF_FFFF_FFFF_FFFF


# d_ino of the root's "..": the kernel ignores the node id of ".." entries, so it needs no node
ROOT_PARENT = ino_of(b"root-parent")


# nodes dropped before compact() gives their memory back
_COMPACT_AFTER = 1 << 14


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim (NodeTable.compact), or None with another libc. Loaded when first
    needed: most daemons never do."""
    import ctypes  # noqa: PLC0415

    return getattr(ctypes.CDLL(None), "malloc_trim", None)


class NodeTable:
    def __init__(self, root_key: bytes):
        self.by_ino: dict[int, Node] = {}
        self.by_key: dict[bytes, Node] = {}
        self.root = Node(ROOT, root_key, stat.S_IFDIR)
        self.root.nlookup = 1  # never forgotten
        self._insert(self.root)
        self.dropped = 0  # nodes dropped since compact() last gave memory back
        self._compacting = False

    def _insert(self, node: Node) -> None:
        self.by_ino[node.ino] = node
        self.by_key[node.key] = node

    def __getitem__(self, ino: int) -> Node:
        try:
            return self.by_ino[ino]
        except KeyError:
            log.error("request for unknown inode %d", ino)
            raise OSError(errno.ESTALE, "stale inode") from None

    def get_or_add(self, key: bytes, kind: int) -> Node:
        node = self.by_key.get(key)
        if node is not None and node.kind == kind:
            return node
        if node is not None:
            # The real object behind the key changed type (reused inode number): re-key the old.
            self.retire(node)
        ino = ino_of(key)
        while ino <= ROOT or ino in self.by_ino:
            ino = (ino + 1) & 0x7FFF_FFFF_FFFF_FFFF
        node = Node(ino, key, kind)
        self._insert(node)
        return node

    def retire(self, node: Node) -> None:
        """node's key now names another real object (or may: a reused inode number): the
        node keeps its ino, not the key."""
        del self.by_key[node.key]
        node.key = b"stale:%d" % node.ino
        self.by_key[node.key] = node

    def rekey(self, node: Node, key: bytes) -> None:
        """Give a node a new identity (e.g. an upper-only file whose key follows its upper inode)."""
        other = self.by_key.get(key)
        if other is not None and other is not node:
            self.retire(other)
        del self.by_key[node.key]
        node.key = key
        self.by_key[key] = node

    def attach(self, node: Node, parent: Node, name: bytes) -> None:
        """Record that `parent/name` names `node` (a directory has one name only). The name used
        last goes first: it is the one path-based operations try first."""
        alias = (parent, name)
        if alias in node.aliases:
            node.aliases = (alias, *_without(node.aliases, alias))
            return
        if node.is_dir:
            old, node.aliases = node.aliases, ()
            for p, _ in old:
                self._release_parent(p)
        node.aliases = (alias, *node.aliases)
        parent.nchild += 1

    def detach(self, node: Node, parent: Node, name: bytes, gone: bool = True) -> None:
        """parent/name no longer names node; `gone`: nor does anything else on disk (it keeps
        other hard links we may not know yet otherwise)."""
        if (parent, name) not in node.aliases:
            return
        node.aliases = _without(node.aliases, (parent, name))
        if not node.aliases and gone:
            # a new object may get the real inode number: it must not find this node
            self.retire(node)
        self._release_parent(parent)
        self.maybe_drop(node)

    def move(self, node: Node, old: tuple[Node, bytes], new: tuple[Node, bytes]) -> None:
        if old in node.aliases:
            i = node.aliases.index(old)
            node.aliases = (*node.aliases[:i], new, *node.aliases[i + 1:])
            new[0].nchild += 1
            self._release_parent(old[0])
        else:
            self.attach(node, *new)

    def ref(self, node: Node, n: int = 1) -> None:
        node.nlookup += n

    def forget(self, ino: int, n: int) -> None:
        node = self.by_ino.get(ino)
        if node is None:
            log.error("forget of unknown inode %d", ino)
            return
        if n > node.nlookup:
            log.error("lookup count underflow on inode %d (%d < %d)", ino, node.nlookup, n)
            n = node.nlookup
        node.nlookup -= n
        self.maybe_drop(node)

    def forgotten(self) -> None:
        """After a batch of FORGETs: once many nodes went, and more than are left, give their
        memory back a second later, when the burst has passed (the kernel forgets a cache's
        worth in batches)."""
        if (self.dropped >= _COMPACT_AFTER and self.dropped > len(self.by_ino)
                and not self._compacting):
            self._compacting = True
            trio.lowlevel.spawn_system_task(self._compact_soon)

    async def _compact_soon(self) -> None:
        await trio.sleep(1)
        self._compacting = False
        self.dropped = 0
        self.compact()

    def compact(self) -> None:
        """Give back what the nodes forgotten since last time held: without this a daemon
        stays at 690 of the 934 MiB a walk of a 1M-entry tree took after the kernel forgot it
        all (50 MiB with it; README "Reliability"). A dict never shrinks as keys go (the two
        tables alone hold ~80 MiB after a million nodes): a copy is sized to what is left.
        And the allocator keeps a 1 MiB arena while one block in it lives: the last tuples
        freed (node aliases) stay in the interpreter's free lists, one here and one there, and
        keep most arenas; a full collection empties those lists. And what was freed in the C
        heap below a live block stays until trimmed (another 35 MiB there). The copies and the
        collection cost O(nodes left), which forgotten() keeps below the nodes dropped."""
        self.by_ino = dict(self.by_ino)
        self.by_key = dict(self.by_key)
        gc.collect()
        trim = _malloc_trim()
        if trim is not None:
            trim(0)

    def maybe_drop(self, node: Node) -> None:
        """Drop a node the kernel no longer knows and nothing else refers to."""
        if node.nlookup or node.nchild or node.handles or node.ino == ROOT:
            return
        self.dropped += 1
        if self.by_ino.get(node.ino) is node:
            del self.by_ino[node.ino]
        if self.by_key.get(node.key) is node:
            del self.by_key[node.key]
        if node.pin is not None:
            os.close(node.pin)
            node.pin = None
        aliases, node.aliases = node.aliases, ()
        for parent, _ in aliases:
            self._release_parent(parent)

    def _release_parent(self, parent: Node) -> None:
        parent.nchild -= 1
        self.maybe_drop(parent)

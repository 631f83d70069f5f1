"""The on-disk markers of kernel overlayfs in its rootless ("userxattr") format, and OCI forms.

- whiteout: a 0/0 character device (in upper, and in lowers that were once uppers)
- metacopy file (-o metacopy=on): xattr user.overlay.metacopy = "", data in the lower
- opaque dir: xattr user.overlay.opaque = "y"
- OCI/AUFS on lowers only: `.wh.NAME` hides NAME, `.wh..wh..opq` makes its directory opaque
- user.overlay.* is private to the overlay: hidden from users; a user's own user.overlay.X is
  escaped to user.overlay.overlay.X on disk, as the kernel (6.7+) does.
"""
from __future__ import annotations

import os
import stat

OPAQUE = b"user.overlay.opaque"
PRIVATE = b"user.overlay."
ESCAPED = b"user.overlay.overlay."
# cowfs's own state, under a name the kernel does not use: the identity of a copied-up file's
# lower origin, so its st_ino stays the same after the copy-up for the life of the mount.
ORIGIN = b"user.overlay.cowfs.origin"
# A metadata-only copy-up (metacopy.py): the file's data is its lower's, found at the same path
# or where REDIRECT says, as in the kernel's format.
METACOPY = b"user.overlay.metacopy"
# A renamed lower or merged dir (redirect_dir=on): the path its lower dirs are at, the name in
# the same parent or "/abs/path" from the overlay root, as kernel overlayfs writes it; on a
# metacopy file, where its data is.
REDIRECT = b"user.overlay.redirect"
# On the upper's root once a redirect was written there: a mount without redirect_dir=on would
# show such an upper, or a lower that was one, wrong (kernel userxattr mode too), so it is
# refused (config.py).
REDIRECTS_USED = b"user.overlay.cowfs.redirects"
# The user.overlay.* names kernel overlayfs (6.18) itself reads or writes; with ORIGIN and the
# escaped ones, every name an upper may rightly carry under that prefix (`cowfs fsck`).
KERNEL_PRIVATE = frozenset(
    PRIVATE + n
    for n in b"opaque redirect origin impure nlink upper uuid metacopy protattr whiteout".split()
)
# Not on disk: a live mount's layers as JSON, answered by getxattr on the mount root only (never
# listed, never settable), so that `cowfs diff MOUNTPOINT` and `cowfs fsck` can find them.
LAYERS = b"user.cowfs.layers"

OCI_PREFIX = b".wh."
OCI_OPAQUE = b".wh..wh..opq"

WHITEOUT_MODE = stat.S_IFCHR | 0o000


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def redirects_used(upper: str) -> bool:
    try:
        return os.getxattr(upper, REDIRECTS_USED) == b"y"
    except OSError:
        return False


def is_opaque_value(value: bytes | None) -> bool:
    # the kernel reads one byte and wants "y": "Y", "yes" (ERANGE for it) or "x" are not opaque
    return value == b"y"


def to_disk_xattr(name: bytes) -> bytes:
    """The name stored in the upper for a name a user passes through the mount."""
    if name.startswith(PRIVATE):
        return ESCAPED + name[len(PRIVATE):]
    return name


def from_disk_xattr(name: bytes) -> bytes | None:
    """The name a user sees for a stored name; None for the overlay's private ones."""
    if name.startswith(ESCAPED):
        return PRIVATE + name[len(ESCAPED):]
    if name.startswith(PRIVATE):
        return None
    return name


def copyable_xattr(name: bytes) -> bool:
    """Xattrs that copy-up carries: all but the overlay's own markers (escaped ones are the
    user's and travel with the file)."""
    return name.startswith(ESCAPED) or not name.startswith(PRIVATE)

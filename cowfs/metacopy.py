"""Metadata-only copy-up (`-o metacopy=on`), as kernel overlayfs metacopy=on.

A metadata change (chmod, chown, utimens, setxattr) of a lower regular file puts in the upper a
file with the metadata only: the lower's size as a hole, marked user.overlay.metacopy (empty).
Its data stays the lower file's, at the same path in the lowers or where user.overlay.redirect
says: set, as the kernel sets it, before such a file is renamed. The first change of the data
copies it in (copyup.copy_up) and drops both marks.

Without the option such a file is refused (EPERM) where it is looked up, as the kernel refuses
to follow a metacopy upper when it was not mounted with metacopy=on: its zeros are not its data.
"""
from __future__ import annotations

import errno
import logging
import os
import stat

from . import markers
from .layers import UpperLayer

log = logging.getLogger(__name__)


class DataError(OSError):
    """A metacopy file whose data cannot be shown: not followed (option off) or lower gone.
    `entry`: its namei.Entry (Overlay.resolve_at sets it)."""

    entry = None


def data_path(path: bytes, redirect: bytes | None) -> bytes:
    """Where the lowers hold the data of the metacopy file at PATH: its redirect, absolute
    ("/d/f") or relative to its directory ("f", what the kernel writes for a rename within it)."""
    if redirect is None:
        return path
    if redirect.startswith(b"/"):
        return redirect.lstrip(b"/")
    parent = path.rpartition(b"/")[0]
    return parent + b"/" + redirect if parent else redirect


def lower_data(ov, path: bytes, lpath: bytes | None = None) -> tuple[int, bytes] | None:
    """(lower index, path) of the data of the upper regular file at PATH if it is a metacopy
    file, else None. DataError (logged) where it is one that cannot be shown. LPATH: where the
    lowers hold what is at PATH when a moved dir above took that elsewhere (redirect_dir)."""
    upper = ov.upper
    if upper.try_getxattr(path, markers.METACOPY) is None:
        return None
    if not ov.metacopy:
        log.warning("%r is a metadata-only copy-up: mount with -o metacopy=on to read it", path)
        raise DataError(errno.EPERM, "metacopy file on a mount without metacopy=on")
    src = data_path(lpath or path, upper.try_getxattr(path, markers.REDIRECT))
    for index, layer in enumerate(ov.lowers):
        st = layer.try_lstat(src)
        if st is None:
            continue
        if stat.S_ISREG(st.st_mode):
            return index, src
        break
    log.warning("%r: the lower data of this metadata-only copy-up (%r) is gone", path, src)
    raise DataError(errno.EIO, "metacopy file without its lower data")


def mark(tmp: bytes, upper: UpperLayer) -> bool:
    """Mark the file TMP in the work dir a metacopy file; False where the upper takes no user
    xattrs (the caller copies the data instead)."""
    try:
        os.setxattr(f"/proc/self/fd/{upper.work_fd}/".encode() + tmp, markers.METACOPY, b"")
    except OSError as e:
        if e.errno not in (errno.ENOTSUP, errno.EPERM):
            raise
        return False
    return True


def redirect_before_move(ov, node) -> None:
    """Before a metacopy file is renamed: point it at its data, as the kernel does (absolute),
    so its new name still finds it. Before, not after: a kill between leaves a redirect to the
    file's own data, never a moved file reading what another lower file holds at its new name."""
    upper = ov.upper
    path = ov.path_of(node)
    if upper.try_getxattr(path, markers.REDIRECT) is not None:
        return
    with upper.granted(path, stat.S_IWUSR):
        upper.setxattr(path, markers.REDIRECT, b"/" + node.data[1])
    ov.attrs_changed(node)  # its ctime moved

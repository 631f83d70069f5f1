"""`cowfs fsck`: leftovers and malformed markers in an upper and its work dir, and their repair.

Problems found:
- anything in WORK/work: copy-ups and whiteouts are built there under "#cowfs-<pid>-<seq>" and
  renamed into place, so with nothing mounted, what is left there is garbage (kernel overlayfs
  uses WORK/work the same way; only its shared whiteout stays there by design);
- character devices in the upper other than 0/0 (only 0/0 is a whiteout), and OCI `.wh.*`
  names in the upper (only lowers read them: the kernel shows them as plain entries);
- user.overlay.opaque other than "y" or on a non-directory, user.overlay.cowfs.origin on a
  non-regular file or not holding a lower object's key, and user.overlay.* names that neither
  kernel overlayfs nor cowfs uses and that are not a user's escaped xattrs (user.overlay.overlay.*);
- user.overlay.metacopy (a metadata-only copy-up) on a non-regular file, or, with the lowers
  given (--lower), on a file whose lower data is gone (a mount answers EIO for it);
- a malformed user.overlay.redirect (a lookup of its dir fails with EINVAL, on the kernel too)
  or one on a non-directory that is not a metacopy file, and redirects in an upper whose root
  does not say it holds them (user.overlay.cowfs.redirects: a mount without redirect_dir=on
  would show them wrong).
--repair removes only what no overlay reads: work-dir leftovers, opaque and metacopy xattrs on
non-directories and non-files, and malformed origin xattrs. Everything else is part of what the
merged view shows (or is not ours to judge): reported, never touched.
"""
from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass

from . import markers, metacopy, namei
from .claim import same_dir
from .config import FSTYPE, read_mountinfo
from .diff import TYPES, read_layers, show_path
from .layers import (NOTE_PREFIX, WHITEOUT, Layer, notes_latest_first, put_back_mode,
                     read_note, remove_tree)


# ovl_tempname(): "#%x". Kernel overlayfs hard-links every whiteout it makes to one 0/0 device
# of that name in WORK/work and leaves it there when unmounted (its next mount clears it).
_KERNEL_TEMP = re.compile(rb"#[0-9a-f]+\Z")


@dataclass
class Problem:
    path: bytes  # absolute
    what: str
    # provable garbage: what --repair removes ("it", "the xattr") and the call that does it
    garbage: str | None = None
    remove: Callable[[], None] | None = None


class _Upper(Layer):
    """The upper, read as a layer is; writes only the repairs (an UpperLayer would first empty
    the work dir, before we could say what was in it)."""

    def removexattr(self, rel: bytes, name: bytes) -> None:
        self._xattr(os.removexattr, rel, name)


def in_use(upper: str, work: str | None) -> str | None:
    """Why `upper` (or `work`) may be in use by a mount now, or None if it is provably not."""
    unasked = []
    for m in read_mountinfo():
        if m.fstype == FSTYPE:
            try:
                layers = read_layers(m.mountpoint)
            except (OSError, ValueError):
                unasked.append(m.mountpoint)  # another user's FUSE mount: see the daemons below
                continue
            if layers.get("upper") == upper or (work and layers.get("work") == work):
                return f"it is mounted by cowfs at {m.mountpoint}"
        elif m.fstype == "overlay" and (same_dir(m.option("upperdir"), upper)
                                        or same_dir(m.option("workdir"), work)):
            return f"it is mounted by kernel overlayfs at {m.mountpoint}"
    # A cowfs daemon holds its upper and work dir open as long as it runs: that also finds the
    # mounts we may not ask and those of other mount namespaces.
    held = {upper} | ({os.path.join(work, "work")} if work else set())
    blind = False
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except PermissionError:
            blind = True
            continue
        except OSError:
            continue  # gone meanwhile
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in held:
                    return f"process {pid} ({_comm(pid)}) has it open"
            except OSError:
                continue
    if unasked and blind:
        return (f"cannot tell whether the cowfs mount at {unasked[0]} uses it (not ours to ask): "
                "run as root or as the user who mounted it")
    return None


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return "?"


def check(up: _Upper, work_fd: int | None, work: str | None,
          lowers: list[Layer] | None = None) -> list[Problem]:
    """LOWERS (top first): also check that every metacopy file's lower data is there."""
    problems = []
    if work_fd is not None:
        scratch = os.fsencode(os.path.join(work, "work"))
        names = sorted(os.fsencode(n) for n in os.listdir(work_fd))
        # a mode lent when the daemon was killed: given back first (latest first), as a mount does
        for name in notes_latest_first(names):
            note = read_note(work_fd, name)
            what = (f"{_text(note[0])} is to get its mode {note[1]:04o} back" if note
                    else "malformed")
            problems.append(Problem(
                scratch + b"/" + name, f"leftover of an interrupted change: note of a lent "
                f"mode ({what})", "it, giving the mode back",
                lambda name=name: (put_back_mode(up, work_fd, name), remove_tree(work_fd, name))))
        for name in names:
            if name.startswith(NOTE_PREFIX):
                continue
            if _KERNEL_TEMP.match(name) and markers.is_whiteout(
                    os.stat(name, dir_fd=work_fd, follow_symlinks=False)):
                continue  # kernel overlayfs's shared whiteout: kept there between its mounts
            problems.append(Problem(
                scratch + b"/" + name, "leftover of an interrupted copy-up or whiteout", "it",
                lambda name=name: remove_tree(work_fd, name)))
    top = os.fsencode(up.path)
    found = _xattr_problems(up, top, b".", stat.S_IFDIR, lowers)
    redirects: list[bytes] = []
    todo = [b""]
    while todo:  # a stack, not recursion: any depth
        dirpath = todo.pop()
        for name, kind in up.listdir(dirpath or b"."):
            rel = dirpath + name
            path = top + b"/" + rel
            if kind == stat.S_IFCHR:  # not 0/0 (listdir calls those WHITEOUT)
                rdev = up.lstat(rel).st_rdev
                found.append(Problem(
                    path, f"character device {os.major(rdev)}:{os.minor(rdev)} in the upper: "
                    "not a whiteout (whiteouts are 0:0), shown as a device"))
            if name.startswith(markers.OCI_PREFIX):
                what = "whiteout" if kind == WHITEOUT else TYPES[kind]
                found.append(Problem(
                    path, f"OCI whiteout name in the upper ({what}): shown as it is (only "
                    "lowers read .wh.* markers)"))
            if kind in (stat.S_IFREG, stat.S_IFDIR):  # the only objects with user xattrs
                found += _xattr_problems(up, path, rel, kind, lowers)
                if kind == stat.S_IFDIR and up.try_getxattr(rel, markers.REDIRECT) is not None:
                    redirects.append(path)
            if kind == stat.S_IFDIR:
                todo.append(rel + b"/")
    if redirects and not markers.redirects_used(up.path):
        found.append(Problem(top, f"holds redirects ({_text(redirects[0])}, ...) but its root "
                             f"lacks {_text(markers.REDIRECTS_USED)}=y: a mount without "
                             "redirect_dir=on would show those dirs wrong"))
    return problems + sorted(found, key=lambda p: p.path)


def _xattr_problems(up: _Upper, path: bytes, rel: bytes, kind: int,
                    lowers: list[Layer] | None) -> list[Problem]:
    out = []
    for name in up.listxattr(rel):
        if not name.startswith(markers.PRIVATE) or name.startswith(markers.ESCAPED):
            continue
        shown = _text(name)

        def remove(name=name):
            up.removexattr(rel, name)

        if name == markers.OPAQUE:
            if kind != stat.S_IFDIR:
                out.append(Problem(path, f"{shown} on a {TYPES[kind]}: read on directories only",
                                   "the xattr", remove))
            elif (value := up.getxattr(rel, name)) != b"y":
                out.append(Problem(path, f"{shown} is {_text(value)!r}, not 'y': kernel overlayfs "
                                   "does not take the directory as opaque"))
        elif name == markers.ORIGIN:
            if kind != stat.S_IFREG:
                out.append(Problem(path, f"{shown} on a {TYPES[kind]}: only copied-up regular "
                                   "files carry one", "the xattr", remove))
            elif not namei.is_origin_key(value := up.getxattr(rel, name)):
                out.append(Problem(path, f"{shown} is {_text(value)!r}, not a lower object's key",
                                   "the xattr", remove))
        elif name == markers.METACOPY:
            if kind != stat.S_IFREG:
                out.append(Problem(path, f"{shown} on a {TYPES[kind]}: only regular files are "
                                   "metadata-only copy-ups", "the xattr", remove))
            elif lowers is not None:
                src = metacopy.data_path(rel, up.try_getxattr(rel, markers.REDIRECT))
                if _lower_file(lowers, src) is None:
                    out.append(Problem(path, f"metadata-only copy-up whose lower data "
                                       f"({_text(src)}) is gone: reads as EIO"))
        elif name == markers.REDIRECT:
            if kind != stat.S_IFDIR:
                if up.try_getxattr(rel, markers.METACOPY) is None:
                    out.append(Problem(path, f"{shown} on a {TYPES[kind]}: read on directories "
                                       "and metadata-only copy-ups only"))
            elif not namei.valid_redirect(value := up.getxattr(rel, name)):
                out.append(Problem(path, f"{shown} is {_text(value)!r}: not a name nor an "
                                   "absolute path of names (a lookup of the dir fails with "
                                   "EINVAL)"))
        elif name == markers.REDIRECTS_USED:
            if rel != b"." or (value := up.getxattr(rel, name)) != b"y":
                out.append(Problem(path, f"{shown} belongs on the upper's root, as 'y'"))
        elif name not in markers.KERNEL_PRIVATE:
            out.append(Problem(path, f"unknown overlay xattr {shown}: not one kernel overlayfs "
                               "or cowfs uses, nor an escaped user xattr (user.overlay.overlay.*)"))
    return out


def _lower_file(lowers: list[Layer], path: bytes) -> os.stat_result | None:
    """The regular file the topmost lower holding PATH has there (what a mount reads)."""
    for layer in lowers:
        st = layer.try_lstat(path)
        if st is not None:
            return st if stat.S_ISREG(st.st_mode) else None
    return None


def _text(raw: bytes) -> str:
    return raw.decode(errors="backslashreplace")


def fsck(upper: str, work: str | None, repair: bool, emit: Callable[[bytes], None],
         lowers: list[str] | None = None) -> int:
    """Check (and repair) `upper` and `work` (None: no work dir to check), over LOWERS if given;
    one line per problem to `emit`. Returns 0 if no problem is left, else 1. The caller has made
    sure (in_use) that nothing has them mounted."""
    up = _Upper(upper, -1)
    lows = None if lowers is None else [Layer(p, i) for i, p in enumerate(lowers)]
    work_fd = None
    try:
        if work is not None:
            try:
                work_fd = os.open(os.path.join(work, "work"),
                                  os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                pass  # never mounted, or cleaned: nothing left over
        left = 0
        for p in check(up, work_fd, work, lows):
            line = show_path(p.path) + b": " + p.what.encode()
            if repair and p.remove is not None:
                try:
                    p.remove()
                    line += b": removed " + p.garbage.encode()
                except OSError as e:
                    line += f": could not remove {p.garbage}: {e.strerror}".encode()
                    left += 1
            else:
                if p.garbage is not None:
                    line += f" (--repair removes {p.garbage})".encode()
                left += 1
            emit(line + b"\n")
        return 1 if left else 0
    finally:
        up.close()
        for layer in lows or ():
            layer.close()
        if work_fd is not None:
            os.close(work_fd)

"""Mount configuration: what `cowfs mount` was asked to do, validated before anything is created.

INTERFACE (shared by cli/mount and the filesystem core):
  MountConfig(lowers, upper, work, mountpoint, debug, allow_other, fuse_options)
  - lowers: absolute real paths, top first (at least one)
  - upper: absolute real path or None (None: read-only merged view)
  - work: absolute path of the work dir or None (None iff upper is None). The core uses
    WORK/work/ as its scratch area (the same layout kernel overlayfs uses) and empties it at mount.
    The work dir itself may not exist yet when the config is built (the default one is created by
    cowfs.mount just before the filesystem starts; so is WORK/work).
  - mountpoint: absolute real path
  - fuse_options: the complete option set handed to pyfuse3.init (always has default_permissions,
    fsname=, subtype=cowfs; 'ro' when read_only; 'allow_other' when asked for or run by root)

Everything here is pure checking: build_config() stats paths and reads /proc/self/mountinfo but
creates nothing. A problem with the user's input raises UsageError(one-line message); the CLI
prints it as `cowfs: MESSAGE` and exits with status 2.

Stdlib only.
"""
from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from collections.abc import Iterable, Sequence

from . import claim, markers

FSTYPE = "fuse.cowfs"
SUBTYPE = "cowfs"
FUSE_DEVICE = "/dev/fuse"
#: libfuse runs FUSERMOUNT_DIR/fusermount3 first (Debian: /bin), then fusermount3 from PATH.
FUSERMOUNT = "fusermount3"
FUSERMOUNT_BUILTIN = "/bin/fusermount3"
FUSE_CONF = "/etc/fuse.conf"

#: Names allowed in an existing work dir: kernel overlayfs's own layout (WORK/work is also
#: cowfs's scratch area; WORK/index is the kernel's index=on directory), the origins of
#: copied-up symlinks and special files cowfs keeps there (originmap.py), and the copies of
#: lower hard links whose names are being linked (hardlinks.py).
ORIGINS_FILE = "cowfs-origins"
LINKS_DIR = "cowfs-links"
WORK_DIR_ENTRIES = frozenset({"work", "index", ORIGINS_FILE, LINKS_DIR})


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2, nothing created."""


@dataclass(frozen=True)
class MountConfig:
    lowers: tuple[str, ...]
    upper: str | None
    work: str | None
    mountpoint: str
    debug: bool = False
    allow_other: bool = False
    fuse_options: frozenset[str] = field(default_factory=frozenset)
    own_lowers: bool = False  # lower objects shown as the mounting user's, owner-writable
    redirect_dir: bool = False  # a lower or merged dir renamed: redirect xattr, not EXDEV
    metacopy: bool = False  # metadata-only copy-up (user.overlay.metacopy), as kernel metacopy=on

    @property
    def read_only(self) -> bool:
        """True when the merged view cannot be written (no upper, or mounted with -o ro)."""
        return self.upper is None or "ro" in self.fuse_options

    @property
    def scratch(self) -> str | None:
        """WORK/work: the scratch dir the core builds new objects in (None without upper)."""
        return None if self.work is None else os.path.join(self.work, "work")


def default_work_dir(upper: str) -> str:
    """The work dir used when none is given: a hidden sibling of upper."""
    parent, base = os.path.split(upper.rstrip("/") or "/")
    return os.path.join(parent, f".{base}.cowfs-work")


# ---------------------------------------------------------------------------------------------
# /proc/self/mountinfo


@dataclass(frozen=True)
class MountEntry:
    mount_id: int
    parent_id: int
    dev: str  # "major:minor"
    root: str
    mountpoint: str
    fstype: str
    source: str
    options: str = ""  # super options, escaped as in mountinfo

    def option(self, key: str) -> str | None:
        """The value of super option KEY=VALUE (kernel overlayfs shows upperdir=, workdir=)."""
        for opt in self.options.split(","):  # a comma inside a value is escaped (\054)
            k, eq, value = opt.partition("=")
            if eq and k == key:
                return _unescape_mountinfo(value)
        return None


def _unescape_mountinfo(field_: str) -> str:
    # The kernel escapes space, tab, newline and backslash as \ooo (fs/proc_namespace.c).
    if "\\" not in field_:
        return field_
    out, i = [], 0
    while i < len(field_):
        c = field_[i]
        if c == "\\" and i + 3 < len(field_) and field_[i + 1 : i + 4].isdigit():
            out.append(chr(int(field_[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(c)
            i += 1
    return "".join(out)


def read_mountinfo(path: str = "/proc/self/mountinfo") -> list[MountEntry]:
    """The mount table of this mount namespace, in mount order (later entries stack on top)."""
    entries = []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            try:
                sep = fields.index("-", 6)
            except ValueError:
                continue
            entries.append(
                MountEntry(
                    mount_id=int(fields[0]),
                    parent_id=int(fields[1]),
                    dev=fields[2],
                    root=_unescape_mountinfo(fields[3]),
                    mountpoint=_unescape_mountinfo(fields[4]),
                    fstype=fields[sep + 1],
                    source=_unescape_mountinfo(fields[sep + 2]) if len(fields) > sep + 2 else "",
                    options=fields[sep + 3] if len(fields) > sep + 3 else "",
                )
            )
    return entries


def mount_at(path: str, mounts: Sequence[MountEntry] | None = None) -> MountEntry | None:
    """The topmost mount whose mountpoint is exactly `path` (a real path), or None."""
    mounts = read_mountinfo() if mounts is None else mounts
    found = None
    for m in mounts:
        if m.mountpoint == path:
            found = m
    return found


def mount_of(path: str, mounts: Sequence[MountEntry] | None = None) -> MountEntry | None:
    """The mount that real path `path` lives on: the longest mountpoint prefix, topmost wins."""
    mounts = read_mountinfo() if mounts is None else mounts
    best, best_len = None, -1
    for m in mounts:
        mp = m.mountpoint
        if mp in (path, "/") or path.startswith(mp + "/"):
            if len(mp) >= best_len:  # >=: a later mount on the same point covers the earlier
                best, best_len = m, len(mp)
    return best


# ---------------------------------------------------------------------------------------------
# path relations


def is_within(path: str, top: str) -> bool:
    """True if real path `path` equals `top` or lies below it."""
    if top == "/":
        return True
    return path == top or path.startswith(top.rstrip("/") + "/")


def overlaps(a: str, b: str) -> bool:
    return is_within(a, b) or is_within(b, a)


def _relation(a: str, b: str) -> str:
    if a == b:
        return "is the same directory as"
    if is_within(a, b):
        return "is inside"
    return "contains"


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(os.path.expanduser(path)))


def require_dir(what: str, path: str) -> str:
    """Real path of an existing directory, or UsageError naming `what`."""
    if path == "":
        raise UsageError(f"{what} path is empty")
    real = _real(path)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except OSError as e:
        raise UsageError(f"{what} {path}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{what} {path} is not a directory")
    return real


# ---------------------------------------------------------------------------------------------
# environment checks


def check_fuse_available(is_root: bool, device: str = FUSE_DEVICE) -> None:
    """/dev/fuse must be a character device this user can open read-write; without root,
    libfuse mounts through the setuid fusermount3, which must exist."""
    try:
        st = os.stat(device)
    except FileNotFoundError:
        raise UsageError(f"{device} does not exist (load the fuse kernel module)") from None
    except OSError as e:
        raise UsageError(f"cannot use {device}: {e.strerror}") from None
    if not stat.S_ISCHR(st.st_mode):
        raise UsageError(f"{device} is not a character device")
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        hint = " (it must be mode 0666: ask root to chmod 666 /dev/fuse)" if not is_root else ""
        raise UsageError(
            f"cannot open {device} for reading and writing: {e.strerror}{hint}"
        ) from None
    os.close(fd)
    if not is_root and find_fusermount() is None:
        raise UsageError(f"{FUSERMOUNT} not found in PATH (install the fuse3 package)")


def find_fusermount() -> str | None:
    """Where libfuse (and `cowfs umount`) find fusermount3: its built-in dir first, then PATH."""
    if os.access(FUSERMOUNT_BUILTIN, os.X_OK):
        return FUSERMOUNT_BUILTIN
    return shutil.which(FUSERMOUNT)


def user_allow_other(conf: str = FUSE_CONF) -> bool:
    try:
        with open(conf, encoding="utf-8", errors="replace") as f:
            return any(line.split("#", 1)[0].strip() == "user_allow_other" for line in f)
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# the work dir


def _check_work_contents(work: str, shown: str) -> None:
    try:
        names = set(os.listdir(work))
    except OSError as e:
        raise UsageError(f"work directory {shown}: {e.strerror}") from None
    stray = sorted(names - WORK_DIR_ENTRIES)
    if stray:
        more = f" (and {len(stray) - 1} more)" if len(stray) > 1 else ""
        raise UsageError(
            f"work directory {shown} is not empty: it contains {stray[0]!r}{more}; "
            "use an empty directory (only 'work', 'index', 'cowfs-origins' and 'cowfs-links' are "
            "allowed)"
        )
    for name in sorted(names):
        p = os.path.join(work, name)
        if name == ORIGINS_FILE:
            if os.path.islink(p) or not os.path.isfile(p):
                raise UsageError(f"work directory {shown}: {name!r} is not a regular file")
        elif os.path.islink(p) or not os.path.isdir(p):
            raise UsageError(f"work directory {shown} is not empty: {name!r} is not a directory")


def _resolve_work(
    work: str | None, upper: str, lowers: Sequence[str], mounts: Sequence[MountEntry]
) -> str:
    """Absolute path of the work dir (existing or to be created), checked against upper."""
    given = work is not None
    if given:
        shown = work
        real = _real(work)
    else:
        real = default_work_dir(upper)
        shown = real
    hint = "" if given else "; pass --work DIR (a directory on the same filesystem as the upper)"

    if real == upper or is_within(real, upper):
        raise UsageError(f"work directory {shown} {_relation(real, upper)} upper directory {upper}")
    if is_within(upper, real):
        raise UsageError(f"upper directory {upper} is inside work directory {shown}")
    for lower in lowers:
        if overlaps(real, lower):
            raise UsageError(
                f"work directory {shown} {_relation(real, lower)} lower directory {lower}"
            )

    if os.path.lexists(real):
        if not os.path.isdir(real):
            raise UsageError(f"work directory {shown} is not a directory")
        probe = real
        _check_work_contents(real, shown)
        if not os.access(real, os.W_OK | os.X_OK):
            raise UsageError(f"work directory {shown} is not writable{hint}")
    else:
        parent = os.path.dirname(real)
        if not os.path.isdir(parent):
            raise UsageError(f"cannot create work directory {shown}: {parent} does not exist{hint}")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(
                f"cannot create work directory {shown}: {parent} is not writable{hint}"
            )
        probe = parent

    if os.stat(probe).st_dev != os.stat(upper).st_dev:
        raise UsageError(
            f"work directory {shown} is on another filesystem than upper directory {upper}{hint}"
        )
    m_work, m_upper = mount_of(probe, mounts), mount_of(upper, mounts)
    if m_work is not None and m_upper is not None and m_work.mount_id != m_upper.mount_id:
        raise UsageError(
            f"work directory {shown} is on another mount than upper directory {upper} "
            f"({m_work.mountpoint} vs {m_upper.mountpoint}){hint}"
        )
    return real


def check_log_file(path: str) -> str:
    """Absolute path of a log file that can be appended to (created later, by the daemon)."""
    real = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(real):
        raise UsageError(f"log file {path} is a directory")
    if os.path.exists(real):
        if not os.access(real, os.W_OK):
            raise UsageError(f"log file {path} is not writable")
    else:
        parent = os.path.dirname(real)
        if not os.path.isdir(parent):
            raise UsageError(f"log file {path}: directory {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(f"log file {path}: directory {parent} is not writable")
    return real


# ---------------------------------------------------------------------------------------------


def build_config(
    *,
    lowers: Sequence[str],
    upper: str | None,
    work: str | None,
    mountpoint: str,
    read_only: bool = False,
    allow_other: bool = False,
    own_lowers: bool = False,
    redirect_dir: bool = False,
    metacopy: bool = False,
    debug: bool = False,
    fsname: str = "cowfs",
    extra_fuse_options: Iterable[str] = (),
    is_root: bool | None = None,
    check_fuse: bool = True,
    layer_files: bool = False,
) -> MountConfig:
    """Check everything the user gave and return the MountConfig, or raise UsageError.

    Creates nothing. Order of checks: layers, mountpoint, work dir, FUSE availability.
    `extra_fuse_options` are kernel mount flags passed on to libfuse (nosuid, noatime, ...).
    LAYER_FILES: a lower may be a layer tarball (checked by its magic), kept as its path; the
    caller unpacks it (layertar.unpack) and builds the config again with the unpacked dirs.
    """
    if is_root is None:
        is_root = os.geteuid() == 0
    mounts = read_mountinfo()

    # --- lowers
    if not lowers:
        raise UsageError("no lower directory given (use --lower DIR or -o lowerdir=DIR)")
    real_lowers: list[str] = []
    for lower in lowers:
        real = _real(lower) if lower else ""
        if layer_files and real and os.path.isfile(real):
            from . import layertar  # noqa: PLC0415 - a cycle: layertar raises UsageError

            layertar.compression(real, lower)
        else:
            real = require_dir("lower directory", lower)
        for prev in real_lowers:
            if real == prev:
                raise UsageError(f"lower directory {lower} is given twice")
            if overlaps(real, prev):
                raise UsageError(
                    f"lower directory {lower} {_relation(real, prev)} lower directory {prev}"
                )
        if not redirect_dir and markers.redirects_used(real):
            raise UsageError(
                f"lower directory {lower} holds renamed directories (redirects): "
                "mount it with -o redirect_dir=on (--redirect-dir)"
            )
        real_lowers.append(real)

    # --- upper
    real_upper = None
    if upper is not None:
        real_upper = require_dir("upper directory", upper)
        for lower in real_lowers:
            if overlaps(real_upper, lower):
                raise UsageError(
                    f"upper directory {upper} {_relation(real_upper, lower)} "
                    f"lower directory {lower}"
                )
        if not read_only and not os.access(real_upper, os.W_OK | os.X_OK):
            raise UsageError(f"upper directory {upper} is not writable")
        if not redirect_dir and markers.redirects_used(real_upper):
            raise UsageError(
                f"upper directory {upper} holds renamed directories (redirects): "
                "mount it with -o redirect_dir=on (--redirect-dir)"
            )
    elif work is not None:
        raise UsageError("a work directory needs an upper directory (--upper or -o upperdir=)")

    # --- mountpoint (its real path: a symlink to a dir mounts on the dir, as mount(8) does)
    if mountpoint == "":
        raise UsageError("mountpoint path is empty")
    real_mnt = _real(mountpoint)
    if mount_at(real_mnt, mounts) is not None:
        raise UsageError(f"mountpoint {mountpoint} is already mounted")
    real_mnt = require_dir("mountpoint", mountpoint)
    for what, layer in [("lower", low) for low in real_lowers] + [("upper", real_upper)]:
        if layer is not None and overlaps(real_mnt, layer):
            raise UsageError(
                f"mountpoint {mountpoint} {_relation(real_mnt, layer)} {what} directory {layer}: "
                "cowfs cannot serve a layer through its own mount"
            )
    if not is_root:
        # fusermount3's rule (check_perm in util/fusermount.c)
        st = os.stat(real_mnt)
        if (st.st_mode & stat.S_ISVTX) and st.st_uid != os.getuid():
            raise UsageError(f"mountpoint {mountpoint} is not owned by you (sticky directory)")
        if not os.access(real_mnt, os.W_OK):
            raise UsageError(f"no write access to mountpoint {mountpoint} (fusermount3 needs it)")

    # --- work
    real_work = None
    if real_upper is not None:
        real_work = _resolve_work(work, real_upper, real_lowers, mounts)
        busy = claim.holder(real_upper, real_work, mounts)
        if busy is not None:
            raise UsageError(busy)
        if overlaps(real_mnt, real_work):
            raise UsageError(
                f"mountpoint {mountpoint} {_relation(real_mnt, real_work)} "
                f"work directory {real_work}"
            )

    # --- options
    if allow_other and not is_root and not user_allow_other():
        raise UsageError(f"allow_other needs 'user_allow_other' in {FUSE_CONF}")
    allow_other = allow_other or is_root
    if "," in fsname:
        raise UsageError(f"source {fsname!r} contains a comma")
    opts = {"default_permissions", f"fsname={fsname or 'cowfs'}", f"subtype={SUBTYPE}"}
    opts.update(extra_fuse_options)
    opts.discard("rw")
    if not is_root:
        # fusermount3 forces nosuid,nodev for users and warns about these; leave them out
        opts.difference_update({"suid", "dev"})
    if read_only or real_upper is None:
        opts.add("ro")
    if allow_other:
        opts.add("allow_other")

    # --- the machine
    if check_fuse:
        check_fuse_available(is_root)

    return MountConfig(
        lowers=tuple(real_lowers),
        upper=real_upper,
        work=real_work,
        mountpoint=real_mnt,
        debug=debug,
        allow_other=allow_other,
        fuse_options=frozenset(opts),
        own_lowers=own_lowers,
        redirect_dir=redirect_dir,
        metacopy=metacopy,
    )

"""Command line: `cowfs mount`, `cowfs umount`, the mount.fuse3 calling convention, and the
offline tools `cowfs diff` and `cowfs fsck`, sandboxes, and the shared cache snapshots
(`cowfs snapshot build|push|pull`, `cowfs verify`).

    cowfs mount --lower A [--lower B ...] [--upper U [--work W]] [-o OPTS] MOUNTPOINT
    cowfs mount -o lowerdir=A:B,upperdir=U,workdir=W MOUNTPOINT
    cowfs SOURCE MOUNTPOINT -o OPTS          (what mount.fuse3 runs for `mount -t fuse.cowfs`)
    cowfs umount [-z] [--abort] MOUNTPOINT
    cowfs diff --upper U --lower A [--lower B ...] [--json]  |  cowfs diff MOUNTPOINT [--json]
    cowfs fsck --upper U [--work W] [--lower A ...] [--repair]
    cowfs sandbox mount|reset|umount ...     (a private view of a shared snapshot: sandbox.py)
    cowfs snapshot build ROOT [--kind pip|npm] [--requirements FILE | --top N --stats FILE]
                             [--find-links DIR] [--no-index] [--python PY]   (pip only)
    cowfs snapshot push SNAPSHOT REGISTRY/REPO:TAG   (an OCI registry: registry.py)
    cowfs snapshot pull REGISTRY/REPO:TAG ROOT
    cowfs snapshot gc ROOT [--keep N]        (old snapshots and unused store objects: collect.py)
    cowfs verify SNAPSHOT                    (a snapshot dir, or a ROOT: its `current`)
    cowfs serve SOCKET                       (a ready parent forking mount daemons: serve.py)

Exit status: 0 success; 1 runtime failure (the mount could not be made, the daemon died, a layer
could not be read; fsck: problems found or left; the snapshot build, push or pull failed;
verify found differences; gc could not remove something); 2 bad input (one line on stderr,
nothing created, mounted or removed).

-o options (comma separated; `\\,` and `\\:` escape a comma or colon inside a path, as in kernel
overlayfs):
  lowerdir=A:B  upperdir=U  workdir=W      the layers (like --lower/--upper/--work); a lower may
                                           be an OCI layer tarball (gzip, zstd or tar)
  layer_store=DIR                          where tarball lowers are unpacked (like --layer-store)
  ro / rw                                  read-only merged view / read-write (the default)
  debug                                    log every request (like --debug)
  debug_fuse                               also libfuse's own per-request trace (like --debug-fuse)
  log=FILE                                 log file of the background daemon (like --log)
  allow_other                              let other users in (root: always on)
  own_lowers                               show lower objects as the mounting user's, with the
                                           owner's write bit (like --own-lowers)
  redirect_dir=on                          renaming a lower or merged directory records the move
                                           (kernel "redirect" xattr) instead of EXDEV (like
                                           --redirect-dir); redirect_dir=off is the default
  metacopy=on|off                          metadata-only copy-up (like --metacopy; default off)
  fsname=NAME                              the source shown in the mount table (default cowfs)
  default_permissions, userxattr           accepted; always in effect
  nosuid nodev noexec noatime sync dirsync ... (mount flags libfuse knows) passed on to the kernel
  auto_unmount, allow_root                 passed on to libfuse
  generic mount(8)/fstab options (defaults, auto, noauto, user, users, owner, group, nofail,
  _netdev, relatime, strictatime, nodiratime, lazytime, iversion, x-*, comment=...) are accepted
  and have no effect on a FUSE mount. Anything else is an error.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import __version__
from .config import (MountConfig, UsageError, build_config, check_log_file, default_work_dir,
                     overlaps, require_dir)

PROG = "cowfs"
COMMANDS = ("mount", "umount", "unmount", "diff", "fsck", "sandbox", "snapshot", "verify",
            "serve")

#: Mount flags libfuse 3 turns into mount(2) flags (mount_flags[] in lib/mount.c).
FUSE_FLAGS = frozenset(
    "suid nosuid dev nodev exec noexec async sync dirsync atime noatime".split()
)
#: Options passed to libfuse as they are.
FUSE_PASSTHROUGH = frozenset({"auto_unmount", "allow_root"})
#: Options accepted for compatibility that change nothing here: fstab/mount(8) bookkeeping that
#: mount.fuse3 may pass on, and VFS flags libfuse 3 cannot set on a FUSE mount.
IGNORED = frozenset(
    (
        "defaults auto noauto user nouser users owner group _netdev nofail silent loud "
        "diratime nodiratime relatime norelatime strictatime nostrictatime lazytime nolazytime "
        "iversion noiversion mand nomand symfollow default_permissions userxattr"
    ).split()
)
IGNORED_PREFIXES = ("x-", "comment=")
#: Kernel overlayfs options cowfs does not take: named in the error message.
KERNEL_OVERLAY_ONLY = frozenset(
    "index xino nfs_export volatile uuid verity".split()
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(message)


# ---------------------------------------------------------------------------------------------
# -o parsing


def split_escaped(text: str, sep: str) -> list[str]:
    """Split on `sep` not preceded by a backslash; backslash escapes are kept for unescape()."""
    parts, cur, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if c == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@dataclass
class MountOptions:
    """What -o said. None means 'not given'."""

    lowers: list[str] | None = None
    upper: str | None = None
    work: str | None = None
    read_only: bool | None = None
    debug: bool = False
    debug_fuse: bool = False
    allow_other: bool = False
    own_lowers: bool = False
    redirect_dir: bool = False
    metacopy: bool = False
    layer_store: str | None = None
    log: str | None = None
    fsname: str | None = None
    fuse: set[str] = field(default_factory=set)
    ignored: list[str] = field(default_factory=list)


def parse_o_options(groups: list[str]) -> MountOptions:
    """Parse the -o arguments (each a comma separated list). Raise UsageError on a bad one."""
    mo = MountOptions()
    seen: set[str] = set()
    for group in groups:
        for raw in split_escaped(group, ","):
            if raw == "":
                continue
            key, eq, value = raw.partition("=")
            if key in ("lowerdir", "upperdir", "workdir"):
                if not eq:
                    raise UsageError(f"option {key} needs a value ({key}=DIR)")
                if key in seen:
                    raise UsageError(f"option {key} given twice")
                seen.add(key)
                if key == "lowerdir":
                    if value == "":
                        raise UsageError("option lowerdir is empty")
                    if "::" in value.replace("\\:", ""):
                        raise UsageError("data-only lower layers (lowerdir=A::B) are not supported")
                    parts = split_escaped(value, ":")
                    if any(p == "" for p in parts):
                        raise UsageError(f"option lowerdir={value} has an empty directory")
                    mo.lowers = [unescape(p) for p in parts]
                elif value == "":
                    raise UsageError(f"option {key} is empty")
                elif key == "upperdir":
                    mo.upper = unescape(value)
                else:
                    mo.work = unescape(value)
            elif raw == "ro":
                mo.read_only = True
            elif raw == "rw":
                mo.read_only = False
            elif raw == "debug":
                mo.debug = True
            elif raw == "debug_fuse":
                mo.debug = mo.debug_fuse = True
            elif raw == "allow_other":
                mo.allow_other = True
            elif raw == "own_lowers":
                mo.own_lowers = True
            elif key == "redirect_dir" and eq:
                if value not in ("on", "off"):
                    raise UsageError(f"option redirect_dir={value}: cowfs takes on or off")
                mo.redirect_dir = value == "on"
            elif key == "metacopy" and eq:
                if value not in ("on", "off"):
                    raise UsageError(f"option metacopy={value}: on or off")
                mo.metacopy = value == "on"
            elif key == "layer_store" and eq:
                if value == "":
                    raise UsageError("option layer_store is empty")
                mo.layer_store = unescape(value)
            elif key == "log" and eq:
                if value == "":
                    raise UsageError("option log is empty")
                mo.log = unescape(value)
            elif key == "fsname" and eq:
                mo.fsname = unescape(value)
            elif key == "subtype" and eq:
                if value != "cowfs":
                    raise UsageError(f"option subtype={value}: the subtype is always cowfs")
            elif raw in FUSE_FLAGS or raw in FUSE_PASSTHROUGH:
                mo.fuse.add(raw)
            elif raw in IGNORED or raw.startswith(IGNORED_PREFIXES):
                mo.ignored.append(raw)
            elif raw == "remount":
                raise UsageError("remount is not supported: unmount and mount again")
            elif key in KERNEL_OVERLAY_ONLY:
                raise UsageError(
                    f"unknown mount option {raw!r} (a kernel overlayfs option cowfs does not take)"
                )
            else:
                raise UsageError(f"unknown mount option {raw!r}")
    return mo


# ---------------------------------------------------------------------------------------------
# argument parser


def _build_parser() -> _Parser:
    p = _Parser(
        prog=PROG,
        description="cowfs: a rootless copy-on-write overlay filesystem (FUSE).",
        epilog="mount(8) form: cowfs SOURCE MOUNTPOINT -o OPTIONS (used by mount -t fuse.cowfs)",
    )
    p.add_argument("--version", action="version", version=f"cowfs {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    m = sub.add_parser(
        "mount",
        help="mount a merged view of lower (read-only) and upper (writable) directories",
        description=(
            "Mount the merged view at MOUNTPOINT. Returns once the mount is live; the daemon "
            "stays in the background (see --foreground). Without an upper the view is read-only."
        ),
    )
    m.add_argument("mountpoint", metavar="MOUNTPOINT")
    m.add_argument("--lower", action="append", metavar="DIR", default=[],
                   help="read-only layer; repeat for more, top first. An OCI layer tarball "
                   "(gzip, zstd or tar) is unpacked once into the layer store and used")
    m.add_argument("--layer-store", metavar="DIR",
                   help="where layer tarballs are unpacked, by digest (default: "
                   "$XDG_CACHE_HOME/cowfs or ~/.cache/cowfs; a snapshot root shares its store)")
    m.add_argument("--upper", metavar="DIR", help="writable layer receiving every change")
    m.add_argument("--work", metavar="DIR",
                   help="scratch dir on the upper's filesystem "
                   "(default: UPPER_PARENT/.UPPER.cowfs-work)")
    m.add_argument("-o", dest="options", action="append", metavar="OPTS", default=[],
                   help="comma separated mount options "
                   "(lowerdir=, upperdir=, workdir=, ro, debug, ...)")
    m.add_argument("--ro", "--read-only", dest="ro", action="store_true",
                   help="read-only merged view")
    m.add_argument("--allow-other", action="store_true", help="let other users use the mount")
    m.add_argument("--own-lowers", action="store_true",
                   help="show lower objects as the mounting user's, with the owner's write bit: "
                   "a read-only tree of another user's becomes a writable one of your own (its "
                   "copies in the upper keep that)")
    m.add_argument("--redirect-dir", action="store_true",
                   help="renaming a lower or merged directory records the move in the upper "
                   "(the kernel's redirect xattr) instead of answering EXDEV; an upper with "
                   "such moves needs this option from then on")
    m.add_argument("--metacopy", action="store_true",
                   help="metadata-only copy-up: chmod, chown, utimens or setxattr of a lower file "
                   "copies no data until the first data change (kernel overlayfs metacopy=on)")
    m.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground")
    m.add_argument("-d", "--debug", action="store_true", help="log every request")
    m.add_argument("--debug-fuse", action="store_true", help="also print libfuse's request trace")
    m.add_argument("--log", metavar="FILE", help="log file (background daemon; default: none)")
    m.add_argument("--source", metavar="NAME", help="source name shown in the mount table")

    u = sub.add_parser("umount", aliases=["unmount"], help="unmount a cowfs mount (fusermount3 -u)")
    u.add_argument("mountpoint", metavar="MOUNTPOINT")
    u.add_argument("-z", "--lazy", action="store_true", help="lazy unmount (detach even if busy)")
    u.add_argument("--abort", action="store_true",
                   help="root: end the FUSE connection first (a stopped or hung daemon's waiting "
                        "requests fail with ECONNABORTED), then detach the mount")

    d = sub.add_parser(
        "diff",
        help="list what an upper adds, changes and deletes relative to its lowers (docker diff)",
        description=(
            "One line per change, sorted by path (relative to the root): 'A path' added, "
            "'C path' changed, 'D path' deleted. A file copied up counts as changed even when "
            "its content is not (a chmod, an open for writing), as in docker diff. A directory "
            "in both is changed when its type, mode, mtime or xattrs differ (not its owner: a "
            "rootless copy-up changes that), so a parent copied up on the way is not listed. "
            "A deleted directory is one line. An opaque directory (removed and made again) is "
            "C, everything of the upper below it A, and each lower entry no longer shown under "
            "it D. The layers are read directly (for MOUNTPOINT: the ones the live mount "
            "reports), never written; on a live mount it is a snapshot of a moving target."
        ),
    )
    d.add_argument("mountpoint", metavar="MOUNTPOINT", nargs="?",
                   help="a live cowfs mount: diff the layers it uses")
    d.add_argument("--upper", metavar="DIR", help="the upper directory to diff")
    d.add_argument("--lower", action="append", metavar="DIR", default=[],
                   help="its lower directory; repeat for more, top first. A layer tarball "
                   "stands for its unpacked layer in the layer store (diff unpacks nothing)")
    d.add_argument("--layer-store", metavar="DIR",
                   help="where tarball lowers were unpacked (as for cowfs mount)")
    d.add_argument("--json", action="store_true",
                   help='a JSON array of {"path", "kind": added|modified|deleted, "type": '
                   'file|dir|symlink|fifo|socket|char-device|block-device}')

    f = sub.add_parser(
        "fsck",
        help="find (and --repair) leftovers and malformed markers in an upper and its work dir",
        description=(
            "Reports, one line each: leftovers of interrupted copy-ups and whiteouts in "
            "WORK/work, character devices other than 0:0 and OCI .wh.* names in the upper, "
            "malformed user.overlay.opaque and user.overlay.cowfs.origin xattrs and unknown "
            "user.overlay.* names; with --lower, metadata-only copy-ups whose lower data is "
            "gone. Refuses while the upper is mounted. Exit 0: clean; 1: "
            "problems found (or left after --repair)."
        ),
    )
    f.add_argument("--upper", metavar="DIR", required=True, help="the upper directory")
    f.add_argument("--lower", metavar="DIR", action="append",
                   help="its lower directory (repeat, top first): also check that the lower "
                   "data of every metadata-only copy-up (-o metacopy=on) is there")
    f.add_argument("--work", metavar="DIR",
                   help="its work dir (default: UPPER_PARENT/.UPPER.cowfs-work, if it exists)")
    f.add_argument("--repair", action="store_true",
                   help="remove what is provably garbage (work-dir leftovers, opaque xattrs on "
                   "non-directories, malformed origin xattrs) and say so; what the merged view "
                   "shows is never touched")
    _add_sandbox_parser(sub)

    s = sub.add_parser("snapshot", help="build a shared cache snapshot (pip, npm)")
    ssub = s.add_subparsers(dest="snapshot_command", metavar="SUBCOMMAND")
    b = ssub.add_parser(
        "build",
        help="build a new snapshot under ROOT and point ROOT/current at it",
        description=(
            "Run pip wheel (--kind pip) or npm install (--kind npm) on the list with its cache "
            "in a new snapshot dir: ROOT/snapshots/<id>/{pip,wheels,requirements.txt} or "
            "{npm,npm-packages.txt}, with MANIFEST and MANIFEST.xxh3, read-only; the other "
            "kinds' entries of the current snapshot are kept. ROOT/current switches to it "
            "atomically when it is complete; old snapshots stay. "
            "With --top N --stats FILE: the N most downloaded projects that build, each with a "
            "run of its own; those that fail are left out, listed with the tool's reason in "
            "BUILD.json (npm: npm-BUILD.json)."
        ),
    )
    b.add_argument("root", metavar="ROOT")
    b.add_argument("--kind", default="pip", metavar="KIND",
                   help="which cache: pip (default) or npm")
    b.add_argument("-r", "--requirements", metavar="FILE",
                   help="pip requirements or npm package specs, one per line (default: the "
                   "kind's list shipped with cowfs)")
    b.add_argument("--top", type=int, metavar="N",
                   help="build the N most downloaded projects of --stats that build here")
    b.add_argument("--stats", metavar="FILE",
                   help="download counts: CSV with the header project,downloads")
    b.add_argument("--find-links", action="append", metavar="DIR",
                   help="pip: also take wheels and sdists from DIR (repeatable)")
    b.add_argument("--no-index", action="store_true", default=None,
                   help="pip: do not use the package index (offline, with --find-links)")
    b.add_argument("--python", metavar="PY",
                   help=f"pip: the python whose pip runs (default: {sys.executable})")
    g = ssub.add_parser(
        "gc",
        help="remove old snapshots and the store objects no snapshot uses",
        description=(
            "Remove every snapshot under ROOT/snapshots but ROOT/current's, the N newest and "
            "those a mounted sandbox uses (reported), the dirs of killed builds, then the store "
            "objects no snapshot links. Waits for a build in progress."
        ),
    )
    g.add_argument("root", metavar="ROOT")
    # 2: current, and the one before it to go back to
    g.add_argument("--keep", metavar="N", type=int, default=2,
                   help="how many of the newest snapshots to keep, at least 1 (current is kept "
                   "too; default: %(default)s)")
    registry_note = (
        "Plain HTTP for localhost, 127.0.0.0/8 and [::1], HTTPS elsewhere. Credentials: "
        "COWFS_REGISTRY_USER and COWFS_REGISTRY_PASSWORD, else ~/.docker/config.json.")
    pu = ssub.add_parser(
        "push",
        help="publish a snapshot to an OCI registry (only the blobs it lacks are sent)",
        description="Publish SNAPSHOT (a snapshot dir, or a ROOT: its current snapshot) as an "
        "OCI artifact REGISTRY/REPO:TAG, one blob per distinct file content. " + registry_note,
    )
    pu.add_argument("snapshot", metavar="SNAPSHOT")
    pu.add_argument("ref", metavar="REGISTRY/REPO:TAG")
    pl = ssub.add_parser(
        "pull",
        help="fetch a snapshot from an OCI registry into ROOT and point ROOT/current at it",
        description="Fetch the blobs ROOT's store lacks, link the snapshot together, verify it, "
        "then switch ROOT/current to it; an interrupted pull resumes. " + registry_note,
    )
    pl.add_argument("ref", metavar="REGISTRY/REPO:TAG")
    pl.add_argument("root", metavar="ROOT")

    v = sub.add_parser(
        "verify",
        help="check a snapshot against its MANIFEST",
        description=(
            "Check MANIFEST against MANIFEST.xxh3, then re-hash every file. Prints one line per "
            "missing, extra or changed file; exit status 1 if there is any."
        ),
    )
    v.add_argument("snapshot", metavar="SNAPSHOT",
                   help="a snapshot dir, or a snapshot ROOT (its current snapshot is checked)")

    sv = sub.add_parser(
        "serve",
        help="a ready parent for hosts that mount many times: forks each mount's daemon",
        description=(
            "Import everything a mount daemon needs once, then listen on the Unix socket SOCKET "
            "(mode 0600) and fork a daemon for each request: one JSON line "
            '{"argv": ["mount", ...] or ["sandbox", "mount", ...], "cwd": DIR}, answered with '
            "one line: 'OK PID' once the mount is live, or 'ERR STATUS MESSAGE' (STATUS 2: bad "
            "input, 1: the mount could not be made). Python: cowfs.serve.request(SOCKET, ARGV) "
            "or cowfs.mounted(..., server=SOCKET). The daemons share the parent's memory pages, "
            "need no interpreter start and keep serving when it stops. Prints 'ready' when it "
            "listens; runs until SIGTERM or SIGINT."
        ),
    )
    sv.add_argument("socket", metavar="SOCKET", help="path of the Unix socket to listen on")
    return p


def _add_sandbox_parser(sub: argparse._SubParsersAction) -> None:
    """`cowfs sandbox ...` (sandbox.py: what its actions do)."""
    p = sub.add_parser(
        "sandbox",
        help="private, resettable copy-on-write views of a shared snapshot",
        description="Mount a snapshot copy-on-write with its changes kept in a state directory.",
    )
    acts = p.add_subparsers(dest="action", metavar="ACTION")
    m = acts.add_parser(
        "mount",
        help="mount a sandbox over a snapshot",
        description=(
            "Mount SNAPSHOT (a snapshot root, whose `current` is resolved now, or a snapshot "
            "dir) at MOUNTPOINT; changes go to STATE/upper. STATE is created if missing."
        ),
    )
    m.add_argument("mountpoint", metavar="MOUNTPOINT")
    m.add_argument("--snapshot", required=True, metavar="SNAPSHOT",
                   help="snapshot root (ROOT/current is used) or snapshot directory")
    m.add_argument("--state", required=True, metavar="DIR",
                   help="the sandbox's own directory (upper, work, records)")
    m.add_argument("--subdir", metavar="SUB",
                   help="mount SNAPSHOT/SUB instead of the whole snapshot (e.g. pip, npm)")
    r = acts.add_parser("reset", help="drop every change of a sandbox (it must not be mounted)")
    r.add_argument("state", metavar="DIR")
    u = acts.add_parser("umount", aliases=["unmount"], help="unmount a sandbox (cowfs umount)")
    u.add_argument("mountpoint", metavar="MOUNTPOINT")
    u.add_argument("-z", "--lazy", action="store_true", help="lazy unmount (detach even if busy)")


def _normalize_argv(argv: list[str]) -> list[str]:
    """mount.fuse3 runs `cowfs SOURCE MOUNTPOINT -o OPTS`: turn that into `cowfs mount ...`."""
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        if len(argv) < 2 or argv[1].startswith("-"):
            raise UsageError(
                f"unknown command {argv[0]!r} "
                "(commands: mount, umount, diff, fsck, sandbox, snapshot, verify, serve)")
        return ["mount", "--source", argv[0], *argv[1:]]
    return argv


def _one(what: str, flag: str | None, opt: str | None, flag_name: str, opt_name: str) -> str | None:
    if flag is not None and opt is not None and flag != opt:
        raise UsageError(
            f"conflicting {what} directories: {flag_name} {flag} and -o {opt_name}={opt}"
        )
    return flag if flag is not None else opt


def _cmd_mount(args: argparse.Namespace) -> int:
    mo = parse_o_options(args.options)
    if args.lower and mo.lowers is not None and args.lower != mo.lowers:
        raise UsageError(
            "conflicting lower directories: give either --lower or -o lowerdir=, not both"
        )
    lowers = args.lower or mo.lowers or []
    upper = _one("upper", args.upper, mo.upper, "--upper", "upperdir")
    work = _one("work", args.work, mo.work, "--work", "workdir")
    debug = args.debug or mo.debug
    debug_fuse = args.debug_fuse or mo.debug_fuse
    log_file = args.log or mo.log
    if log_file is not None:
        log_file = check_log_file(log_file)
    fsname = mo.fsname or args.source or "cowfs"
    read_only = args.ro or bool(mo.read_only)

    def config(lowers: list[str], layer_files: bool):
        return build_config(
            lowers=lowers,
            upper=upper,
            work=work,
            mountpoint=args.mountpoint,
            read_only=read_only,
            allow_other=args.allow_other or mo.allow_other,
            own_lowers=args.own_lowers or mo.own_lowers,
            redirect_dir=args.redirect_dir or mo.redirect_dir,
            metacopy=args.metacopy or mo.metacopy,
            debug=debug,
            fsname=fsname,
            extra_fuse_options=mo.fuse,
            layer_files=layer_files,
        )

    cfg = config(lowers, True)  # every check first: bad input unpacks nothing
    if not all(os.path.isdir(low) for low in cfg.lowers):
        cfg = config(_unpack_layers(cfg, args.layer_store or mo.layer_store), False)
    from .mount import run  # noqa: PLC0415 - keeps `cowfs --help` free of pyfuse3/trio imports

    return run(
        cfg,
        foreground=args.foreground,
        log_file=log_file,
        debug_fuse=debug_fuse,
        ignored_options=tuple(mo.ignored),
    )


def _unpack_layers(cfg: MountConfig, layer_store: str | None) -> list[str]:
    """The lowers with each layer tarball replaced by its unpacked dir (layertar.py)."""
    from . import layertar  # noqa: PLC0415
    from .mount import MountError  # noqa: PLC0415

    root = layertar.check_store(layer_store or layertar.default_store())
    for what, path in (("upper", cfg.upper), ("work", cfg.work), ("mountpoint", cfg.mountpoint)):
        if path is not None and overlaps(root, path):
            raise UsageError(f"layer store {root} overlaps the {what} {path}")
    out = []
    for low in cfg.lowers:
        if os.path.isdir(low):
            out.append(low)
            continue
        try:
            out.append(layertar.unpack(root, low, _say))
        except OSError as e:
            where = f"{os.fsdecode(e.filename)}: " if e.filename is not None else ""
            raise MountError(f"layer {low}: cannot unpack: {where}{e.strerror}") from None
    return out


def _cmd_umount(args: argparse.Namespace) -> int:
    from .mount import unmount  # noqa: PLC0415

    unmount(args.mountpoint, lazy=args.lazy, abort=args.abort)
    return 0


def _cmd_diff(args: argparse.Namespace) -> int:
    from . import diff  # noqa: PLC0415

    if args.mountpoint is not None:
        if args.upper is not None or args.lower:
            raise UsageError("give either MOUNTPOINT or --upper and --lower, not both")
        lowers, upper = diff.mount_layers(args.mountpoint)
    elif args.upper is None:
        raise UsageError("missing MOUNTPOINT (a cowfs mount) or --upper DIR --lower DIR")
    elif not args.lower:
        raise UsageError("--upper needs at least one --lower")
    else:
        lowers, upper = args.lower, args.upper
        if any(os.path.isfile(low) for low in lowers):
            from . import layertar  # noqa: PLC0415

            root = args.layer_store or layertar.default_store()
            lowers = [layertar.unpacked(root, low) if os.path.isfile(low) else low
                      for low in lowers]
    upper, lowers = diff.layer_dirs(upper, lowers)
    found = diff.changes(upper, lowers) if upper is not None else []  # no upper: no change
    sys.stdout.buffer.write(diff.render(found, args.json))
    sys.stdout.flush()
    return 0


def _cmd_fsck(args: argparse.Namespace) -> int:
    from . import fsck  # noqa: PLC0415

    upper = require_dir("upper directory", args.upper)
    if args.work is not None:
        work = require_dir("work directory", args.work)
    else:  # the default one is checked if it is there: a kernel upper may have none
        work = default_work_dir(upper)
        work = work if os.path.isdir(work) else None
    lowers = None
    if args.lower:
        lowers = [require_dir("lower directory", p) for p in args.lower]
    busy = fsck.in_use(upper, work)
    if busy is not None:
        raise UsageError(f"upper directory {args.upper} is in use ({busy}): unmount it first")
    status = fsck.fsck(upper, work, args.repair, sys.stdout.buffer.write, lowers)
    sys.stdout.flush()
    return status


def _cmd_snapshot(args: argparse.Namespace) -> int:
    if args.snapshot_command is None:
        raise UsageError("missing snapshot command: build, push, pull or gc "
                         "(see cowfs snapshot --help)")
    if args.snapshot_command == "gc":
        return _cmd_gc(args)
    from . import kinds  # noqa: PLC0415
    from .snapshot import SnapshotError, build  # noqa: PLC0415 - only this command needs it

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        if args.snapshot_command == "build":
            given = {name: getattr(args, name) for name in ("python", "find_links", "no_index")
                     if getattr(args, name) is not None}
            if "find_links" in given:
                given["find_links"] = tuple(given["find_links"])
            built = build(args.root, kinds.make(args.kind, given), args.requirements, say=say,
                          top=args.top, stats=args.stats)
            print(f"snapshot {built.path}: {built.files} files, {built.bytes} bytes, "
                  f"{built.seconds:.1f} s")
            return 0
        from . import registry  # noqa: PLC0415 - oras and requests: ~100 ms to import

        if args.snapshot_command == "push":
            pushed = registry.push(args.snapshot, args.ref, say=say)
            print(f"push {args.ref}: snapshot {pushed.id}, {pushed.seconds:.1f} s")
        else:
            pulled = registry.pull(args.ref, args.root, say=say)
            print(f"pull {args.ref}: snapshot {pulled.path}, {pulled.seconds:.1f} s")
    except SnapshotError as e:
        _say(str(e))
        return 1
    return 0


def _cmd_gc(args: argparse.Namespace) -> int:
    from .collect import collect  # noqa: PLC0415

    try:
        done = collect(args.root, args.keep, say=lambda line: print(line, flush=True))
    except OSError as e:
        _say(f"snapshot gc failed: {e}")
        return 1
    n = len(done.removed)
    print(f"gc {args.root}: {n} snapshot dir{'s' * (n != 1)} removed, {len(done.in_use)} in use, "
          f"{done.kept} kept; {done.objects} store objects removed; {done.bytes} bytes freed")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from .manifest import verify  # noqa: PLC0415
    from .snapshot import resolve  # noqa: PLC0415

    snap = resolve(args.snapshot)
    bar = _ProgressBar() if sys.stderr.isatty() else None
    started = time.monotonic()
    try:
        report = verify(snap, progress=bar.update if bar else None)
    except OSError as e:
        raise UsageError(f"cannot read {e.filename}: {e.strerror}") from None
    finally:
        if bar:
            bar.clear()
    for difference in report.differences:
        print(difference)
    n = len(report.differences)
    outcome = f"{n} difference{'s' * (n != 1)}" if n else "OK"
    sys.stderr.write(f"verify {snap}: {report.files} files, {report.bytes} bytes, "
                     f"{time.monotonic() - started:.2f} s: {outcome}\n")
    return 1 if n else 0


class _ProgressBar:
    """One line on the terminal, redrawn at most 10 times a second: bytes hashed of the total."""

    WIDTH = 30

    def __init__(self) -> None:
        self.drawn = 0.0

    def update(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.drawn < 0.1 and done < total:
            return
        self.drawn = now
        part = done / total if total else 1.0
        fill = int(part * self.WIDTH)
        sys.stderr.write(f"\rverify [{'#' * fill}{'.' * (self.WIDTH - fill)}] {part:4.0%} "
                         f"{done >> 20}/{total >> 20} MiB")
        sys.stderr.flush()

    def clear(self) -> None:
        if self.drawn:
            sys.stderr.write("\r\033[K")


COMMAND_HANDLERS = {
    "mount": _cmd_mount,
    "umount": _cmd_umount,
    "unmount": _cmd_umount,
    "diff": lambda args: _offline(_cmd_diff, args),
    "fsck": lambda args: _offline(_cmd_fsck, args),
    "sandbox": lambda args: _sandbox(args),
    "snapshot": _cmd_snapshot,
    "verify": _cmd_verify,
    "serve": lambda args: _cmd_serve(args),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `cowfs` command and `python -m cowfs`. Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from .mount import MountError  # noqa: PLC0415 - light: mount.py imports pyfuse3 lazily

    try:
        return dispatch(argv)
    except UsageError as e:
        _say(str(e))
        return 2
    except MountError as e:
        _say(str(e))
        return 1
    except KeyboardInterrupt:
        _say("interrupted")
        return 130


def dispatch(argv: list[str], parser: argparse.ArgumentParser | None = None,
             allowed: Callable[[argparse.Namespace], bool] | None = None) -> int:
    """Run one command line (without the program name); UsageError and MountError are raised,
    not printed. `allowed` (cowfs serve: mounts only) refuses any other command."""
    args = (parser or _build_parser()).parse_args(_normalize_argv(argv))
    if args.command is None:
        raise UsageError(
            "missing command: mount, umount, diff, fsck, sandbox, snapshot, verify or serve "
            "(see cowfs --help)")
    if allowed is not None and not allowed(args):
        raise UsageError(f"cowfs serve makes mounts only, not {args.command}")
    return COMMAND_HANDLERS[args.command](args)


def _cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve_forever  # noqa: PLC0415

    return serve_forever(args.socket, _build_parser())


def _sandbox(args: argparse.Namespace) -> int:
    from . import sandbox  # noqa: PLC0415 - only its own commands (and their daemons) need it

    return sandbox.main(args)


def _offline(cmd, args: argparse.Namespace) -> int:
    """diff and fsck: a layer that cannot be read half way is a runtime failure, one line."""
    try:
        return cmd(args)
    except OSError as e:
        where = f"{os.fsdecode(e.filename)}: " if e.filename is not None else ""
        _say(f"{args.command}: {where}{e.strerror}")
        return 1


def _say(msg: str) -> None:
    # exactly one line, whatever the message holds
    line = " ".join(msg.split("\n")).strip()
    try:
        sys.stderr.write(f"{PROG}: {line}\n")
        sys.stderr.flush()
    except OSError:
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""`cowfs serve SOCKET`: one ready parent that forks the daemon of each mount a host asks for.

A `cowfs mount` starts an interpreter and imports trio and pyfuse3 (most of its time), and each
daemon then holds its own copy of all that (most of its memory). A host that mounts for many
sandboxes runs one `cowfs serve` instead: it imports everything a daemon runs once, freezes it
for the garbage collector (gc.freeze(): collections in the children never write to those pages)
and forks a child per request. The children share the parent's pages until they write to them,
and a mount costs a fork instead of an interpreter start.

Protocol (a Unix stream socket, mode 0600; peers other than its own user and root are refused):
  request   one line of JSON: {"argv": ["mount", ...], "cwd": "/dir"} - the arguments of
            `cowfs mount` or `cowfs sandbox mount` (also the mount(8) form), relative paths
            taken from "cwd"
  answer    one line: "OK PID" once the mount is live (PID: its daemon), or "ERR STATUS MESSAGE"
            (STATUS 2: bad input, nothing created; 1: the mount could not be made)
Each request is read, checked and mounted by its own child: the parent only accepts and forks,
so no request, slow client or dying daemon can stop it. The daemons run in sessions of their
own: they keep serving after the parent stops; unmount them as any other (`cowfs umount`).

request(SOCKET, ARGV) is the client (light: it imports neither trio nor pyfuse3).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Sequence

from .config import UsageError
from .mount import MountError

#: longest request accepted (a command line of paths)
MAX_REQUEST = 1 << 20
#: how long a child waits for its request line
REQUEST_TIMEOUT = 30.0
#: longest socket path (sun_path holds 108 bytes with the terminating NUL)
MAX_PATH = 107


# ---------------------------------------------------------------------------------------------
# the client


def request(path: str, argv: Sequence[str], *, cwd: str | None = None,
            timeout: float | None = 120.0) -> int:
    """Ask the `cowfs serve` at PATH to mount; returns the daemon's pid once the mount is live.

    ARGV is a `cowfs` command line without the program: ["mount", "--lower", L, ..., MNT] or
    ["sandbox", "mount", ...]; relative paths are taken from CWD (default: this process's).
    Raises UsageError (bad input: nothing was created) or MountError with the one-line reason.
    """
    if cwd is None:
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = "/"
    line = json.dumps({"argv": [os.fsdecode(a) for a in argv], "cwd": os.fsdecode(cwd)})
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(os.fspath(path))
            s.sendall(line.encode("utf-8", "surrogateescape") + b"\n")
            answer = _read_line(s)
        except TimeoutError:
            raise MountError(f"cowfs serve at {path} did not answer within {timeout} s") from None
        except OSError as e:
            raise MountError(f"cannot reach cowfs serve at {path}: "
                             f"{e.strerror or e}") from None
    text = answer.decode("utf-8", "replace").strip()
    if text.startswith("OK "):
        return int(text[3:])
    if text.startswith("ERR "):
        status, _, message = text[4:].partition(" ")
        raise (UsageError if status == "2" else MountError)(message)
    raise MountError("the daemon died during startup (without a word: see the log of cowfs serve, "
                     "or mount with --log FILE)")


def _read_line(s: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) <= MAX_REQUEST:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


# ---------------------------------------------------------------------------------------------
# the parent


def _preload() -> None:
    """Import what a daemon runs, so that every child finds it in memory it shares."""
    import faulthandler  # noqa: F401, PLC0415
    import resource  # noqa: F401, PLC0415

    import pyfuse3  # noqa: F401, PLC0415
    import trio  # noqa: F401, PLC0415

    from . import operations, sandbox  # noqa: F401, PLC0415


def _listen(path: str) -> socket.socket:
    if path == "":
        raise UsageError("socket path is empty")
    if len(os.fsencode(path)) > MAX_PATH:
        raise UsageError(f"cannot listen on {path}: a Unix socket path has at most {MAX_PATH} "
                         "bytes")
    parent = os.path.dirname(os.path.abspath(path)) or "/"
    if not os.path.isdir(parent):
        raise UsageError(f"cannot listen on {path}: {parent} is not a directory")
    if os.path.lexists(path):
        import stat  # noqa: PLC0415

        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise UsageError(f"cannot listen on {path}: it exists and is not a socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # left by a parent that is gone
            else:
                raise UsageError(f"cannot listen on {path}: a cowfs serve is running there")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on {path}: {e.strerror or e}") from None
    finally:
        os.umask(old)
    sock.listen(128)
    return sock


def _peer_allowed(conn: socket.socket) -> bool:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    return uid in (os.geteuid(), 0)


def _stop(signum, frame):
    raise SystemExit(0)


def serve_forever(path: str, parser) -> int:
    """`cowfs serve PATH`: listen and fork a daemon per request until SIGTERM/SIGINT/SIGHUP."""
    import gc  # noqa: PLC0415

    sock = _listen(path)
    try:
        _preload()
        # no zombies: the kernel reaps the children (each child sets it back before mounting)
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, _stop)
        gc.collect()
        gc.freeze()  # what is here now stays where it is: the children share those pages
        print("ready", flush=True)
        while True:
            try:
                conn, _ = sock.accept()
            except OSError as e:  # e.g. out of descriptors for a moment: never the parent's end
                print(f"cowfs serve: accept failed: {e}", file=sys.stderr, flush=True)
                time.sleep(0.1)
                continue
            try:
                if not _peer_allowed(conn):
                    conn.sendall(b"ERR 2 cowfs serve takes requests from its own user only\n")
                    continue
                try:
                    pid = os.fork()
                except OSError as e:
                    conn.sendall(f"ERR 1 cannot fork a daemon: {e.strerror}\n".encode())
                    continue
                if pid == 0:
                    code = 1
                    try:
                        code = _child(sock, conn, parser)
                    finally:
                        os._exit(code)
            except OSError as e:  # the requester went away meanwhile
                print(f"cowfs serve: request dropped: {e}", file=sys.stderr, flush=True)
            finally:
                conn.close()
    finally:
        sock.close()
        try:
            os.unlink(path)
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# a child: one request, then the daemon of its mount


class _Reply:
    """The requester's answer, sent once; also mount.served_report (report(ok, message))."""

    def __init__(self, conn: socket.socket):
        self.conn: socket.socket | None = conn

    def __call__(self, ok: bool, message: str) -> None:
        self.send(f"OK {os.getpid()}" if ok else f"ERR 1 {message}")

    def send(self, line: str) -> None:
        if self.conn is None:
            return
        try:
            self.conn.sendall((" ".join(line.split()) + "\n").encode("utf-8", "replace"))
        except OSError:
            pass
        self.conn.close()
        self.conn = None


def _is_mount(args) -> bool:
    return args.command == "mount" or (args.command == "sandbox" and args.action == "mount")


def _child(listener: socket.socket, conn: socket.socket, parser) -> int:
    listener.close()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # fusermount3 is waited for
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)
    # the parent's stdio is not the daemon's: until it opens its own (mount._child), nothing
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    reply = _Reply(conn)
    code = 1
    from . import cli, mount  # noqa: PLC0415

    try:
        conn.settimeout(REQUEST_TIMEOUT)
        argv, cwd = _parse(_read_line(conn))
        conn.settimeout(None)
        try:
            os.chdir(cwd)
        except OSError as e:
            raise UsageError(f"cannot use working directory {cwd}: {e.strerror}") from None
        mount.served_report = reply
        code = cli.dispatch(argv, parser, allowed=_is_mount)
        reply(False, "the daemon ended before the mount was made")
    except UsageError as e:
        reply.send(f"ERR 2 {e}")
        code = 2
    except MountError as e:
        reply.send(f"ERR 1 {e}")
    except SystemExit:  # --help, --version: argparse would print and exit
        reply.send("ERR 2 cowfs serve makes mounts only (no --help or --version)")
        code = 2
    except BaseException as e:  # noqa: BLE001 - the requester hears of it, always
        reply.send(f"ERR 1 daemon failed: {e!r}")
    finally:
        import logging  # noqa: PLC0415

        logging.shutdown()
    return code


def _parse(line: bytes) -> tuple[list[str], str]:
    try:
        req = json.loads(line.decode("utf-8", "surrogateescape"))
        argv, cwd = req["argv"], req.get("cwd", "/")
    except (ValueError, TypeError, KeyError):
        raise UsageError('bad request: one line of JSON {"argv": [...], "cwd": DIR} expected') \
            from None
    if (not isinstance(argv, list) or not all(isinstance(a, str) for a in argv)
            or not isinstance(cwd, str)):
        raise UsageError('bad request: "argv" must be a list of strings, "cwd" a string')
    return argv, cwd

"""Daemon lifecycle: create the work dirs, mount with pyfuse3, serve until unmounted or signalled.

run(cfg, foreground=False, log_file=None, debug_fuse=False) -> exit status
  Background (default): fork before trio starts. The child detaches (setsid, stdio to the log
  file or /dev/null), creates the work dirs, builds CowOperations(cfg), calls pyfuse3.init, starts
  the trio loop, checks that the mount answers (stat of the mountpoint from a thread) and only
  then tells the parent "OK" through a pipe. The parent waits for that line and exits 0, or
  prints the child's one-line error and exits 1.
  Foreground: the same without the fork; logs go to stderr (or --log FILE).
  SIGTERM / SIGINT / SIGHUP: pyfuse3.terminate(), then pyfuse3.close(unmount=True); exit 0.
  An exception in the main loop: close(unmount=False), then a lazy unmount; exit 1.
  SIGUSR1 dumps every thread's stack (faulthandler) to the log.

unmount(mountpoint, lazy=False): `cowfs umount` (fusermount3 -u).

Runtime failures raise MountError (one line, exit 1); bad input raises config.UsageError.
pyfuse3 and trio are imported lazily so that `cowfs --help` and config checks stay light.
"""
from __future__ import annotations

import faulthandler
import logging
import os
import resource
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import IO

from .config import FSTYPE, MountConfig, UsageError, find_fusermount, mount_at, read_mountinfo

log = logging.getLogger("cowfs")
#: Logger of the daemon lifecycle messages (mounted, unmounted, signals).
lifecycle_log = logging.getLogger("cowfs.mount")

LOG_FORMAT = "%(asctime)s.%(msecs)03d %(process)d %(levelname)s %(name)s: %(message)s"
LOG_DATEFMT = "%Y-%m-%d %H:%M:%S"
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

Report = Callable[[bool, str], None]


class MountError(Exception):
    """A failure after validation (the mount could not be made, the daemon died): exit 1."""


#: Set in a child of `cowfs serve` (serve.py): that process becomes the background daemon itself
#: (run() does not fork) and reports "mounted" or why not through this instead of a pipe.
served_report: Report | None = None


# ---------------------------------------------------------------------------------------------
# logging


def setup_logging(*, debug: bool, debug_fuse: bool, stream: IO[str] | None) -> None:
    """Log to `stream` (None: discard). 'cowfs' at DEBUG with --debug (every request), else INFO."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    if stream is None:
        handler: logging.Handler = logging.NullHandler()
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATEFMT))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    logging.getLogger("pyfuse3").setLevel(logging.DEBUG if debug_fuse else logging.WARNING)
    logging.captureWarnings(True)


def _enable_faulthandler(stream: IO[str]) -> None:
    try:
        faulthandler.enable(file=stream, all_threads=True)
        faulthandler.register(signal.SIGUSR1, file=stream, all_threads=True, chain=False)
    except (OSError, ValueError, RuntimeError, AttributeError):
        pass


# ---------------------------------------------------------------------------------------------
# work dir


def prepare_dirs(cfg: MountConfig) -> list[str]:
    """Create the work dir (if missing) and WORK/work. Returns what was created, parents first.

    The core (CowOperations.__init__) empties WORK/work; this only makes sure it exists.
    """
    created: list[str] = []
    if cfg.work is None:
        return created
    for path in (cfg.work, os.path.join(cfg.work, "work")):
        try:
            os.mkdir(path, 0o700)
            created.append(path)
        except FileExistsError:
            if os.path.isdir(path):
                _make_usable(path)
                continue
            problem = f"cannot use work directory {cfg.work}: {path} is not a directory"
        except OSError as e:
            problem = f"cannot create work directory {path}: {e.strerror}"
        else:
            continue
        remove_created(created)
        raise MountError(problem)
    return created


def _make_usable(path: str) -> None:
    """Kernel overlayfs leaves WORK/work at mode 000: give the owner rwx back (if it is us)."""
    try:
        st = os.lstat(path)
        if st.st_uid == os.geteuid() and st.st_mode & 0o700 != 0o700:
            os.chmod(path, (st.st_mode & 0o7777) | 0o700)
    except OSError:
        pass


def remove_created(created: list[str]) -> None:
    """Undo prepare_dirs after a failed start (only what it created, only if still empty)."""
    for path in reversed(created):
        try:
            os.rmdir(path)
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# small helpers


def _capture_stderr(fn: Callable[[], object]) -> tuple[BaseException | None, str]:
    """Run fn with fd 2 pointed at a temp file (libfuse and fusermount3 write there).

    Returns (exception or None, what was written)."""
    error: BaseException | None = None
    with tempfile.TemporaryFile() as cap:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        saved = os.dup(2)
        os.dup2(cap.fileno(), 2)
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - reported to the caller
            error = e
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        cap.seek(0)
        text = cap.read().decode("utf-8", "replace")
    return error, text


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def lazy_unmount(mountpoint: str) -> None:
    """Detach the mount even if busy (after a crash of the main loop). Never raises."""
    fm = find_fusermount()
    cmd = [fm, "-u", "-z", "-q", mountpoint] if fm else ["umount", "-l", mountpoint]
    try:
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=30, check=False)
        if res.returncode != 0 and mount_at(mountpoint) is not None:
            log.error("lazy unmount of %s failed: %s", mountpoint, _one_line(res.stderr))
    except (OSError, subprocess.SubprocessError) as e:
        log.error("lazy unmount of %s failed: %s", mountpoint, e)


def _to_thread_abandonable(fn, *args):
    """trio.to_thread.run_sync(fn, *args) that a cancel can abandon (trio renamed the flag)."""
    import trio  # noqa: PLC0415

    try:
        return trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)
    except TypeError:  # trio < 0.23
        return trio.to_thread.run_sync(fn, *args, cancellable=True)


# ---------------------------------------------------------------------------------------------
# the daemon


async def _watch_signals(task_status) -> None:
    import pyfuse3  # noqa: PLC0415
    import trio  # noqa: PLC0415

    with trio.open_signal_receiver(*_SIGNALS) as signals:
        task_status.started()
        async for signum in signals:
            lifecycle_log.info("got %s: unmounting", signal.Signals(signum).name)
            pyfuse3.terminate()
            return


async def _confirm_live(mountpoint: str, report: Report) -> None:
    """stat the mountpoint through the mount (answered by our own loop), then report success."""
    import pyfuse3  # noqa: PLC0415

    try:
        await _to_thread_abandonable(os.stat, mountpoint)
    except OSError as e:
        report(False, f"mount at {mountpoint} does not answer: {e.strerror}")
        pyfuse3.terminate()
        return
    lifecycle_log.info("mounted %s (pid %d)", mountpoint, os.getpid())
    report(True, "")


async def _main_loop(mountpoint: str, report: Report) -> None:
    import pyfuse3  # noqa: PLC0415
    import trio  # noqa: PLC0415

    async with trio.open_nursery() as nursery:
        await nursery.start(_watch_signals)
        nursery.start_soon(_confirm_live, mountpoint, report)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


def _raise_keyboard_interrupt(signum, frame):  # before and around the trio loop
    raise KeyboardInterrupt


def _ignore_signals() -> None:
    for s in _SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def serve(
    cfg: MountConfig, report: Report, *, debug_fuse: bool = False, ignored: tuple[str, ...] = ()
) -> int:
    """Create the work dirs, mount, run until unmounted or signalled. Returns the exit status.

    report(ok, message) is called exactly once: when the mount answers, or with the reason it
    could not be made. Failures before the mount raise MountError (and report nothing)."""
    import pyfuse3  # noqa: PLC0415
    import trio  # noqa: PLC0415

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _raise_keyboard_interrupt)
    if ignored:
        lifecycle_log.info("options without effect on a FUSE mount: %s", ",".join(ignored))

    # every open file through the mount holds one real descriptor here: as many as allowed
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    created = prepare_dirs(cfg)
    try:
        from .operations import CowOperations  # noqa: PLC0415 - the core

        ops = CowOperations(cfg)
    except Exception as e:
        remove_created(created)
        lifecycle_log.debug("cannot start the filesystem", exc_info=True)
        raise MountError(f"cannot start the filesystem: {e}") from None

    opts = set(cfg.fuse_options)
    if debug_fuse:
        opts.add("debug")
    lifecycle_log.debug("pyfuse3.init(%s, %s)", cfg.mountpoint, sorted(opts))
    # A signal must not land between the mount and the loop's handlers: held until then.
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    error, text = _capture_stderr(lambda: pyfuse3.init(ops, cfg.mountpoint, opts))
    if error is not None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        remove_created(created)
        detail = _one_line(text) or str(error)
        raise MountError(f"cannot mount {cfg.mountpoint}: {detail}")
    for line in text.splitlines():
        if line.strip():
            lifecycle_log.warning("%s", line.strip())

    reported = live = False

    def report_once(ok: bool, msg: str) -> None:
        nonlocal reported, live
        if not reported:
            reported, live = True, ok
            report(ok, msg)

    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        trio.run(_main_loop, cfg.mountpoint, report_once)
    except BaseException as e:  # noqa: BLE001 - an exception or a signal before the loop ran
        _ignore_signals()
        if isinstance(e, KeyboardInterrupt):
            lifecycle_log.info("interrupted: unmounting %s", cfg.mountpoint)
        else:
            lifecycle_log.exception("main loop failed: unmounting %s", cfg.mountpoint)
        report_once(False, f"filesystem failed: {e!r}" if not isinstance(e, KeyboardInterrupt)
                    else "interrupted during startup")
        try:
            pyfuse3.close(unmount=False)
        except Exception:  # noqa: BLE001
            lifecycle_log.exception("pyfuse3.close failed")
        lazy_unmount(cfg.mountpoint)
        return 1
    _ignore_signals()  # a second SIGTERM must not interrupt the unmount
    report_once(False, "the filesystem was unmounted during startup")
    try:
        pyfuse3.close(unmount=True)
    except Exception:  # noqa: BLE001
        lifecycle_log.exception("pyfuse3.close failed")
        lazy_unmount(cfg.mountpoint)
        return 1
    lifecycle_log.info("unmounted %s", cfg.mountpoint)
    return 0 if live else 1


def _open_log(log_file: str | None) -> IO[str] | None:
    if log_file is None:
        return None
    try:
        return open(log_file, "a", buffering=1, encoding="utf-8", errors="backslashreplace")
    except OSError as e:
        raise MountError(f"cannot open log file {log_file}: {e.strerror}") from None


def _run_foreground(
    cfg: MountConfig, log_file: str | None, debug_fuse: bool, ignored: tuple[str, ...]
) -> int:
    stream = _open_log(log_file) or sys.stderr
    setup_logging(debug=cfg.debug, debug_fuse=debug_fuse, stream=stream)
    _enable_faulthandler(stream)
    failure: list[str] = []

    def report(ok: bool, msg: str) -> None:
        if not ok:
            failure.append(msg)

    code = serve(cfg, report, debug_fuse=debug_fuse, ignored=ignored)
    if failure and code != 0:
        raise MountError(failure[0])
    return code


def _pipe_report(w: int) -> Report:
    """report() of a daemon forked by `cowfs mount`: one line ("OK" or "ERR why") into pipe w."""

    def report(ok: bool, msg: str) -> None:
        nonlocal w
        if w < 0:
            return
        line = ("OK\n" if ok else "ERR " + " ".join(msg.split()) + "\n").encode("utf-8", "replace")
        try:
            os.write(w, line)
        except OSError:
            pass
        os.close(w)
        w = -1

    return report


def _child(
    cfg: MountConfig, log_file: str | None, debug_fuse: bool, ignored: tuple[str, ...],
    report: Report,
) -> int:
    """The background daemon, after fork: detach, then serve()."""
    try:
        os.setsid()
        os.chdir("/")
        stream = _open_log(log_file)
        if log_file:
            target = os.open(log_file, os.O_WRONLY | os.O_APPEND)
        else:
            target = os.open(os.devnull, os.O_WRONLY)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(target, 1)
        os.dup2(target, 2)
        os.close(devnull)
        os.close(target)
        setup_logging(debug=cfg.debug, debug_fuse=debug_fuse, stream=stream)
        _enable_faulthandler(stream or sys.stderr)
        return serve(cfg, report, debug_fuse=debug_fuse, ignored=ignored)
    except MountError as e:
        lifecycle_log.error("%s", e)
        report(False, str(e))
        return 1
    except BaseException as e:  # noqa: BLE001 - the daemon must report, never hang the parent
        log.exception("daemon failed")
        report(False, f"daemon failed: {e!r}")
        return 1


def _read_report(r: int) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = os.read(r, 4096)
        except InterruptedError:
            continue
        if not chunk:
            break
        data += chunk
    return data


def _run_background(
    cfg: MountConfig, log_file: str | None, debug_fuse: bool, ignored: tuple[str, ...]
) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the daemon
        os.close(r)
        code = 1
        try:
            code = _child(cfg, log_file, debug_fuse, ignored, _pipe_report(w))
        finally:
            logging.shutdown()
            os._exit(code)
    os.close(w)
    try:
        data = _read_report(r)
    except KeyboardInterrupt:
        os.kill(pid, signal.SIGTERM)
        raise
    finally:
        os.close(r)
    if data == b"OK\n":
        return 0
    if data.startswith(b"ERR "):
        raise MountError(data[4:].decode("utf-8", "replace").strip())
    # the daemon died without a word
    _, status = os.waitpid(pid, 0)
    how = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
           else f"exit status {os.waitstatus_to_exitcode(status)}")
    where = f" (see {log_file})" if log_file else " (run with --foreground to see why)"
    raise MountError(f"the daemon died during startup, {how}{where}")


def run(
    cfg: MountConfig,
    *,
    foreground: bool = False,
    log_file: str | None = None,
    debug_fuse: bool = False,
    ignored_options: tuple[str, ...] = (),
) -> int:
    """Mount cfg; in the background unless `foreground`. Returns the exit status."""
    if served_report is not None:  # this process is the daemon (serve.py): no fork
        if foreground:
            raise UsageError("--foreground: a mount made through cowfs serve runs in the "
                             "background")
        return _child(cfg, log_file, debug_fuse, ignored_options, served_report)
    if foreground:
        return _run_foreground(cfg, log_file, debug_fuse, ignored_options)
    return _run_background(cfg, log_file, debug_fuse, ignored_options)


# ---------------------------------------------------------------------------------------------
# cowfs umount


#: How long `cowfs umount` waits for fusermount3 before it gives up and says why.
UMOUNT_TIMEOUT = 30.0
FUSECTL = "/sys/fs/fuse/connections"


def unmount(mountpoint: str, lazy: bool = False, abort: bool = False) -> None:
    """Unmount a cowfs mount with fusermount3 -u (root without fusermount3: umount(8)). ABORT
    (root): first end the FUSE connection (its fusectl abort file), which fails every request
    a stopped or hung daemon holds, then detach the mount."""
    mounts = read_mountinfo()
    real = _mount_path(mountpoint, mounts)
    entry = mount_at(real, mounts)
    if entry is None:
        raise UsageError(f"{mountpoint} is not mounted")
    if entry.fstype != FSTYPE:
        raise UsageError(f"{mountpoint} is not a cowfs mount (it is {entry.fstype})")
    if abort:
        _abort(entry, mountpoint)
        lazy = True
    fm = find_fusermount()
    if fm is not None:
        cmd = [fm, "-u", *(["-z"] if lazy else []), real]
    elif os.geteuid() == 0:
        cmd = ["umount", *(["-l"] if lazy else []), real]
    else:
        raise MountError("fusermount3 not found in PATH (install the fuse3 package)")
    try:
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=UMOUNT_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise MountError(f"cannot unmount {mountpoint}: no answer in {UMOUNT_TIMEOUT:.0f} s "
                         "(a stopped or hung daemon: -z detaches it; as root, --abort also "
                         "ends its connection)") from None
    except (OSError, subprocess.SubprocessError) as e:
        raise MountError(f"cannot unmount {mountpoint}: {e}") from None
    if res.returncode != 0:
        detail = _one_line(res.stderr) or f"{cmd[0]} exited with status {res.returncode}"
        if "busy" in detail.lower() and not lazy:
            detail += " (use -z for a lazy unmount)"
        raise MountError(f"cannot unmount {mountpoint}: {detail}")


def _mount_path(mountpoint: str, mounts) -> str:
    """The real path of MOUNTPOINT, without a stat of the mount's root where it can: a daemon
    that does not answer would hang that stat (the kernel may have dropped the root's
    attributes) and with it the unmount meant to get rid of the daemon."""
    absolute = os.path.normpath(os.path.abspath(os.path.expanduser(mountpoint)))
    parent, name = os.path.split(absolute)
    candidate = os.path.join(os.path.realpath(parent), name)
    if mount_at(candidate, mounts) is not None:
        return candidate
    return os.path.realpath(absolute)  # a symlink to the mountpoint, or not mounted at all


def _abort(entry, shown: str) -> None:
    if os.geteuid() != 0:
        raise UsageError("--abort needs root (it writes the FUSE connection's abort file)")
    # the connection's id is the minor number of the mount's anonymous device (major 0)
    conn = os.path.join(FUSECTL, str(int(entry.dev.split(":")[1])))
    if not os.path.isdir(conn):  # fusectl not mounted here yet
        subprocess.run(["mount", "-t", "fusectl", "fusectl", FUSECTL], capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=UMOUNT_TIMEOUT, check=False)
    try:
        with open(os.path.join(conn, "abort"), "w") as f:
            f.write("1")
    except OSError as e:
        raise MountError(f"cannot abort the connection of {shown}: {e.strerror} ({conn})") \
            from None


__all__ = ["MountError", "prepare_dirs", "run", "serve", "setup_logging", "unmount"]

"""Error handling for requests, in one place: the kernel gets an errno, the daemon never dies.

pyfuse3 lets only FUSEError out of a handler; anything else would end the main loop. OSError
becomes its errno; any other exception is a bug: logged with its traceback, answered with EIO.

A change that fails with ENOSPC (or EDQUOT) is tried once more when the space of an object
unlinked just before comes back meanwhile (Overlay.space_after_forgets: the kernel's FORGET for
it may come after this request). Each of these requests changes nothing when it fails that way (tests/
test_full_disk.py), so a second try is the first one on a filesystem with that space free.
"""
from __future__ import annotations

import errno
import functools
import logging

import pyfuse3

log = logging.getLogger("cowfs")

_FULL = (errno.ENOSPC, errno.EDQUOT)
_RETRY_WHEN_FULL = frozenset({"create", "link", "mkdir", "mknod", "open", "rename", "rmdir",
                              "setattr", "setxattr", "symlink", "unlink", "write"})


def fuse_op(func):
    name = func.__name__

    @functools.wraps(func)
    async def wrapper(self, *args):
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s%r", name, args)
        try:
            try:
                return await func(self, *args)
            except OSError as e:
                ov = getattr(self, "ov", None)
                if not (e.errno in _FULL and name in _RETRY_WHEN_FULL and ov is not None
                        and await ov.space_after_forgets()):
                    raise
                log.debug("%s: %s, space of an unlinked object came back: again", name,
                          errno.errorcode[e.errno])
                return await func(self, *args)
        except pyfuse3.FUSEError:
            raise
        except OSError as e:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s -> %s", name, errno.errorcode.get(e.errno, e.errno))
            raise pyfuse3.FUSEError(e.errno or errno.EIO) from None
        except Exception:
            log.exception("internal error in %s%r", name, args)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper

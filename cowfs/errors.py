"""Error handling for requests, in one place: the kernel gets an errno, the daemon never dies.

pyfuse3 lets only FUSEError out of a handler; anything else would end the main loop. OSError
becomes its errno; any other exception is a bug: logged with its traceback, answered with EIO.
"""
from __future__ import annotations

import errno
import functools
import logging

import pyfuse3

log = logging.getLogger("cowfs")


def fuse_op(func):
    name = func.__name__

    @functools.wraps(func)
    async def wrapper(self, *args):
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s%r", name, args)
        try:
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

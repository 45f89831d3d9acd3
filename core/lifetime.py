"""Worker processes that end when the process that started them does.

A local process pool's workers are children of multiprocessing's fork server,
not of the process that owns the pool, and they hold the pipes that would tell
them it is gone: an owner killed with ``kill -9`` would leave them (and the fork
server) running for good. :func:`end_with` makes a process exit as soon as its
owner does: a daemon thread waits on a pidfd of the owner (Linux: no polling, and
a recycled pid cannot fool it), or checks the owner every :data:`POLL_S` seconds
on other POSIX systems. The waiting thread needs no GIL while it waits, and the
exit (``os._exit``) needs only a moment of it, so a worker busy in a simulation
ends too.
"""
from __future__ import annotations

import os
import select
import threading
import time

POLL_S = 0.5
EXIT_CODE = 1


def end_with(owner: int) -> None:
    """End this process (at once, without cleanup) when process ``owner`` ends; a pool initializer."""
    if owner == os.getpid():
        return
    try:
        fd = os.pidfd_open(owner)
    except ProcessLookupError:
        os._exit(EXIT_CODE)  # already gone
    except (AttributeError, OSError):  # no pidfd here (not Linux, or an old kernel)
        if os.name != "posix":
            return  # os.kill(pid, 0) is no probe elsewhere
        if not _exists(owner):
            os._exit(EXIT_CODE)
        fd = None
    threading.Thread(target=_exit_after, args=(owner, fd), name="batchlab-end-with-owner", daemon=True).start()


def _exit_after(owner: int, fd: int | None) -> None:
    if fd is not None:
        poll = select.poll()
        poll.register(fd, select.POLLIN)  # readable once the owner has exited
        while not poll.poll():
            pass
    else:
        while _exists(owner):
            time.sleep(POLL_S)
    os._exit(EXIT_CODE)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

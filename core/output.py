"""Files the tools write (tables, exports, grids, suite folders): checked first, then written whole.

* :func:`check_file` and :func:`check_folder` refuse, before any work starts, a destination that
  cannot be written (an empty path, a folder where a file is wanted or the reverse, a missing or
  read-only parent folder, a FIFO no process reads), so an hour-long sweep never ends in "cannot
  write". Devices (``/dev/null``, ``/dev/stdout``) are accepted and written in place.
* :func:`written` writes a regular file through a temporary file beside it, renamed over the
  target only once everything is on disk: an error, Ctrl-C or a full disk leaves the old file (or
  none), never half of one. Every OSError becomes one :class:`OutputError` line naming the file;
  a full disk says so ("disk full while writing ...").
"""
from __future__ import annotations

import errno
import fcntl
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from batchlab.workloads.fields import shown

FULL_DISK = {errno.ENOSPC, errno.EDQUOT}


class OutputError(OSError):
    """A file or folder that cannot be written; the message names it in one line."""


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is an OSError saying the disk (or the user's quota) is full."""
    return isinstance(exc, OSError) and exc.errno in FULL_DISK


def failure(exc: OSError, path: str | Path) -> OutputError:
    """The one-line error for ``exc`` raised while writing ``path``."""
    if isinstance(exc, OutputError):
        return exc
    if disk_full(exc):
        return OutputError(f"disk full while writing {shown(str(path))}")
    return OutputError(f"cannot write {shown(str(path))}: {exc.strerror or exc}")


def _path(path: str | Path, flag: str) -> Path:
    if not str(path).strip():  # Path("") would be the current folder
        raise OutputError(f"{flag}: the path is empty")
    return Path(path)


def _stat(path: Path, flag: str) -> os.stat_result | None:
    """``path``'s status, or None when nothing is there (or a parent is not a folder)."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # a name too long, a loop of links, a folder that cannot be searched
        raise OutputError(f"{flag}: cannot write {shown(str(path))}: {exc.strerror}") from None


def _check_parent(path: Path, flag: str) -> None:
    parent = path.parent
    if not parent.exists():
        raise OutputError(f"{flag}: folder {shown(str(parent))} does not exist (for {shown(str(path))})")
    if not parent.is_dir():
        raise OutputError(f"{flag}: {shown(str(parent))} is not a folder (for {shown(str(path))})")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{flag}: folder {shown(str(parent))} is not writable (for {shown(str(path))})")


def check_file(path: str | Path, flag: str = "--out") -> Path:
    """``path`` as a file this process can write, else an OutputError naming ``flag``."""
    path = _path(path, flag)
    st = _stat(path, flag)
    if st is None or stat.S_ISREG(st.st_mode):
        _check_parent(path, flag)
        if st is not None and not os.access(path, os.W_OK):
            raise OutputError(f"{flag}: {shown(str(path))} is not writable")
    elif stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{flag}: {shown(str(path))} is a folder, not a file")
    else:  # a device, FIFO or socket: written in place, if something there takes the data
        os.close(_open_in_place(path, flag))
    return path


def check_folder(path: str | Path, flag: str = "--out") -> Path:
    """``path`` as a folder this process can write into (an existing one, or a new one whose
    parent folder exists), else an OutputError naming ``flag``."""
    path = _path(path, flag)
    st = _stat(path, flag)
    if st is None:
        _check_parent(path, flag)
    elif not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{flag}: {shown(str(path))} is not a folder")
    elif not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"{flag}: folder {shown(str(path))} is not writable")
    return path


def _open_in_place(path: Path, flag: str = "--out") -> int:
    """A write descriptor on a device or FIFO; never waits for a FIFO's reader (none: an error)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OutputError(f"{flag}: {shown(str(path))} is a FIFO or socket that no process reads") from None
        raise OutputError(f"{flag}: cannot write {shown(str(path))}: {exc.strerror}") from None
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return fd


@contextmanager
def written(path: str | Path, binary: bool = False) -> Iterator[IO]:
    """A file object to write ``path`` with (UTF-8 text, newlines as written, unless ``binary``).

    A regular file appears (or is replaced) only when the block ends without an error; a device
    or FIFO is written in place. OSErrors become :class:`OutputError` (a full disk says so).
    """
    path = Path(path)
    mode, text = ("wb", {}) if binary else ("w", {"encoding": "utf-8", "newline": ""})
    try:
        if path.exists() and not path.is_file():
            with os.fdopen(_open_in_place(path), mode, **text) as fh:
                yield fh
            return
        tmp = path.parent / f".batchlab-{secrets.token_hex(6)}.part"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
        try:
            if path.exists():
                os.chmod(fd, stat.S_IMODE(path.stat().st_mode))
            with os.fdopen(fd, mode, **text) as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise failure(exc, path) from None


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole (see :func:`written`)."""
    with written(path, binary=True) as fh:
        fh.write(data)


def write_text(path: str | Path, data: str) -> None:
    """Write ``data`` (UTF-8) to ``path`` whole (see :func:`written`)."""
    with written(path) as fh:
        fh.write(data)

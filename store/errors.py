"""The exceptions the store raises for problems a user can fix."""
from __future__ import annotations

import errno

PG_DISK_FULL = "53100"  # PostgreSQL's SQLSTATE disk_full
SQLITE_DISK_FULL = "database or disk is full"  # SQLite's SQLITE_FULL


class StoreError(RuntimeError):
    """The store cannot be opened or used: the message names the path/URL and the cause
    in one line, so the CLI and the web app can show it without a traceback."""


class RunDeletedError(StoreError):
    """A run was deleted from the store while it was being read (its data is gone)."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether a database error (or the OSError under it) says the disk is full, on either backend."""
    orig = getattr(exc, "orig", None) or exc
    return (getattr(orig, "sqlstate", None) == PG_DISK_FULL or SQLITE_DISK_FULL in str(orig)
            or getattr(orig, "errno", None) in (errno.ENOSPC, errno.EDQUOT))


def describe_db_error(exc: BaseException) -> str:
    """One line for a database error: the driver's first line, without SQL or links; a full disk
    says so."""
    if is_disk_full(exc):
        return "disk full while writing the results store"
    text = str(getattr(exc, "orig", None) or exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return f"database error: {first}"

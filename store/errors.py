"""The exceptions the store raises for problems a user can fix."""
from __future__ import annotations


class StoreError(RuntimeError):
    """The store cannot be opened or used: the message names the path/URL and the cause
    in one line, so the CLI and the web app can show it without a traceback."""


class RunDeletedError(StoreError):
    """A run was deleted from the store while it was being read (its data is gone)."""


def describe_db_error(exc: BaseException) -> str:
    """One line for a database error: the driver's first line, without SQL or links."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return f"database error: {first}"

"""A stored run's summary, read with the standard library alone: the CLI's fast store hit.

Opening the store imports SQLAlchemy (a large part of a store hit's start-up); a hit
needs one row and its bins. Only a plain, up-to-date SQLite file is read here, read-only;
for anything else (another database, an older schema, a run not ``done``) this returns
None and the caller opens the store as usual.
"""
from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path

from .migrations import HEAD
from .paths import DB_FILENAME, VERSION_TABLE, data_home


def sqlite_file(url: str | None) -> Path | None:
    """The SQLite file a store URL (``--db`` > ``BATCHLAB_DB_URL`` > default) names, if plainly one."""
    raw = url or os.environ.get("BATCHLAB_DB_URL")
    if raw is None:
        return data_home() / DB_FILENAME
    prefix = "sqlite:///"
    if raw.startswith(prefix) and "?" not in raw and len(raw) > len(prefix):
        return Path(raw[len(prefix):])
    return None


def done_summary(url: str | None, run_hash: str) -> tuple[int, dict] | None:
    """(run id, summary with its per-bin rows) of the done run ``run_hash``, or None."""
    path = sqlite_file(url)
    if path is None or not path.is_file():
        return None
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            revision = conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()
            if revision is None or revision[0] != HEAD:
                return None
            row = conn.execute("SELECT id, status, summary FROM runs WHERE hash = ?", (run_hash,)).fetchone()
            if row is None or row[1] != "done" or row[2] is None:
                return None
            bins = [json.loads(data) for (data,) in
                    conn.execute("SELECT data FROM run_bins WHERE run_id = ? ORDER BY bin", (row[0],))]
    except (sqlite3.Error, ValueError):
        return None
    summary = json.loads(row[2])
    summary["bins"] = bins
    return row[0], summary

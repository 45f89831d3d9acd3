"""Where the default store lives and the name of its schema-version table (no database library needed)."""
from __future__ import annotations

import os
from pathlib import Path

DB_FILENAME = "batchlab.db"
VERSION_TABLE = "batchlab_schema_version"  # Alembic's version table in every store


def data_home() -> Path:
    """``BATCHLAB_HOME``, else ``$XDG_DATA_HOME/batchlab``, else ``~/.local/share/batchlab``."""
    if os.environ.get("BATCHLAB_HOME"):
        return Path(os.environ["BATCHLAB_HOME"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base).expanduser() / "batchlab"


def default_url() -> str:
    return f"sqlite:///{data_home() / DB_FILENAME}"

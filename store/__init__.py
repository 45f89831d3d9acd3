"""batchlab's results store: every run kept, never recomputed, nothing lost.

``open_store(url=None) -> Store`` (url > ``BATCHLAB_DB_URL`` > a SQLite file in
``BATCHLAB_HOME``); see :mod:`store.repo` for the cache semantics, :mod:`store.models`
for the schema and :mod:`store.payload` for how per-request data is kept. Importing
the package and reading an up-to-date store loads neither Alembic nor pandas.
"""
from .db import data_home, default_url
from .errors import RunDeletedError, StoreError
from .payload import REQUEST_CAP
from .records import GridRow, RunRow, StoredRun, SweepRow
from .repo import Store, open_store

__all__ = ["REQUEST_CAP", "GridRow", "RunDeletedError", "RunRow", "Store", "StoreError", "StoredRun", "SweepRow",
           "data_home", "default_url", "open_store"]

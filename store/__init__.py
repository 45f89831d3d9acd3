"""batchlab's results store: every run kept, never recomputed, nothing lost.

``open_store(url=None) -> Store`` (url > ``BATCHLAB_DB_URL`` > a SQLite file in
``BATCHLAB_HOME``); see :mod:`store.repo` for the cache semantics, :mod:`store.models`
for the schema and :mod:`store.payload` for how per-request data is kept. Importing
the package and reading an up-to-date store loads neither Alembic nor pandas, and
:mod:`store.quick` reads a stored run's summary without SQLAlchemy.
"""
from batchlab.workloads.lazy import lazy_exports

_EXPORTS = {"data_home": ".paths", "default_url": ".paths", "RunDeletedError": ".errors", "StoreError": ".errors",
            "REQUEST_CAP": ".payload", "GridRow": ".records", "RunRow": ".records", "StoredRun": ".records",
            "SweepRow": ".records", "Store": ".repo", "open_store": ".repo"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

"""Alembic environment: migrate the connection handed over by :mod:`store.migrate`.

Run by hand (``alembic -c <ini with script_location=store/migrations>``) it
opens the store the environment selects (``BATCHLAB_DB_URL`` or the default).
"""
from __future__ import annotations

from alembic import context

from batchlab.store.db import VERSION_TABLE
from batchlab.store.models import metadata


def _migrate(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTER TABLE is limited
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _migrate(connection)
else:
    from batchlab.store.db import make_engine, resolve_url, write_connection

    engine = make_engine(resolve_url(None)[0])
    with write_connection(engine) as conn:
        _migrate(conn)
    engine.dispose()

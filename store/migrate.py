"""Bring a store's schema to the newest revision with Alembic, at open.

The schema version lives in the ``batchlab_schema_version`` table (Alembic's
version table under a name that cannot clash with another Alembic-managed app
sharing a PostgreSQL database). An up-to-date store is recognised with one
SELECT, without importing Alembic. Upgrades run in one transaction that holds
the write lock (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL),
so two processes opening a new store at once migrate it once. A read-only store
is never migrated: :func:`require_current` refuses one that is not up to date.
"""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from .db import VERSION_TABLE, write_connection
from .errors import StoreError
from .migrations import HEAD
from .models import metadata

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
PG_LOCK_KEY = 0x6261_7463_686C_6162 & 0x7FFF_FFFF_FFFF_FFFF  # "batchlab"


def alembic_config(connection: Connection | None = None):
    """An Alembic Config for the bundled scripts, migrating ``connection`` when given."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def current_revision(conn: Connection) -> str | None:
    """The store's schema revision (None for an empty database)."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def stored_revision(engine: Engine) -> str | None:
    """The revision in the version table, in one query (None if there is no such table or row)."""
    with engine.connect() as conn:
        try:
            return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
        except SQLAlchemyError:  # no version table (a new or foreign database): looked at closely later
            return None


def _known(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def _check(conn: Connection, revision: str | None, where: str) -> None:
    if revision is None:
        ours = sorted(set(inspect(conn).get_table_names()) & set(metadata.tables))
        if ours:
            raise StoreError(f"{where} has tables {', '.join(ours)} but no batchlab schema version; "
                             "it was not created by batchlab (left untouched)")
    elif revision != HEAD and not _known(revision):
        raise StoreError(f"{where} has schema revision {revision}, which this batchlab does not know "
                         f"(newest known: {HEAD}); it was written by a newer batchlab: upgrade batchlab")


def require_current(engine: Engine, where: str, read_only: str) -> str:
    """Check that a read-only store needs no migration; returns its revision."""
    revision = stored_revision(engine)
    if revision == HEAD:
        return revision
    with engine.connect() as conn:
        revision = current_revision(conn)
        _check(conn, revision, where)
    if revision is None:
        raise StoreError(f"the store at {where} is read-only ({read_only}) and holds no batchlab store yet")
    raise StoreError(f"the store at {where} is read-only ({read_only}) and its schema (revision {revision}) "
                     f"needs an upgrade to {HEAD}: open it once with write access")


def upgrade(engine: Engine, where: str, target: str = "head") -> str:
    """Migrate to ``target`` (default the newest revision) if needed; returns the revision."""
    if target in ("head", HEAD) and stored_revision(engine) == HEAD:
        return HEAD
    with write_connection(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_KEY})
        revision = current_revision(conn)
        _check(conn, revision, where)
        if revision != (HEAD if target == "head" else target):
            from alembic import command

            command.upgrade(alembic_config(conn), target)
        return current_revision(conn)

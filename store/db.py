"""Where the store lives and how to connect to it.

URL precedence: an explicit ``url`` (``--db``) > ``BATCHLAB_DB_URL`` > the default
SQLite file ``$BATCHLAB_HOME/batchlab.db``, where ``BATCHLAB_HOME`` defaults to
``$XDG_DATA_HOME/batchlab`` or ``~/.local/share/batchlab``.

``postgresql://`` and ``postgres://`` URLs are routed to the psycopg 3 driver
(``postgresql+psycopg://``), which the ``postgres`` extra installs.

SQLite connections get: WAL journal (readers never block the writer),
``foreign_keys=ON`` (run children are deleted by cascade), a 30 s busy timeout,
``synchronous=NORMAL`` (safe in WAL mode: a crash never corrupts the file; a
power cut may lose the last commits, which for a results cache only means
recomputing them) and 16 KiB pages for new files (blobs dominate). pysqlite's own
transaction handling is switched off and SQLAlchemy emits ``BEGIN`` itself, so
reads in a transaction are repeatable and DDL is transactional; connections
opened through :func:`write_connection` begin with ``BEGIN IMMEDIATE``, taking the
write lock up front so two writers queue on the busy timeout instead of failing
with a lock-upgrade deadlock.

Before an existing SQLite file is opened by the engine it is probed read-only
(:func:`check_sqlite_file`): a file that is not an SQLite database, a corrupt
one, or another program's database raises :class:`StoreError` and is never
written to.

Damage the probe does not see (a corrupt page in a table or index it does not
read) is caught before the first write of each :class:`store.repo.Store` (and
before a migration): :func:`check_integrity` runs ``PRAGMA quick_check`` over the
whole file and a damaged store is refused with :class:`StoreError`, never
written to. Reads are not checked (they fail on a damaged page, or succeed).

Read-only stores: a store file that cannot be written (a read-only file system,
a file or directory without write permission, or ``?mode=ro`` in the URL) is
opened read-only (:func:`read_only_reason`): its connections use SQLite's
``mode=ro``, and ``immutable=1`` when SQLite cannot otherwise read a WAL store in
a read-only directory (no ``-shm`` file can be created; a leftover non-empty
``-wal`` file is then an error, as its changes cannot be read without merging
them). Such a store serves every read; writes raise :class:`StoreError`.
"""
from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import StaticPool

from batchlab.core.extras import MissingExtra, require

from .errors import StoreError
from .paths import DB_FILENAME, VERSION_TABLE, data_home, default_url  # noqa: F401  (re-exported)

SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 10
WRITE_OPTION = "batchlab_write"


READ_ONLY_QUERY = ("mode", "ro")  # sqlite:///FILE?mode=ro opens a store read-only
SQLITE_CORRUPT, SQLITE_NOTADB, SQLITE_CANTOPEN = 11, 26, 14


def resolve_url(url: str | None = None) -> tuple[URL, bool]:
    """The URL to open and whether it is the default location."""
    raw = url or os.environ.get("BATCHLAB_DB_URL") or None
    is_default = raw is None
    raw = raw or default_url()
    try:
        parsed = make_url(raw)
    except ArgumentError:
        raise StoreError(f"not a database URL: {raw!r} (expected e.g. sqlite:///path/batchlab.db "
                         "or postgresql://user@host/db)") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed, is_default


def display_url(url: URL) -> str:
    """The URL as a string with any password masked."""
    return url.render_as_string(hide_password=True)


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL (None for in-memory and non-SQLite URLs)."""
    if url.get_backend_name() != "sqlite":
        return None
    db = url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db).expanduser()


def read_only_requested(url: URL) -> bool:
    """Whether a SQLite URL asks for a read-only store (``?mode=ro``)."""
    return url.get_backend_name() == "sqlite" and url.query.get(READ_ONLY_QUERY[0]) == READ_ONLY_QUERY[1]


def read_only_reason(path: Path, requested: bool = False) -> str | None:
    """Why the existing store file ``path`` cannot be written (None if it can).

    A store needs its file and its directory writable (SQLite writes the ``-wal``
    and ``-shm`` files next to it); ``os.access`` sees a read-only file system even
    for root, for whom permission bits do not block writes.
    """
    if requested:
        return "opened with mode=ro"
    if not path.exists() or (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)):
        return None
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "on a read-only file system"
    except (OSError, AttributeError):  # no statvfs (Windows)
        pass
    if not os.access(path, os.W_OK):
        return "the file is not writable"
    return f"its directory {path.parent} is not writable"


def _sqlite_error_text(path: Path, exc: sqlite3.Error) -> str:
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if code in (SQLITE_CORRUPT, SQLITE_NOTADB):
        return f"{path} is not a usable batchlab store: SQLite says {exc!s} (the file is corrupt; left untouched)"
    return f"cannot read the store at {path}: SQLite says {exc!s} (left untouched)"


def _probe(uri: str) -> set[str]:
    con = sqlite3.connect(uri, uri=True, isolation_level=None)
    try:
        con.execute("PRAGMA schema_version").fetchone()
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        con.close()


def check_sqlite_file(path: Path, read_only: str | None = None) -> bool:
    """Probe an existing file read-only; raise StoreError (file untouched) if it is no usable store.

    ``read_only``: why the file cannot be written, if it cannot. Returns whether it must
    be opened ``immutable`` (a read-only WAL store that SQLite cannot open otherwise).
    """
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a batchlab store")
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as fh:
        header = fh.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise StoreError(f"{path} is not a batchlab store: the file is not an SQLite database "
                         "(left untouched; move it or choose another --db)")
    immutable = False
    try:
        try:
            tables = _probe(sqlite_uri(path, read_only=True))
        except sqlite3.OperationalError as exc:
            if not read_only or (exc.sqlite_errorcode or 0) & 0xFF != SQLITE_CANTOPEN:
                raise
            wal = Path(f"{path}-wal")
            if wal.exists() and wal.stat().st_size > 0:
                raise StoreError(f"the store at {path} is read-only ({read_only}) and has changes in {wal} "
                                 "that SQLite can only merge with write access (left untouched)") from None
            immutable = True
            tables = _probe(sqlite_uri(path, read_only=True, immutable=True))
    except sqlite3.Error as exc:
        raise StoreError(_sqlite_error_text(path, exc)) from None
    foreign = sorted(t for t in tables if not t.startswith("sqlite_"))
    if foreign and VERSION_TABLE not in tables:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise StoreError(f"{path} is an SQLite database of another program (tables: {shown}), "
                         "not a batchlab store (left untouched)")
    return immutable


def check_integrity(engine: Engine, path: Path) -> None:
    """Raise StoreError (one line; nothing written) unless SQLite's quick_check finds ``path`` intact."""
    try:
        with engine.connect() as conn:
            problems = [str(r[0]) for r in conn.exec_driver_sql("PRAGMA quick_check").all()]
    except DBAPIError as exc:
        problems = [str(exc.orig)]
    if problems == ["ok"]:
        return
    first = " ".join(problems[0].replace("*** in database main ***", "").split())[:200]  # one line
    more = f" and {len(problems) - 1} more problems" if len(problems) > 1 else ""
    raise StoreError(f"the store at {path} is damaged ({first}{more}): nothing was written to it; "
                     f"restore it from a backup, or save what is readable with `sqlite3 {path} .recover` "
                     "and use another --db")


def sqlite_uri(path: Path, *, read_only: bool = False, immutable: bool = False) -> str:
    """SQLite's URI filename for ``path`` (``mode=ro``, ``immutable=1`` as asked)."""
    query = "&".join(q for q, on in (("mode=ro", read_only), ("immutable=1", immutable)) if on)
    return path.resolve().as_uri() + (f"?{query}" if query else "")


def make_engine(url: URL, *, read_only: bool = False, immutable: bool = False) -> Engine:
    """An engine for ``url`` with the connection settings described above; ``read_only`` and
    ``immutable`` (SQLite files only) open the file with SQLite's ``mode=ro`` / ``immutable=1``."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, read_only, immutable)
    if backend == "postgresql" and url.get_driver_name() == "psycopg":
        try:
            require("postgres", f"the store {display_url(url)}")
        except MissingExtra as exc:
            raise StoreError(str(exc)) from None
    kwargs: dict = {"pool_pre_ping": True}
    if backend == "postgresql" and "connect_timeout" not in url.query:
        kwargs["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT_S}
    try:
        return create_engine(url, **kwargs)
    except (ImportError, ArgumentError) as exc:
        raise StoreError(f"cannot use {display_url(url)}: {exc}") from None


def _sqlite_engine(url: URL, read_only: bool, immutable: bool) -> Engine:
    path = sqlite_path(url)
    memory = path is None
    connect_args = {"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    kwargs: dict = {"connect_args": connect_args}
    if memory:
        kwargs["poolclass"] = StaticPool  # one shared in-memory database (tests, throwaway use)
    elif read_only:
        uri = sqlite_uri(path, read_only=True, immutable=immutable)
        kwargs["creator"] = lambda: sqlite3.connect(uri, uri=True, **connect_args)
    engine = create_engine(url.difference_update_query([READ_ONLY_QUERY[0]]), **kwargs)
    writable = not memory and not read_only

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN (see _on_begin)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys = ON")
        if writable:
            cur.execute("PRAGMA page_size = 16384")  # only takes effect on a new, empty file
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE_OPTION)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@contextmanager
def write_connection(engine: Engine) -> Iterator[Connection]:
    """A connection in one write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on exit."""
    with engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            yield conn

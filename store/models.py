"""The schema of the store as SQLAlchemy 2 Core tables.

The store only ever issues Core statements (``select(Run.c.hash)``,
``insert(Run)``), never ORM sessions, so the tables are plain :class:`Table`
objects: importing them costs no ``sqlalchemy.orm`` and no declarative mapping
(about half of the store's import time, paid by every CLI command that opens it).
``NOT NULL`` is spelled out; a test checks these tables against the migrations.

Tables (the Alembic revisions in ``store/migrations/versions`` create exactly this):

runs         one row per run identity (``hash`` is unique): status running/done/failed,
             claim (host, pid, process start, token), timestamps, the full config,
             workload and latency identities, code version, summary metrics as columns
             and the whole summary (without bins) as JSON
run_bins     per-bin metrics of a done run, one row per bin
run_series   chart series of a done run (latency CDF, batch timeline, GPU utilisation,
             batch sizes), one compact frame blob per name
run_data     per-request and per-batch arrays of a done run, one compact blob
sweeps       named parameter sweeps, each with an optional unique ``key`` (its plan's identity);
             sweep_runs links them to their member runs, one distinct position per member
grids        uploaded calibration grids (deduplicated by sha256, unique by name)

Children of a run are deleted with it (``ON DELETE CASCADE``). JSON is stored as
text (:class:`JSONText`) so non-finite floats and exact float reprs survive on
every backend; times are timezone-aware UTC (:class:`UTCDateTime`).
"""
from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator

from batchlab.core.metric_catalog import STORED_BIN_COLUMNS, STORED_COLUMNS

RUN_STATUSES = ("running", "done", "failed")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _json_default(obj: Any):
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return obj.item()  # numpy scalar
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


def dumps(value: Any) -> str:
    """JSON text; NaN/inf are kept (Python's JSON extension) so floats round-trip exactly."""
    return json.dumps(value, default=_json_default, separators=(",", ":"), allow_nan=True)


class JSONText(TypeDecorator):
    """A JSON value stored as text (portable, exact float round trip, NaN/inf allowed)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else dumps(value)

    def process_result_value(self, value, dialect):
        return None if value is None else json.loads(value)


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend (SQLite stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("store times must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def finite_or_none(v: Any) -> float | None:
    """A metric for a REAL column: NaN (which SQLite cannot store) becomes NULL."""
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


metadata = MetaData(naming_convention=NAMING)

# Summary metrics kept as real columns (filter and sort in SQL; the rest stays in ``summary``) and the
# per-bin ones: the catalog's ``column`` view (core.metric_catalog). The migrations create exactly these.
METRIC_COLUMNS = STORED_COLUMNS
BIN_COLUMNS = STORED_BIN_COLUMNS
NAME = String(200)


def _required(name: str, type_, **kw) -> Column:
    return Column(name, type_, nullable=False, **kw)


def _run_fk(name: str = "run_id", **kw) -> Column:
    return Column(name, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True, **kw)


# One run identity: claimed (running), then done or failed.
Run = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True),
    _required("hash", String(64), unique=True),
    _required("status", String(16), index=True),
    _required("created_at", UTCDateTime, index=True),
    _required("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("duration_s", Float),
    Column("error", Text),
    # the claim of the attempt in progress (or of the last attempt)
    Column("host", String(255)),
    Column("pid", Integer),
    Column("proc_start", BigInteger),
    _required("claim", String(32)),
    # what was run
    _required("config", JSONText),
    _required("workload", JSONText),
    _required("latency", JSONText),
    _required("code_version", String(64)),
    Column("label", Text),
    _required("mode", String(32), index=True),
    _required("gpus", Integer),
    _required("k_bins", Integer),
    _required("num_requests", Integer),
    # summary metrics (NULL until done), then the whole summary without bins
    *(Column(m, Float) for m in METRIC_COLUMNS),
    Column("summary", JSONText),
    CheckConstraint("status IN ('running', 'done', 'failed')", name="status"),
    sqlite_autoincrement=True,
)

# Per-bin metrics of a done run (``data`` keeps the whole per-bin dict).
RunBin = Table(
    "run_bins", metadata,
    _run_fk(),
    Column("bin", Integer, primary_key=True),
    _required("requests", Integer),
    _required("batches", Integer),
    *(Column(m, Float) for m in BIN_COLUMNS),
    _required("data", JSONText),
)

# One chart series of a done run, as a :mod:`store.codec` frame blob.
RunSeries = Table(
    "run_series", metadata,
    _run_fk(),
    Column("name", String(64), primary_key=True),
    _required("rows", Integer),
    _required("data", LargeBinary),
)

# Per-request and per-batch arrays of a done run, as one :mod:`store.codec` blob.
RunData = Table(
    "run_data", metadata,
    _run_fk(),
    _required("codec", String(32)),
    _required("num_requests", Integer),
    _required("stored_requests", Integer),
    _required("sampled", Boolean),
    _required("nbytes", BigInteger),
    _required("payload", LargeBinary),
)

# A named sweep (its parameters as JSON); members in ``sweep_runs``. ``key`` is the identity of the
# plan it runs (store.sweep_jobs.plan_key), unique: one sweep per plan, however many processes open it.
Sweep = Table(
    "sweeps", metadata,
    Column("id", Integer, primary_key=True),
    _required("name", NAME),
    _required("params", JSONText),
    _required("created_at", UTCDateTime),
    Column("key", String(64), unique=True, index=True),
    sqlite_autoincrement=True,
)

SweepRun = Table(
    "sweep_runs", metadata,
    Column("sweep_id", ForeignKey("sweeps.id", ondelete="CASCADE"), primary_key=True),
    _run_fk(index=True),
    _required("position", Integer),
    Index("uq_sweep_runs_position", "sweep_id", "position", unique=True),
)

# An uploaded calibration grid: canonical CSV bytes plus the searchable metadata.
GridRecord = Table(
    "grids", metadata,
    Column("id", Integer, primary_key=True),
    _required("name", NAME, unique=True),
    _required("sha256", String(64), unique=True),
    Column("model", NAME),
    Column("device", NAME),
    Column("dtype", String(64)),
    Column("source", NAME),
    _required("uploaded_at", UTCDateTime),
    _required("rows", Integer),
    _required("meta", JSONText),
    _required("warnings", JSONText),
    _required("csv", LargeBinary),
    sqlite_autoincrement=True,
)

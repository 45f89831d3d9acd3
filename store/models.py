"""The typed ORM schema of the store (SQLAlchemy 2 declarative, ``Mapped[...]``).

Tables (the Alembic revisions in ``store/migrations/versions`` create exactly this):

runs         one row per run identity (``hash`` is unique): status running/done/failed,
             claim (host, pid, process start, token), timestamps, the full config,
             workload and latency identities, code version, summary metrics as columns
             and the whole summary (without bins) as JSON
run_bins     per-bin metrics of a done run, one row per bin
run_series   chart series of a done run (latency CDF, batch timeline, GPU utilisation,
             batch sizes), one compact frame blob per name
run_data     per-request and per-batch arrays of a done run, one compact blob
sweeps       named parameter sweeps; sweep_runs links them to their member runs
grids        uploaded calibration grids (deduplicated by sha256, unique by name)

Children of a run are deleted with it (``ON DELETE CASCADE``). JSON is stored as
text (:class:`JSONText`) so non-finite floats and exact float reprs survive on
every backend; times are timezone-aware UTC (:class:`UTCDateTime`).
"""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (BigInteger, Boolean, CheckConstraint, DateTime, Float, ForeignKey, Integer,
                        LargeBinary, MetaData, String, Text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

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
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def finite_or_none(v: Any) -> float | None:
    """A metric for a REAL column: NaN (which SQLite cannot store) becomes NULL."""
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict: JSONText, list: JSONText, datetime: UTCDateTime, str: String(200)}


# Summary metrics kept as real columns (filter and sort in SQL); the rest stays in ``summary``.
METRIC_COLUMNS = (
    "throughput_rps", "throughput_tps", "latency_mean_s", "latency_p50_s", "latency_p95_s",
    "latency_p99_s", "ttft_mean_s", "ttft_p99_s", "tbt_mean_s", "queue_delay_mean_s",
    "sla_attainment", "sla_violation_rate_ttft", "sla_violation_rate_tbt", "sla_violation_rate_e2e",
    "gpu_utilization", "mean_batch_size", "makespan_s",
)
BIN_COLUMNS = (
    "pred_lo", "pred_hi", "mean_batch_size", "latency_mean_s", "latency_p99_s", "ttft_mean_s",
    "tbt_mean_s", "sla_attainment", "sla_violation_rate_ttft", "sla_violation_rate_tbt",
    "sla_violation_rate_e2e",
)


class Run(Base):
    """One run identity: claimed (running), then done or failed."""

    __tablename__ = "runs"
    __table_args__ = (CheckConstraint("status IN ('running', 'done', 'failed')", name="status"),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(index=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    duration_s: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    # the claim of the attempt in progress (or of the last attempt)
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)
    proc_start: Mapped[int | None] = mapped_column(BigInteger)
    claim: Mapped[str] = mapped_column(String(32))
    # what was run
    config: Mapped[dict]
    workload: Mapped[dict]
    latency: Mapped[dict]
    code_version: Mapped[str] = mapped_column(String(64))
    label: Mapped[str | None] = mapped_column(Text)
    mode: Mapped[str] = mapped_column(String(32), index=True)
    gpus: Mapped[int] = mapped_column(Integer)
    k_bins: Mapped[int] = mapped_column(Integer)
    num_requests: Mapped[int] = mapped_column(Integer)
    # summary metrics (NULL until done)
    throughput_rps: Mapped[float | None] = mapped_column(Float)
    throughput_tps: Mapped[float | None] = mapped_column(Float)
    latency_mean_s: Mapped[float | None] = mapped_column(Float)
    latency_p50_s: Mapped[float | None] = mapped_column(Float)
    latency_p95_s: Mapped[float | None] = mapped_column(Float)
    latency_p99_s: Mapped[float | None] = mapped_column(Float)
    ttft_mean_s: Mapped[float | None] = mapped_column(Float)
    ttft_p99_s: Mapped[float | None] = mapped_column(Float)
    tbt_mean_s: Mapped[float | None] = mapped_column(Float)
    queue_delay_mean_s: Mapped[float | None] = mapped_column(Float)
    sla_attainment: Mapped[float | None] = mapped_column(Float)
    sla_violation_rate_ttft: Mapped[float | None] = mapped_column(Float)
    sla_violation_rate_tbt: Mapped[float | None] = mapped_column(Float)
    sla_violation_rate_e2e: Mapped[float | None] = mapped_column(Float)
    gpu_utilization: Mapped[float | None] = mapped_column(Float)
    mean_batch_size: Mapped[float | None] = mapped_column(Float)
    makespan_s: Mapped[float | None] = mapped_column(Float)
    summary: Mapped[dict | None]


class RunBin(Base):
    """Per-bin metrics of a done run (``data`` keeps the whole per-bin dict)."""

    __tablename__ = "run_bins"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    bin: Mapped[int] = mapped_column(Integer, primary_key=True)
    requests: Mapped[int] = mapped_column(Integer)
    batches: Mapped[int] = mapped_column(Integer)
    pred_lo: Mapped[float | None] = mapped_column(Float)
    pred_hi: Mapped[float | None] = mapped_column(Float)
    mean_batch_size: Mapped[float | None] = mapped_column(Float)
    latency_mean_s: Mapped[float | None] = mapped_column(Float)
    latency_p99_s: Mapped[float | None] = mapped_column(Float)
    ttft_mean_s: Mapped[float | None] = mapped_column(Float)
    tbt_mean_s: Mapped[float | None] = mapped_column(Float)
    sla_attainment: Mapped[float | None] = mapped_column(Float)
    sla_violation_rate_ttft: Mapped[float | None] = mapped_column(Float)
    sla_violation_rate_tbt: Mapped[float | None] = mapped_column(Float)
    sla_violation_rate_e2e: Mapped[float | None] = mapped_column(Float)
    data: Mapped[dict]


class RunSeries(Base):
    """One chart series of a done run, as a :mod:`store.codec` frame blob."""

    __tablename__ = "run_series"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    rows: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class RunData(Base):
    """Per-request and per-batch arrays of a done run, as one :mod:`store.codec` blob."""

    __tablename__ = "run_data"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    codec: Mapped[str] = mapped_column(String(32))
    num_requests: Mapped[int] = mapped_column(Integer)
    stored_requests: Mapped[int] = mapped_column(Integer)
    sampled: Mapped[bool] = mapped_column(Boolean)
    nbytes: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class Sweep(Base):
    """A named sweep (its parameters as JSON); members in ``sweep_runs``."""

    __tablename__ = "sweeps"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str]
    params: Mapped[dict]
    created_at: Mapped[datetime]


class SweepRun(Base):
    __tablename__ = "sweep_runs"

    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True,
                                        index=True)
    position: Mapped[int] = mapped_column(Integer)


class GridRecord(Base):
    """An uploaded calibration grid: canonical CSV bytes plus the searchable metadata."""

    __tablename__ = "grids"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    model: Mapped[str | None]
    device: Mapped[str | None]
    dtype: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str | None]
    uploaded_at: Mapped[datetime]
    rows: Mapped[int] = mapped_column(Integer)
    meta: Mapped[dict]
    warnings: Mapped[list]
    csv: Mapped[bytes] = mapped_column(LargeBinary)


"""The latency-grid file format, shared by the CLI, the web upload and ``core``.

A grid is a CSV file. Optional ``# key: value`` comment lines at the top carry
metadata (``name``: the name it is stored and used under; model, device, dtype,
torch/transformers versions, measured_at, source, notes, ...); then a header and
one row per measured cell.

``tp`` is the one metadata key with a meaning of its own: the tensor parallelism
the grid was measured at (GPUs of the replica that ran each cell; a whole number
from 1 to :data:`MAX_GRID_TP`; a grid without it was measured at TP 1). A run
uses a grid only at its own TP unless told to scale it
(docs/cluster.md#tensor-parallelism).

=============== ======== =====================================================
column          required meaning
=============== ======== =====================================================
batch_size      yes      requests in the batch (integer >= 1)
context_len     yes      tokens per sequence (integer >= 1)
prefill_s       yes      seconds: prefill of ``batch_size`` prompts of
                         ``context_len`` tokens, all in one forward pass
decode_step_s   yes      seconds: one decode step of the whole batch, each
                         sequence attending ``context_len`` tokens
peak_mem_gib    no       measured peak accelerator memory of the cell (GiB)
kv_cache_gib    no       computed (not measured) KV-cache size of the cell (GiB)
=============== ======== =====================================================

Every value present must be a finite number inside its column's range
(:data:`GRID_COLUMNS`; a value outside it is a unit mistake or a corrupt file,
never a measurement):

=============================== =========================================
batch_size                      1 .. 1,000,000 requests
context_len                     1 .. 100,000,000 tokens
prefill_s, decode_step_s        1e-9 .. 3,600 seconds (1 ns .. 1 hour)
peak_mem_gib, kv_cache_gib      > 0 .. 1e12 GiB
=============================== =========================================

A cell that could not be measured (out of memory, skipped) is a row whose
``prefill_s`` and/or ``decode_step_s`` are left empty; an empty ``prefill_s``
with a measured ``decode_step_s`` (or the reverse) is allowed. Cells may also
simply be absent.

Limits: a file may be at most :data:`MAX_GRID_BYTES` (5 MiB). Each of
``prefill_s`` and ``decode_step_s`` needs at least :data:`MIN_BATCH_SIZES` batch
sizes that each have at least :data:`MIN_CONTEXTS_PER_ROW` measured context
lengths (a batch row with a single measured value of a quantity cannot be
extrapolated along context; it is reported in the warnings and ignored by
:class:`core.latency_grid.GridLatency` for that quantity).

The older whole-batch format ``batch_size,max_seq_len,mean_latency_sec
[,std_latency_sec,num_trials]`` is also read: see :mod:`calibration.legacy`.

:func:`parse_grid` (in :mod:`calibration.validate`, re-exported here) reads and
validates a file; :meth:`Grid.to_csv_bytes` writes the canonical form back.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd

KEY_COLUMNS = ("batch_size", "context_len")
TIME_COLUMNS = ("prefill_s", "decode_step_s")
REQUIRED_COLUMNS = KEY_COLUMNS + TIME_COLUMNS
OPTIONAL_COLUMNS = ("peak_mem_gib", "kv_cache_gib")
ALL_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

MAX_GRID_BYTES = 5 * 1024 * 1024
MAX_BATCH_SIZE = 1_000_000
MAX_CONTEXT_LEN = 100_000_000
MIN_SECONDS = 1e-9
MAX_SECONDS = 3600.0
MAX_GIB = 1e12
MAX_GRID_TP = 1024
TP_KEY = "tp"


@dataclass(frozen=True)
class Column:
    """How one CSV column is read: ``kind`` "count" (a whole number in ``low .. high``),
    "real" (``low .. high``) or "positive" (``> 0`` and ``<= high``); ``optional``: may be empty."""

    kind: str
    optional: bool
    low: float
    high: float
    unit: str

    def range_text(self) -> str:
        lo, hi = _num(self.low), _num(self.high)
        if self.kind == "positive":
            return f"> 0 and <= {hi} {self.unit}"
        return f"{'a whole number ' if self.kind == 'count' else ''}from {lo} to {hi} {self.unit}"


def _num(x: float) -> str:
    return f"{x:,.0f}" if x == int(x) and abs(x) < 1e15 else f"{x:g}"


GRID_COLUMNS = {
    "batch_size": Column("count", False, 1, MAX_BATCH_SIZE, "requests"),
    "context_len": Column("count", False, 1, MAX_CONTEXT_LEN, "tokens"),
    "prefill_s": Column("real", True, MIN_SECONDS, MAX_SECONDS, "seconds"),
    "decode_step_s": Column("real", True, MIN_SECONDS, MAX_SECONDS, "seconds"),
    "peak_mem_gib": Column("positive", True, 0.0, MAX_GIB, "GiB"),
    "kv_cache_gib": Column("positive", True, 0.0, MAX_GIB, "GiB"),
}

MIN_BATCH_SIZES = 2
MIN_CONTEXTS_PER_ROW = 2

META_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


EXCERPT = 24  # characters of a file's content an error message may quote


def excerpt(text: str, limit: int = EXCERPT) -> str:
    """``text`` quoted, in at most ``limit`` characters (a cell or a column name from a file, a value a
    user typed): an error names what is wrong without echoing all of it."""
    shown = repr(str(text)[:limit])
    return shown if len(shown) <= limit and len(str(text)) <= limit else shown[:limit - 1] + "…"


class GridError(ValueError):
    """An unusable grid file. ``line`` (1-based line in the file) and ``column`` name
    the offending place when there is one; the message always names them, quoting at
    most :data:`EXCERPT` characters of a column name."""

    def __init__(self, message: str, line: int | None = None, column: str | None = None):
        where = []
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {excerpt(column)}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.line = line
        self.column = column


@dataclass(frozen=True, eq=False)
class Grid:
    """A validated latency grid.

    name      short label (argument of :func:`parse_grid`, else ``# name:`` meta, else the file stem)
    table     DataFrame with the columns above, sorted by (batch_size, context_len);
              int64 keys, float64 values, NaN where a cell was not measured.
              Treat it as read-only.
    meta      ``# key: value`` metadata, in file order (values are strings)
    sha256    hex digest of the file bytes as given to :func:`parse_grid`; for a file
              converted from the legacy format, of the converted canonical CSV
              (:meth:`to_csv_bytes`, whose metadata records the split used and the
              source file's sha256), so a different conversion is a different grid
    warnings  human-readable remarks (non-monotone cells, ignored rows, conversions)
    """

    name: str
    table: pd.DataFrame
    meta: dict
    sha256: str
    warnings: list

    def to_csv_bytes(self) -> bytes:
        """The canonical file: metadata comment lines, header, one row per cell.

        Floats are written with ``repr`` (exact round trip), so
        ``parse_grid(g.to_csv_bytes())`` has the same table and meta, and writing
        that again gives the same bytes.
        """
        return format_grid_csv(self.table, self.meta)

    @property
    def tp(self) -> int:
        """The tensor parallelism the grid was measured at (``# tp:`` metadata; 1 when absent)."""
        return grid_tp(self.meta.get(TP_KEY))

    def measured(self, column: str) -> pd.DataFrame:
        """Rows where ``column`` was measured: ``batch_size, context_len, column``."""
        t = self.table
        return t.loc[t[column].notna(), ["batch_size", "context_len", column]].reset_index(drop=True)


def grid_tp(value) -> int:
    """The ``tp`` metadata value as a TP (``None``: 1); :class:`GridError` unless a whole number
    from 1 to :data:`MAX_GRID_TP`."""
    if value is None:
        return 1
    text = str(value).strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_GRID_TP:
        raise GridError(f"metadata {TP_KEY} must be a whole number from 1 to {MAX_GRID_TP:,} (the tensor "
                        f"parallelism the grid was measured at), got {excerpt(text)}")
    return int(text)


def _format_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def _clean_meta_value(value) -> str:
    return " ".join(str(value).split())


def format_grid_csv(table: pd.DataFrame, meta: dict) -> bytes:
    """Serialise a grid table and its metadata (see :meth:`Grid.to_csv_bytes`)."""
    lines = []
    for key, value in meta.items():
        if not META_KEY_RE.fullmatch(str(key)):
            raise GridError(f"metadata key {key!r} must match {META_KEY_RE.pattern}")
        lines.append(f"# {key}: {_clean_meta_value(value)}")
    columns = [c for c in ALL_COLUMNS if c in table.columns]
    lines.append(",".join(columns))
    cols = [table[c].tolist() for c in columns]
    for row in zip(*cols):
        lines.append(",".join(_format_value(v) for v in row))
    return ("\n".join(lines) + "\n").encode("utf-8")


from .validate import grid_from_table, parse_grid  # noqa: E402  (re-export; validate imports this module)

__all__ = [
    "ALL_COLUMNS", "Column", "GRID_COLUMNS", "Grid", "GridError", "KEY_COLUMNS", "MAX_BATCH_SIZE", "MAX_CONTEXT_LEN",
    "EXCERPT", "MAX_GIB", "MAX_GRID_BYTES", "MAX_GRID_TP", "MAX_SECONDS", "MIN_BATCH_SIZES", "MIN_SECONDS",
    "MIN_CONTEXTS_PER_ROW", "OPTIONAL_COLUMNS", "REQUIRED_COLUMNS", "TIME_COLUMNS", "TP_KEY",
    "excerpt", "format_grid_csv", "grid_from_table", "grid_tp", "parse_grid",
]

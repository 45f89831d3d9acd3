"""The latency-grid file format, shared by the CLI, the web upload and ``core``.

A grid is a CSV file. Optional ``# key: value`` comment lines at the top carry
metadata (model, device, dtype, torch/transformers versions, measured_at,
source, notes, ...); then a header and one row per measured cell:

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

Every value present must be a finite number > 0. A cell that could not be
measured (out of memory, skipped) is a row whose ``prefill_s`` and/or
``decode_step_s`` are left empty; an empty ``prefill_s`` with a measured
``decode_step_s`` (or the reverse) is allowed. Cells may also simply be absent.

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
MIN_BATCH_SIZES = 2
MIN_CONTEXTS_PER_ROW = 2

META_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


class GridError(ValueError):
    """An unusable grid file. ``line`` (1-based line in the file) and ``column`` name
    the offending place when there is one; the message always names them."""

    def __init__(self, message: str, line: int | None = None, column: str | None = None):
        where = []
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
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
    sha256    hex digest of the file bytes as given to :func:`parse_grid`
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

    def measured(self, column: str) -> pd.DataFrame:
        """Rows where ``column`` was measured: ``batch_size, context_len, column``."""
        t = self.table
        return t.loc[t[column].notna(), ["batch_size", "context_len", column]].reset_index(drop=True)


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
    "ALL_COLUMNS", "Grid", "GridError", "KEY_COLUMNS", "MAX_GRID_BYTES", "MIN_BATCH_SIZES",
    "MIN_CONTEXTS_PER_ROW", "OPTIONAL_COLUMNS", "REQUIRED_COLUMNS", "TIME_COLUMNS",
    "format_grid_csv", "grid_from_table", "parse_grid",
]

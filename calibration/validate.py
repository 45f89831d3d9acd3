"""Reading and validating latency-grid files (the format is described in :mod:`calibration.schema`)."""
from __future__ import annotations

import csv
import hashlib
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from . import legacy
from .schema import (
    ALL_COLUMNS,
    GRID_COLUMNS,
    KEY_COLUMNS,
    MAX_GRID_BYTES,
    META_KEY_RE,
    MIN_BATCH_SIZES,
    MIN_CONTEXTS_PER_ROW,
    REQUIRED_COLUMNS,
    TIME_COLUMNS,
    TP_KEY,
    Column,
    Grid,
    GridError,
    excerpt,
    format_grid_csv,
    grid_tp,
)


def parse_grid(data, name: str | None = None, legacy_split=None) -> Grid:
    """Read, validate and return a latency grid.

    ``data`` is the file content (``bytes``), a :class:`~pathlib.Path`, a ``str``
    (CSV text if it contains a newline, else a file path) or a binary file-like
    object (e.g. a web upload). Raises :class:`GridError` naming the line and
    column of the first problem. ``name`` defaults to the ``# name:`` metadata,
    else the file stem, else ``"grid"``. ``legacy_split`` (a spec such as
    ``"total:128"`` or a :class:`~calibration.legacy.LegacySplit`; default
    ``writer``) says how a legacy file's ``max_seq_len`` divides into prompt and
    generated tokens; for a file in the current format it is ignored, with a warning.
    """
    split = legacy.parse_split(legacy_split)
    raw, stem = _read_bytes(data)
    sha = hashlib.sha256(raw).hexdigest()
    meta, header_line, header, rows, warnings = _split_lines(_decode(raw))
    is_legacy = legacy.is_legacy_header(header)
    if is_legacy:
        _check_header(header, header_line, legacy.LEGACY_COLUMNS, legacy.LEGACY_REQUIRED)
        cells, lines = _read_cells(header, rows, legacy.LEGACY_COLUMNS)
        table, extra_meta, extra_warnings = legacy.convert(header, cells, lines, split, sha)
        meta.update(extra_meta)
        warnings.extend(extra_warnings)
    else:
        _check_header(header, header_line, GRID_COLUMNS, REQUIRED_COLUMNS)
        cells, lines = _read_cells(header, rows, GRID_COLUMNS)
        table = _grid_table(cells)
        if legacy_split is not None and split != legacy.WRITER:
            warnings.append(f"legacy split {split.spec!r} ignored: the file is in the current grid format")
    _check_duplicates(table, lines)
    table = table.sort_values(list(KEY_COLUMNS), kind="stable").reset_index(drop=True)
    warnings.extend(_check_enough_points(table))
    warnings.extend(monotonicity_warnings(table))
    if is_legacy:  # the identity of a converted grid is its converted content (split included)
        sha = hashlib.sha256(format_grid_csv(table, meta)).hexdigest()
    grid_name = name or meta.get("name") or stem or "grid"
    return Grid(name=grid_name, table=table, meta=meta, sha256=sha, warnings=warnings)


def grid_from_table(table: pd.DataFrame, meta: dict, name: str) -> Grid:
    """Validate an in-memory table (e.g. fresh measurements) by writing and re-reading it,
    so that the returned grid's ``sha256`` is that of its own :meth:`Grid.to_csv_bytes`."""
    return parse_grid(format_grid_csv(_grid_table({c: list(table[c]) for c in table.columns
                                                   if c in ALL_COLUMNS}), meta), name=name)


# ---------------------------------------------------------------- reading

def _read_bytes(data) -> tuple[bytes, str | None]:
    stem = None
    if isinstance(data, str) and "\n" not in data and "\r" not in data:
        data = Path(data)
    if isinstance(data, Path):
        if not data.is_file():
            raise GridError(f"no such file: {data}")
        if data.stat().st_size > MAX_GRID_BYTES:
            raise GridError(_too_large(data.stat().st_size))
        stem, data = data.stem, data.read_bytes()
    elif isinstance(data, str):
        data = data.encode("utf-8")
    elif hasattr(data, "read"):
        data = data.read(MAX_GRID_BYTES + 1)
        if isinstance(data, str):
            data = data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise GridError(f"expected bytes, text, a path or a file object, got {type(data).__name__}")
    raw = bytes(data)
    if len(raw) > MAX_GRID_BYTES:
        raise GridError(_too_large(len(raw)))
    if not raw.strip():
        raise GridError("empty file: expected a header line and data rows")
    return raw, stem


def _too_large(size: int) -> str:
    return f"file too large: {size:,} bytes (limit {MAX_GRID_BYTES:,} bytes = 5 MiB)"


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise GridError(f"not UTF-8 text (byte {e.start})", line=line) from None


def _split_lines(text: str):
    """Metadata dict, header line number, header fields, [(line number, fields)], warnings."""
    meta: dict[str, str] = {}
    warnings: list[str] = []
    header = header_line = None
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            if header is None:
                _read_meta_line(stripped, number, meta, warnings)
            continue  # comment lines below the header are ignored
        fields = [f.strip() for f in next(csv.reader([line]))]
        if header is None:
            header, header_line = fields, number
        else:
            rows.append((number, fields))
    if header is None:
        raise GridError("empty file: no header line (only comments)")
    if not rows:
        raise GridError("no data rows below the header", line=header_line)
    for number, fields in rows:
        if len(fields) != len(header):
            raise GridError(f"expected {len(header)} comma-separated fields like the header, "
                            f"found {len(fields)}", line=number)
    return meta, header_line, header, rows, warnings


def _read_meta_line(stripped: str, number: int, meta: dict, warnings: list) -> None:
    body = stripped.lstrip("#").strip()
    key, sep, value = body.partition(":")
    key = key.strip()
    if not sep or not META_KEY_RE.fullmatch(key):
        return  # a free-text comment, not metadata
    if key in meta:
        warnings.append(f"line {number}: metadata key {key!r} repeated; the later value is kept")
    if key == TP_KEY:
        try:
            grid_tp(value)
        except GridError as e:
            raise GridError(str(e), line=number) from None
    meta[key] = value.strip()


def _check_header(header: list, line: int, spec: dict, required) -> None:
    seen = set()
    for col in header:
        if not col:
            raise GridError("empty column name in the header", line=line)
        if col in seen:
            raise GridError("column appears twice in the header", line=line, column=col)
        seen.add(col)
        if col not in spec:
            raise GridError(f"unknown column (allowed: {', '.join(spec)})", line=line, column=col)
    for col in required:
        if col not in seen:
            raise GridError("missing required column", line=line, column=col)


def _read_cells(header: list, rows: list, spec: dict) -> tuple[dict, list]:
    """Parse and check every cell; returns {column: [value or None]} and the row line numbers."""
    cells = {col: [] for col in header}
    lines = []
    for number, fields in rows:
        lines.append(number)
        for col, text in zip(header, fields):
            cells[col].append(_parse_cell(text, number, col, spec[col]))
    return cells, lines


def _parse_cell(text: str, line: int, col: str, spec: Column):
    if text == "":
        if spec.optional:
            return None
        raise GridError("empty value (this column is required in every row)", line=line, column=col)
    try:
        value = float(text)
    except ValueError:
        raise GridError(f"not a number: {excerpt(text)}", line=line, column=col) from None
    if not math.isfinite(value):
        raise GridError(f"not a finite number: {excerpt(text)}", line=line, column=col)
    if spec.kind == "count" and not value.is_integer():
        raise GridError(f"not a whole number: {excerpt(text)}", line=line, column=col)
    low_ok = value > spec.low if spec.kind == "positive" else value >= spec.low
    if not low_ok or value > spec.high:
        raise GridError(f"out of range: {excerpt(text)} (allowed: {spec.range_text()})", line=line, column=col)
    return int(value) if spec.kind == "count" else value


def _grid_table(cells: dict) -> pd.DataFrame:
    data = {}
    for col in ALL_COLUMNS:
        if col not in cells:
            continue
        if col in KEY_COLUMNS:
            data[col] = np.asarray(cells[col], dtype=np.int64)
        else:
            data[col] = np.array([np.nan if v is None else v for v in cells[col]], dtype=np.float64)
    return pd.DataFrame(data)


def _check_duplicates(table: pd.DataFrame, lines: list) -> None:
    first: dict[tuple, int] = {}
    for b, c, line in zip(table["batch_size"].tolist(), table["context_len"].tolist(), lines):
        if (b, c) in first:
            raise GridError(f"duplicate cell batch_size={b}, context_len={c} (first at line {first[(b, c)]})",
                            line=line, column="context_len")
        first[(b, c)] = line


# ---------------------------------------------------------------- whole-grid checks

def usable_rows(table: pd.DataFrame, column: str) -> dict[int, int]:
    """{batch_size: number of measured cells of ``column``} for every batch size."""
    counts = table.loc[table[column].notna()].groupby("batch_size")[column].size()
    return {int(b): int(n) for b, n in counts.items()}


def _check_enough_points(table: pd.DataFrame) -> list[str]:
    warnings = []
    for col in TIME_COLUMNS:
        counts = usable_rows(table, col)
        good = [b for b, n in counts.items() if n >= MIN_CONTEXTS_PER_ROW]
        if len(good) < MIN_BATCH_SIZES:
            found = ", ".join(f"batch_size {b}: {n}" for b, n in counts.items()) or "no measured values"
            raise GridError(
                f"too few measured points: need at least {MIN_BATCH_SIZES} batch sizes with at least "
                f"{MIN_CONTEXTS_PER_ROW} measured context lengths each (measured cells per batch size: "
                f"{found})", column=col)
        for b, n in counts.items():
            if n < MIN_CONTEXTS_PER_ROW:
                warnings.append(f"{col}: batch_size {b} has only {n} measured cell; the grid latency "
                                "model ignores that batch size for this column")
    return warnings


def nonmonotone_cells(table: pd.DataFrame) -> list[dict]:
    """Places where a measured time decreases although batch or context grows.

    Compares neighbouring measured cells: along ``context_len`` within a batch
    size, and along ``batch_size`` at one context length. Each entry has
    ``column``, ``axis`` (the growing key), ``batch_size`` and ``context_len``
    (pairs: from, to), ``values`` (from, to) and ``change`` (relative).
    """
    out = []
    for col in TIME_COLUMNS:
        measured = table.loc[table[col].notna(), ["batch_size", "context_len", col]]
        for axis, other in (("context_len", "batch_size"), ("batch_size", "context_len")):
            ordered = measured.sort_values([other, axis], kind="stable")
            groups: dict[int, list] = defaultdict(list)
            for b, c, v in ordered.itertuples(index=False):
                groups[b if axis == "context_len" else c].append((b, c, v))
            for cells in groups.values():
                for (b0, c0, v0), (b1, c1, v1) in zip(cells, cells[1:]):
                    if v1 < v0:
                        out.append({"column": col, "axis": axis, "batch_size": (b0, b1),
                                    "context_len": (c0, c1), "values": (v0, v1), "change": v1 / v0 - 1})
    return out


def monotonicity_warnings(table: pd.DataFrame) -> list[str]:
    """One warning per (column, axis) listing every decrease found by :func:`nonmonotone_cells`."""
    grouped: dict[tuple, list] = defaultdict(list)
    for cell in nonmonotone_cells(table):
        grouped[(cell["column"], cell["axis"])].append(cell)
    warnings = []
    for (col, axis), cells in grouped.items():
        places = "; ".join(_describe(cell) for cell in cells)
        warnings.append(f"non-monotone: {col} decreases as {axis} grows at {len(cells)} "
                        f"place{'s' if len(cells) > 1 else ''}: {places}")
    return warnings


def _describe(cell: dict) -> str:
    (b0, b1), (c0, c1) = cell["batch_size"], cell["context_len"]
    where = f"batch_size {b0}, context_len {c0}->{c1}" if cell["axis"] == "context_len" \
        else f"context_len {c0}, batch_size {b0}->{b1}"
    return f"{where} ({cell['change']:+.2%})"


__all__ = ["grid_from_table", "monotonicity_warnings", "nonmonotone_cells", "parse_grid",
           "usable_rows"]

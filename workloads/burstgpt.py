"""Load a BurstGPT trace CSV into columnar arrays.

Columns are found by name (case and spacing ignored), so both published
layouts work: the 6-column ``BurstGPT_1/_2``
(``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type``) and
the 8-column ``BurstGPT_3`` (adds ``Session ID`` and ``Elapsed time``). Only
``Timestamp``, ``Request tokens`` and ``Response tokens`` are used; each must
appear once in the header. An optional ``Priority`` column (whole numbers, smaller
served first by the continuous engine's priority policies) is read when present.

Rules, in order:
1. Blank lines are skipped; no row may hold more fields than the header. Every
   other row must hold finite numbers in the three columns (``nan`` and ``inf``
   are not), token counts whole, >= 0 and at most 10^9 (MAX_TOKENS), and the
   timestamps must span less than 4.61e9 s (MAX_TIME_S: see :mod:`workloads.limits`).
   Errors name the CSV line (the header is line 1) and the column, quoting at
   most MAX_EXCERPT characters of the bad value.
2. Rows are put in time order with a stable sort if the file is not already
   sorted (equal timestamps keep their file order); ``resorted`` says so.
3. The window is ``num_requests`` rows starting at row ``offset`` (0-based,
   counted over all data rows, failed ones included), so toggling
   ``keep_failed`` keeps the same time span.
4. Failed rows (``Response tokens == 0``) in the window are dropped unless
   ``keep_failed``; then their output stays 0.
5. Times are shifted so the first kept request arrives at 0.

Uploads (bytes or a file object) are limited to MAX_UPLOAD_BYTES; a local
path is read whatever its size.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .limits import MAX_TIME_S, MAX_TIME_TEXT, MAX_TOKENS
from .trace_window import TraceData, check_window, cut_window
from .workload import MAX_PRIORITY, WorkloadError

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
DATA_DIR = Path(__file__).resolve().parent / "data"
TIMESTAMP, REQUEST, RESPONSE = "Timestamp", "Request tokens", "Response tokens"
NEEDED = (TIMESTAMP, REQUEST, RESPONSE)
PRIORITY = "Priority"    # optional
MAX_EXCERPT = 40   # characters of a bad value an error quotes
MAX_LISTED = 10    # header names listed when a column is missing
_LONGER_ROW = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")   # pandas' C parser

Source = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO


def bundled_traces() -> dict[str, Path]:
    """The trace excerpts shipped with batchlab, by name (file stem)."""
    return {p.stem: p for p in sorted(DATA_DIR.glob("*.csv"))}


def resolve_trace(trace: str | os.PathLike) -> Path:
    """A bundled trace name (with or without ``.csv``) or a path to a CSV file."""
    bundled = bundled_traces()
    name = str(trace)
    key = name[:-4] if name.endswith(".csv") else name
    if key in bundled:
        return bundled[key]
    path = Path(name).expanduser()
    if not path.is_file():
        raise WorkloadError(f"trace: no such file or bundled trace: {name!r} "
                            f"(bundled: {', '.join(bundled) or 'none'})")
    return path


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _readable(source: Source) -> str | Path | io.BytesIO:
    """A path for pandas, or the upload's bytes (size-checked) in a BytesIO."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise WorkloadError(f"trace: no such file: {str(source)!r}")
        return path
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read(MAX_UPLOAD_BYTES + 1)
        if isinstance(data, str):
            data = data.encode()
    else:
        raise WorkloadError(f"trace: expected a path, bytes or a file object, got {type(source).__name__}")
    if len(data) > MAX_UPLOAD_BYTES:
        raise WorkloadError(f"trace: upload is larger than the {MAX_UPLOAD_BYTES // 2**20} MB limit; "
                            "use a window of the file or load it from a local path")
    return io.BytesIO(data)


def _read_csv(src, **kwargs):
    import pandas as pd

    if isinstance(src, io.BytesIO):
        src.seek(0)
    try:
        return pd.read_csv(src, **kwargs)
    except pd.errors.EmptyDataError:
        raise WorkloadError("trace: no header on line 1 (the file is empty or starts with a blank line)") from None
    except pd.errors.ParserError as exc:
        longer = _LONGER_ROW.search(str(exc))
        if longer:
            header, line, fields = longer.groups()
            raise WorkloadError(f"trace: line {line} has {fields} fields, but the header has {header}") from None
        raise WorkloadError(f"trace: not a readable CSV file ({exc})") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise WorkloadError(f"trace: not a readable CSV file ({exc})") from None


def _norm(name: object) -> str:
    """A column name as matched: spacing and case ignored, and a UTF-8 byte-order mark before it."""
    return " ".join(str(name).lstrip("\ufeff").split()).lower()


def _excerpt(value: object) -> str:
    """A value as an error quotes it: its text on one line, cut to MAX_EXCERPT characters."""
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_EXCERPT else text[:MAX_EXCERPT - 3] + "..."


def _header(src) -> list[str]:
    """The names on the header line, as written (line 2 may not hold more fields)."""
    head = _read_csv(src, header=None, nrows=2, dtype=str, keep_default_na=False, skip_blank_lines=False)
    return [str(name) for name in head.iloc[0]]


def _find_columns(header: list[str]) -> dict[str, int]:
    """Needed column -> its position; a missing or repeated one is an error naming it."""
    return find_columns(header, NEEDED, (PRIORITY,), "a BurstGPT CSV")


def find_columns(header: list[str], needed: tuple[str, ...], optional: tuple[str, ...],
                 what: str) -> dict[str, int]:
    """Column name -> its position in ``header`` (case and spacing ignored) for every ``needed`` name
    and each ``optional`` one present; a missing or repeated column is an error naming it."""
    at: dict[str, list[int]] = {}
    for i, name in enumerate(header):
        at.setdefault(_norm(name), []).append(i)
    found = {}
    for name in (*needed, *optional):
        where = at.get(_norm(name), [])
        if not where:
            if name in optional:
                continue
            shown = ", ".join(_excerpt(h) for h in header[:MAX_LISTED])
            more = f", ... ({len(header) - MAX_LISTED} more)" if len(header) > MAX_LISTED else ""
            raise WorkloadError(f"{name}: column not found in the trace ({what} needs "
                                f"{', '.join(needed)}; found: {shown or 'none'}{more})")
        if len(where) > 1:
            raise WorkloadError(f"trace: line 1, columns {where[0] + 1} and {where[1] + 1}: both are the "
                                f"{name} column (a column may appear once)")
        found[name] = where[0]
    return found


def _blank(df) -> np.ndarray:
    """Which rows are blank lines: every field missing (pandas may read one as "" in a text column)."""
    blank = df.isna().any(axis=1).to_numpy()     # candidates; a blank line has no numeric value
    if not blank.any():
        return blank
    rows = np.flatnonzero(blank)
    for j in range(df.shape[1]):
        col = df.iloc[rows, j]
        empty = col.isna().to_numpy()
        if col.dtype.kind not in "biuf":
            empty = empty | (col.astype(str).str.strip() == "").to_numpy()
        rows = rows[empty]
        if not len(rows):
            break
    out = np.zeros(len(df), dtype=bool)
    out[rows] = True
    return out


def _cell(src, line: int, column: int) -> str:
    """The text of one field as the file writes it (read again for an error message)."""
    row = _read_csv(src, header=None, skiprows=line - 1, nrows=1, dtype=str, keep_default_na=False,
                    skip_blank_lines=False)
    return str(row.iloc[0, column]) if row.shape[1] > column else ""


def _numbers(df, column: int, name: str, lines: np.ndarray, src, tokens: bool) -> np.ndarray:
    """A column as float64; its first bad value is an error naming the CSV line and the column.

    Every value must be a finite number; token counts also whole, >= 0 and at most MAX_TOKENS.
    """
    import pandas as pd

    values = pd.to_numeric(df.iloc[:, column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        if tokens:
            bad = ~((values >= 0) & (values <= MAX_TOKENS) & (values == np.floor(values)))
        else:
            bad = ~np.isfinite(values)
    if not bad.any():
        return values
    i = int(np.argmax(bad))
    v, text = values[i], _cell(src, int(lines[i]), column)
    shown = repr(_excerpt(text))
    if not text.strip():
        problem = "the value is empty"
    elif np.isnan(v):
        problem = f"{shown} is not a number"
    elif tokens and v < 0:
        problem = f"{shown} is negative"
    elif tokens and v > MAX_TOKENS:
        problem = f"{shown} is above {MAX_TOKENS:,} tokens (the most a request may hold)"
    elif tokens:
        problem = f"{shown} is not a whole number of tokens"
    else:
        problem = f"{shown} is not finite"
    raise WorkloadError(f"trace: line {lines[i]}, column {name}: {problem}")


def _priorities(df, column: int, lines: np.ndarray, src, name: str = PRIORITY) -> np.ndarray:
    """The Priority column as int64; a value that is not a whole number within MAX_PRIORITY is an error
    naming its CSV line."""
    values = _numbers(df, column, name, lines, src, tokens=False)
    bad = ~((values == np.floor(values)) & (np.abs(values) <= MAX_PRIORITY))
    if bad.any():
        i = int(np.argmax(bad))
        shown = repr(_excerpt(_cell(src, int(lines[i]), column)))
        raise WorkloadError(f"trace: line {lines[i]}, column {name}: {shown} is not a whole number in "
                            f"[-{MAX_PRIORITY}, {MAX_PRIORITY}]")
    return values.astype(np.int64)


def _check_span(t: np.ndarray, column: int, lines: np.ndarray, src, name: str = TIMESTAMP) -> None:
    """Every timestamp lies less than MAX_TIME_S after the earliest (else the latest row is named)."""
    first, last = int(np.argmin(t)), int(np.argmax(t))
    with np.errstate(over="ignore"):
        span = t[last] - t[first]
    if not span < MAX_TIME_S:
        shown = repr(_excerpt(_cell(src, int(lines[last]), column)))
        raise WorkloadError(f"trace: line {lines[last]}, column {name}: {shown} is {span:.3g} s after the "
                            f"earliest timestamp (line {lines[first]}); the engines represent less than "
                            f"{MAX_TIME_TEXT} of simulated time")


def load_burstgpt(source: Source, *, offset: int = 0, num_requests: int | None = None,
                  keep_failed: bool = False) -> TraceData:
    """Read ``num_requests`` rows from row ``offset`` (None: to the end) of a BurstGPT CSV."""
    check_window(offset, num_requests)
    src = _readable(source)
    header = _header(src)
    cols = _find_columns(header)
    # every column, so that a row with more fields than the header is an error, not silently cut
    df = _read_csv(src, index_col=False, skip_blank_lines=False, low_memory=False)
    df = df[~_blank(df)]
    if len(df) == 0:
        raise WorkloadError("trace: the file has a header but no data rows")
    lines = df.index.to_numpy() + 2    # the header is line 1
    t = _numbers(df, cols[TIMESTAMP], TIMESTAMP, lines, src, tokens=False)
    _check_span(t, cols[TIMESTAMP], lines, src)
    prompt = _numbers(df, cols[REQUEST], REQUEST, lines, src, tokens=True).astype(np.int64)
    output = _numbers(df, cols[RESPONSE], RESPONSE, lines, src, tokens=True).astype(np.int64)
    priority = _priorities(df, cols[PRIORITY], lines, src) if PRIORITY in cols else None

    return cut_window(t, prompt, output, priority, offset=offset, num_requests=num_requests,
                      keep_failed=keep_failed, layout=f"{len(header)}-column", output_name=RESPONSE)

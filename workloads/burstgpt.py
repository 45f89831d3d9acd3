"""Load a BurstGPT trace CSV into columnar arrays.

Columns are found by name (case and spacing ignored), so both published
layouts work: the 6-column ``BurstGPT_1/_2``
(``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type``) and
the 8-column ``BurstGPT_3`` (adds ``Session ID`` and ``Elapsed time``). Only
``Timestamp``, ``Request tokens`` and ``Response tokens`` are read.

Rules, in order:
1. Blank lines are skipped; any other row must hold finite numbers in the
   three columns, with whole, non-negative token counts. Errors name the
   column and the CSV line (the header is line 1).
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
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np

from .workload import WorkloadError

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
DATA_DIR = Path(__file__).resolve().parent / "data"
TIMESTAMP, REQUEST, RESPONSE = "Timestamp", "Request tokens", "Response tokens"
NEEDED = (TIMESTAMP, REQUEST, RESPONSE)

Source = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]


@dataclass(frozen=True, eq=False)
class TraceData:
    """One window of a trace: arrays plus what happened to its rows."""

    arrival: np.ndarray   # float64 s, first kept request at 0
    prompt: np.ndarray    # int64 Request tokens
    output: np.ndarray    # int64 Response tokens (0 only for kept failed rows)
    total_rows: int       # data rows in the file
    offset: int           # first row of the window
    window_rows: int      # rows in the window, failed ones included
    failed: int           # failed rows in the window
    failed_dropped: int   # of which dropped (0 with keep_failed)
    resorted: bool        # the file was not in time order
    layout: str           # "6-column", "8-column" or "N-column"

    @property
    def failed_kept(self) -> int:
        return self.failed - self.failed_dropped


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
        raise WorkloadError("trace: the file is empty (no header line)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise WorkloadError(f"trace: not a readable CSV file ({exc})") from None


def _norm(name: object) -> str:
    return " ".join(str(name).split()).lower()


def _find_columns(columns: list) -> dict[str, str]:
    """Needed column -> the file's spelling; a missing one is an error listing what was found."""
    by_norm: dict[str, str] = {}
    for col in columns:
        by_norm.setdefault(_norm(col), col)
    found = {}
    for name in NEEDED:
        if _norm(name) not in by_norm:
            found_text = ", ".join(str(c) if len(str(c)) <= 24 else str(c)[:23] + "…" for c in columns[:8]) + \
                (", …" if len(columns) > 8 else "")  # an excerpt: the header may be any file's first line
            raise WorkloadError(f"{name}: column not found in the trace (a BurstGPT CSV needs "
                                f"{', '.join(NEEDED)}; found: {found_text or 'none'})")
        found[name] = by_norm[_norm(name)]
    return found


def _numeric(df, column: str, name: str, whole: bool) -> np.ndarray:
    """Column as float64; the first bad value raises naming the column and the CSV line."""
    import pandas as pd

    raw = df[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    problem = "not a finite number"
    if whole and not bad.any():
        bad = (values < 0) | (values != np.floor(values))
        problem = "not a whole number of tokens >= 0"
    if bad.any():
        i = int(np.argmax(bad))
        shown = raw.iloc[i]
        shown = "empty" if pd.isna(shown) else repr(str(shown))
        raise WorkloadError(f"{name}: {problem} at line {int(df.index[i]) + 2} (value {shown})")
    return values


def load_burstgpt(source: Source, *, offset: int = 0, num_requests: int | None = None,
                  keep_failed: bool = False) -> TraceData:
    """Read ``num_requests`` rows from row ``offset`` (None: to the end) of a BurstGPT CSV."""
    if offset < 0:
        raise WorkloadError(f"offset: must be >= 0, got {offset}")
    if num_requests is not None and num_requests < 1:
        raise WorkloadError(f"num_requests: must be >= 1 or none, got {num_requests}")
    src = _readable(source)
    header = list(_read_csv(src, nrows=0).columns)
    cols = _find_columns(header)
    df = _read_csv(src, usecols=list(cols.values()), skip_blank_lines=False, low_memory=False)
    df = df[df.notna().any(axis=1)]  # blank lines
    if len(df) == 0:
        raise WorkloadError("trace: the file has a header but no data rows")
    t = _numeric(df, cols[TIMESTAMP], TIMESTAMP, whole=False)
    prompt = _numeric(df, cols[REQUEST], REQUEST, whole=True).astype(np.int64)
    output = _numeric(df, cols[RESPONSE], RESPONSE, whole=True).astype(np.int64)

    resorted = bool(np.any(np.diff(t) < 0))
    if resorted:
        order = np.argsort(t, kind="stable")
        t, prompt, output = t[order], prompt[order], output[order]

    total = len(t)
    if offset >= total:
        raise WorkloadError(f"offset: the window starts at row {offset} but the trace has only "
                            f"{total} data rows")
    end = total if num_requests is None else offset + num_requests
    if end > total:
        raise WorkloadError(f"num_requests: rows {offset}..{end - 1} run past the end of the trace "
                            f"({total} data rows); use at most {total - offset} or none for all")
    t, prompt, output = t[offset:end], prompt[offset:end], output[offset:end]
    failed_mask = output == 0
    failed = int(failed_mask.sum())
    if not keep_failed and failed:
        if failed == len(t):
            raise WorkloadError(f"trace: every row of the window {offset}..{end - 1} is a failed request "
                                "(Response tokens = 0); move the window or set keep_failed")
        keep = ~failed_mask
        t, prompt, output = t[keep], prompt[keep], output[keep]
    return TraceData(
        arrival=t - t[0], prompt=prompt, output=output, total_rows=total, offset=offset,
        window_rows=end - offset, failed=failed, failed_dropped=0 if keep_failed else failed,
        resorted=resorted, layout=f"{len(header)}-column",
    )

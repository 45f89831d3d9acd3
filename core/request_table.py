"""A run's per-request arrays as one table file: CSV, or Parquet (with pyarrow, the ``parquet`` extra).

Columns are :attr:`core.result.RunResult.requests` (seconds and tokens; NaN times for a rejected
request; ``index``, the original positions, for a stored sample). The kind follows the file name's
suffix (``.csv``, ``.parquet``/``.pq``). A file is written whole or not at all (:mod:`core.output`).
"""
from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import IO

import numpy as np

from .extras import MissingExtra, require
from .output import OutputError, write_bytes, write_text

SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def table_format(path: str | Path, flag: str) -> str:
    """``csv`` or ``parquet`` from ``path``'s suffix, else an OutputError naming ``flag``."""
    kind = SUFFIXES.get(Path(str(path)).suffix.lower())
    if kind is None:
        raise OutputError(f"{flag}: {Path(str(path)).name!r} must end in .csv, .parquet or .pq")
    return kind


def parquet_bytes(requests: dict[str, np.ndarray], flag: str = "--format parquet") -> bytes:
    """The table as Parquet bytes (zstd); an OutputError naming ``flag`` without pyarrow."""
    try:
        require("parquet", "writing Parquet")
    except MissingExtra as exc:
        raise OutputError(f"{flag}: {exc}") from None
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({k: np.ascontiguousarray(v) for k, v in requests.items()})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def csv_text(requests: dict[str, np.ndarray]) -> str:
    import pandas as pd

    return pd.DataFrame(requests).to_csv(index=False)


def write_requests(requests: dict[str, np.ndarray], out: str | Path | IO | None, kind: str,
                   flag: str = "--requests-out") -> int:
    """Write the table to ``out`` (a path; ``-``/None: standard output, CSV only); returns its rows."""
    if kind == "parquet":
        if out is None or out == "-":
            raise OutputError(f"{flag}: Parquet is binary: give a file, not standard output")
        write_bytes(out, parquet_bytes(requests, flag))
    elif kind == "csv":
        text = csv_text(requests)
        if out is None or out == "-":
            sys.stdout.write(text)
        elif isinstance(out, (str, Path)):
            write_text(out, text)
        else:
            out.write(text)
    else:
        raise ValueError(f"kind: csv or parquet, got {kind!r}")
    return len(next(iter(requests.values()))) if requests else 0

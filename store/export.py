"""Writing runs out: CSV (one row per run, config flattened) and JSON (full records).

CSV columns: the run's identity and status, every other metric of the catalog
(:data:`core.metric_catalog.EXPORT_COLUMNS`, in catalog order; empty where a run
lacks it), the first line of a failed run's error, then every config setting as
``config.<name>``. JSON: a list of
:meth:`StoredRun.to_dict` records (summary with per-bin metrics, config,
workload and latency identities). Non-finite numbers are written as empty
cells / ``null`` (strict JSON). A CSV text cell that a spreadsheet would run as a
formula (it starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return: a
trace's file name is user input) is written with a leading ``'``. A file is written whole or
not at all: an error or a full disk leaves no half of it.
"""
from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from batchlab.core.metric_catalog import EXPORT_COLUMNS
from batchlab.core.output import written

from .records import StoredRun

FORMATS = ("csv", "json")
BASE_COLUMNS = ("id", "hash", "status", "state", "created_at", "finished_at", "duration_s", "code_version",
                "label", "mode", "gpus", "k_bins", "num_requests", "stored_requests", "sampled")
METRIC_COLUMNS = tuple(k for k in EXPORT_COLUMNS if k not in BASE_COLUMNS)  # num_requests is the run's own


def strict(value):
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return strict(value.item())
    return value


@contextmanager
def _open_text(out: str | Path | IO[str] | None) -> Iterator[IO[str]]:
    """Standard output, an open text file, or a path written whole or not at all (core.output)."""
    if out is None or out == "-":
        yield sys.stdout
    elif isinstance(out, (str, Path)):
        with written(out) as fh:
            yield fh
    else:
        yield out


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """A CSV cell: empty for None/non-finite, text that could be a formula quoted with ``'``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_row(run: StoredRun) -> dict:
    d = run.to_dict()
    s = run.summary or {}
    row = {k: d.get(k) for k in BASE_COLUMNS}
    row.update({m: s.get(m) for m in METRIC_COLUMNS})
    row["error"] = run.error.split("\n", 1)[0] if run.error else None
    row.update({f"config.{k}": v for k, v in sorted(run.config_dict.items())})
    return row


def write_runs(runs: list[StoredRun], fmt: str, out: str | Path | IO[str] | None) -> int:
    if fmt not in FORMATS:
        raise ValueError(f"format: must be csv or json, got {fmt!r}")
    with _open_text(out) as fh:
        if fmt == "json":
            json.dump([strict(r.to_dict()) for r in runs], fh, indent=2)
            fh.write("\n")
        else:
            rows = [csv_row(r) for r in runs]
            columns: list[str] = list(BASE_COLUMNS) + list(METRIC_COLUMNS) + ["error"]
            for row in rows:
                columns += [c for c in row if c not in columns]
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: csv_cell(v) for k, v in strict(row).items()})
    return len(runs)


def requests_csv(run: StoredRun, out: str | Path | IO[str] | None) -> int:
    """Write a run's per-request table as CSV; returns the number of rows."""
    frame = run.requests_frame()
    with _open_text(out) as fh:
        frame.to_csv(fh, index=False)
    return len(frame)


def requests_parquet(run: StoredRun, out: str | Path) -> int:
    """Write a run's per-request table as Parquet (needs pyarrow: the ``parquet`` extra); returns its rows.
    A sampled run's table is its sample, with the original positions in ``index``."""
    from batchlab.core.request_table import write_requests

    return write_requests(run.requests(), out, "parquet", "--format parquet")


__all__ = ["BASE_COLUMNS", "FORMATS", "METRIC_COLUMNS", "csv_cell", "requests_csv", "requests_parquet", "strict",
           "write_runs"]

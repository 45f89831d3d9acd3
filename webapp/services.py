"""What the pages call: the store, workloads, grids and runs, with Streamlit caching.

Nothing here draws except :func:`shown_errors`, which turns the errors a user
can fix into ``st.error`` messages (details go to the log, never a traceback), each
cut to :data:`fmt.MAX_SHOWN` characters.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import streamlit as st

from batchlab.calibration import GridError, bundled_grids, parse_grid
from batchlab.calibration import resolve_grid as calibration_resolve_grid
from batchlab.core.config import ConfigError
from batchlab.core.sweep import SweepError
from batchlab.core.validity import SimulationError
from batchlab.store import StoreError, open_store
from batchlab.workloads import WorkloadError, WorkloadSpec, build_workload, load_trace_bytes

from . import fmt

log = logging.getLogger("batchlab.webapp")
USER_ERRORS = (ConfigError, WorkloadError, GridError, StoreError, SweepError, SimulationError)


# ------------------------------------------------------------------ errors --
@dataclass
class ErrorBox:
    """Set by :func:`shown_errors` when the block failed."""

    failed: bool = False
    message: str = ""


def user_message(exc: BaseException) -> str:
    """The message shown for an exception: its own text for user errors (cut to
    :data:`fmt.MAX_SHOWN` characters), a pointer to the log otherwise."""
    if isinstance(exc, USER_ERRORS):
        return fmt.clip(exc)
    return f"unexpected {type(exc).__name__}; the details are in the server log"


@contextmanager
def shown_errors(context: str) -> Iterator[ErrorBox]:
    """Run a block; a failure becomes ``st.error("<context>: <message>")`` and ``box.failed``.
    ``context`` is Markdown; the message is shown as literal text."""
    box = ErrorBox()
    try:
        yield box
    except USER_ERRORS as exc:
        log.info("%s: %s", context, exc)
        box.failed, box.message = True, user_message(exc)
        st.error(f"{context}: {fmt.md(box.message)}", icon=":material/error:")  # it may quote a file name
    except Exception as exc:  # noqa: BLE001 - the page must never show a traceback
        log.exception("%s", context)
        box.failed, box.message = True, user_message(exc)
        st.error(f"{context}: {fmt.md(box.message)}", icon=":material/error:")


# ------------------------------------------------------------------- store --
def _store_key() -> tuple:
    return (os.environ.get("BATCHLAB_DB_URL"), os.environ.get("BATCHLAB_HOME"))


@st.cache_resource(show_spinner=False, max_entries=8)
def _open(key: tuple):
    return open_store()


def get_store():
    """The store selected by BATCHLAB_DB_URL / BATCHLAB_HOME (opened once per process and location)."""
    return _open(_store_key())


# ------------------------------------------------------------------- grids --
def grid_names() -> dict[str, str]:
    """Grid name -> where it lives ("bundled" or "stored"); bundled names are reserved."""
    names: dict[str, str] = {}
    try:
        names = {row.name: "stored" for row in get_store().list_grids()}
    except StoreError as exc:
        log.warning("cannot list stored grids: %s", exc)
    return names | {name: "bundled" for name in bundled_grids()}


def latency_options() -> list[str]:
    return ["parametric", "roofline"] + [f"grid:{n}" for n in sorted(grid_names())]


def resolve_grid(latency: str):
    """The Grid a ``grid:NAME`` latency setting names, a bundled or stored grid looked up by name
    (:func:`calibration.resolve_grid` without files: the web never reads a path); None if parametric."""
    return calibration_resolve_grid(latency, stored=lambda name: get_store().get_grid(name), files=False)


def parse_upload(data: bytes, name: str):
    """Validate an uploaded grid CSV (GridError names the line and column)."""
    return parse_grid(data, name=name or None)


def save_grid(grid) -> tuple[Any, bool]:
    row, created = get_store().save_grid(grid)
    return row, created


# ---------------------------------------------------------------- workloads --
@dataclass
class Upload:
    """An uploaded trace: file name and bytes."""

    name: str
    data: bytes = field(repr=False)


def make_workload(spec: WorkloadSpec, upload: Upload | None = None):
    """The workload ``spec`` describes, or the uploaded trace read with ``spec``'s window settings."""
    if upload is not None:
        return load_trace_bytes(upload.data, upload.name, spec=spec)
    return build_workload(spec)


# -------------------------------------------------------------------- runs --
@dataclass
class Outcome:
    """One finished (or stored) run: its hash, whether the store served it, seconds it took here (and,
    apart, seconds it spent compiling the continuous engine first)."""

    hash: str
    mode: str
    cached: bool
    seconds: float
    created_at: Any = None
    compile_s: float = 0.0


@st.cache_data(show_spinner=False, max_entries=64)
def _run_view(key: tuple, ref: str) -> dict | None:
    run = get_store().get_run(ref)
    if run is None:
        return None
    if run.status != "done" or run.summary is None:  # failed, running or stale: what recomputing needs
        return {"hash": run.hash, "status": run.state, "error": run.error, "config": run.config_dict,
                "workload": run.workload, "mode": run.mode}
    return {
        "id": run.id, "hash": run.hash, "status": run.state, "error": run.error,
        "created_at": run.created_at, "duration_s": run.duration_s, "label": run.label,
        "config": run.config_dict, "workload": run.workload, "latency": run.latency,
        "summary": run.summary, "series": run.series(), "sampled": getattr(run, "sampled", False),
    }


def run_view(ref: str) -> dict | None:
    """A stored run as plain data for the views, or None if the store lacks it.

    Only finished runs stay cached: a missing or unfinished run is looked up again next time.
    """
    key = _store_key()
    view = _run_view(key, ref)
    if view is None or "summary" not in view:
        _run_view.clear(key, ref)
    return view


@st.cache_data(show_spinner=False, max_entries=4096)
def _run_settings(key: tuple, ref: str) -> dict | None:
    run = get_store().get_run(ref)
    if run is None:
        return None
    return {"config": run.config_dict, "workload": run.workload}


def run_settings(ref: str) -> dict | None:
    """A stored run's config and workload identity (fixed by its hash, so cached for good)."""
    key = _store_key()
    out = _run_settings(key, ref)
    if out is None:
        _run_settings.clear(key, ref)
    return out


def forget_runs() -> None:
    """Drop cached run views (after a delete)."""
    _run_view.clear()


def list_runs(**filters) -> pd.DataFrame:
    """Light rows of stored runs (see ``Store.list_runs``) as a DataFrame."""
    rows = get_store().list_runs(**filters)
    return pd.DataFrame([r.to_dict() for r in rows])


def count_runs(**filters) -> int:
    return get_store().count_runs(**filters)


def delete_runs(refs: list[str]) -> int:
    store = get_store()
    n = sum(1 for r in refs if store.delete_run(r))
    forget_runs()
    return n


RUN_FILES = {"csv": ("Requests (CSV)", "text/csv", "csv"),
             "parquet": ("Requests (Parquet)", "application/vnd.apache.parquet", "parquet"),
             "vllm-bench": ("vllm bench serve JSON", "application/json", "json")}


def run_file(ref: str, kind: str) -> bytes:
    """A stored run's per-request table (``csv``, ``parquet``) or its result in the shape ``vllm bench
    serve --save-result`` writes (``vllm-bench``; core.bench_serve), from the arrays the store kept."""
    import json

    from batchlab.core.bench_serve import bench_serve_result, run_metadata
    from batchlab.core.request_table import csv_text, parquet_bytes

    if kind not in RUN_FILES:
        raise ValueError(f"kind: one of {', '.join(RUN_FILES)}, got {kind!r}")
    run = get_store().get_run(ref)
    if run is None or run.summary is None:
        raise StoreError(f"run {ref!r} is not a finished run in the store")
    requests = run.requests()
    if kind == "csv":
        return csv_text(requests).encode()
    if kind == "parquet":
        return parquet_bytes(requests, "Parquet download")
    config = run.config_dict or {}
    meta = run_metadata(run.workload or {}, int(run.summary["num_requests"]), config.get("model"),
                        config.get("max_concurrency"), requests["arrival"])
    meta.update(batchlab_mode=run.mode, batchlab_run_id=run.id)
    return json.dumps(bench_serve_result(requests, meta)).encode()


def export_runs(ids: list, fmt: str) -> bytes:
    """The selected runs as CSV or JSON bytes (``Store.export_runs``)."""
    import io

    buf = io.StringIO()
    get_store().export_runs(ids, fmt, buf)
    return buf.getvalue().encode("utf-8")

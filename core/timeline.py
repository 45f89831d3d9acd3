"""A run's engine log as a Chrome trace-event file (``{"traceEvents": [...]}``), for ui.perfetto.dev
or chrome://tracing (docs/cli.md#timelines).

One process (``pid``) per replica (a GPU, or a tensor-parallel group of GPUs), named by a ``process_name``
metadata event. Each row of the log is one complete (``"X"``) event on that process's one thread:
``batch`` for a batch-level engine's batch, ``span of N iterations, batch B`` for the continuous
engine's span of iterations (its running batch fixed). Times are microseconds since the first
arrival: ``ts`` the row's start, ``dur`` its duration; ``args`` hold the row's other columns. Counter
(``"C"``) events per replica track the running batch size and the KV tokens in use, set at each
row's start and back to 0 at its end where the replica then idles.
"""
from __future__ import annotations

import numpy as np

US = 1e6
SKIP_ARGS = ("start", "duration", "gpu")


def _name(row: dict, continuous: bool) -> str:
    if not continuous:
        return "batch"
    n = int(row["iterations"])
    return f"span of {n} iteration{'s' if n != 1 else ''}, batch {int(row['size'])}"


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def trace_events(log: dict, replicas: int, t0: float = 0.0, tp: int = 1) -> dict:
    """The trace-event object of an engine ``log`` (core.metrics' columns) over ``replicas`` replicas
    of ``tp`` GPUs each; times relative to ``t0`` (s)."""
    continuous = "iterations" in log
    start = np.asarray(log["start"], dtype=float)
    dur = np.asarray(log["duration"], dtype=float)
    gpu = np.asarray(log["gpu"], dtype=np.int64)
    events: list[dict] = [{"name": "process_name", "ph": "M", "pid": r, "tid": 0,
                           "args": {"name": f"GPU {r}" if tp == 1 else f"replica {r} ({tp} GPUs)"}}
                          for r in range(replicas)]
    events += [{"name": "process_sort_index", "ph": "M", "pid": r, "tid": 0, "args": {"sort_index": r}}
               for r in range(replicas)]
    extra = [k for k in log if k not in SKIP_ARGS]
    columns = {k: np.asarray(log[k]).tolist() for k in extra}
    for r in range(replicas):
        rows = np.flatnonzero(gpu == r)
        rows = rows[np.argsort(start[rows], kind="stable")]
        for j, i in enumerate(rows.tolist()):
            row = {k: columns[k][i] for k in extra}
            ts, d = (start[i] - t0) * US, dur[i] * US
            events.append({"name": _name(row, continuous), "cat": "span" if continuous else "batch", "ph": "X",
                           "ts": ts, "dur": d, "pid": r, "tid": 0, "args": {k: _plain(v) for k, v in row.items()}})
            events.append({"name": "running batch", "ph": "C", "ts": ts, "pid": r, "args": {"size": row["size"]}})
            events.append({"name": "KV tokens", "ph": "C", "ts": ts, "pid": r, "args": {"kv_tokens": row["kv_tokens"]}})
            end = start[i] + dur[i]
            if j + 1 == len(rows) or start[rows[j + 1]] > end:   # the replica idles after this row
                events.append({"name": "running batch", "ph": "C", "ts": (end - t0) * US, "pid": r,
                               "args": {"size": 0}})
                events.append({"name": "KV tokens", "ph": "C", "ts": (end - t0) * US, "pid": r,
                               "args": {"kv_tokens": 0}})
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"source": "batchlab", "engine": "continuous" if continuous else "batch",
                          "time_origin": "first arrival", "replicas": replicas, "tp": tp}}

"""The benchmark behind ``batchlab bench-store``: how long storing and listing take.

* save: one 1,000,000-request run (simulated first, outside the timing) is stored
  with :meth:`Store.save_result` (series computation, encoding and the write
  transaction), then deleted again; repeated, the median is reported. Scenarios:
  ``default`` (the default config and workload at 1M requests: continuous batching, whose
  per-request times are stored as they are) and ``overload`` (multi_bin_dynamic, Poisson at
  1000 req/s, ~45k batches); ``light`` (multi_bin_dynamic, Poisson at 0.2 req/s: every
  request its own batch, 1M batches, the largest blob) on request.
  Reading it back (get_run + requests()) is measured alongside.
* list: 10,000 runs in the store (copies of one real run's row with distinct
  hashes); ``list_runs()`` returning all of them as RunRows, median of the repeats.

By default everything happens in a temporary SQLite store that is removed
afterwards; ``db`` benchmarks another store (PostgreSQL, say), which must be
empty and is emptied again at the end.
"""
from __future__ import annotations

import hashlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import delete, insert, select

SCENARIOS = {"default": ({}, {}),                                       # (config, workload) settings
             "overload": ({"mode": "multi_bin_dynamic"}, {"arrival": "poisson", "rate": 1000.0}),
             "light": ({"mode": "multi_bin_dynamic"}, {"arrival": "poisson", "rate": 0.2})}


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _fill_runs(store, template_id: int, n: int) -> None:
    """Insert ``n`` copies of a run's row (distinct hashes and times), in one transaction."""
    from .db import write_connection
    from .models import Run

    with store.engine.connect() as conn:
        row = dict(conn.execute(select(*Run.c).where(Run.c.id == template_id)).mappings().one())
    row.pop("id")
    base = row["created_at"]
    rows = []
    for i in range(n):
        r = dict(row)
        r["hash"] = hashlib.sha256(f"bench-{i}".encode()).hexdigest()
        r["created_at"] = r["started_at"] = base - timedelta(seconds=n - i)
        rows.append(r)
    with write_connection(store.engine) as conn:
        for i in range(0, n, 2000):
            conn.execute(insert(Run), rows[i:i + 2000])


def _empty(store) -> None:
    from .db import write_connection
    from .models import GridRecord, Run, Sweep

    with write_connection(store.engine) as conn:
        for model in (Sweep, Run, GridRecord):
            conn.execute(delete(model))


def run_store_bench(num_requests: int = 1_000_000, num_runs: int = 10_000, repeats: int = 5,
                    scenarios: tuple[str, ...] = ("default", "overload"), db: str | None = None,
                    echo: Callable[[str], None] | None = print) -> dict:
    """Median save/load seconds per scenario and median list seconds; see the module doc."""
    saved_cache = os.environ.get("BATCHLAB_CACHE")
    os.environ["BATCHLAB_CACHE"] = "off"  # keep the 1M-request workloads out of the user's cache
    try:
        return _run(num_requests, num_runs, repeats, scenarios, db, echo)
    finally:
        if saved_cache is None:
            os.environ.pop("BATCHLAB_CACHE", None)
        else:
            os.environ["BATCHLAB_CACHE"] = saved_cache


def _run(num_requests, num_runs, repeats, scenarios, db, echo) -> dict:
    from batchlab.core import SimConfig, simulate
    from batchlab.workloads import WorkloadSpec, build_workload

    from .errors import StoreError
    from .repo import open_store

    for s in scenarios:
        if s not in SCENARIOS:
            raise ValueError(f"scenario: unknown {s!r} (choose from {', '.join(SCENARIOS)})")
    tmp = tempfile.TemporaryDirectory(prefix="batchlab-bench-") if db is None else None
    store = open_store(db or f"sqlite:///{tmp.name}/bench.db")
    if db is not None and store.count_runs():
        store.close()
        raise StoreError(f"{store.url} is not empty: benchmark an empty store (it is emptied afterwards)")
    out: dict = {"store": store.url, "requests": num_requests, "runs_listed": num_runs, "repeats": repeats,
                 "save": {}}
    say = echo or (lambda _msg: None)
    try:
        for name in scenarios:
            settings, spec = SCENARIOS[name]
            workload = build_workload(WorkloadSpec(num_requests=num_requests, workload_seed=1, **spec))
            result = simulate(SimConfig(**settings), workload)
            rows = len(result.batches["start"])
            saves, loads, nbytes = [], [], 0
            for _ in range(repeats):
                t0 = time.perf_counter()
                run = store.save_result(result, workload)
                t1 = time.perf_counter()
                again = store.get_run(run.id)
                again.requests()
                t2 = time.perf_counter()
                saves.append(t1 - t0)
                loads.append(t2 - t1)
                with store.engine.connect() as conn:
                    from .models import RunData

                    nbytes = conn.execute(select(RunData.c.nbytes).where(RunData.c.run_id == run.id)).scalar()
                store.delete_run(run.id)
            out["save"][name] = {"save_s": _median(saves), "load_s": _median(loads), "all_save_s": saves,
                                 "log_rows": rows, "blob_mb": nbytes / 1e6}
            say(f"save  {name:<9} {num_requests:>10,} requests, {rows:>9,} log rows: "
                f"store {_median(saves):.3f} s, read back {_median(loads):.3f} s, blob {nbytes / 1e6:.1f} MB "
                f"(median of {repeats})")
        small = simulate(SimConfig(), build_workload(WorkloadSpec(num_requests=300, workload_seed=2)))
        template = store.save_result(small)
        _fill_runs(store, template.id, num_runs - 1)
        lists, pages = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            rows = store.list_runs()
            t1 = time.perf_counter()
            store.list_runs(limit=50)
            t2 = time.perf_counter()
            lists.append(t1 - t0)
            pages.append(t2 - t1)
        out["list"] = {"runs": len(rows), "list_all_s": _median(lists), "list_page_s": _median(pages),
                       "all_list_s": lists}
        say(f"list  {len(rows):,} runs: all rows {_median(lists):.3f} s, first page of 50 "
            f"{_median(pages):.4f} s (median of {repeats})")
    finally:
        try:
            if db is not None:
                _empty(store)
        finally:
            store.close()
            if tmp is not None:
                tmp.cleanup()
    return out

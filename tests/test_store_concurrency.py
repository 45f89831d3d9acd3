"""Many writers at once, and writers killed mid-run: every run stored once, the store stays usable."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from batchlab.core import SimConfig, simulate
from batchlab.store import open_store
from batchlab.store.models import Run, RunBin, RunData, RunSeries, SweepRun
from batchlab.workloads import WorkloadSpec, build_workload

ROOT = Path(__file__).resolve().parents[1]


def configs_for(worker: int) -> list[SimConfig]:
    """Four runs every worker asks for, plus one of its own."""
    shared = [SimConfig(mode=m, gpus=g) for m in ("static_fifo", "multi_bin_dynamic") for g in (2, 3)]
    return shared + [SimConfig(mode="dynamic_no_bins", gpus=10 + worker)]


def child_counts(store) -> dict:
    with store.engine.connect() as conn:
        return {m.name: conn.execute(select(func.count()).select_from(m)).scalar()
                for m in (RunBin, RunSeries, RunData)}


def assert_one_done_row_per_hash(store, expected: int):
    with store.engine.connect() as conn:
        rows = conn.execute(select(Run.c.hash, Run.c.status)).all()
    assert len(rows) == expected
    assert Counter(h for h, _ in rows).most_common(1)[0][1] == 1
    assert {s for _, s in rows} == {"done"}
    assert child_counts(store)["run_data"] == expected


def test_eight_threads_store_every_run_once(store_url):
    w = build_workload(WorkloadSpec(num_requests=150, workload_seed=8))
    calls: Counter = Counter()
    lock = threading.Lock()

    def counting(config, workload, grid=None, progress=None):
        with lock:
            calls[config] += 1
        time.sleep(0.05)  # keep claims open long enough for the others to collide
        return simulate(config, workload, grid=grid, progress=progress)

    store = open_store(store_url)
    barrier = threading.Barrier(8)
    got: dict[int, list] = {}
    errors = []

    def worker(i: int):
        try:
            barrier.wait(30)
            got[i] = [store.get_or_run(cfg, w, simulate_fn=counting) for cfg in configs_for(i)]
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    distinct = {cfg for i in range(8) for cfg in configs_for(i)}
    assert len(distinct) == 12
    assert set(calls) == distinct and max(calls.values()) == 1  # each run simulated exactly once
    for i, pairs in got.items():
        for cfg, (run, _hit) in zip(configs_for(i), pairs):
            assert run.status == "done" and run.config == cfg
    hits = sum(hit for pairs in got.values() for _, hit in pairs)
    assert hits == 8 * 5 - 12
    assert_one_done_row_per_hash(store, 12)
    store.close()


WORKER = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, {root!r})
    from batchlab.store import open_store
    from batchlab.core import SimConfig, simulate
    from batchlab.workloads import WorkloadSpec, build_workload
    url, go, worker = sys.argv[1], sys.argv[2], int(sys.argv[3])
    shared = [SimConfig(mode=m, gpus=g) for m in ("static_fifo", "multi_bin_dynamic") for g in (2, 3)]
    configs = shared + [SimConfig(mode="dynamic_no_bins", gpus=10 + worker)]
    w = build_workload(WorkloadSpec(num_requests=150, workload_seed=8))
    store = open_store(url)
    calls = []
    def counting(config, workload, grid=None, progress=None):
        calls.append(config.mode + str(config.gpus))
        time.sleep(0.05)
        return simulate(config, workload)
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.005)
    out = [store.get_or_run(c, w, simulate_fn=counting) for c in configs]
    print(json.dumps({{"calls": calls, "runs": [[r.id, r.hash, r.status, hit] for r, hit in out]}}), flush=True)
""")


def test_two_processes_store_every_run_once(store_url, tmp_path):
    open_store(store_url).close()  # created up front, so both workers open an existing store
    go = tmp_path / "go"
    script = WORKER.format(root=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", script, store_url, str(go), str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=os.environ.copy()) for i in range(2)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    calls = Counter(c for r in results for c in r["calls"])
    assert len(calls) == 6 and max(calls.values()) == 1  # 4 shared + 2 own runs, each simulated once
    for r in results:
        assert all(status == "done" for _, _, status, _ in r["runs"])
    shared_ids = [[run_id for run_id, *_ in r["runs"][:4]] for r in results]
    assert shared_ids[0] == shared_ids[1]  # both processes got the same stored runs
    with open_store(store_url) as store:
        assert_one_done_row_per_hash(store, 6)


KILLED = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {root!r})
    from sqlalchemy import event, text
    from batchlab.store import open_store
    from batchlab.core import SimConfig
    from batchlab.workloads import WorkloadSpec, build_workload
    url, marker, phase = sys.argv[1], sys.argv[2], sys.argv[3]
    store = open_store(url)
    w = build_workload(WorkloadSpec(num_requests=150, workload_seed=9))
    def hang():
        open(marker, "w").close()
        time.sleep(600)
    if phase == "simulate":
        store.get_or_run(SimConfig(), w, simulate_fn=lambda *a, **k: hang())
    else:
        # freeze inside the transaction that writes the done run, after all its rows are written
        @event.listens_for(store.engine, "commit")
        def before_commit(conn):
            if conn.exec_driver_sql("SELECT count(*) FROM run_data").scalar():
                hang()
        store.get_or_run(SimConfig(), w)
""")


@pytest.mark.parametrize("phase", ["simulate", "commit"])
def test_a_writer_killed_mid_run_leaves_the_store_consistent(store_url, tmp_path, phase):
    open_store(store_url).close()
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", KILLED.format(root=str(ROOT)), store_url, str(marker), phase],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    deadline = time.monotonic() + 180
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the writer never reached the point where it is killed"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)

    store = open_store(store_url)
    [row] = store.list_runs()
    assert row.status == "running" and row.stale and row.state == "stale"  # never a half-written done run
    assert store.count_runs(status="done") == 0 and store.count_runs(status="stale") == 1
    assert child_counts(store) == {"run_bins": 0, "run_series": 0, "run_data": 0}
    assert store.get_run(row.id).summary is None
    if store.backend == "sqlite":
        with store.engine.connect() as conn:
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    calls = []
    w = build_workload(WorkloadSpec(num_requests=150, workload_seed=9))
    run, hit = store.get_or_run(SimConfig(), w, simulate_fn=lambda *a, **k: calls.append(1) or simulate(*a, **k))
    assert not hit and calls == [1] and run.id == row.id and run.status == "done"
    assert run.summary == simulate(SimConfig(), w).summary
    assert_one_done_row_per_hash(store, 1)
    again, hit = store.get_or_run(SimConfig(), w, simulate_fn=lambda *a, **k: pytest.fail("simulated"))
    assert hit and again.id == run.id
    store.close()


# ------------------------------------------------------ deleted while being read --
def test_a_run_deleted_while_a_reader_holds_it_is_reported_never_empty(store_url, tmp_path):
    from batchlab.store import RunDeletedError, StoreError
    from batchlab.store.export import requests_csv

    w = build_workload(WorkloadSpec(num_requests=120, workload_seed=6))
    reader, writer = open_store(store_url), open_store(store_url)
    run, _ = reader.get_or_run(SimConfig(), w)
    loaded = reader.get_run(run.id)
    series = loaded.series()
    arrays = loaded.requests()
    held = reader.get_run(run.id)  # its arrays and series are read on first use
    assert writer.delete_run(run.id)
    gone = rf"^run {run.id} \({run.hash[:12]}\) was deleted from the store while it was being read"
    for load in (held.requests, held.batches, held.bin_edges, held.requests_frame, held.series):
        with pytest.raises(RunDeletedError, match=gone):
            load()
    out = tmp_path / "requests.csv"
    with pytest.raises(RunDeletedError, match=gone):
        requests_csv(held, out)
    assert not out.exists()  # nothing half-written either
    # what was read before the delete stays whole
    assert set(loaded.series()) == set(series) and len(loaded.requests()["e2e"]) == len(arrays["e2e"]) == 120
    with pytest.raises(StoreError, match=f"no run {run.id}"):
        reader.export_runs([run.id], "json", tmp_path / "runs.json")
    # a run that never finished has no arrays, and says so by being empty rather than deleted
    failed_cfg = SimConfig(gpus=2)
    with pytest.raises(ValueError):
        reader.get_or_run(failed_cfg, w, simulate_fn=lambda *a, **k: (_ for _ in ()).throw(ValueError("boom")))
    [failed] = reader.list_runs(status="failed")
    assert reader.get_run(failed.id).requests() == {} and reader.get_run(failed.id).series() == {}
    reader.close()
    writer.close()


def test_a_run_deleted_between_the_reads_of_get_run_is_never_half_read(store_url):
    from sqlalchemy import event

    from batchlab.store import RunDeletedError

    w = build_workload(WorkloadSpec(num_requests=120, workload_seed=7))
    reader, writer = open_store(store_url), open_store(store_url)
    run, _ = reader.get_or_run(SimConfig(), w)
    deleted = []

    @event.listens_for(reader.engine, "before_cursor_execute")
    def delete_meanwhile(conn, cursor, statement, *args):
        if not deleted and "FROM run_bins" in statement:  # get_run has read the run's row, not yet its bins
            deleted.append(writer.delete_run(run.id))

    got = reader.get_run(run.id)
    assert deleted == [True]
    # SQLite reads one snapshot (the whole run); PostgreSQL sees the delete between statements (no run).
    # Either way never a done run without its bins and data.
    assert got is None or (got.status == "done" and len(got.bins) == SimConfig().bins and got.stored_requests == 120)
    if got is not None:
        with pytest.raises(RunDeletedError):
            got.requests()
    assert reader.get_run(run.id) is None
    reader.close()
    writer.close()


@pytest.mark.parametrize("what", ["requests", "summaries"])
def test_cli_export_of_a_run_deleted_meanwhile_is_an_error(store_url, tmp_path, monkeypatch, what):
    from click.testing import CliRunner

    import batchlab.cli as batchlab
    from batchlab.store.repo import Store

    w = build_workload(WorkloadSpec(num_requests=80, workload_seed=3))
    with open_store(store_url) as store:
        run, _ = store.get_or_run(SimConfig(), w)
    original = Store.get_run

    def get_then_delete(self, key):  # another process deletes the run right after this one read it
        got = original(self, key)
        with open_store(store_url) as other:
            other.delete_run(run.id)
        return got

    def delete_then_get(self, key):  # ... or right before
        with open_store(store_url) as other:
            other.delete_run(run.id)
        return original(self, key)

    out = tmp_path / "export.csv"
    if what == "requests":
        monkeypatch.setattr(Store, "get_run", get_then_delete)
        args = ["runs", "export", run.id, "--requests", "--out", out, "--db", store_url]
    else:
        monkeypatch.setattr(Store, "get_run", delete_then_get)
        args = ["runs", "export", run.id, "--format", "json", "--out", out, "--db", store_url]
    result = CliRunner().invoke(batchlab.cli, [str(a) for a in args])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output.startswith(f"Error: run {run.id} ") and "was deleted from the store" in result.output
    assert not out.exists()


# ------------------------------------------------------------ sweeps at once --
def run_threads(count: int, target) -> list:
    """``target(i)`` in ``count`` threads released together; their results (exceptions re-raised)."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def body(i: int):
        try:
            barrier.wait(30)
            results[i] = target(i)
        except BaseException as exc:  # pragma: no cover - re-raised below
            results[i] = exc

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def test_linking_runs_from_many_writers_at_once_links_each_once_at_distinct_positions(store_url):
    from batchlab.store import StoreError

    w = build_workload(WorkloadSpec(num_requests=40, workload_seed=2))
    with open_store(store_url) as store:
        ids = [store.get_or_run(SimConfig(gpus=g), w)[0].id for g in range(1, 11)]
        sweep = store.create_sweep("linked at once")
    writers = [open_store(store_url) for _ in range(6)]  # one engine each, as separate processes have

    def link_all(i: int):
        for run_id in ids[i % 2::2] + ids:  # every writer links every run, half of them twice
            writers[i].add_sweep_run(sweep, run_id)

    try:
        run_threads(6, link_all)
    finally:
        for s in writers:
            s.close()
    with open_store(store_url) as store, store.engine.connect() as conn:
        links = conn.execute(select(SweepRun.c.run_id, SweepRun.c.position).where(SweepRun.c.sweep_id == sweep)
                             .order_by(SweepRun.c.position)).all()
        assert sorted(r for r, _ in links) == sorted(ids)  # each run once
        assert [p for _, p in links] == list(range(10))  # positions 0..9, none shared
        assert [r.id for r in store.sweep_runs(sweep)] == [r for r, _ in links]
        with pytest.raises(StoreError, match=rf"^cannot add run 424242 to sweep {sweep}: no such run$"):
            store.add_sweep_run(sweep, 424242)
        with pytest.raises(StoreError, match=rf"^no sweep {sweep + 1} in the store$"):
            store.add_sweep_run(sweep + 1, ids[0])


def test_processes_opening_one_plan_at_once_get_one_sweep(store_url):
    from batchlab.store.models import Sweep

    openers = [open_store(store_url) for _ in range(6)]
    try:
        got = run_threads(6, lambda i: openers[i].open_sweep("plan-a", f"opener {i}", {"by": i}))
        assert len(set(got)) == 1
        # the race made certain: this opener looks before the other creates the sweep, then inserts
        first, other = openers[0], openers[1]
        looked = []
        real = first._sweep_id

        def looked_too_early(key):
            if not looked:
                looked.append(other.open_sweep(key, "the other", {}))
                return None
            return real(key)

        first._sweep_id = looked_too_early
        assert first.open_sweep("plan-b", "this one", {}) == looked[0]
    finally:
        for s in openers:
            s.close()
    with open_store(store_url) as store, store.engine.connect() as conn:
        rows = conn.execute(select(Sweep.c.key, Sweep.c.name)).all()
        assert sorted(k for k, _ in rows) == ["plan-a", "plan-b"]
        assert ("plan-b", "the other") in rows
        assert store.find_sweep("plan-a").id == got[0] and store.find_sweep("plan-c") is None

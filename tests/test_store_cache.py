"""Cache semantics of Store.get_or_run: hits never simulate, failures and stale claims are retried."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from batchlab.core import SimConfig, simulate
from batchlab.store import StoreError, open_store
from batchlab.store.db import write_connection
from batchlab.store.models import Run, utcnow
from batchlab.workloads import WorkloadSpec, build_workload


class CountingSimulate:
    """A simulate_fn that counts engine calls (and can block or fail on demand)."""

    def __init__(self, fail: Exception | None = None, gate: threading.Event | None = None):
        self.calls = 0
        self.fail = fail
        self.gate = gate
        self.started = threading.Event()
        self.grids = []

    def __call__(self, config, workload, grid=None, progress=None):
        self.calls += 1
        self.grids.append(grid)
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(30)
        if self.fail is not None:
            raise self.fail
        return simulate(config, workload, grid=grid, progress=progress)


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


@pytest.fixture
def w():
    return build_workload(WorkloadSpec(num_requests=200, workload_seed=4))


def test_cache_hit_returns_identical_metrics_without_simulating(store, w):
    engine = CountingSimulate()
    first, hit = store.get_or_run(SimConfig(), w, simulate_fn=engine)
    assert (hit, engine.calls) == (False, 1)
    for _ in range(3):
        again, hit = store.get_or_run(SimConfig(), w, simulate_fn=engine)
        assert hit and again.id == first.id
        assert again.summary == first.summary
    assert engine.calls == 1
    # an equal config built separately, and a fresh Store on the same database, hit too
    with open_store(store.engine.url.render_as_string(hide_password=False)) as other:
        again, hit = other.get_or_run(SimConfig.from_dict(SimConfig().to_dict()), w, simulate_fn=engine)
    assert hit and engine.calls == 1 and again.summary == simulate(SimConfig(), w).summary


def test_a_different_config_workload_or_irrelevant_setting(store, w):
    engine = CountingSimulate()
    base, _ = store.get_or_run(SimConfig(mode="static_fifo"), w, simulate_fn=engine)
    # k_bins does not affect static_fifo: same hash, served from the store
    same, hit = store.get_or_run(SimConfig(mode="static_fifo", k_bins=7), w, simulate_fn=engine)
    assert hit and same.id == base.id and engine.calls == 1
    other, hit = store.get_or_run(SimConfig(mode="static_fifo", gpus=3), w, simulate_fn=engine)
    assert not hit and other.id != base.id
    w2 = build_workload(WorkloadSpec(num_requests=200, workload_seed=5))
    third, hit = store.get_or_run(SimConfig(mode="static_fifo"), w2, simulate_fn=engine)
    assert not hit and engine.calls == 3 and store.count_runs() == 3


def test_a_failure_is_recorded_and_retried(store, w):
    boom = CountingSimulate(fail=RuntimeError("engine exploded"))
    with pytest.raises(RuntimeError, match="engine exploded"):
        store.get_or_run(SimConfig(), w, simulate_fn=boom)
    [row] = store.list_runs()
    assert row.status == "failed" and row.state == "failed" and row.error == "RuntimeError: engine exploded"
    failed = store.get_run(row.id)
    assert failed.summary is None and "Traceback" in failed.error and failed.requests() == {}
    assert store.list_runs(status="failed")[0].id == row.id
    ok = CountingSimulate()
    run, hit = store.get_or_run(SimConfig(), w, simulate_fn=ok)
    assert not hit and ok.calls == 1 and run.id == row.id and run.status == "done" and run.error is None
    assert store.count_runs() == 1 and store.count_runs(status="failed") == 0


def test_a_failure_while_storing_releases_the_claim(store, w, monkeypatch):
    def broken_store(*args, **kwargs):
        raise StoreError("disk full")

    monkeypatch.setattr(store, "_store_done", broken_store)
    with pytest.raises(StoreError, match="disk full"):
        store.get_or_run(SimConfig(), w)
    [row] = store.list_runs()
    assert row.status == "failed" and "disk full" in row.error  # not a live 'running' claim others wait for
    monkeypatch.undo()
    run, hit = store.get_or_run(SimConfig(), w)
    assert not hit and run.id == row.id and run.status == "done"


def test_a_second_caller_waits_for_the_first_instead_of_simulating(store, w):
    gate = threading.Event()
    engine = CountingSimulate(gate=gate)
    results = {}
    first = threading.Thread(target=lambda: results.setdefault("a", store.get_or_run(SimConfig(), w,
                                                                                     simulate_fn=engine)))
    first.start()
    assert engine.started.wait(30)
    [row] = store.list_runs()
    assert row.status == "running" and not row.stale and store.count_runs(status="running") == 1
    with pytest.raises(StoreError, match="being computed"):
        store.get_or_run(SimConfig(), w, simulate_fn=engine, wait=False)
    with pytest.raises(StoreError, match="being computed right now"):
        store.delete_run(row.id)
    second = threading.Thread(target=lambda: results.setdefault("b", store.get_or_run(SimConfig(), w,
                                                                                      simulate_fn=engine)))
    second.start()
    gate.set()
    first.join(30)
    second.join(30)
    (a, a_hit), (b, b_hit) = results["a"], results["b"]
    assert (a_hit, b_hit) == (False, True) and a.id == b.id and engine.calls == 1


def _age_claim(store, run_id, **values):
    with write_connection(store.engine) as conn:
        conn.execute(update(Run).where(Run.c.id == run_id).values(**values))


def test_claims_go_stale_by_dead_process_or_timeout_and_are_taken_over(store, w):
    gate = threading.Event()
    engine = CountingSimulate(gate=gate)
    engine.fail = RuntimeError("abandoned")
    errors = []

    def abandoned():
        try:
            store.get_or_run(SimConfig(), w, simulate_fn=engine)
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=abandoned)
    t.start()
    assert engine.started.wait(30)
    [row] = store.list_runs()
    # a claim by another host is trusted until the timeout ...
    _age_claim(store, row.id, host="some-other-host", pid=1)
    assert not store.list_runs()[0].stale
    _age_claim(store, row.id, started_at=utcnow() - timedelta(seconds=store.stale_after_s + 5))
    assert store.list_runs()[0].stale and store.list_runs(status="stale")[0].id == row.id
    assert store.list_runs(status="running") == [] and store.count_runs(status="stale") == 1
    # ... and one on this host is stale as soon as its process is gone (pid 2**22+1 does not exist)
    _age_claim(store, row.id, host=__import__("socket").gethostname(), pid=2**22 + 1, started_at=utcnow())
    assert store.get_run(row.id).state == "stale"
    ok = CountingSimulate()
    run, hit = store.get_or_run(SimConfig(), w, simulate_fn=ok)  # takes the stale claim over
    assert not hit and ok.calls == 1 and run.id == row.id and run.status == "done"
    gate.set()
    t.join(30)
    assert [str(e) for e in errors] == ["abandoned"]
    # the abandoned attempt finished later with an error: it must not clobber the done run
    assert store.get_run(row.id).status == "done" and store.count_runs() == 1


def test_grid_latency_is_resolved_from_the_stored_grids(store, w):
    schema = pytest.importorskip("batchlab.calibration.schema")
    pytest.importorskip("batchlab.core.latency_grid")
    from test_store_roundtrip import GRID_CSV

    from batchlab.core.config import ConfigError

    grid = schema.parse_grid(GRID_CSV, name="tiny")
    store.save_grid(grid)
    engine = CountingSimulate()
    run, hit = store.get_or_run(SimConfig(latency="grid:tiny"), w, simulate_fn=engine)
    assert not hit and engine.grids[0].sha256 == grid.sha256
    assert run.latency["kind"] == "grid" and run.latency["sha256"] == grid.sha256
    again, hit = store.get_or_run(SimConfig(latency="grid:tiny"), w, simulate_fn=engine)
    assert hit and again.id == run.id and engine.calls == 1  # the grid read back has the same identity
    with pytest.raises(ConfigError, match="no grid named 'not-stored'"):
        store.get_or_run(SimConfig(latency="grid:not-stored"), w)  # neither stored nor bundled
    assert store.count_runs() == 1  # refused before anything was claimed

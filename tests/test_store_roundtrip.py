"""Results store: what goes in comes back out, on SQLite and on PostgreSQL."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from batchlab.core import SimConfig, simulate
from batchlab.store import StoreError, open_store
from batchlab.store.codec import CodecError, pack, pack_frame, unpack, unpack_frame
from batchlab.store.models import RunBin, RunData, RunSeries, SweepRun
from batchlab.workloads import WorkloadSpec, build_workload


def workload(n=200, seed=1):
    return build_workload(WorkloadSpec(num_requests=n, workload_seed=seed))


def assert_same_arrays(got: dict, want: dict):
    assert set(want) <= set(got)
    for k, v in want.items():
        assert got[k].dtype == v.dtype, k
        assert np.array_equal(got[k], v, equal_nan=v.dtype.kind == "f"), k   # NaN: no TBT, or rejected


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


# ------------------------------------------------------------------ codec --
def test_pack_restores_dtypes_and_shrinks_integers():
    arrays = {"f": np.array([0.1, np.nan, np.inf, -2.5]), "small": np.array([1, 2, 3, 127], dtype=np.int64),
              "big": np.array([0, 2**40], dtype=np.int64), "neg": np.array([-40000, 5], dtype=np.int64),
              "flag": np.array([True, False]), "empty": np.array([], dtype=np.int64)}
    blob = pack(arrays, {"k": 1})
    got, meta = unpack(blob)
    assert meta == {"k": 1}
    for k, v in arrays.items():
        assert got[k].dtype == v.dtype and np.array_equal(got[k], v, equal_nan=v.dtype.kind == "f"), k
    ids = np.arange(20_000, dtype=np.int64)  # int64 values that fit in int16 are stored as int16
    assert len(pack({"ids": ids})) < ids.nbytes / 4 + 200


def test_frames_round_trip_with_strings_and_missing_values():
    frame = pd.DataFrame({"metric": pd.Series(["e2e", "ttft", None, "e2e"], dtype="str"),
                          "q": [0.0, 0.5, 1.0, np.nan], "n": np.array([1, 2, 3, 4], dtype=np.int64)})
    pd.testing.assert_frame_equal(unpack_frame(pack_frame(frame)), frame)


@pytest.mark.parametrize("blob", [b"", b"BLPK", b"not a pack at all", pack({"a": np.arange(10)})[:-8]])
def test_corrupt_blobs_are_rejected(blob):
    with pytest.raises(CodecError):
        unpack(blob)


# ------------------------------------------------------------- round trips --
def test_run_round_trip(store):
    w = workload()
    cfg = SimConfig(mode="multi_bin_dynamic", gpus=2)  # batch-level: its batch log is kept too
    run, hit = store.get_or_run(cfg, w)
    assert not hit and run.status == "done" and not run.stale
    want = simulate(cfg, w)
    again = store.get_run(run.id)
    assert again.hash == want.run_hash == want.summary["config_hash"]
    assert again.summary == want.summary  # every metric, per-bin dicts, notes: exactly equal
    assert again.bins == want.summary["bins"] and len(again.bins) == cfg.bins
    assert again.config == cfg
    assert again.workload == w.identity and again.latency == want.meta["latency"]
    assert again.label == w.identity["label"] and again.num_requests == len(w)
    assert "sim" in again.code_version and again.duration_s is not None and again.duration_s >= 0
    assert again.created_at.tzinfo is not None and again.finished_at >= again.created_at
    assert again.stored_requests == len(w) and not again.sampled
    assert_same_arrays(again.requests(), want.requests)
    assert set(again.requests()) == set(want.requests)  # derived arrays are rebuilt, nothing extra
    assert_same_arrays(again.batches(), want.batches)
    assert np.array_equal(again.bin_edges(), want.bin_edges)
    want_series = want.series()
    got_series = again.series()
    assert set(got_series) == set(want_series)
    for name, frame in want_series.items():
        pd.testing.assert_frame_equal(got_series[name], frame)
    # the same run by hash and by hash prefix
    assert store.get_run(run.hash).id == run.id
    assert store.get_run(run.hash[:8]).id == run.id
    assert store.get_run("ffff" if not run.hash.startswith("ffff") else "eeee") is None


def test_continuous_run_round_trip(store):
    """A continuous run keeps its per-request times (no batches to rebuild them from) and its series."""
    w = workload(300)
    cfg = SimConfig(mode="continuous_dynamic", gpus=2, gpu_mem_gb=18.0)
    run, hit = store.get_or_run(cfg, w)
    want = simulate(cfg, w)
    again = store.get_run(run.id)
    assert again.summary == want.summary and again.summary["engine"] == "continuous"
    assert_same_arrays(again.requests(), want.requests)
    assert set(again.requests()) == set(want.requests)
    for name, frame in want.series().items():
        pd.testing.assert_frame_equal(again.series()[name], frame)



def test_summary_metrics_are_sortable_columns(store):
    w = workload()
    ids = {}
    for gpus in (1, 2, 4):
        run, _ = store.get_or_run(SimConfig(gpus=gpus, mode="static_fifo"), w)
        ids[gpus] = run.id
    store.get_or_run(SimConfig(gpus=2, mode="dynamic_no_bins"), w)
    rows = store.list_runs(order_by="throughput_rps", descending=True)
    assert [r.throughput_rps for r in rows] == sorted((r.throughput_rps for r in rows), reverse=True)
    assert {r.id for r in store.list_runs(mode="static_fifo")} == set(ids.values())
    assert store.count_runs(mode="dynamic_no_bins") == 1 and store.count_runs() == 4
    page = store.list_runs(order_by="gpus", descending=False, limit=2, offset=1)
    assert [r.gpus for r in page] == [2, 2]
    assert store.list_runs(search="SYNTHETIC 200")[0].label.startswith("synthetic 200")
    assert store.list_runs(search=rows[0].hash[:6])[0].id == rows[0].id
    assert store.list_runs(search="no such workload") == []
    assert store.list_runs(search="50%_") == []  # LIKE wildcards are matched literally
    r = store.list_runs(mode="static_fifo", order_by="gpus")[0]
    full = store.get_run(r.id).summary
    assert r.latency_p99_s == full["latency_p99_s"] and r.sla_attainment == full["sla_attainment"]
    with pytest.raises(StoreError, match="cannot sort by"):
        store.list_runs(order_by="payload; drop table runs")


def test_delete_removes_everything_stored_with_a_run(store):
    run, _ = store.get_or_run(SimConfig(), workload())
    sweep = store.create_sweep("s", {"gpus": [4]})
    store.add_sweep_run(sweep, run.id)
    assert store.delete_run(run.hash[:10])
    assert store.get_run(run.id) is None and store.count_runs() == 0
    with store.engine.connect() as conn:
        for model in (RunBin, RunSeries, RunData, SweepRun):
            assert conn.execute(select(func.count()).select_from(model)).scalar() == 0, model.name
    assert not store.delete_run(run.id)
    assert store.list_sweeps()[0].runs == 0  # the sweep stays, without the run


def test_saving_an_identical_result_keeps_one_copy(store):
    w = workload()
    result = simulate(SimConfig(), w)
    first = store.save_result(result, w)
    second = store.save_result(simulate(SimConfig(), w), w)
    assert second.id == first.id and store.count_runs() == 1
    run, hit = store.get_or_run(SimConfig(), w, simulate_fn=lambda *a, **k: pytest.fail("simulated"))
    assert hit and run.id == first.id


def test_export_csv_and_json(store, tmp_path):
    w = workload()
    a, _ = store.get_or_run(SimConfig(mode="static_fifo"), w)
    b, _ = store.get_or_run(SimConfig(mode="multi_bin_dynamic", k_bins=3), w)
    out = tmp_path / "runs.csv"
    assert store.export_runs(None, "csv", out) == 2
    rows = list(csv.DictReader(out.open()))
    assert [int(r["id"]) for r in rows] == [a.id, b.id]
    assert float(rows[1]["latency_p99_s"]) == b.summary["latency_p99_s"]
    assert rows[1]["config.k_bins"] == "3" and rows[0]["mode"] == "static_fifo"
    buf = io.StringIO()
    assert store.export_runs([b.hash[:12]], "json", buf) == 1
    records = json.loads(buf.getvalue())
    assert records[0]["hash"] == b.hash and records[0]["summary"]["bins"] == b.summary["bins"]
    assert records[0]["config"]["k_bins"] == 3 and records[0]["workload"] == w.identity
    with pytest.raises(StoreError, match="no run"):
        store.export_runs([999999], "json", io.StringIO())


def test_sweeps_keep_their_runs_in_order(store):
    w = workload()
    sweep = store.create_sweep("gpu scaling", {"gpus": [3, 1, 2]})
    ids = []
    for gpus in (3, 1, 2):
        run, _ = store.get_or_run(SimConfig(gpus=gpus), w, sweep_id=sweep)
        ids.append(run.id)
    store.add_sweep_run(sweep, ids[0])  # idempotent
    again, hit = store.get_or_run(SimConfig(gpus=1), w, sweep_id=sweep)  # a cache hit is linked too
    assert hit
    [row] = store.list_sweeps()
    assert (row.name, row.params, row.runs) == ("gpu scaling", {"gpus": [3, 1, 2]}, 3)
    assert [r.id for r in store.sweep_runs(sweep)] == ids
    assert [r.gpus for r in store.sweep_runs(sweep)] == [3, 1, 2]
    with pytest.raises(StoreError):
        store.add_sweep_run(sweep + 100, ids[0])
    store.delete_run(ids[1])
    late, _ = store.get_or_run(SimConfig(gpus=5), w, sweep_id=sweep)
    assert [r.id for r in store.sweep_runs(sweep)] == [ids[0], ids[2], late.id]  # appended after a delete
    with pytest.raises(StoreError, match="no sweep"):
        store.get_or_run(SimConfig(gpus=6), w, sweep_id=sweep + 100)
    assert store.count_runs() == 3  # a bad sweep id is refused before anything is simulated
    assert store.delete_sweep(sweep) and store.count_runs() == 3 and store.list_sweeps() == []


# ------------------------------------------------------------ sampling cap --
def test_runs_beyond_the_cap_keep_a_uniform_sample(store_url, tmp_path):
    w = workload(300, seed=3)
    result = simulate(SimConfig(mode="multi_bin_dynamic"), w)  # batch-level: requests rebuilt from batches
    nb = len(result.batches["start"])
    assert nb < 299
    for cap, subset in ((299, False), (nb - 1, True)):
        with open_store(store_url, request_cap=cap) as s:
            run = s.save_result(result, w)
            assert run.sampled and run.stored_requests == cap and run.num_requests == 300
            req = s.get_run(run.id).requests()
            idx = req["index"]
            assert len(idx) == cap and np.all(np.diff(idx) > 0)
            for k, v in result.requests.items():
                # derived values of the kept requests are exact (NaN where a request has no TBT)
                assert np.array_equal(req[k], v[idx], equal_nan=v.dtype.kind == "f"), k
            bat = run.batches()
            if subset:
                assert np.array_equal(bat["id"], np.unique(result.requests["batch"][idx]))
            else:
                assert "id" not in bat and len(bat["start"]) == nb
            assert run.summary == result.summary  # metrics always come from the whole run
            s.delete_run(run.id)
    # the sample is a function of the run: the same run keeps the same requests
    with open_store(f"sqlite:///{tmp_path}/other.db", request_cap=299) as s1, \
            open_store(f"sqlite:///{tmp_path}/other2.db", request_cap=299) as s2:
        assert np.array_equal(s1.save_result(result).requests()["index"], s2.save_result(result).requests()["index"])


# ------------------------------------------------------------------- grids --
GRID_CSV = b"""# model: tiny-llama
# device: test-gpu
# dtype: bf16
# source: measured by test
batch_size,context_len,prefill_s,decode_step_s
1,128,0.010,0.020
1,256,0.015,0.021
2,128,0.012,0.022
2,256,0.020,0.024
"""


def test_grids_are_deduplicated_and_round_trip(store):
    schema = pytest.importorskip("batchlab.calibration.schema")
    grid = schema.parse_grid(GRID_CSV, name="tiny")
    row, created = store.save_grid(grid)
    assert created and (row.name, row.model, row.device, row.dtype, row.source, row.rows) == \
        ("tiny", "tiny-llama", "test-gpu", "bf16", "measured by test", 4)
    assert row.sha256 == grid.sha256 and row.uploaded_at.tzinfo is not None
    again, created = store.save_grid(schema.parse_grid(GRID_CSV, name="other-name"))
    assert not created and again.id == row.id and again.name == "tiny"
    assert [g.name for g in store.list_grids()] == ["tiny"]
    back = store.get_grid("tiny")
    assert back.sha256 == grid.sha256 and back.meta == grid.meta and back.warnings == grid.warnings
    pd.testing.assert_frame_equal(back.table, grid.table)
    changed = schema.parse_grid(GRID_CSV.replace(b"0.024", b"0.025"), name="tiny")
    with pytest.raises(StoreError, match="different grid named 'tiny'"):
        store.save_grid(changed)
    replaced, created = store.save_grid(changed, replace=True)
    assert created and replaced.sha256 == changed.sha256 and len(store.list_grids()) == 1
    assert store.delete_grid("tiny") and store.get_grid("tiny") is None and not store.delete_grid("tiny")

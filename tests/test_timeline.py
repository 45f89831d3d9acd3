"""The engine log as a Chrome trace-event file (core.timeline): valid JSON, one process per replica, complete
events that never overlap on a replica, in time order, whose durations add up to the summary's busy time."""
from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest

from batchlab.core import SimConfig, simulate
from batchlab.core.timeline import trace_events
from batchlab.workloads import build_workload
from batchlab.workloads.spec import WorkloadSpec


@pytest.fixture(scope="module")
def workload():
    return build_workload(WorkloadSpec(num_requests=400, rate=6.0))


@pytest.fixture(scope="module", params=[dict(mode="static_fifo", gpus=3), dict(mode="multi_bin_dynamic", gpus=2),
                                        dict(mode="continuous_dynamic", gpus=3),
                                        dict(mode="continuous_static", gpus=4, tp=2)])
def run(request, workload):
    return simulate(SimConfig(**request.param), workload)


def trace_of(run) -> dict:
    text = json.dumps(trace_events(run.batches, run.config.n_replicas, float(run.requests["arrival"].min()),
                                   run.config.tp))
    return json.loads(text)   # strict JSON: what a viewer reads


def test_events_per_replica_are_ordered_never_overlap_and_add_up_to_busy_time(run):
    trace = trace_of(run)
    spans = defaultdict(list)
    for e in trace["traceEvents"]:
        if e["ph"] == "X":
            assert e["dur"] >= 0 and e["ts"] >= 0 and e["tid"] == 0
            spans[e["pid"]].append((e["ts"], e["dur"]))
    assert set(spans) <= set(range(run.config.n_replicas))
    for pid, rows in spans.items():
        ts = np.array([t for t, _ in rows])
        ends = ts + np.array([d for _, d in rows])
        assert np.all(np.diff(ts) >= 0), pid                       # monotone per replica
        assert np.all(ts[1:] >= ends[:-1] - 1e-6), pid             # the next starts after this one ends
    busy = sum(d for rows in spans.values() for _, d in rows) / 1e6
    s = run.summary
    assert busy == pytest.approx(s["gpu_utilization"] * s["replicas"] * s["makespan_s"], rel=1e-9)
    assert sum(len(rows) for rows in spans.values()) == len(run.batches["start"])


def test_events_are_named_by_engine_and_carry_the_log(run):
    events = trace_of(run)["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    if run.config.continuous:
        first = complete[0]
        n, b = first["args"]["iterations"], first["args"]["size"]
        assert first["name"] == f"span of {n} iteration{'s' if n != 1 else ''}, batch {b}"
    else:
        assert {e["name"] for e in complete} == {"batch"}
        assert all(e["args"]["size"] >= 1 for e in complete)
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    tp = run.config.tp
    assert names == {f"GPU {r}" if tp == 1 else f"replica {r} ({tp} GPUs)" for r in range(run.config.n_replicas)}


def test_counters_follow_the_running_batch_and_return_to_zero_when_idle(run):
    events = trace_of(run)["traceEvents"]
    by_pid = defaultdict(list)
    for e in events:
        if e["ph"] == "C" and e["name"] == "running batch":
            by_pid[e["pid"]].append((e["ts"], e["args"]["size"]))
    log = run.batches
    assert max(v for rows in by_pid.values() for _, v in rows) == int(log["size"].max())
    for pid, rows in by_pid.items():
        assert rows[-1][1] == 0                                    # every replica idles after its last row
        assert all(b[0] >= a[0] for a, b in zip(rows, rows[1:]))
        on = np.flatnonzero(np.asarray(log["gpu"]) == pid)
        on = on[np.argsort(log["start"][on], kind="stable")]
        ends = log["start"][on] + log["duration"][on]
        idle_gaps = int((log["start"][on][1:] > ends[:-1]).sum())
        assert sum(v == 0 for _, v in rows) == idle_gaps + 1, pid  # back to 0 in every idle gap, and at the end
        assert [v for _, v in rows if v] == [int(b) for b in log["size"][on] if b], pid
    kv = [e["args"]["kv_tokens"] for e in events if e["ph"] == "C" and e["name"] == "KV tokens"]
    assert max(kv) == int(log["kv_tokens"].max())

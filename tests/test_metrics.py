"""Metrics that could fail: SLA rates respond to deadlines, utilisation uses the whole horizon."""
from __future__ import annotations

import numpy as np
import pytest

from core import SimConfig, simulate
from core.metrics import gpu_utilization_series
from workloads import WorkloadSpec, build_workload
from workloads.workload import Workload

SMALL = WorkloadSpec(num_requests=1500, rate=3.0, workload_seed=4)
BATCH = SimConfig(mode="multi_bin_dynamic", gpu_mem_gb=40.0)  # the batch-level engine with ample memory


def test_violation_rates_are_zero_when_loose_and_rise_when_tight():
    w = build_workload(SMALL)
    loose = simulate(BATCH.replace(d_sla_ttft=1e6, d_sla_tbt=10.0, d_sla_e2e=1e6), w).summary
    assert loose["sla_violation_rate_ttft"] == 0
    assert loose["sla_violation_rate_tbt"] == 0
    assert loose["sla_violation_rate_e2e"] == 0
    assert loose["sla_attainment"] == 1.0
    rates = []
    for scale in (1.0, 0.5, 0.25):
        s = simulate(BATCH.replace(d_sla_ttft=8 * scale, d_sla_tbt=0.05 * scale, d_sla_e2e=60 * scale), w).summary
        rates.append((s["sla_violation_rate_ttft"], s["sla_violation_rate_tbt"], s["sla_violation_rate_e2e"],
                      s["sla_attainment"]))
    for kind in range(3):
        assert rates[0][kind] < rates[1][kind] <= rates[2][kind]
    assert rates[0][3] > rates[1][3] >= rates[2][3]
    assert rates[2][1] == 1.0  # no decode step is faster than 12.5 ms with a 30 ms base


def test_disabled_deadlines_report_none_and_do_not_count():
    w = build_workload(SMALL)
    s = simulate(SimConfig(d_sla_ttft=None, d_sla_tbt=None, d_sla_e2e=0.001), w).summary
    assert s["sla_violation_rate_ttft"] is None and s["sla_violation_rate_tbt"] is None
    assert s["sla_violation_rate_e2e"] == 1.0 and s["sla_attainment"] == 0.0


def test_attainment_is_the_share_meeting_every_enabled_deadline():
    w = build_workload(SMALL)
    cfg = SimConfig(d_sla_ttft=5.0, d_sla_tbt=0.045, d_sla_e2e=30.0)
    r = simulate(cfg, w)
    q = r.requests
    ok = (q["ttft"] <= 5.0) & (q["tbt"] <= 0.045) & (q["e2e"] <= 30.0)
    assert r.summary["sla_attainment"] == pytest.approx(ok.mean())
    for b in r.summary["bins"]:
        m = q["bin"] == b["bin"]
        assert b["requests"] == int(m.sum())
        if b["requests"]:
            assert b["sla_attainment"] == pytest.approx(ok[m].mean())


def test_ttft_includes_queueing_and_prefill():
    w = Workload(np.zeros(4), np.full(4, 1000), np.full(4, 10), np.full(4, 10), identity={"t": "ttft"})
    cfg = SimConfig(mode="static_fifo", batch_size=1, gpus=1, prefill_base=0.5, prefill_per_token=0.0,
                    decode_base=0.1, decode_per_seq=0.0, decode_per_ctx_token=0.0)
    r = simulate(cfg, w)
    service = 0.5 + 10 * 0.1
    np.testing.assert_allclose(np.sort(r.requests["ttft"]), [0.5 + i * service for i in range(4)])
    np.testing.assert_allclose(np.sort(r.requests["queue_delay"]), [i * service for i in range(4)])
    np.testing.assert_allclose(r.requests["tbt"], 0.1)


def test_utilisation_is_measured_over_the_whole_horizon():
    # two requests far apart on one GPU: busy 2 x 1.5 s out of a 101.5 s horizon
    w = Workload(np.array([0.0, 100.0]), np.full(2, 1), np.full(2, 10), np.full(2, 10), identity={"t": "util"})
    cfg = SimConfig(mode="static_fifo", gpus=2, prefill_base=0.5, prefill_per_token=0.0, decode_base=0.1,
                    decode_per_seq=0.0, decode_per_ctx_token=0.0)
    r = simulate(cfg, w)
    assert r.summary["makespan_s"] == pytest.approx(101.5)
    assert r.summary["gpu_utilization"] == pytest.approx(3.0 / (2 * 101.5))
    assert r.summary["throughput_rps"] == pytest.approx(2 / 101.5)
    series = gpu_utilization_series(r.batches, 2, 101.5, points=203)
    busy_area = (series["utilization"] * (101.5 / 203) * 2).sum()
    assert busy_area == pytest.approx(3.0)
    assert series["utilization"].max() == pytest.approx(0.5)  # one of two GPUs


def test_series_are_chart_ready():
    r = simulate(BATCH, build_workload(SMALL))
    s = r.series()
    cdf = s["latency_cdf"]
    assert set(cdf["metric"]) == {"e2e", "ttft", "queue_delay", "tbt", "tbt_max"}
    e2e = cdf[cdf["metric"] == "e2e"]
    assert np.all(np.diff(e2e["seconds"].to_numpy()) >= 0)
    assert e2e["seconds"].iloc[-1] == pytest.approx(r.requests["e2e"].max())
    assert s["batch_sizes"]["batches"].sum() == r.summary["num_batches"]
    assert set(s["batch_timeline"]["bin"]) <= set(range(r.config.k_bins))
    util = s["gpu_utilization"]["utilization"]
    assert ((util >= 0) & (util <= 1 + 1e-9)).all()
    # the busy time the series spreads over its windows is all the busy time there is
    width = np.diff(s["gpu_utilization"]["time_s"].to_numpy()).mean()
    assert util.sum() * width * r.config.gpus == pytest.approx(r.batches["duration"].sum(), rel=1e-6)
    occ = s["occupancy"]
    assert ((occ["kv_utilization"] >= 0) & (occ["kv_utilization"] <= 1 + 1e-9)).all()
    assert occ["running"].max() <= r.summary["batch_size_max"] + 1e-9


def test_continuous_series_and_summary_keys():
    r = simulate(SimConfig(mode="continuous_dynamic"), build_workload(SMALL))
    s, series = r.summary, r.series()
    for key in ("preemptions", "kv_utilization_mean", "kv_peak_tokens", "oom_events", "evicted_requests",
                "wasted_gpu_s", "iterations"):
        assert key in s
    assert s["num_batches"] is None and s["iterations"] == r.batches["iterations"].sum()
    assert 0 < s["kv_utilization_mean"] < 1 and s["kv_peak_tokens"] <= s["eta_tokens"]
    # the running-size histogram weighs each size by the iterations it ran for
    assert series["batch_sizes"]["batches"].sum() == s["iterations"]
    timeline = series["batch_timeline"]
    assert set(timeline["branch"]) <= {"over", "under", "within", "start"}  # controller updates only
    util = series["gpu_utilization"]["utilization"]
    width = np.diff(series["gpu_utilization"]["time_s"].to_numpy()).mean()
    assert util.sum() * width * r.config.gpus == pytest.approx(r.batches["duration"].sum(), rel=1e-6)

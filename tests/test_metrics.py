"""Metrics that could fail: SLA rates respond to deadlines, utilisation uses the whole horizon."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchlab.core import SimConfig, simulate
from batchlab.core.controllers import BRANCH_HOLD, BRANCH_NAMES
from batchlab.core.metrics import (
    batch_timeline,
    gpu_utilization_series,
    has_tbt,
    latency_cdf,
    mean_gap,
    occupancy_series,
    violations,
)
from batchlab.workloads import WorkloadSpec, build_workload
from batchlab.workloads.workload import Workload

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


@pytest.mark.parametrize("mode", ["continuous_dynamic", "continuous_multi_bin", "multi_bin_dynamic"])
def test_attainment_is_the_share_meeting_every_enabled_deadline(mode):
    """Overall and per bin: attainment, each deadline's violation rate and the bin's latency figures by
    their definitions. A one-token request has no TBT: it cannot miss the TBT deadline and is left out of
    the TBT violation rate and mean (it still counts in attainment, through its other deadlines)."""
    w = build_workload(SMALL)
    cfg = SimConfig(mode=mode, k_bins=3, d_sla_ttft=0.1, d_sla_tbt=0.034, d_sla_e2e=10.0, gpu_mem_gb=40.0)
    r = simulate(cfg, w)
    q = r.requests
    gap = w.output > 1
    assert 0 < (~gap).sum() and np.isnan(q["tbt"][~gap]).all() and np.isfinite(q["tbt"][gap]).all()
    miss = {"ttft": q["ttft"] > 0.1, "tbt": gap & (q["tbt"] > 0.034), "e2e": q["e2e"] > 10.0}
    among = {"ttft": np.ones(len(w), dtype=bool), "tbt": gap, "e2e": np.ones(len(w), dtype=bool)}
    ok = ~(miss["ttft"] | miss["tbt"] | miss["e2e"])
    assert 0 < ok.mean() < 1 and all(0 < m.mean() for m in miss.values())
    assert r.summary["sla_attainment"] == pytest.approx(ok.mean())
    for kind, m in miss.items():
        assert r.summary[f"sla_violation_rate_{kind}"] == pytest.approx(m[among[kind]].mean()), kind
    assert r.summary["tbt_mean_s"] == pytest.approx(q["tbt"][gap].mean())
    assert len(r.summary["bins"]) == cfg.bins
    for b in r.summary["bins"]:
        m = q["bin"] == b["bin"]
        assert b["requests"] == int(m.sum()) > 0
        assert b["sla_attainment"] == pytest.approx(ok[m].mean())
        for kind, v in miss.items():
            assert b[f"sla_violation_rate_{kind}"] == pytest.approx(v[m & among[kind]].mean()), (b["bin"], kind)
        assert b["latency_mean_s"] == pytest.approx(q["e2e"][m].mean())
        assert b["latency_p99_s"] == pytest.approx(np.percentile(q["e2e"][m], 99))
        assert b["ttft_mean_s"] == pytest.approx(q["ttft"][m].mean())
        assert b["tbt_mean_s"] == pytest.approx(q["tbt"][m & gap].mean())
        assert b["mean_output"] == pytest.approx(w.output[m].mean())
        assert b["mean_predicted"] == pytest.approx(w.predicted[m].mean())


def test_ttft_includes_queueing_and_prefill():
    w = Workload(np.zeros(4), np.full(4, 1000), np.full(4, 10), np.full(4, 10), identity={"t": "ttft"})
    cfg = SimConfig(mode="static_fifo", batch_size=1, gpus=1, prefill_base=0.5, prefill_per_token=0.0,
                    decode_base=0.1, decode_per_seq=0.0, decode_per_ctx_token=0.0)
    r = simulate(cfg, w)
    service = 0.5 + 9 * 0.1                      # 10 tokens: the prefill's, then 9 decode steps
    np.testing.assert_allclose(np.sort(r.requests["ttft"]), [0.5 + i * service for i in range(4)])
    np.testing.assert_allclose(np.sort(r.requests["queue_delay"]), [i * service for i in range(4)])
    np.testing.assert_allclose(r.requests["tbt"], 0.1)


def test_utilisation_is_measured_over_the_whole_horizon():
    # two requests of 10 tokens far apart on one GPU: busy 2 x (0.5 + 9 x 0.1) s out of a 101.4 s horizon
    w = Workload(np.array([0.0, 100.0]), np.full(2, 1), np.full(2, 10), np.full(2, 10), identity={"t": "util"})
    cfg = SimConfig(mode="static_fifo", gpus=2, prefill_base=0.5, prefill_per_token=0.0, decode_base=0.1,
                    decode_per_seq=0.0, decode_per_ctx_token=0.0)
    r = simulate(cfg, w)
    assert r.summary["makespan_s"] == pytest.approx(101.4)
    assert r.summary["gpu_utilization"] == pytest.approx(2.8 / (2 * 101.4))
    assert r.summary["throughput_rps"] == pytest.approx(2 / 101.4)
    series = gpu_utilization_series(r.batches, 2, 101.4, points=203)
    busy_area = (series["utilization"] * (101.4 / 203) * 2).sum()
    assert busy_area == pytest.approx(2.8)
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


# ------------------------------------------------------ series by their definitions --
def overlap(start, end, lo, hi):
    return np.clip(np.minimum(end, hi) - np.maximum(start, lo), 0.0, None)


@st.composite
def logs(draw, continuous=False):
    """A random run log: rows with start, duration, size, KV tokens and controller columns."""
    n = draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    log = {"start": np.sort(rng.uniform(0, 50, n)), "duration": rng.uniform(0, 5, n),
           "size": rng.integers(1, 64, n), "kv_tokens": rng.integers(0, 5000, n),
           "gpu": rng.integers(0, 3, n), "b_mem": rng.integers(1, 128, n), "b_sla": rng.integers(1, 128, n),
           "b_cap": rng.integers(1, 128, n), "branch": rng.choice(sorted(BRANCH_NAMES), n)}
    if continuous:
        log["iterations"] = rng.integers(1, 30, n)
    else:
        log["steps"] = rng.integers(0, 300, n)
        log["decode"] = log["duration"] * rng.uniform(0, 1, n)
        log["bin"] = rng.integers(0, 4, n)
    return log


@given(log=logs(), gpus=st.integers(1, 3), points=st.integers(1, 30), t0=st.floats(-5, 20),
       horizon=st.floats(1, 80))
def test_utilisation_and_occupancy_series_are_time_weighted_overlaps(log, gpus, points, t0, horizon):
    eta = 20_000
    util = gpu_utilization_series(log, gpus, horizon, t0, points)
    occ = occupancy_series(log, gpus, eta, horizon, t0, points)
    edges = np.linspace(t0, t0 + horizon, points + 1)
    end = log["start"] + log["duration"]
    for i in range(points):
        lo, hi = edges[i], edges[i + 1]
        o = overlap(log["start"], end, lo, hi)
        capacity = (hi - lo) * gpus
        assert util["time_s"][i] == pytest.approx((lo + hi) / 2)
        assert util["utilization"][i] == pytest.approx(o.sum() / capacity, abs=1e-9)
        assert occ["kv_utilization"][i] == pytest.approx((o * log["kv_tokens"]).sum() / (capacity * eta), abs=1e-9)
        assert occ["running"][i] == pytest.approx((o * log["size"]).sum() / capacity, abs=1e-9)


@pytest.mark.parametrize("continuous", [False, True])
@given(data=st.data(), max_points=st.integers(1, 50))
def test_batch_timeline_keeps_updates_thins_evenly_and_divides_step_time(continuous, data, max_points):
    log = data.draw(logs(continuous))
    t = batch_timeline(log, max_points)
    rows = np.arange(len(log["start"]))
    if continuous and (log["branch"] != BRANCH_HOLD).any():
        rows = np.flatnonzero(log["branch"] != BRANCH_HOLD)       # controller updates only
    assert len(t) == min(len(rows), max_points)
    picked = np.searchsorted(log["start"], t["time_s"].to_numpy())  # starts are distinct and sorted
    assert set(picked) <= set(rows) and picked[0] == rows[0] and (picked[-1] == rows[-1] or max_points == 1)
    assert np.all(np.diff(picked) > 0)
    for col in ("gpu", "size", "b_mem", "b_sla", "b_cap"):
        assert t[col].tolist() == log[col][picked].tolist(), col
    assert t["branch"].tolist() == [BRANCH_NAMES[b] for b in log["branch"][picked]]
    if continuous:
        want = log["duration"][picked] / log["iterations"][picked]
        assert t["bin"].tolist() == [-1] * len(t)
    else:
        steps = log["steps"][picked]
        want = np.where(steps > 0, log["decode"][picked] / np.maximum(steps, 1), 0.0)
        assert t["bin"].tolist() == log["bin"][picked].tolist()
    np.testing.assert_allclose(t["step_time_s"], want, rtol=1e-12)


def test_latency_cdf_is_the_quantiles_of_completed_requests():
    cfg = SimConfig(mode="static_fifo", gpu_mem_gb=17.0, weights_gb=16.0)
    w = Workload(np.arange(5.0), np.array([10, 10**6, 20, 30, 40]), np.array([5, 5, 9, 3, 7]), np.full(5, 5))
    r = simulate(cfg, w)
    assert np.isnan(r.requests["e2e"][1])                            # rejected: no GPU holds it
    cdf = latency_cdf(r.requests, points=4)
    assert cdf["metric"].tolist() == [m for m in ("e2e", "ttft", "queue_delay", "tbt", "tbt_max") for _ in range(5)]
    for metric in ("e2e", "ttft", "queue_delay", "tbt", "tbt_max"):
        part = cdf[cdf["metric"] == metric]
        assert part["quantile"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
        done = r.requests[metric][[0, 2, 3, 4]]
        np.testing.assert_allclose(part["seconds"], np.quantile(done, [0, 0.25, 0.5, 0.75, 1]), rtol=1e-12)


# ------------------------------------------------------ summary by definitions --
def served_workload(n=300, seed=2, reject=None):
    rng = np.random.default_rng(seed)
    prompt = rng.integers(10, 1500, n)
    if reject is not None:
        prompt[reject] = 10**6                     # no GPU holds it: rejected when it arrives
    output = rng.integers(0, 200, n)
    return Workload(np.sort(rng.uniform(0, 30, n)), prompt, output, np.maximum(output, 1))


@pytest.mark.parametrize("mode", ["static_fifo", "multi_bin_dynamic", "continuous_static", "continuous_dynamic"])
def test_a_rejected_request_leaves_every_summary_figure_finite_and_over_the_served_requests(mode):
    w = served_workload(reject=17)
    r = simulate(SimConfig(mode=mode, gpus=2, k_bins=2), w)
    s, q = r.summary, r.requests
    served = np.isfinite(q["finish"])
    assert s["rejected_requests"] == 1 and not served[17] and served.sum() == len(w) - 1
    for key, value in list(s.items()) + [(f"bins.{b['bin']}.{k}", v) for b in s["bins"] for k, v in b.items()]:
        if isinstance(value, float):
            assert np.isfinite(value), key
    for name, key in (("latency", "e2e"), ("ttft", "ttft")):
        assert s[f"{name}_mean_s"] == pytest.approx(q[key][served].mean(), rel=1e-12)
        for p in (50, 95, 99):
            assert s[f"{name}_p{p}_s"] == pytest.approx(np.percentile(q[key][served], p), rel=1e-12), (name, p)
    gap = served & (w.output > 1)                  # outputs of 0 and 1 token have no gap: left out of TBT
    assert (served & ~gap).sum() > 0 and np.isnan(q["tbt"][served & ~gap]).all()
    assert s["tbt_p99_s"] == pytest.approx(np.percentile(q["tbt"][gap], 99), rel=1e-12)
    assert s["tbt_max_p99_s"] == pytest.approx(np.percentile(q["tbt_max"][gap], 99), rel=1e-12)
    assert s["queue_delay_p99_s"] == pytest.approx(np.percentile(q["queue_delay"][served], 99), rel=1e-12)
    assert s["tbt_mean_s"] == pytest.approx(q["tbt"][gap].mean(), rel=1e-12)
    assert s["queue_delay_mean_s"] == pytest.approx(q["queue_delay"][served].mean(), rel=1e-12)


@pytest.mark.parametrize("mode", ["static_fifo", "continuous_static"])
@pytest.mark.parametrize("first", [0.0, 250.0])
def test_rates_and_utilisation_run_from_the_first_arrival_to_the_last_completion(mode, first):
    """Two requests of 10 tokens 100 s apart, each 0.5 s of prefill (the first token) and 9 decode steps of
    0.1 s, on 2 GPUs: the horizon is 101.4 s wherever the trace starts; throughput counts requests and output
    tokens (never prompts)."""
    w = Workload(first + np.array([0.0, 100.0]), np.array([7, 3]), np.array([10, 10]), np.array([10, 10]))
    cfg = SimConfig(mode=mode, gpus=2, prefill_base=0.5, prefill_per_token=0.0, decode_base=0.1,
                    decode_per_seq=0.0, decode_per_ctx_token=0.0)
    r = simulate(cfg, w)
    s = r.summary
    assert s["makespan_s"] == pytest.approx(101.4)
    assert s["gpu_utilization"] == pytest.approx(2.8 / (2 * 101.4))
    assert s["throughput_rps"] == pytest.approx(2 / 101.4)
    assert s["throughput_tps"] == pytest.approx(20 / 101.4)
    series = r.series()["gpu_utilization"]
    width = 101.4 / len(series)
    assert series["time_s"].iloc[0] == pytest.approx(first + width / 2)
    assert (series["utilization"] * width * 2).sum() == pytest.approx(2.8)


@pytest.mark.parametrize("mode", ["static_fifo", "multi_bin_dynamic", "continuous_static", "continuous_dynamic"])
def test_output_throughput_counts_the_served_requests_output_tokens(mode):
    w = served_workload(reject=5)
    s = simulate(SimConfig(mode=mode, gpus=2, k_bins=2), w).summary
    served = np.arange(len(w)) != 5
    assert s["throughput_tps"] == pytest.approx(w.output[served].sum() / s["makespan_s"], rel=1e-12)
    assert s["throughput_rps"] == pytest.approx(served.sum() / s["makespan_s"], rel=1e-12)


@pytest.mark.parametrize("mode", ["continuous_static", "continuous_dynamic", "continuous_multi_bin"])
def test_continuous_mean_batch_size_is_the_mean_over_iterations(mode):
    """With ample memory and whole-prompt prefills, a request of output o runs in o iterations (its
    prefill, then o - 1 decode steps; one for a failed trace row's o = 0), so the running requests
    summed over iterations are sum(max(o, 1))."""
    w = served_workload()
    s = simulate(SimConfig(mode=mode, gpus=2, batch_size=16, k_bins=2, gpu_mem_gb=40.0,
                           max_num_batched_tokens=10**6), w).summary
    assert s["preemptions"] == 0
    assert s["mean_batch_size"] == pytest.approx(np.maximum(w.output, 1).sum() / s["iterations"], rel=1e-12)


@pytest.mark.parametrize("mode", ["static_fifo", "multi_bin_dynamic", "continuous_static", "continuous_dynamic"])
def test_median_batch_size_weighs_each_size_by_its_batches_or_iterations(mode):
    """batch_size_p50: the smallest size with at least half of the batches (or iterations) at or below it."""
    r = simulate(SimConfig(mode=mode, gpus=2, batch_size=16, k_bins=2), served_workload())
    log = r.batches
    weights = log["iterations"] if "iterations" in log else np.ones(len(log["size"]), dtype=np.int64)
    every = np.repeat(log["size"], weights)
    assert r.summary["batch_size_p50"] == np.percentile(every, 50, method="inverted_cdf")
    assert r.summary["batch_size_max"] == every.max()


def test_batch_level_kv_memory_in_use_grows_over_each_decode():
    """One request of 1,000 prompt tokens and 100 output tokens alone on one GPU: its padded batch holds
    the prompt's 1,000 tokens from the start and one more token per decode step (99 of them: the prefill
    emitted the first token, and the last sampled token gets no KV), 1,049.5 on average over the decode,
    so its KV-seconds are 1,000 (prefill + decode) + 49.5 decode, and it peaks at 1,099 tokens."""
    cfg = SimConfig(mode="static_fifo", gpus=1, decode_per_ctx_token=0.0)
    r = simulate(cfg, Workload(np.array([3.0]), np.array([1000]), np.array([100]), np.array([100])))
    b, s = r.batches, r.summary
    assert b["steps"][0] == 99
    used = 1000 * (b["prefill"][0] + b["decode"][0]) + 49.5 * b["decode"][0]
    assert s["kv_utilization_mean"] == pytest.approx(used / (s["eta_tokens"] * s["makespan_s"]), rel=1e-12)
    assert s["kv_peak_tokens"] == 1099


@pytest.mark.parametrize("mode", ["static_fifo", "multi_bin_dynamic"])
def test_batch_level_mean_batch_size_is_requests_per_batch(mode):
    w = served_workload()
    s = simulate(SimConfig(mode=mode, gpus=2, k_bins=2, gpu_mem_gb=40.0), w).summary
    assert s["oom_events"] == 0
    assert s["mean_batch_size"] == pytest.approx(len(w) / s["num_batches"], rel=1e-12)


# ------------------------------------------------------ one-token requests: no TBT --
def test_a_one_token_request_has_no_tbt_and_cannot_miss_the_tbt_deadline():
    """Batches of one token each on one GPU run their prefill alone: no request has a gap, so there is no
    TBT mean, percentile, violation rate or CDF, and a 100 us TBT deadline misses nobody (TTFT still counts)."""
    w = Workload(np.zeros(3), np.full(3, 100), np.ones(3, dtype=np.int64), np.ones(3, dtype=np.int64))
    cfg = SimConfig(mode="static_fifo", gpus=1, batch_size=1, d_sla_tbt=1e-4, d_sla_ttft=0.5, d_sla_e2e=None,
                    prefill_base=0.2, prefill_per_token=0.0)
    r = simulate(cfg, w)
    q, s = r.requests, r.summary
    assert np.isnan(q["tbt"]).all() and np.isnan(q["tbt_max"]).all()
    np.testing.assert_allclose(q["finish"], [0.2, 0.4, 0.6])
    assert s["tbt_mean_s"] is None and s["tbt_p99_s"] is None and s["tbt_max_p99_s"] is None
    assert s["sla_violation_rate_tbt"] is None and s["bins"][0]["tbt_mean_s"] is None
    assert s["sla_violation_rate_ttft"] == pytest.approx(1 / 3) and s["sla_attainment"] == pytest.approx(2 / 3)
    assert set(latency_cdf(q)["metric"]) == {"e2e", "ttft", "queue_delay"}


def test_tbt_violations_count_only_requests_with_a_gap_and_every_rejected_one():
    """By definition, for either engine's arrays: a served request with NaN TBT (one token) neither misses
    the TBT deadline nor counts in its rate; a rejected request (NaN finish) misses every deadline."""
    nan = np.nan
    req = {"finish": np.array([1.0, 1.0, 1.0, nan]), "tbt": np.array([0.01, 0.09, nan, nan]),
           "tbt_max": np.array([0.2, 0.09, nan, nan]), "ttft": np.array([0.1, 0.1, 0.1, nan]),
           "e2e": np.array([1.0, 1.0, 1.0, nan])}
    cfg = SimConfig(d_sla_tbt=0.05, d_sla_ttft=None, d_sla_e2e=None)
    v = violations(cfg, req)
    assert v["tbt"].tolist() == [False, True, False, True]
    assert has_tbt(req).tolist() == [True, True, False, True]
    assert violations(cfg.replace(tbt_sla="max"), req)["tbt"].tolist() == [True, True, False, True]
    np.testing.assert_array_equal(mean_gap(np.array([3.0, 2.0, nan]), np.array([1.0, 2.0, nan]),
                                           np.array([4, 0, 0])), [0.5, nan, nan])

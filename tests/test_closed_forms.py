"""The simulator against closed forms: Paper 1's throughput and latency, M/D/1 queueing, a lone request.

A request of o output tokens emits its first at the end of the prefill, then o - 1 decode steps: with
PER_TOKEN (no prefill time, 10 ms a step) its service is (o - 1) x 10 ms. Paper 1 counts l_out decode
iterations (service l_out x 10 ms, U[1, 20] s for l_out in U{100..2000}); the same outputs here serve in
U[0.99, 19.99] s, and the tests state that closed form (the paper's own plateau values still hold of it).
"""
from __future__ import annotations

import numpy as np
import pytest

from batchlab.core import SimConfig, simulate
from batchlab.workloads.workload import Workload

# service time = (output tokens - 1) x 10 ms: output U{100..2000} tokens is U[0.99, 19.99] s
PER_TOKEN = dict(latency="parametric", prefill_base=0.0, prefill_per_token=0.0, decode_base=0.01,
                 decode_per_seq=0.0, decode_per_ctx_token=0.0, gpu_mem_gb=80.0, d_sla_ttft=None,
                 d_sla_tbt=None, d_sla_e2e=None)


def poisson_workload(n, rate, output, seed=0):
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1.0 / rate, n))
    arrival -= arrival[0]
    return Workload(arrival, np.ones(n, dtype=np.int64), output, output,
                    identity={"test": "poisson", "n": n, "rate": rate, "seed": seed})


def paper1_throughput(k, B, lmin, lmax):
    """Throughput_k = B / E[t_service,k] (Paper 1, uniform service times, equal-mass bins)."""
    mid = (lmax + lmin) / 2
    return B / (mid + (B / (B + 1) * lmax + lmin / (B + 1) - mid) / k)


def paper1_service(k, B, lmin, lmax):
    edges = np.linspace(lmin, lmax, k + 1)
    return float(np.mean([B / (B + 1) * edges[i + 1] + edges[i] / (B + 1) for i in range(k)]))


@pytest.mark.parametrize("k,paper", [(1, 6.4), (2, 8.4), (3, 9.4), (4, 9.9), (5, 10.3)])
def test_paper1_throughput_formula_within_1_percent(k, paper):
    B, n = 128, 128_000
    rng = np.random.default_rng(k)
    output = rng.integers(100, 2001, n)  # U[0.99, 19.99] s of service
    w = poisson_workload(n, 1e5, output, seed=k)  # everything queued at once: the server never idles
    cfg = SimConfig(mode="multi_bin_fixed", k_bins=k, batch_size=B, gpus=1, **PER_TOKEN)
    r = simulate(cfg, w)
    expected = paper1_throughput(k, B, 0.99, 19.99)
    assert r.summary["throughput_rps"] == pytest.approx(expected, rel=0.01)
    assert r.summary["throughput_rps"] == pytest.approx(paper, rel=0.015)  # the paper's (rounded) plateau
    assert r.summary["gpu_utilization"] > 0.99


def test_paper1_lemma_5_1_latency_with_unlimited_servers():
    """E[latency] = E[t_service,k] + (B-1)k/(2 lambda) when batches never queue for a server."""
    B, k, lam, n = 8, 3, 10.0, 120_000
    rng = np.random.default_rng(11)
    output = rng.integers(100, 2001, n)
    w = poisson_workload(n, lam, output, seed=11)
    cfg = SimConfig(mode="multi_bin_fixed", k_bins=k, batch_size=B, gpus=1000, **PER_TOKEN)
    r = simulate(cfg, w)
    expected = paper1_service(k, B, 0.99, 19.99) + (B - 1) * k / (2 * lam)
    assert r.summary["latency_mean_s"] == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_md1_waiting_time_pollaczek_khinchine(rho):
    """Batch size 1, one GPU, Poisson arrivals, deterministic service s: W_q = rho s / (2 (1 - rho))."""
    s, n = 1.0, 200_000
    w = poisson_workload(n, rho / s, np.full(n, 101), seed=5)   # the prefill's token, then 100 steps of 10 ms
    cfg = SimConfig(mode="static_fifo", batch_size=1, gpus=1, **PER_TOKEN)
    r = simulate(cfg, w)
    assert r.summary["queue_delay_mean_s"] == pytest.approx(rho * s / (2 * (1 - rho)), rel=0.05)
    assert r.summary["gpu_utilization"] == pytest.approx(rho, rel=0.02)
    assert r.summary["tbt_mean_s"] == pytest.approx(0.01)


def test_binning_raises_throughput_for_uniform_lengths():
    n = 64_000
    output = np.random.default_rng(2).integers(100, 2001, n)
    w = poisson_workload(n, 1e5, output, seed=2)
    tput = [simulate(SimConfig(mode="multi_bin_fixed", k_bins=k, batch_size=64, gpus=2, **PER_TOKEN), w)
            .summary["throughput_rps"] for k in (1, 2, 4, 8)]
    assert all(a < b for a, b in zip(tput, tput[1:]))


@pytest.mark.parametrize("o", [1, 2, 7, 300])
def test_a_lone_request_takes_its_prefill_and_o_minus_1_decode_steps(o):
    """prefill(1, P) to its first token, then decode steps at contexts P .. P + o - 2: e2e is their sum,
    TBT their mean and tbt_max the last (longest context); a one-token request finishes with its prefill,
    exactly, and has no TBT."""
    P = 400
    cfg = SimConfig(mode="static_fifo", gpus=1, prefill_base=0.02, prefill_per_token=5e-5, decode_base=0.03,
                    decode_per_seq=0.00022, decode_per_ctx_token=1e-4, d_sla_tbt=0.05)
    r = simulate(cfg, Workload(np.array([2.0]), np.array([P]), np.array([o]), np.array([o])))
    q, b = r.requests, r.batches
    prefill = 0.02 + 5e-5 * P
    steps = [0.03 + 0.00022 + 1e-4 * (P + s) for s in range(o - 1)]
    assert b["steps"][0] == o - 1 and r.summary["kv_peak_tokens"] == P + o - 1
    assert q["ttft"][0] == pytest.approx(prefill, rel=1e-12)
    assert q["e2e"][0] == pytest.approx(prefill + sum(steps), rel=1e-12)
    if o == 1:
        assert q["finish"][0] == q["first_token"][0] == 2.0 + prefill and b["decode"][0] == 0.0
        assert np.isnan(q["tbt"][0]) and np.isnan(q["tbt_max"][0]) and r.summary["tbt_mean_s"] is None
        assert r.summary["sla_violation_rate_tbt"] is None and r.summary["sla_attainment"] == 1.0
    else:
        assert q["tbt"][0] == pytest.approx(sum(steps) / (o - 1), rel=1e-12)
        assert q["tbt_max"][0] == pytest.approx(steps[-1], rel=1e-12)
        assert r.summary["sla_violation_rate_tbt"] == float(sum(steps) / (o - 1) > 0.05)

"""Prefill/decode disaggregation: P prefill and D decode replicas, each pool behind its own router, the KV
moving between them; against closed forms (a lone request, a tandem of M/M/1 queues) and invariants."""
from __future__ import annotations

import numpy as np
import pytest
from queueing import mm1_sojourn

from batchlab.core import SimConfig, simulate
from batchlab.core.config import ConfigError
from batchlab.core.latency import build_latency_model
from batchlab.core.memory import MemoryModel
from batchlab.workloads import WorkloadSpec, build_workload
from batchlab.workloads.workload import Workload


def test_a_lone_request_prefills_moves_its_kv_then_decodes():
    """TTFT is the prefill replica's prefill; the KV of the prompt then moves in prompt x KV bytes per
    token / kv_transfer_gbps; the decode replica's first iteration feeds the first token (a decode step at
    the prompt's context) and o - 2 steps follow."""
    cfg = SimConfig(disaggregate="1:1", kv_transfer_gbps=2.0, d_sla_tbt=None)
    prompt, out = 700, 40
    r = simulate(cfg, Workload(np.array([1.0]), np.array([prompt]), np.array([out]), np.array([out])))
    lat = build_latency_model(cfg)
    first = 1.0 + lat.prefill_time(1, prompt)
    move = prompt * MemoryModel.from_config(cfg).kv_bytes_per_token / 2e9
    assert r.requests["first_token"][0] == pytest.approx(first, rel=1e-12)
    assert r.requests["finish"][0] == pytest.approx(first + move + lat.decode_time(1, prompt, out - 1), rel=1e-12)
    assert r.requests["gpu"][0] == 1          # it ends on the decode replica
    assert r.requests["decode_steps"][0] == out - 1   # every token after the first is a decode step


def test_tandem_prefill_decode_is_two_mm1_queues_in_series():
    """P:D = 1:1, B = 1, Poisson arrivals; geometric prompts (mean 500) x a per-token prefill time and
    geometric outputs x a constant decode step make both stages exponential (rates 10 and 12 per second);
    the KV move is instantaneous at this bandwidth. Burke: the prefill stage's departures are Poisson, so
    E[T] = 1 / (mu1 - lambda) + 1 / (mu2 - lambda) and E[TTFT] = 1 / (mu1 - lambda). 200,000 requests at
    lambda = 7, one seed; within 3 % (measured: 0.6 % and 1.1 %)."""
    mu1, mu2, lam = 10.0, 12.0, 7.0
    cfg = SimConfig(mode="continuous_static", batch_size=1, prefill_base=0.0, prefill_per_token=1 / (mu1 * 500),
                    decode_base=1 / (mu2 * 499), decode_per_seq=0.0, decode_per_ctx_token=0.0, d_sla_ttft=None,
                    d_sla_tbt=None, d_sla_e2e=None, disaggregate="1:1", router="round_robin",
                    kv_transfer_gbps=100_000.0, gpu_mem_gb=80.0, max_num_batched_tokens=100_000)
    w = build_workload(WorkloadSpec(num_requests=200_000, rate=lam, arrival="poisson", prompt_lengths="geometric:500",
                                    output_lengths="geometric:500", predictor="oracle"))
    r = simulate(cfg, w)
    assert np.mean(r.requests["finish"] - w.arrival) == pytest.approx(
        mm1_sojourn(lam, mu1) + mm1_sojourn(lam, mu2), rel=0.03)
    assert np.mean(r.requests["first_token"] - w.arrival) == pytest.approx(mm1_sojourn(lam, mu1), rel=0.03)


@pytest.mark.parametrize("router", ["round_robin", "random", "least_outstanding", "power_of_two", "least_kv",
                                    "prefix_affinity"])
def test_every_request_ends_on_a_decode_replica_after_its_kv_moved(router):
    """1 prefill and 3 decode replicas under load with tight memory (preemptions on both sides): every request
    is served; one of two or more tokens ends on a decode replica, one of a single token on the prefill
    replica; its second token comes at least its KV move after its first."""
    cfg = SimConfig(disaggregate="1:3", router=router, gpu_mem_gb=16.5, kv_transfer_gbps=5.0, seed=3)
    w = build_workload(WorkloadSpec(num_requests=3000, rate=30.0))
    r = simulate(cfg, w)
    q = r.requests
    served = ~np.isnan(q["finish"])   # (a request beyond a replica's KV is refused at arrival)
    assert r.summary["completed"] == served.sum() >= 0.98 * len(w) and r.summary["preemptions"] > 0
    multi = (w.output >= 2) & served
    assert np.all(q["gpu"][multi] >= 1) and np.all(q["gpu"][served & (w.output == 1)] == 0)
    move = w.prompt * MemoryModel.from_config(cfg).kv_bytes_per_token / 5e9
    second = q["first_token"] + move    # the earliest the decode replica can give the second token
    assert np.all(q["finish"][multi] >= second[multi] - 1e-9)
    assert np.all(q["first_token"][served] >= w.arrival[served]) and np.all(q["finish"][served] >= q["first_token"][served])


def test_disaggregation_settings_are_checked():
    assert SimConfig(disaggregate=" 2 : 6 ", tp=2).gpus == 16
    for bad in ("3", "0:2", "a:b", "1:2:3"):
        with pytest.raises(ConfigError, match="disaggregate"):
            SimConfig(disaggregate=bad)
    with pytest.raises(ConfigError, match="router"):
        SimConfig(disaggregate="1:1", router="shared_queue")
    with pytest.raises(ConfigError, match="disaggregate"):
        SimConfig(disaggregate="1:1", mode="static_fifo")


def test_a_decode_replica_admits_moved_requests_in_arrival_order_whatever_order_their_kv_lands_in():
    """The decode replica's queue is first come first served by arrival at the cluster: A (a long prompt, its
    KV lands second) and B (a short one, its KV lands first) both wait behind C's long decode (B = 1 on each
    replica), and A is admitted first."""
    cfg = SimConfig(mode="continuous_static", batch_size=1, disaggregate="1:1", kv_transfer_gbps=0.5, d_sla_tbt=None,
                    d_sla_ttft=None, d_sla_e2e=None, router="round_robin")
    arrival = np.array([0.0, 0.001, 0.002])        # C, A, B
    prompt, out = np.array([10, 4000, 10]), np.array([3000, 5, 5])
    r = simulate(cfg, Workload(arrival, prompt, out, out))
    q = r.requests
    move = prompt * MemoryModel.from_config(cfg).kv_bytes_per_token / 0.5e9
    lands = q["first_token"] + move
    assert lands[2] < lands[1] < q["finish"][0]     # B's KV lands first, both while C still decodes
    assert q["finish"][0] < q["finish"][1] < q["finish"][2]   # ... and A goes first

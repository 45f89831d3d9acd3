"""Routers: replicas with their own queues, against the step-by-step reference and queueing theory.

Queueing cases: continuous_static with B = 1, no prefill time and geometric outputs (mean 500 tokens)
times a constant decode step make each replica an exponential server of rate MU (the geometric's
coefficient of variation differs from 1 by 0.1 %); arrivals are Poisson. Each case runs 200,000
requests at a load of 0.7 per replica, one seed, and compares the mean sojourn time (arrival to last
token) with the closed form within 3 % (the measured errors are within 2 %).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from queueing import ekm1_sojourn, mm1_sojourn, mmc_sojourn
from test_continuous_engine import (
    COMPARED,
    continuous_configs,
    fits,
    matches_reference_with_priorities,
    small_workloads,
)

from batchlab.core import SimConfig, simulate
from batchlab.core.config import ROUTERS, ConfigError
from batchlab.core.continuous_engine import router_draws
from batchlab.workloads import Workload, WorkloadSpec, build_workload

MU, OUT = 10.0, 500
EXP_SERVER = dict(mode="continuous_static", batch_size=1, prefill_base=0.0, prefill_per_token=0.0,
                  decode_base=1 / (MU * (OUT - 1)), decode_per_seq=0.0, decode_per_ctx_token=0.0,
                  d_sla_ttft=None, d_sla_tbt=None, d_sla_e2e=None)
RHO, N, TOLERANCE = 0.7, 200_000, 0.03


def poisson(lam: float, n: int = N, seed: int = 0):
    return build_workload(WorkloadSpec(num_requests=n, rate=lam, arrival="poisson", prompt_lengths="fixed:1",
                                       output_lengths=f"geometric:{OUT}", predictor="oracle", workload_seed=seed))


def mean_sojourn(cfg: SimConfig, w) -> float:
    r = simulate(cfg, w)
    return float(np.mean(r.requests["finish"] - w.arrival))


# ------------------------------------------------------------- queueing theory --
@pytest.mark.parametrize("c", [2, 4])
def test_random_routing_is_c_independent_mm1_queues(c):
    """Poisson splitting: random routing to c replicas gives each a Poisson stream of lambda / c, so
    E[T] = 1 / (mu - lambda / c)."""
    lam = RHO * c * MU
    got = mean_sojourn(SimConfig(gpus=c, router="random", **EXP_SERVER), poisson(lam))
    assert got == pytest.approx(mm1_sojourn(lam / c, MU), rel=TOLERANCE)


@pytest.mark.parametrize("c", [3, 4])
def test_round_robin_gives_each_replica_erlang_c_arrivals(c):
    """Every c-th Poisson arrival: Erlang-c interarrival times, an E_c/M/1 queue (GI/M/1 closed form)."""
    lam = RHO * c * MU
    got = mean_sojourn(SimConfig(gpus=c, router="round_robin", **EXP_SERVER), poisson(lam))
    assert got == pytest.approx(ekm1_sojourn(c, lam / c, MU), rel=TOLERANCE)


def test_shared_queue_stays_mmc():
    """One queue for all replicas: M/M/c (Erlang C)."""
    c = 4
    lam = RHO * c * MU
    got = mean_sojourn(SimConfig(gpus=c, router="shared_queue", **EXP_SERVER), poisson(lam))
    assert got == pytest.approx(mmc_sojourn(c, lam, MU), rel=TOLERANCE)


def test_join_the_shortest_queue_lies_between_random_and_mmc():
    """least_outstanding and power_of_two (JSQ and JSQ(2)) beat random routing but not the shared queue,
    and JSQ beats JSQ(2): the order theory gives (Winston 1977; Mitzenmacher 2001)."""
    c = 4
    lam = RHO * c * MU
    w = poisson(lam, 100_000)
    t = {r: mean_sojourn(SimConfig(gpus=c, router=r, **EXP_SERVER), w)
         for r in ("shared_queue", "least_outstanding", "power_of_two", "random")}
    assert t["shared_queue"] < t["least_outstanding"] < t["power_of_two"] < t["random"]
    assert mmc_sojourn(c, lam, MU) * (1 - TOLERANCE) < t["least_outstanding"] < mm1_sojourn(lam / c, MU)


# ------------------------------------------------------------- exact behaviour --
def test_round_robin_and_random_send_each_request_where_they_drew():
    """A request runs on the replica its router chose at arrival, preempted or not: round_robin the
    arrival index mod the replicas, random the seed's draw."""
    w = poisson(3 * MU, 3000)
    rr = simulate(SimConfig(gpus=3, router="round_robin", **EXP_SERVER), w)
    np.testing.assert_array_equal(rr.requests["gpu"], np.arange(len(w)) % 3)
    cfg = SimConfig(gpus=3, router="random", seed=7, **EXP_SERVER)
    np.testing.assert_array_equal(simulate(cfg, w).requests["gpu"], router_draws(cfg, len(w))[:, 0])
    assert not np.array_equal(router_draws(cfg, len(w)), router_draws(cfg.replace(seed=8), len(w)))


def test_power_of_two_draws_two_distinct_replicas():
    cfg = SimConfig(gpus=5, router="power_of_two", **EXP_SERVER)
    d = router_draws(cfg, 10_000)
    assert d.shape == (10_000, 2) and np.all(d[:, 0] != d[:, 1]) and d.min() == 0 and d.max() == 4


def test_least_outstanding_spreads_a_burst_evenly():
    """Twelve simultaneous long requests on four idle replicas: each replica takes three (the router
    sees the earlier ones of the burst waiting), in turn from replica 0, vLLM's tie order."""
    n = 12
    w = build_workload(WorkloadSpec(num_requests=n, rate=1.0, prompt_lengths="fixed:16",
                                    output_lengths="fixed:200", predictor="oracle"))
    w = type(w)(np.zeros(n), w.prompt, w.output, w.predicted)
    r = simulate(SimConfig(gpus=4, router="least_outstanding", mode="continuous_static", batch_size=8), w)
    np.testing.assert_array_equal(r.requests["gpu"], np.arange(n) % 4)


# constant iterations: 10 ms a decode step whatever the batch, a prompt's prefill 0.5 ms a token
STEP = dict(mode="continuous_static", batch_size=8, router="shared_queue", prefill_base=0.0,
            prefill_per_token=5e-4, decode_base=0.01, decode_per_seq=0.0, decode_per_ctx_token=0.0,
            d_sla_tbt=None, kv_watermark=0.0)


def requests(arrival, prompt, output):
    arrival, prompt, output = (np.asarray(x) for x in (arrival, prompt, output))
    return Workload(arrival.astype(float), prompt, output, output)


def test_shared_queue_deals_a_burst_on_idle_replicas_evenly():
    """Twelve simultaneous requests on four idle replicas of B = 8: each takes its share, three, in turn
    (taking what fits, the first replica would take eight)."""
    r = simulate(SimConfig(gpus=4, **STEP), requests(np.zeros(12), np.full(12, 16), np.full(12, 200))).requests
    np.testing.assert_array_equal(r["gpu"], np.arange(12) // 3)


def test_shared_queue_gives_a_request_to_the_least_loaded_replica_not_the_first_at_a_boundary():
    """Replica 0 runs two requests, replica 1 one; replica 1's iterations end 5 ms after replica 0's (its
    first prefill was 10 tokens shorter). A request arriving at 0.5062 s: replica 0 reaches a boundary
    first (0.51 s), but replica 1, running fewer, takes it at its own (0.515 s)."""
    w = requests([0, 0, 0, 0.5062], [10, 10, 10, 10], [2000, 2000, 2000, 50])
    r = simulate(SimConfig(gpus=2, **STEP), w).requests
    np.testing.assert_array_equal(r["gpu"], [0, 0, 1, 1])
    assert r["start"][3] == pytest.approx(0.515, abs=1e-9)


def test_shared_queue_passes_over_a_replica_without_memory_for_the_request():
    """Replica 0 runs one request holding most of its KV (1,373 tokens at 16.2 GB; its prefill ends at
    0.55 s), replica 1 two short ones. A 400-token prompt arriving at 0.603 s does not fit replica 0 until
    its request ends (2.55 s): replica 0 turns it away at its next boundary (0.61 s) and replica 1, though
    running more, takes it at its own (0.611 s), not preempted."""
    w = requests([0, 0.001, 0.001, 0.603], [1100, 10, 10, 400], [200, 500, 500, 50])
    cfg = SimConfig(gpus=2, gpu_mem_gb=16.2, **STEP)
    assert fits(cfg, w)
    r = simulate(cfg, w).requests
    np.testing.assert_array_equal(r["gpu"], [0, 1, 1, 1])
    np.testing.assert_array_equal(r["preemptions"], 0)
    assert r["start"][3] == pytest.approx(0.611, abs=1e-9)


def test_shared_queue_counts_a_replica_again_once_it_frees_blocks():
    """A replica whose KV turned a request away counts again for it once it frees blocks (here by a
    preemption, after which it admits nobody that iteration): a crowded case on three replicas, found by
    searching the reference with and without that rule, where the two differ (requests 1 and 11 finish
    otherwise); the kernel gives the reference's run."""
    arrival = [0.0, 0.07, 0.16, 0.18, 0.2, 0.21, 0.22, 0.23, 0.25, 0.29, 0.29, 0.31]
    prompt = [475, 403, 234, 82, 87, 513, 200, 190, 599, 271, 132, 376]
    output = [229, 69, 2, 247, 379, 88, 337, 193, 31, 327, 66, 143]
    cfg = SimConfig(mode="continuous_static", gpus=3, router="shared_queue", batch_size=5, gpu_mem_gb=16.2,
                    block_size=16, kv_watermark=0.0, d_sla_tbt=None)
    w = requests(arrival, prompt, output)
    assert fits(cfg, w)
    matches_reference_with_priorities(cfg, w)


@settings(max_examples=25, derandomize=True, deadline=None)
@given(cfg=continuous_configs(), w=small_workloads(max_n=30))
def test_one_replica_every_router_is_the_shared_queue(cfg, w):
    """With one replica there is nothing to route: every router gives the shared queue's run."""
    cfg = cfg.replace(gpus=1)
    base = simulate(cfg.replace(router="shared_queue"), w).requests
    for router in ROUTERS[1:]:
        other = simulate(cfg.replace(router=router), w).requests
        for key in COMPARED:
            np.testing.assert_array_equal(other[key], base[key], err_msg=f"{router} {key}")


@pytest.mark.parametrize("router", ROUTERS)
def test_every_router_equals_the_step_by_step_reference(router):
    """Crowded workloads on 2-4 replicas (preemptions, bins, both queue policies): every request's
    times, replica and preemptions as the reference simulator's, which routes by its own state."""
    @settings(max_examples=20, derandomize=True, deadline=None)
    @given(cfg=continuous_configs(), w=small_workloads(max_n=40, crowded=True), gpus=st.integers(2, 4),
           queue=st.sampled_from(["fcfs", "priority"]))
    def check(cfg, w, gpus, queue):
        cfg = cfg.replace(gpus=gpus, router=router, queue_policy=queue, preempt_policy=queue.replace("fcfs", "newest"))
        if not fits(cfg, w):
            return
        matches_reference_with_priorities(cfg, w)
    check()


def test_batch_level_modes_refuse_a_router():
    with pytest.raises(ConfigError, match="router"):
        SimConfig(mode="static_fifo", router="round_robin")
    assert SimConfig(mode="static_fifo").routing == "shared_queue"
    assert SimConfig().routing == "least_outstanding"
    assert SimConfig().replace(mode="static_fifo").routing == "shared_queue"
    # a config written out whole (to_dict) reads back in another mode: the default router follows the mode
    assert SimConfig.from_dict(SimConfig().to_dict() | {"mode": "static_fifo"}).routing == "shared_queue"
    # the default and the same router given by name are one run
    assert SimConfig().relevant_dict() == SimConfig(router="least_outstanding").relevant_dict()

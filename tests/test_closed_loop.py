"""Closed-loop load (``max_concurrency``): C clients, each sending its next request when its last one
finishes (vllm bench serve --max-concurrency). Against the step-by-step reference, closed forms (one
client; constant service and Little's law), and the semaphore's invariants."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_continuous_engine import (
    COMPARED,
    continuous_configs,
    fits,
    matches_reference_with_priorities,
    small_workloads,
)

from batchlab.core import SimConfig, simulate
from batchlab.core.config import BATCH_MODES, CONTINUOUS_MODES, ROUTERS, ConfigError
from batchlab.core.identity import run_hash
from batchlab.workloads.workload import Workload


def semaphore_sends(arrival: np.ndarray, finish: np.ndarray, clients: int) -> np.ndarray:
    """vLLM's client semaphore from the finishes: send[k] = max(arrival[k], send[k-1], the (k - C + 1)-th
    earliest finish among requests 0 .. k-1)."""
    send = np.array(arrival, dtype=np.float64)
    for k in range(1, len(send)):
        send[k] = max(send[k], send[k - 1])
        if k >= clients:
            send[k] = max(send[k], np.sort(finish[:k])[k - clients])
    return send


def in_flight_peak(send: np.ndarray, finish: np.ndarray) -> int:
    """Most requests sent and not finished at once (a finish at t comes before a send at t)."""
    events = sorted([(t, -1) for t in finish] + [(t, 1) for t in send])
    return int(np.max(np.cumsum([e for _, e in events])))


# ------------------------------------------------------------------ settings --
@pytest.mark.parametrize("mode", BATCH_MODES)
def test_batch_level_modes_refuse_closed_loop(mode):
    with pytest.raises(ConfigError, match="max_concurrency.*continuous mode"):
        SimConfig(mode=mode, max_concurrency=4)


def test_closed_loop_enters_the_run_identity_only_when_set():
    """Open loop (none) hashes as every run did before the setting existed; a C is a different run."""
    base = SimConfig()
    assert "max_concurrency" not in base.relevant_dict()
    closed = base.replace(max_concurrency=8)
    assert closed.relevant_dict()["max_concurrency"] == 8
    assert run_hash(closed.relevant_dict(), {}, {}) != run_hash(base.relevant_dict(), {}, {})
    with pytest.raises(ConfigError, match="max_concurrency"):
        SimConfig(max_concurrency=0)


# ------------------------------------------------------------------ closed forms --
def test_one_client_serves_each_request_alone():
    """C = 1: request k is sent when request k-1 finishes (or at its arrival, if later) and runs alone:
    finish = send + prefill(prompt) + its o - 1 decode steps at contexts prompt .. prompt + o - 2."""
    cfg = SimConfig(mode="continuous_dynamic", gpus=2, max_concurrency=1, d_sla_tbt=None)
    rng = np.random.default_rng(3)
    n = 40
    arrival = np.sort(rng.uniform(0, 30, n))
    prompt, output = rng.integers(1, 1500, n), rng.integers(1, 300, n)
    r = simulate(cfg, Workload(arrival, prompt, output, output)).requests
    t0, t1, t2 = cfg.decode_base, cfg.decode_per_seq, cfg.decode_per_ctx_token
    send, finish = np.empty(n), np.empty(n)
    last = 0.0
    for k in range(n):
        send[k] = max(arrival[k], last)
        steps = output[k] - 1
        decode = steps * (t0 + t1 + t2 * prompt[k]) + t2 * steps * (steps - 1) / 2
        finish[k] = last = send[k] + cfg.prefill_base + cfg.prefill_per_token * prompt[k] + decode
    np.testing.assert_allclose(r["arrival"], send, rtol=1e-12)
    np.testing.assert_allclose(r["start"], send, rtol=1e-12)
    np.testing.assert_allclose(r["finish"], finish, rtol=1e-12)
    np.testing.assert_allclose(r["e2e"], finish - send, rtol=1e-9)
    assert (r["arrival"] > arrival).sum() > n // 4     # the client, not the schedule, set most sends


@pytest.mark.parametrize("clients,gpus", [(1, 1), (4, 1), (16, 1), (6, 3)])
def test_constant_service_throughput_is_clients_over_service_time(clients, gpus):
    """Little's law at saturation: C clients (every request due at 0, GuideLLM's concurrent mode) and a
    service time S the same for every request whatever the batch (fixed lengths, a step time independent
    of batch and context, prefill a fixed cost per iteration): throughput C / S and every e2e = S, to
    float rounding (1e-9)."""
    cfg = SimConfig(mode="continuous_static", gpus=gpus, batch_size=64, router="shared_queue",
                    max_concurrency=clients, prefill_base=0.02, prefill_per_token=0.0, decode_base=0.03,
                    decode_per_seq=0.0, decode_per_ctx_token=0.0, d_sla_tbt=None)
    n, prompt, out = 20 * clients, 100, 50   # 16 prompts fit one iteration's token budget (2,048)
    service = 0.02 + (out - 1) * 0.03
    w = Workload(np.zeros(n), np.full(n, prompt), np.full(n, out), np.full(n, out))
    r = simulate(cfg, w).requests
    np.testing.assert_allclose(r["e2e"], service, rtol=1e-9)
    throughput = n / r["finish"].max()
    assert throughput == pytest.approx(clients / service, rel=1e-9)


def test_saturated_clients_keep_c_requests_in_flight_until_the_last_send():
    """Little's law on the run: mean requests in flight (sum of e2e over the makespan) = throughput x mean
    e2e, and with every request due at 0 the C clients are never idle before the last send; after it,
    the last C requests drain. Random lengths, the default latency model, one GPU."""
    rng = np.random.default_rng(8)
    n, clients = 600, 12
    prompt, output = rng.integers(10, 1500, n), rng.integers(1, 400, n)
    cfg = SimConfig(mode="continuous_dynamic", gpus=1, max_concurrency=clients)
    r = simulate(cfg, Workload(np.zeros(n), prompt, output, output)).requests
    send, finish = r["arrival"], r["finish"]
    makespan = finish.max()
    throughput, mean_e2e = n / makespan, r["e2e"].mean()
    assert np.sum(finish - send) / makespan == pytest.approx(throughput * mean_e2e, rel=1e-12)
    # in flight just after each send before the last: exactly C
    for t in np.unique(send)[:-1]:
        assert np.sum((send <= t) & (finish > t)) == clients, t
    # so Little's law gives C within the drain: the last C requests' share of the makespan
    drain = (makespan - send.max()) / makespan
    assert clients * (1 - drain) <= throughput * mean_e2e <= clients


# ------------------------------------------------------------------ invariants --
@settings(max_examples=40, derandomize=True, deadline=None)
@given(cfg=continuous_configs(CONTINUOUS_MODES), w=small_workloads(max_n=60), clients=st.integers(60, 80))
def test_as_many_clients_as_requests_is_the_open_loop_run(cfg, w, clients):
    """C >= n: no request waits for a client; the run is the open-loop run bit for bit."""
    open_ = simulate(cfg, w).requests
    closed = simulate(cfg.replace(max_concurrency=clients), w).requests
    for key in (*COMPARED, "arrival", "ttft", "e2e", "gpu", "preemptions", "decode_steps"):
        np.testing.assert_array_equal(closed[key], open_[key], err_msg=key)


@settings(max_examples=60, derandomize=True, deadline=None)
@given(cfg=continuous_configs(CONTINUOUS_MODES), w=small_workloads(max_n=60), clients=st.integers(1, 10),
       disaggregate=st.sampled_from([None, None, "1:1", "2:1"]))
def test_sends_follow_the_client_semaphore(cfg, w, clients, disaggregate):
    """Every mode, router and replica count, disaggregated or not: each send is the semaphore's (from the
    run's own finishes), at most C requests are ever in flight, and latencies count from the send."""
    if disaggregate is not None:
        cfg = cfg.replace(disaggregate=disaggregate, router="round_robin" if cfg.routing == "shared_queue"
                          else cfg.routing)
    cfg = cfg.replace(max_concurrency=clients)
    if not fits(cfg, w):
        return
    r = simulate(cfg, w).requests
    send, finish = r["arrival"], r["finish"]
    np.testing.assert_allclose(send, semaphore_sends(w.arrival, finish, clients), rtol=0, atol=1e-9)
    assert np.all(send >= w.arrival)
    assert in_flight_peak(send, finish) <= clients
    np.testing.assert_array_equal(r["ttft"], r["first_token"] - send)
    assert np.all(r["start"] >= send)


@pytest.mark.parametrize("router", ROUTERS)
def test_closed_loop_equals_the_step_by_step_reference(router):
    """Crowded workloads, few clients (so most sends wait for a finish), 1-3 replicas, both queue
    policies: every request's send, times, replica and preemptions as the reference simulator's."""
    @settings(max_examples=15, derandomize=True, deadline=None)
    @given(cfg=continuous_configs(CONTINUOUS_MODES), w=small_workloads(max_n=40, crowded=True),
           gpus=st.integers(1, 3), clients=st.integers(1, 12), queue=st.sampled_from(["fcfs", "priority"]))
    def check(cfg, w, gpus, clients, queue):
        cfg = cfg.replace(gpus=gpus, router=router, max_concurrency=clients, queue_policy=queue,
                          preempt_policy=queue.replace("fcfs", "newest"))
        if not fits(cfg, w):
            return
        matches_reference_with_priorities(cfg, w, also=("arrival",))
    check()


def test_the_run_header_and_the_vllm_bench_result_name_the_clients():
    import json

    from click.testing import CliRunner

    from batchlab.cli import cli

    args = ["run", "--no-store", "--mode", "continuous_static", "--num-requests", "60", "--max-concurrency", "3"]
    text = CliRunner().invoke(cli, args).stdout
    assert text.splitlines()[0].endswith("closed loop of 3 clients | simulated (not stored: --no-store)")
    out = json.loads(CliRunner().invoke(cli, [*args, "--format", "vllm-bench"]).stdout)
    assert out["max_concurrency"] == 3 and out["completed"] == 60   # (max_concurrent_requests: vLLM's 1 s buckets)
    assert "closed loop" not in CliRunner().invoke(cli, args[:-2]).stdout.splitlines()[0]

"""Invariants of the batch-level (run-to-completion) engine, under random workloads and configs (hypothesis)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from batchlab.core import ConfigError, SimConfig, simulate
from batchlab.core.config import BATCH_MODES
from batchlab.core.memory import MemoryModel
from batchlab.workloads.workload import Workload

# Every test here takes seconds: one that stops making progress fails instead of hanging the suite.
pytestmark = pytest.mark.timeout(120)


@st.composite
def workloads(draw, crowded=False):
    """Up to 250 requests; ``crowded``: at least 40 arriving at once (queues, large batches), every request
    within 5,000 KV tokens."""
    n = draw(st.integers(40 if crowded else 1, 250))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    rate = 1000.0 if crowded else draw(st.sampled_from([0.05, 1.0, 20.0, 1000.0]))
    gaps = rng.exponential(1.0 / rate, n)
    if draw(st.booleans()):  # simultaneous arrivals happen in real traces
        gaps = np.round(gaps, 0)
    arrival = np.cumsum(gaps)
    arrival -= arrival[0]
    prompt = rng.integers(1, draw(st.sampled_from([2000] if crowded else [50, 2000, 20000])), n)
    output = rng.integers(1, draw(st.sampled_from([300, 3000] if crowded else [5, 300, 3000])), n)
    noise = np.exp(rng.normal(0, draw(st.sampled_from([0.5, 1.0])), n))
    predicted = np.maximum(1, np.round(output * noise)).astype(np.int64)
    conf = draw(st.sampled_from([0.0, 0.0, 0.2]))
    return Workload(arrival, prompt, output, predicted, identity={"seed": seed, "n": n, "rate": rate},
                    confusion_p=conf)


@st.composite
def configs(draw):
    mode = draw(st.sampled_from(BATCH_MODES))
    b_min = draw(st.integers(1, 8))
    return SimConfig(
        mode=mode,
        gpus=draw(st.integers(1, 5)),
        k_bins=draw(st.integers(1, 5)),
        batch_size=draw(st.integers(1, 16)),
        b_min=b_min,
        b_max=draw(st.integers(b_min, 64)),
        fill=draw(st.sampled_from(["greedy", "full"])),
        max_wait=draw(st.sampled_from([None, 0.0, 0.5, 30.0])),
        bin_policy=draw(st.sampled_from(["fcfs", "longest", "round_robin", "short_first"])),
        d_sla_tbt=draw(st.sampled_from([None, 0.035, 0.05, 0.2])),
        gpu_mem_gb=draw(st.sampled_from([17.0, 20.0, 40.0])),   # 17 GB: 6,866 KV tokens
        seed=draw(st.integers(0, 3)),
    )


def check_invariants(cfg: SimConfig, w: Workload):
    r = simulate(cfg, w)
    req, bat = r.requests, r.batches
    n = len(w)
    eta = MemoryModel.from_config(cfg).eta
    # every request completes exactly once; a batch's size is its completed plus its evicted requests
    assert r.summary["completed"] == n
    counts = np.bincount(req["batch"], minlength=len(bat["size"]))
    np.testing.assert_array_equal(counts + bat["evicted"], bat["size"])
    assert bat["evicted"].sum() == r.summary["evicted_requests"] == req["preemptions"].sum()
    assert r.summary["oom_events"] == int((bat["evicted"] > 0).sum())
    # start >= arrival, finish after start
    assert np.all(req["start"] >= req["arrival"] - 1e-9)
    assert np.all(req["finish"] > req["start"])
    # no GPU runs two batches at once
    end = bat["start"] + bat["prefill"] + bat["decode"]
    for gpu in np.unique(bat["gpu"]):
        m = np.flatnonzero(bat["gpu"] == gpu)
        o = m[np.argsort(bat["start"][m], kind="stable")]
        assert np.all(bat["start"][o[1:]] >= end[o[:-1]] - 1e-9)
    assert bat["gpu"].min() >= 0 and bat["gpu"].max() < cfg.gpus
    # batch sizes within their caps
    assert np.all(bat["size"] >= 1)
    assert np.all(bat["size"] <= bat["b_cap"])
    if cfg.dynamic:
        assert np.all(bat["b_cap"] <= cfg.b_max)
        assert np.all(bat["b_cap"] == np.minimum(bat["b_mem"], bat["b_sla"]))
    else:
        assert np.all(bat["size"] <= cfg.batch_size)
    # memory, recomputed from the requests' own lengths: a completed request's o tokens are its
    # prefill's and o - 1 decode steps, within the steps its batch ran; a batch without eviction ran
    # exactly its longest true output minus one, and the padded KV it then held, size x (longest
    # prompt + longest output - 1), never exceeded eta
    done_out = np.zeros(len(bat["size"]), dtype=np.int64)
    np.maximum.at(done_out, req["batch"], req["output"])
    done_prompt = np.zeros(len(bat["size"]), dtype=np.int64)
    np.maximum.at(done_prompt, req["batch"], req["prompt"])
    assert np.all(done_out - 1 <= bat["steps"])
    whole = bat["evicted"] == 0
    np.testing.assert_array_equal(done_out[whole] - 1, bat["steps"][whole])
    np.testing.assert_array_equal(done_prompt[whole], bat["max_prompt"][whole])
    assert np.all(bat["size"] * (bat["max_prompt"] + bat["steps"]) <= eta)
    assert r.summary["kv_peak_tokens"] == (bat["size"] * (bat["max_prompt"] + bat["steps"])).max()
    # a batch without a decode step takes its prefill alone; its requests emitted one token each
    np.testing.assert_array_equal(bat["decode"] == 0, bat["steps"] == 0)
    # a request of one token has no gap between tokens, every other one its batch's mean step
    one = req["output"] == 1
    assert np.isnan(req["tbt"][one]).all() and np.isnan(req["tbt_max"][one]).all()
    np.testing.assert_allclose(req["tbt"][~one], (bat["decode"] / np.maximum(bat["steps"], 1))[req["batch"][~one]])
    # each eviction comes at a later step than the last: at most o - 1 of them
    assert np.all(req["preemptions"] <= req["output"] - 1)
    # an evicted batch stopped at the step where its padded KV would have outgrown eta
    oom = ~whole
    assert np.all(bat["size"][oom] * (bat["max_prompt"][oom] + bat["steps"][oom] + 1) > eta)
    # a batch never mixes bins
    np.testing.assert_array_equal(req["bin"], bat["bin"][req["batch"]])
    if not cfg.binned:
        assert np.all(req["bin"] == 0)
    # FIFO within a queue, for requests never evicted: earlier arrival never starts later
    for b in range(cfg.bins):
        idx = np.flatnonzero((req["bin"] == b) & (req["preemptions"] == 0))  # already arrival-sorted
        assert np.all(np.diff(req["start"][idx]) >= -1e-9)
    # time accounting
    np.testing.assert_allclose(req["e2e"], req["queue_delay"] + (req["finish"] - req["start"]))
    assert 0.0 <= r.summary["gpu_utilization"] <= 1.0 + 1e-9
    return r


def _by_batch(values, batch):
    return values[np.argsort(batch, kind="stable")]


def _starts(sizes):
    return np.concatenate(([0], np.cumsum(sizes)[:-1]))


@settings(max_examples=150)
@given(cfg=configs(), w=workloads())
def test_invariants_hold_for_any_config_and_workload(cfg, w):
    assume(np.all(w.prompt + w.output - 1 <= MemoryModel.from_config(cfg).eta))   # no request rejected
    check_invariants(cfg, w)


def test_invariants_hold_when_batches_run_out_of_memory():
    """Crowded queues on a 17 GB GPU (6,866 KV tokens), batches of at least 4 (or B_max of 8) allowed: over
    a quarter of the examples run out of memory and evict (40 % measured), and the invariants (evicted requests recomputed,
    memory never above eta) hold."""
    evicting: list[bool] = []

    @settings(max_examples=100, derandomize=True)
    @given(cfg=configs(), w=workloads(crowded=True))
    def check(cfg, w):
        cfg = cfg.replace(gpu_mem_gb=17.0, batch_size=max(cfg.batch_size, 4), b_max=max(cfg.b_max, 8))
        evicting.append(check_invariants(cfg, w).summary["oom_events"] > 0)

    check()
    assert len(evicting) >= 100
    assert np.mean(evicting) > 0.25


@settings(max_examples=25, deadline=None)
@given(cfg=configs(), w=workloads())
def test_same_seed_same_result(cfg, w):
    assume(np.any(w.prompt + w.output - 1 <= MemoryModel.from_config(cfg).eta))   # settings that serve something
    a, b = simulate(cfg, w), simulate(cfg, w)
    for key in a.requests:
        np.testing.assert_array_equal(a.requests[key], b.requests[key])
    assert a.summary == b.summary


def test_greedy_is_work_conserving_single_queue():
    """With one GPU and greedy fill, a request waits only while the GPU is busy."""
    rng = np.random.default_rng(3)
    n = 400
    arrival = np.cumsum(rng.exponential(2.0, n))
    arrival -= arrival[0]
    w = Workload(arrival, rng.integers(10, 500, n), rng.integers(1, 100, n), rng.integers(1, 100, n),
                 identity={"t": "wc"})
    r = simulate(SimConfig(mode="static_fifo", gpus=1, batch_size=4), w)
    bat = r.batches
    end = bat["start"] + bat["prefill"] + bat["decode"]
    prev_end = np.concatenate(([0.0], end[:-1]))
    first_arrival = w.arrival[np.argsort(r.requests["batch"], kind="stable")][_starts(bat["size"])]
    # each batch starts exactly when both the GPU is free and its first request has arrived
    np.testing.assert_allclose(bat["start"], np.maximum(prev_end, first_arrival))


def test_full_fill_waits_for_a_full_batch():
    arrival = np.arange(20, dtype=float)  # one request per second
    w = Workload(arrival, np.full(20, 10), np.full(20, 5), np.full(20, 5), identity={"t": "full"})
    r = simulate(SimConfig(mode="static_fifo", gpus=2, batch_size=4, fill="full"), w)
    assert list(r.batches["size"]) == [4] * 5
    np.testing.assert_allclose(r.batches["start"], [3, 7, 11, 15, 19])  # when the 4th request arrives
    r = simulate(SimConfig(mode="static_fifo", gpus=2, batch_size=4, fill="full", max_wait=1.5), w)
    np.testing.assert_allclose(r.batches["start"][:3], [1.5, 3.5, 5.5])  # head waited max_wait
    assert list(r.batches["size"][:3]) == [2, 2, 2]


def test_end_of_trace_flushes_partial_batches():
    arrival = np.arange(10, dtype=float)
    w = Workload(arrival, np.full(10, 10), np.full(10, 5), np.full(10, 5), identity={"t": "flush"})
    r = simulate(SimConfig(mode="multi_bin_fixed", k_bins=1, batch_size=4, gpus=1), w)
    assert list(r.batches["size"]) == [4, 4, 2]
    assert r.batches["start"][2] >= 9.0


def test_admission_reserves_predicted_kv_and_the_truth_decides_out_of_memory():
    cfg = SimConfig(mode="static_fifo", batch_size=8, gpus=1, gpu_mem_gb=17.0, weights_gb=16.0,
                    mem_reserve_frac=0.0)
    eta = MemoryModel.from_config(cfg).eta  # 7629 tokens
    arrival, prompt, output = np.zeros(8), np.full(8, 1500), np.full(8, 100)
    # honest predictions: the reservation b (1500 + 100 - 1) <= eta admits 4, and nothing runs out of memory:
    # 99 decode steps after the prefill's token, peaking at 4 x 1599 KV tokens
    r = simulate(cfg, Workload(arrival, prompt, output, output.copy()))
    assert r.batches["size"][0] == eta // 1599 == 4 and r.batches["steps"][0] == 99
    assert r.summary["oom_events"] == 0 and r.summary["kv_peak_tokens"] == 4 * 1599
    # predictions of 10 tokens admit 5 (5 x 1509 <= eta); at decode step eta // 5 - 1500 + 1 = 26 their KV
    # outgrows the GPU: all five are evicted, and the wasted GPU time is that batch's
    short = np.full(8, 10)
    r = simulate(cfg, Workload(arrival, prompt, output, short))
    b = r.batches
    assert b["size"][0] == 5 and b["steps"][0] == eta // 5 - 1500 == 25 and b["evicted"][0] == 5
    assert r.summary["oom_events"] >= 1 and r.summary["evicted_requests"] >= 5
    assert r.summary["wasted_gpu_s"] == pytest.approx(
        b["prefill"][b["evicted"] > 0].sum() + b["decode"][b["evicted"] > 0].sum())
    # an evicted request is re-admitted reserving at least what it had generated: it completes
    assert r.summary["completed"] == 8 and r.requests["preemptions"][:5].tolist() == [1] * 5


@pytest.mark.parametrize("m", [1, 3])
@pytest.mark.parametrize("waiting", [3, 8])
def test_a_reservation_exactly_at_the_budget_is_admitted(m, waiting):
    cfg = SimConfig(mode="static_fifo", batch_size=8, gpus=1, gpu_mem_gb=17.0, weights_gb=16.0,
                    mem_reserve_frac=0.0)
    eta = MemoryModel.from_config(cfg).eta            # 7629 = 3 x 2543
    w = Workload(np.zeros(waiting), np.full(waiting, eta // m - 99), np.full(waiting, 100), np.full(waiting, 100))
    assert m * (eta // m) == eta                      # m (P + R - 1) == eta exactly
    assert simulate(cfg, w).batches["size"][0] == m


def test_max_new_tokens_reservation_never_runs_out_of_memory():
    cfg = SimConfig(mode="static_fifo", batch_size=8, gpus=1, gpu_mem_gb=17.0, weights_gb=16.0,
                    mem_reserve_frac=0.0, kv_reserve="max_new_tokens", max_new_tokens=200)
    w = Workload(np.zeros(8), np.full(8, 1500), np.full(8, 100), np.full(8, 10))
    r = simulate(cfg, w)
    assert r.batches["size"][0] == 7629 // 1699 and r.summary["oom_events"] == 0   # b (1500 + 200 - 1)
    five = Workload(np.zeros(5), np.full(5, 1500), np.full(5, 100), np.full(5, 10))   # 5 x 1509 would fit
    assert simulate(cfg, five).batches["size"].tolist() == [4, 1]
    with pytest.raises(ConfigError, match="max_new_tokens.*request 0 generates 100 tokens"):
        simulate(cfg.replace(max_new_tokens=50), w)


@pytest.mark.parametrize("mode", ["static_fifo", "continuous_static"])
def test_a_request_no_gpu_can_hold_is_rejected_and_misses_every_deadline(mode):
    cfg = SimConfig(mode=mode, gpu_mem_gb=17.0, weights_gb=16.0)
    w = Workload(np.zeros(3), np.array([10, 10**6, 20]), np.array([5, 5, 5]), np.array([5, 5, 5]))
    r = simulate(cfg, w)
    s, q = r.summary, r.requests
    assert (s["completed"], s["rejected_requests"]) == (2, 1)
    assert np.isnan(q["finish"][1]) and np.isfinite(q["finish"][[0, 2]]).all()
    for key in ("start", "first_token", "ttft", "tbt", "tbt_max", "e2e"):   # no times
        assert np.isnan(q[key][1]) and np.isfinite(q[key][[0, 2]]).all(), key
    for key, none in (("gpu", -1), ("batch", -1), ("preemptions", 0), ("decode_steps", 0)):
        if key in q:                                         # an integer array: "nothing", not NaN
            assert q[key].dtype.kind == "i" and q[key][1] == none, key
    assert q["gpu"][[0, 2]].min() >= 0 and ("decode_steps" not in q or q["decode_steps"][[0, 2]].tolist() == [4, 4])
    assert s["sla_attainment"] == pytest.approx(2 / 3) and s["sla_violation_rate_ttft"] == pytest.approx(1 / 3)
    assert s["throughput_rps"] == pytest.approx(2 / s["makespan_s"])
    with pytest.raises(ConfigError, match="gpu_mem_gb: no request fits"):
        simulate(cfg, Workload(np.zeros(1), np.array([10**6]), np.array([5]), np.array([5])))


# ------------------------------------------------- evicted requests come back first --
TIGHT = SimConfig(mode="static_fifo", batch_size=5, gpus=1, gpu_mem_gb=17.0, weights_gb=16.0, mem_reserve_frac=0.0)


def test_requests_evicted_by_out_of_memory_rejoin_at_the_front_of_their_queue():
    """Five requests predicted at 10 tokens but generating 100 run out of memory at decode step 26 (eta =
    7,629), having generated 26 tokens; five short requests arrive meanwhile. When the GPU is free again the
    evicted ones go first: four fit their raised reservation (27 tokens each: 4 x (1500 + 27 - 1) <= eta <
    5 x 1526), the fifth leads the next batch, and no later arrival starts before any of them."""
    n = 10
    arrival = np.array([0.0] * 5 + [0.1] * 5)
    prompt = np.array([1500] * 5 + [100] * 5)
    output = np.array([100] * 5 + [10] * 5)
    r = simulate(TIGHT, Workload(arrival, prompt, output, np.full(n, 10)))
    b, q = r.batches, r.requests
    assert b["evicted"].tolist()[0] == 5 and q["preemptions"].tolist() == [1] * 5 + [0] * 5
    oom_end = b["start"][0] + b["prefill"][0] + b["decode"][0]
    assert b["start"][1] == oom_end and q["batch"][:4].tolist() == [1] * 4
    assert q["start"][:5].max() <= q["start"][5:].min()


def test_evicted_requests_are_back_when_their_batch_ends_whatever_else_was_evicted():
    """Two GPUs: batch A (requests 0-4) runs out of memory at step 125, batch B (5-9, arriving later)
    at step 25. B's requests are back at B's end and restart there on B's free GPU, while A's, earlier
    in the queue, are still running."""
    arrival = np.array([0.0] * 5 + [0.01] * 5)
    prompt = np.array([1400] * 5 + [1500] * 5)
    output = np.array([300] * 5 + [100] * 5)
    r = simulate(TIGHT.replace(gpus=2), Workload(arrival, prompt, output, np.full(10, 10)))
    b, q = r.batches, r.requests
    assert b["steps"][:2].tolist() == [125, 25] and b["evicted"][:2].tolist() == [5, 5]
    end = b["start"] + b["prefill"] + b["decode"]
    assert end[1] < end[0]
    assert b["start"][2] == end[1] and b["gpu"][2] == b["gpu"][1]
    assert q["batch"][5:9].tolist() == [2] * 4


def test_an_out_of_memory_step_completes_what_is_done_and_wastes_the_evicted_share():
    """Five requests of 1,500 prompt tokens predicted at 10 run out of memory at decode step 26 (after 25
    steps, 5 x 1525 <= eta = 7,629 < 5 x 1526): with the prefill's token each has generated 26. The two
    whose outputs (20 and exactly 26) are done by then complete in that batch, the three others (27 and
    more) are evicted, and the wasted GPU time is their three fifths of the batch's time."""
    output = np.array([20, 26, 27, 100, 100])
    r = simulate(TIGHT, Workload(np.zeros(5), np.full(5, 1500), output, np.full(5, 10)))
    b, q = r.batches, r.requests
    assert b["steps"][0] == 25 and b["evicted"][0] == 3
    assert q["batch"][:2].tolist() == [0, 0] and q["preemptions"].tolist() == [0, 0, 1, 1, 1]
    # the evicted request of 27 tokens comes back reserving 27 (26 generated plus one) and completes
    assert q["batch"][2] > 0 and r.batches["steps"][q["batch"][2]] >= 26
    assert q["finish"][1] == b["start"][0] + b["prefill"][0] + b["decode"][0]
    assert r.summary["wasted_gpu_s"] == pytest.approx((b["prefill"][0] + b["decode"][0]) * 3 / 5, rel=1e-12)
    assert (r.summary["oom_events"], r.summary["evicted_requests"], r.summary["completed"]) == (1, 3, 5)


def test_evicted_requests_waiting_together_go_in_arrival_order():
    """Three GPUs, batches of up to 5 on 7,629 KV tokens, predictions far below the outputs: request 7
    (arrived at 0.40 s) is evicted twice, the second time by a batch dispatched after the one that evicted
    request 12 (arrived at 1.84 s). Both wait at the queue's front when GPU 0 frees at 35.6 s, and the
    earlier arrival goes first, whatever the order of the evictions."""
    arrival = [0.0, 0.042, 0.054, 0.218, 0.23, 0.355, 0.367, 0.403, 0.522, 0.708, 0.775, 1.381, 1.84, 1.876]
    prompt = [1496, 1475, 662, 798, 1173, 1281, 875, 959, 680, 1221, 1014, 856, 848, 1406]
    output = [244, 683, 357, 754, 140, 651, 410, 735, 452, 331, 352, 568, 447, 707]
    predicted = [49, 275, 81, 140, 67, 95, 80, 92, 92, 57, 29, 86, 132, 45]
    w = Workload(np.array(arrival), np.array(prompt), np.array(output), np.array(predicted))
    q = simulate(TIGHT.replace(gpus=3), w).requests
    assert q["preemptions"][7] == 2 and q["preemptions"][12] == 1
    assert q["start"][7] == pytest.approx(35.583, abs=1e-3) and q["batch"][7] == q["batch"][3]
    assert q["start"][7] < q["start"][12]

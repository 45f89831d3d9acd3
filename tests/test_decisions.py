"""What the batch-level scheduler decides from, replayed from the outside.

Each test recomputes a decision from the request arrays and the controllers'
definitions, independently of the engine's bookkeeping, so that a scheduler
quietly using the truth (true output lengths), sharing state that should be
per bin, or observing the wrong quantity is caught.
"""
from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from batchlab.core import SimConfig, simulate
from batchlab.core.bins import assign_bins, equal_mass_edges
from batchlab.core.controllers import MemoryBound, SlaController
from batchlab.core.memory import MemoryModel
from batchlab.workloads.workload import Workload


def skewed(n=1500, seed=0, rate=60.0):
    """Overloaded traffic whose predictions are informative but wrong (log-normal error, sigma 0.8)."""
    rng = np.random.default_rng(seed)
    arrival = np.sort(rng.uniform(0, n / rate, n))
    prompt = rng.integers(50, 1500, n)
    output = rng.integers(5, 800, n)
    predicted = np.maximum(1, np.rint(output * np.exp(rng.normal(0, 0.8, n)))).astype(np.int64)
    return Workload(arrival, prompt, output, predicted, identity={"skewed": seed, "n": n, "rate": rate})


def steps(batches):
    return batches["steps"]


# ------------------------------------------------------------------- bins --
def test_bins_come_from_the_prediction_not_the_true_length():
    n = 800
    rng = np.random.default_rng(1)
    predicted = rng.permutation(np.arange(1, n + 1))
    w = Workload(np.sort(rng.uniform(0, 100, n)), np.full(n, 100), np.full(n, 64), predicted,
                 identity={"t": "bins-from-prediction"})
    r = simulate(SimConfig(mode="multi_bin_dynamic", k_bins=4), w)
    expected = assign_bins(predicted, equal_mass_edges(predicted, 4))
    np.testing.assert_array_equal(r.requests["bin"], expected)
    assert np.bincount(r.requests["bin"]).tolist() == [200] * 4  # equal true lengths would give one bin


# ------------------------------------------------ Paper 1: first formed, first served --
def test_multi_bin_fixed_serves_formed_batches_first_formed_first_served():
    """bin 1 fills at t=2, bin 0 at t=4, while the only GPU is busy until ~t=30: bin 1 goes first."""
    long_, short = 1000, 10
    arrival = np.array([0, 0, 1, 2, 3, 4, 100, 101], dtype=float)
    predicted = np.array([long_, long_, long_, long_, short, short, short, short])
    w = Workload(arrival, np.full(8, 100), predicted, predicted, identity={"t": "fffs"})
    r = simulate(SimConfig(mode="multi_bin_fixed", k_bins=2, batch_size=2, gpus=1), w)
    b = r.batches
    order = np.argsort(b["start"], kind="stable")
    assert b["start"][order[1]] > 20  # the GPU was busy with the first batch
    assert b["bin"][order].tolist() == [1, 1, 0, 0]
    assert r.requests["batch"][2] == order[1] and r.requests["batch"][4] == order[2]


# ------------------------------------------------------ Algorithm 2, replayed --
def replay_sla(cfg: SimConfig, batches: dict) -> tuple[np.ndarray, np.ndarray]:
    """(b_SLA, branch) of every batch from one fresh controller per bin fed that bin's batches as they
    end: a decision at time t has seen every batch that ended by t (in end order), and no other. The
    observation is the batch's decode-step time (decode / steps), never prefill included; a batch that ran
    no decode step (its requests emitted one token each) has none and is not observed."""
    ctls = {}
    b_sla = np.empty(len(batches["start"]), dtype=np.int64)
    branch = np.empty_like(b_sla)
    end = batches["start"] + batches["prefill"] + batches["decode"]
    ended = sorted(range(len(end)), key=lambda i: (end[i], i))
    seen = 0

    def controller(q):
        return ctls.setdefault(q, SlaController(cfg.d_sla_tbt, cfg.sla_eps, cfg.sla_alpha, cfg.sla_delta,
                                                cfg.b_min, cfg.b_max, cfg.sla_window))

    for i in np.argsort(batches["start"], kind="stable"):
        while seen < len(ended) and end[ended[seen]] <= batches["start"][i]:
            j = ended[seen]
            n_steps = int(steps(batches)[j])
            if n_steps:
                controller(int(batches["bin"][j])).observe(batches["decode"][j] / n_steps, int(batches["size"][j]))
            seen += 1
        b_sla[i], branch[i] = controller(int(batches["bin"][i])).cap()
    return b_sla, branch


@pytest.mark.parametrize("mode", ["dynamic_no_bins", "multi_bin_dynamic"])
def test_each_bin_has_its_own_sla_controller_observing_decode_steps(mode):
    cfg = SimConfig(mode=mode, k_bins=4, gpus=3, d_sla_tbt=0.045, prefill_per_token=2e-4, gpu_mem_gb=40.0)
    r = simulate(cfg, skewed())
    b_sla, branch = replay_sla(cfg, r.batches)
    np.testing.assert_array_equal(r.batches["b_sla"], b_sla)
    np.testing.assert_array_equal(r.batches["branch"], branch)
    fired = {name for name, count in r.summary["sla_branch_counts"].items() if count and name != "start"}
    assert len(fired) >= 2  # the replay exercised more than one branch


# ------------------------------------------------------ Algorithm 1, replayed --
def replay_memory(cfg: SimConfig, w: Workload, r) -> np.ndarray:
    """b_mem of every batch from the *predicted* lengths of its queue's arrivals so far (window)."""
    eta = MemoryModel.from_config(cfg).eta
    bound = MemoryBound(eta, cfg.b_max, cfg.mem_margin, cfg.mem_factor, cfg.mem_eps)
    bins = r.requests["bin"]
    out = np.empty(len(r.batches["start"]), dtype=np.int64)
    for i, (t, q) in enumerate(zip(r.batches["start"], r.batches["bin"])):
        idx = np.flatnonzero((bins == q) & (w.arrival <= t))
        if cfg.stats_window:
            idx = idx[-cfg.stats_window:]
        p = w.prompt[idx].astype(float)
        o = w.predicted[idx].astype(float)
        out[i] = bound.cap(p.mean(), o.mean(), p.var(), o.var())
    return out


@pytest.mark.parametrize("margin", ["factor", "clt"])
@pytest.mark.parametrize("mode", ["dynamic_no_bins", "multi_bin_dynamic"])
def test_memory_bound_uses_predictions_and_the_chosen_margin(mode, margin):
    cfg = SimConfig(mode=mode, k_bins=3, gpus=2, gpu_mem_gb=18.0, mem_margin=margin, d_sla_tbt=None,
                    stats_window=200)
    w = skewed(n=900)
    r = simulate(cfg, w)
    np.testing.assert_array_equal(r.batches["b_mem"], replay_memory(cfg, w, r))
    assert r.batches["b_mem"].max() < cfg.b_max  # memory really bounds these batches


def test_the_two_margins_give_different_caps_on_a_tight_gpu():
    w = skewed(n=900)
    caps = {m: simulate(SimConfig(mode="dynamic_no_bins", gpu_mem_gb=18.0, mem_margin=m, d_sla_tbt=None),
                        w).batches["b_mem"] for m in ("factor", "clt")}
    assert caps["factor"].mean() != caps["clt"].mean()


# ------------------------------------------------------------ bin policies --
# While one long request holds the only GPU, bins 3, 2, 1 and 0 fill in that order with 1, 1, 3 and
# 2 requests. Serving one request at a time, the policies then take the bins in these orders.
POLICY_ORDER = {
    "fcfs": [3, 2, 1, 1, 1, 0, 0],          # oldest head first
    "longest": [1, 0, 1, 0, 1, 2, 3],       # most waiting first, ties to the lower bin
    "round_robin": [2, 3, 0, 1, 0, 1, 1],   # the next bin after the one just served, cyclically
    "short_first": [0, 0, 1, 1, 1, 2, 3],   # lowest bin first
}


def bin_policy_workload():
    tier = {0: 5, 1: 50, 2: 500, 3: 5000}
    early = [1, 3, 2, 1, 1, 1, 0, 0]                      # bins of the requests arriving at t = 0..7
    late = [0] * 8 + [1] * 6 + [2] * 9 + [3] * 9          # later fillers: ten predictions per tier in all
    predicted = np.array([tier[b] for b in early + late])
    n = len(predicted)
    arrival = np.concatenate([np.arange(8.0), 10_000 + 100.0 * np.arange(n - 8)])
    output = np.full(n, 10)
    output[0] = 3000                                      # the long request that holds the GPU
    return Workload(arrival, np.full(n, 100), output, predicted, identity={"t": "bin-policies"}), early


@pytest.mark.parametrize("policy", sorted(POLICY_ORDER))
@pytest.mark.parametrize("mode", ["multi_bin_dynamic", "continuous_multi_bin"])
def test_each_bin_policy_serves_the_bins_in_its_order(mode, policy):
    w, early = bin_policy_workload()
    cfg = SimConfig(mode=mode, k_bins=4, bin_policy=policy, gpus=1, b_min=1, b_max=1, d_sla_tbt=None)
    r = simulate(cfg, w)
    req = r.requests
    assert req["bin"][:8].tolist() == early
    assert req["start"][1:8].min() > 7 and req["start"][0] == 0  # all seven wait for the long request
    served = np.argsort(req["start"][1:8], kind="stable") + 1
    assert req["bin"][served].tolist() == POLICY_ORDER[policy]


# ------------------------------------------------------------ admission --
@pytest.mark.parametrize("mode,margin", [("static_fifo", "factor"), ("dynamic_no_bins", "factor"),
                                         ("dynamic_no_bins", "none"), ("dynamic_no_bins", "clt"),
                                         ("multi_bin_dynamic", "factor")])
def test_each_batch_is_the_longest_fifo_prefix_whose_reservation_fits(mode, margin):
    """b (max prompt + max prediction - 1) + L0 <= eta for every batch (its padded KV at its last decode
    step, were the predictions true), and one more waiting request of its queue would not have fitted
    whenever the batch stopped below its cap. L0 is Algorithm 1's buffer: a
    share of eta, or with the CLT margin theta sqrt(b Var) from the queue's recent arrivals (window 1,000).
    Honest predictions: no batch runs out of memory, so every request's batch is the one that admitted it."""
    rng = np.random.default_rng(0)
    n = 1500
    arrival = np.sort(rng.uniform(0, n / 60, n))
    prompt, output = rng.integers(50, 1500, n), rng.integers(5, 800, n)
    w = Workload(arrival, prompt, output, output.copy(), identity={"t": "reservation"})
    cfg = SimConfig(mode=mode, gpus=2, gpu_mem_gb=17.0, batch_size=64, mem_margin=margin)
    r = simulate(cfg, w)
    eta, req, b = r.summary["eta_tokens"], r.requests, r.batches
    assert r.summary["oom_events"] == 0
    theta = NormalDist().inv_cdf(1 - cfg.mem_eps)

    def buffer(j, size):
        if not cfg.dynamic or margin == "none":
            return 0.0
        if margin == "factor":
            return eta * (1 - cfg.mem_factor)
        seen = np.flatnonzero((req["bin"] == b["bin"][j]) & (arrival <= b["start"][j]))[-cfg.stats_window:]
        return theta * np.sqrt((prompt[seen].var() + output[seen].var()) * size)

    members = [[] for _ in range(len(b["size"]))]
    for i in np.argsort(req["arrival"], kind="stable"):
        members[req["batch"][i]].append(i)
    nxt = {}                                   # request -> the next request of its queue
    for q in range(cfg.bins):
        idx = np.flatnonzero(req["bin"] == q)
        nxt.update(zip(idx[:-1].tolist(), idx[1:].tolist()))

    def reservation(j, ids):
        return len(ids) * (prompt[ids].max() + output[ids].max() - 1) + buffer(j, len(ids))

    cut = 0
    for j, ids in enumerate(members):
        assert len(ids) == b["size"][j] and b["max_prompt"][j] == prompt[ids].max()
        assert len(ids) == 1 or reservation(j, ids) <= eta
        after = nxt.get(ids[-1])
        if after is not None and arrival[after] <= b["start"][j] and len(ids) < b["b_cap"][j]:
            assert reservation(j, ids + [after]) > eta, j   # it waited, and the cap had room: memory kept it out
            cut += 1
    assert cut > 50   # memory, not the cap, ended many batches

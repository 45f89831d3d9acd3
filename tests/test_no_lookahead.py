"""No look-ahead in the batch-level engine, tested from the outside.

A scheduler learns a request's true output length only when the batch holding it
ends (it finishes, or runs out of memory). So changing one request's true output
may change what happens from the end of its batch on, and nothing decided before:
every batch started before that moment has the same start, GPU, bin, size,
longest prompt, caps (b_mem, b_SLA, b_cap), Algorithm 2 branch and members in both
runs.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from batchlab.core import SimConfig, simulate
from batchlab.core.config import BATCH_MODES
from batchlab.core.controllers import BRANCH_START
from batchlab.core.memory import MemoryModel
from batchlab.workloads.workload import Workload

DYNAMIC = ("dynamic_no_bins", "multi_bin_dynamic")
DECISIONS = ("start", "gpu", "bin", "size", "max_prompt", "b_mem", "b_sla", "b_cap", "branch")


@st.composite
def busy_cases(draw):
    """(config, workload): several GPUs with overlapping batches, lengths sized to the GPU's memory so
    that batches run out of memory, noisy predictions, every request servable."""
    b_min = draw(st.integers(1, 4))
    cfg = SimConfig(
        mode=draw(st.sampled_from(BATCH_MODES + DYNAMIC)),            # Algorithm 2's modes twice as often
        gpus=draw(st.integers(2, 4)),
        k_bins=draw(st.integers(1, 3)),
        batch_size=draw(st.integers(1, 12)),
        b_min=b_min,
        b_max=draw(st.integers(b_min, 48)),
        fill=draw(st.sampled_from(["greedy", "full"])),
        max_wait=draw(st.sampled_from([None, 0.5])),
        bin_policy=draw(st.sampled_from(["fcfs", "longest", "round_robin", "short_first"])),
        d_sla_tbt=draw(st.sampled_from([0.04, 0.06, 0.1])),
        decode_per_ctx_token=draw(st.sampled_from([1e-7, 1e-6, 4e-6])),   # step times that tell outputs apart
        sla_window=draw(st.sampled_from([1, 2, 8])),
        mem_margin=draw(st.sampled_from(["factor", "none"])),
        gpu_mem_gb=draw(st.sampled_from([16.5, 18.0, 40.0])),
        seed=draw(st.integers(0, 3)),
    )
    eta = MemoryModel.from_config(cfg).eta
    n = draw(st.integers(8, 120))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    arrival = np.cumsum(rng.exponential(1.0 / draw(st.sampled_from([0.5, 5.0, 50.0])), n))
    arrival -= arrival[0]
    prompt = rng.integers(1, eta // draw(st.sampled_from([8, 64])), n)
    output = rng.integers(1, eta // draw(st.sampled_from([4, 32, 256])), n)
    predicted = np.maximum(1, np.rint(output * np.exp(rng.normal(0, 0.7, n)))).astype(np.int64)
    return cfg, Workload(arrival, prompt, output, predicted, confusion_p=draw(st.sampled_from([0.0, 0.2])))


def batch_end(batches: dict) -> np.ndarray:
    return batches["start"] + batches["prefill"] + batches["decode"]


@settings(max_examples=300)
@given(case=busy_cases(), data=st.data())
def test_no_decision_depends_on_a_true_output_not_yet_observed(case, data):
    cfg, w = case
    eta = MemoryModel.from_config(cfg).eta
    a = simulate(cfg, w)
    never_evicted = np.flatnonzero(a.requests["preemptions"] == 0)
    assume(len(never_evicted) > 0)
    j = int(data.draw(st.sampled_from(never_evicted.tolist())))
    room = int(eta - w.prompt[j] + 1)                     # the longest output one GPU can serve: P + o - 1 <= eta
    new = data.draw(st.one_of(st.integers(1, max(1, w.output[j] * 2)), st.integers(1, room), st.just(room))
                    .filter(lambda o: o != w.output[j] and o <= room))
    output = w.output.copy()
    output[j] = new
    b = simulate(cfg, Workload(w.arrival, w.prompt, output, w.predicted, confusion_p=w.confusion_p))

    bid = int(a.requests["batch"][j])                     # j's only batch in run a
    assert b.batches["start"][bid] == a.batches["start"][bid]
    known = min(batch_end(a.batches)[bid], batch_end(b.batches)[bid])   # when j's true output shows
    m = int((a.batches["start"] < known).sum())           # decisions are made in time order: a prefix
    assert int((b.batches["start"] < known).sum()) == m
    event(f"decisions while j's true output is unknown: {min(m - bid - 1, 3)}{'+' if m - bid > 3 else ''}")
    event(f"run b evicts: {b.summary['oom_events'] > a.summary['oom_events']}")
    for key in DECISIONS:
        np.testing.assert_array_equal(b.batches[key][:m], a.batches[key][:m], err_msg=key)
    # the same requests went into each of those batches (j's own batch may end differently)
    settled = (a.requests["batch"] < m) & (a.requests["preemptions"] == 0) & (a.requests["batch"] != bid)
    np.testing.assert_array_equal(b.requests["batch"][settled], a.requests["batch"][settled])


@pytest.mark.parametrize("mode", DYNAMIC)
def test_algorithm_2_has_no_history_until_a_batch_ends(mode):
    """Request 0 runs alone on GPU 0 from t = 0; the others arrive at t = 1 and GPU 1 takes them at
    once. Nothing has ended by then, so Algorithm 2 starts from the middle of its range, however long
    request 0 turns out to be."""
    n = 12
    arrival = np.array([0.0] + [1.0] * (n - 1))
    cfg = SimConfig(mode=mode, gpus=2, b_max=16, sla_window=1, d_sla_tbt=0.05, gpu_mem_gb=40.0)
    for first in (50, 200, 4000):
        output = np.full(n, 100)
        output[0] = first
        b = simulate(cfg, Workload(arrival, np.full(n, 500), output, np.full(n, 100))).batches
        assert b["start"][1] == 1.0 and b["gpu"][1] == 1
        assert b["branch"][1] == BRANCH_START and b["b_sla"][1] == (cfg.b_min + cfg.b_max) // 2, first

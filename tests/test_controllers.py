"""Algorithm 1 (memory bound) and Algorithm 2 (SLA controller) of Paper 2, alone and in the engine."""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from batchlab.core import SimConfig, simulate
from batchlab.core.controllers import (
    BRANCH_OFF,
    BRANCH_OVER,
    BRANCH_START,
    BRANCH_UNDER,
    BRANCH_WITHIN,
    MemoryBound,
    SlaController,
)
from batchlab.workloads.workload import Workload


# ------------------------------------------------------------ Algorithm 1 --
def test_memory_bound_factor_margin_is_the_papers_formula():
    m = MemoryBound(eta=100_000, b_max=1000, margin="factor", memory_factor=0.95)
    assert m.cap(500, 250) == math.floor((100_000 - 5_000) / 750)  # 126
    assert MemoryBound(100_000, b_max=64).cap(500, 250) == 64      # B_max caps it
    assert MemoryBound(100_000, b_max=64).cap(500, 250, n_decode=90) == 64
    assert MemoryBound(1_000, b_max=64).cap(5_000, 5_000) == 1     # never below one request


@given(eta=st.integers(1_000, 10**6), mu_in=st.floats(1, 5_000), mu_out=st.floats(1, 2_000),
       sd=st.floats(0, 3_000), eps=st.floats(0.001, 0.4))
def test_memory_bound_clt_margin_is_the_largest_b_meeting_the_bound(eta, mu_in, mu_out, sd, eps):
    m = MemoryBound(eta, b_max=10**9, margin="clt", eps_m=eps)
    b = m.cap(mu_in, mu_out, sd**2, 0.0)
    theta = NormalDist().inv_cdf(1 - eps)
    mu = mu_in + mu_out

    def ok(x):
        return x * mu + theta * sd * math.sqrt(x) <= eta

    if b > 1 or ok(1):
        assert ok(b)
    assert not ok(b + 1)


# ------------------------------------------------------------ Algorithm 2 --
def ctl(**kw):
    base = dict(d_sla=0.050, eps=0.010, alpha=20, delta=5, b_min=1, b_max=128, window=4)
    base.update(kw)
    return SlaController(**base)


def test_sla_controller_starts_in_the_middle():
    assert ctl().cap() == (64, BRANCH_START)  # floor((1 + 128) / 2)


def test_sla_controller_over_branch():
    c = ctl()
    c.observe(0.090, 40)
    b, branch = c.cap()
    assert branch == BRANCH_OVER
    assert (c.b_low, c.b_high) == (1, 40)      # b_high = max(b_bar, b_low + alpha); b_low = max(b_low - delta, B_min)
    assert b == 20


def test_sla_controller_under_branch():
    c = ctl()
    c.observe(0.020, 30)
    b, branch = c.cap()
    assert branch == BRANCH_UNDER
    assert (c.b_low, c.b_high) == (30, 128)    # b_low = min(b_bar, b_high - alpha); b_high = min(b_high + delta, B_max)
    assert b == 79


def test_sla_controller_under_branch_grows_the_upper_end_by_delta():
    c = ctl(window=1)
    c.observe(0.090, 40)
    assert c.cap()[1] == BRANCH_OVER and (c.b_low, c.b_high) == (1, 40)
    c.observe(0.020, 30)
    b, branch = c.cap()
    assert branch == BRANCH_UNDER
    assert (c.b_low, c.b_high) == (20, 45)     # b_low = min(30, 40 - 20); b_high = 40 + delta
    assert b == 32
    for _ in range(30):                        # keeps growing by delta, up to B_max and no further
        c.cap()
    assert c.b_high == 128


def test_sla_controller_within_branch():
    c = ctl()
    c.observe(0.052, 30)
    c.observe(0.048, 34)
    b, branch = c.cap()
    assert branch == BRANCH_WITHIN
    assert (c.b_low, c.b_high) == (22, 42)     # b_bar -+ floor(alpha / 2)
    assert b == 32


def test_sla_controller_window_forgets_old_observations():
    c = ctl(window=2)
    c.observe(1.0, 10)
    c.observe(0.05, 30)
    c.observe(0.05, 30)
    assert c.cap()[1] == BRANCH_WITHIN


def test_sla_controller_disabled_without_deadline():
    assert ctl(d_sla=None).cap() == (128, BRANCH_OFF)


def test_sla_controller_respects_n_decode_and_bounds():
    c = ctl(b_min=4, b_max=16)
    c.observe(10.0, 16)
    for _ in range(10):
        b, _ = c.cap()
        assert 4 <= b <= 16
    assert c.cap(n_decode=12)[0] >= 12


# ------------------------------------------------- in the engine, per branch --
def overload(n=3000, seed=0, prompt=(100, 800), output=(50, 400)):
    rng = np.random.default_rng(seed)
    out = rng.integers(*output, n)
    return Workload(np.sort(rng.uniform(0, 10, n)) - 0.0, rng.integers(*prompt, n), out, out,
                    identity={"overload": seed, "n": n, "p": prompt, "o": output})


def branch_counts(**cfg):
    r = simulate(SimConfig(mode="dynamic_no_bins", gpus=2, gpu_mem_gb=40.0, **cfg), overload())
    return r, r.summary["sla_branch_counts"]


def test_over_branch_fires_when_batches_are_too_slow():
    # 30 ms + 2 ms per sequence: the first cap of 64 gives ~160 ms steps, far above 50 ms
    r, c = branch_counts(decode_per_seq=0.002, d_sla_tbt=0.05)
    assert c["over"] > 0
    i = int(np.flatnonzero(r.batches["branch"] == BRANCH_OVER)[0])
    assert r.batches["b_sla"][i] < r.batches["b_sla"][i - 1]  # an over-deadline step shrinks the cap


def test_under_branch_fires_when_batches_are_fast():
    r, c = branch_counts(d_sla_tbt=1.0, b_max=128)
    assert c["under"] > 0 and c["over"] == 0
    assert np.all(np.diff(r.batches["b_sla"]) >= 0) and r.batches["b_sla"].max() > 100  # grows towards B_max


def test_within_branch_fires_near_the_deadline():
    r, c = branch_counts(d_sla_tbt=0.05)
    assert c["within"] > c["over"] + c["under"]
    steps = r.batches["decode"] / r.batches["steps"]
    assert abs(np.median(steps) - 0.05) <= 0.010


def test_memory_bound_binds_when_memory_is_tight():
    # eta = 0.5 GB * 0.9 / 128 KiB = 3433 tokens; mean request ~ 450+225 tokens -> b_mem ~ 4
    r = simulate(SimConfig(mode="dynamic_no_bins", gpus=2, gpu_mem_gb=16.5, d_sla_tbt=None), overload())
    b = r.batches
    assert np.all(b["b_mem"] < 10)
    assert np.all(b["b_cap"] == b["b_mem"])
    assert np.all(b["size"] <= b["b_mem"])


def test_per_bin_memory_bounds_differ_by_predicted_length():
    r = simulate(SimConfig(mode="multi_bin_dynamic", k_bins=4, gpus=2, gpu_mem_gb=17.0, d_sla_tbt=None),
                 overload(output=(10, 2000)))
    b = r.batches
    mean_bmem = [b["b_mem"][b["bin"] == i].mean() for i in range(4)]
    assert mean_bmem[0] > mean_bmem[3]  # the short-output bin admits more requests

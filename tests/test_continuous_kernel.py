"""The compiled pieces of the continuous engine: latency queries that equal the Python models bit for
bit (and count grid queries alike), the run's progress and cancellation, and its 1 ns clock.

The engine's behaviour itself is tested against the step-by-step reference in
test_continuous_engine.py and test_engine_invariants.py.
"""
from __future__ import annotations

import math
import threading
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numba import njit

from batchlab.calibration.data import load_bundled
from batchlab.core import SimConfig, continuous_engine, simulate
from batchlab.core.continuous_kernel import BIG, TICKS, _sla_update, gpu_records, memory_bound, settings, tick
from batchlab.core.controllers import MemoryBound, SlaController
from batchlab.core.latency import LatencyModel, ParametricLatency
from batchlab.core.latency_grid import GridLatency
from batchlab.core.latency_kernel import (
    decode_step_time,
    decode_time,
    one_reference,
    pack,
    prefill_time,
    steps_until,
    unpack,
)
from batchlab.workloads import WorkloadSpec, build_workload
from batchlab.workloads.limits import MAX_TIME_S

GRID = "qwen3-4b-sglang"
MAX_BATCH = 300          # beyond the grid's measured batch sizes: extrapolated queries included
queries = st.tuples(st.integers(1, MAX_BATCH), st.one_of(st.integers(0, 40_000).map(float),
                                                         st.floats(0.0, 40_000.0)),
                    st.integers(0, 3_000), st.floats(0.0, 200.0))


@njit
def _ask_compiled(packed, batch, context, steps, budget):
    L = one_reference(packed)     # the form the kernel queries (its notes the packed arrays' own)
    return (prefill_time(L, batch, context), decode_step_time(L, batch, context),
            decode_time(L, batch, context, steps), steps_until(L, batch, context, steps, budget))


def ask(model_or_packed, compiled: bool, batch, context, steps, budget):
    """The five queries the engine makes, of a Python model or of its packed form."""
    if compiled:
        return _ask_compiled(model_or_packed, batch, context, steps, budget)
    m = model_or_packed
    return (m.prefill_time(batch, context), m.decode_step_time(batch, context), m.decode_time(batch, context, steps),
            m.steps_until(batch, context, steps, budget))


@given(st.lists(queries, min_size=1, max_size=20))
def test_compiled_parametric_latency_is_the_model_bit_for_bit(qs):
    model = ParametricLatency(0.02, 5e-5, 0.03, 2.2e-4, 1e-7)
    packed = pack(model, MAX_BATCH)
    for q in qs:
        assert ask(packed, True, *q) == ask(model, False, *q)


@given(st.lists(queries, min_size=1, max_size=20))
def test_compiled_grid_latency_is_the_model_bit_for_bit_and_counts_the_same_queries(qs):
    grid = load_bundled(GRID)
    direct, compiled = GridLatency(grid), GridLatency(grid)
    packed = pack(compiled, MAX_BATCH)
    for q in qs:
        assert ask(packed, True, *q) == ask(direct, False, *q)
    unpack(packed, compiled)
    assert compiled.run_notes() == direct.run_notes()
    assert direct.run_notes()["queries"] >= 4 * len(qs) - len(qs)   # steps_until may ask nothing (budget 0)


def test_compiled_grid_queries_at_the_edges_of_the_measured_range_count_as_the_model_does():
    grid = load_bundled(GRID)
    direct, compiled = GridLatency(grid), GridLatency(grid)
    lo, hi = direct.run_notes()["measured_context_range"]
    batches = direct.run_notes()["measured_batch_range"]
    packed = pack(compiled, MAX_BATCH)
    for batch in (batches[0], batches[1], batches[1] + 1):
        for context, steps in ((float(lo), hi - lo + 1), (float(lo), hi - lo + 2), (float(hi), 1), (hi + 0.5, 1),
                               (lo - 0.5, 3)):
            assert ask(packed, True, batch, context, steps, 0.1) == ask(direct, False, batch, context, steps, 0.1)
    unpack(packed, compiled)
    notes = compiled.run_notes()
    assert notes == direct.run_notes()
    assert 0 < notes["extrapolated_by_kind"]["decode"] < notes["queries"]   # both sides of the edges were asked


def test_a_grid_query_beyond_the_packed_batch_sizes_is_an_error():
    packed = pack(GridLatency(load_bundled(GRID)), 8)
    assert decode_step_time(packed, 8, 100.0) > 0
    with pytest.raises(ValueError, match="beyond the batch sizes packed"):
        decode_step_time(packed, 9, 100.0)


def test_a_latency_model_without_a_compiled_form_is_refused_by_name():
    class Constant(LatencyModel):
        def prefill_time(self, batch, prompt_len):
            return 0.1

        def decode_step_time(self, batch, context_len):
            return 0.01

        @property
        def identity(self):
            return {"kind": "constant"}

    with pytest.raises(TypeError, match="Constant"):
        pack(Constant(), 8)


# ---------------------------------------------------------------- controllers --
mean_length = st.one_of(st.just(0.0), st.floats(1.0, 8000.0))


@given(margin=st.sampled_from(["factor", "clt", "none"]), eta=st.integers(1, 400_000), b_max=st.integers(1, 512),
       factor=st.floats(0.5, 1.0), eps=st.floats(0.001, 0.49), moments=st.tuples(
           mean_length, mean_length, st.floats(-1.0, 1e7), st.floats(-1.0, 1e7)))
def test_compiled_algorithm_1_is_memory_bound_cap(margin, eta, b_max, factor, eps, moments):
    """Means of token lengths are 0 (no arrivals yet) or at least 1; variances may round below 0."""
    cfg = SimConfig(mode="continuous_dynamic", mem_margin=margin, b_max=b_max, mem_factor=factor, mem_eps=eps)
    python = MemoryBound(eta, b_max, margin, factor, eps)
    assert memory_bound(settings(cfg, 1, eta, python.theta), *moments) == python.cap(*moments)


# ------------------------------------------------------------------ progress --
@pytest.fixture
def busy_run():
    workload = build_workload(WorkloadSpec(num_requests=20_000, arrival="poisson", rate=1000.0, workload_seed=3))
    return SimConfig(mode="continuous_multi_bin", gpus=2), workload


def test_progress_rises_to_one_and_changes_nothing(busy_run, monkeypatch):
    cfg, workload = busy_run
    monkeypatch.setattr(continuous_engine, "POLL_S", 0.001)
    seen: list[float] = []
    with_progress = simulate(cfg, workload, progress=seen.append)
    assert seen[-1] == 1.0 and all(0.0 <= a <= b <= 1.0 for a, b in zip(seen, seen[1:]))
    plain = simulate(cfg, workload)
    for key, values in plain.requests.items():
        np.testing.assert_array_equal(values, with_progress.requests[key], err_msg=key)


def test_an_error_raised_by_progress_stops_the_run_and_reaches_the_caller(busy_run):
    cfg, workload = busy_run

    def give_up(fraction):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simulate(replace(cfg, seed=1), workload, progress=give_up)
    assert not any(t.name == "batchlab-continuous" and t.is_alive() for t in threading.enumerate())
    assert simulate(replace(cfg, seed=1), workload).summary["completed"] == len(workload)   # nothing left behind


@given(st.floats(0.0, 4.6e9))
def test_the_clock_ticks_to_the_nearest_ns(t):
    assert tick(t) == int(t * 1e9 + 0.5)


@pytest.mark.parametrize("t", [MAX_TIME_S, 9.3e9, 1.4e10, 1e308, math.inf, math.nan])
def test_the_clock_stops_at_2_to_the_62_ns_rather_than_wrap(t):
    """Past 2^62 ns the kernel took a time for "never" (BIG); past 2^63 ns the cast wrapped negative."""
    assert BIG / TICKS == MAX_TIME_S
    with pytest.raises(OverflowError):
        tick(t)


def test_a_run_past_the_clock_stops_in_the_thread_too():
    """With a progress callback the kernel runs in a worker thread: its clock error still arrives."""
    from batchlab.core.validity import SimulationError
    from batchlab.workloads.workload import Workload

    w = Workload(np.array([0.0, MAX_TIME_S - 1.0]), np.full(2, 100), np.full(2, 50), np.full(2, 50))
    with pytest.raises(SimulationError, match="ran out of time"):
        simulate(SimConfig(mode="continuous_static"), w, progress=lambda fraction: None)


@njit
def _sla_steps(s, gs, observations, running):
    """The compiled Algorithm 2 over a sequence of (mean step time, mean batch size) observations."""
    g = gs[0]
    out = np.empty((len(observations), 4))
    for i in range(len(observations)):
        g.ctl_step, g.ctl_size = observations[i, 0], observations[i, 1]
        b, branch = _sla_update(s, g, running[i])
        out[i, 0], out[i, 1], out[i, 2], out[i, 3] = b, branch, g.b_low, g.b_high
    return out


step_times = st.one_of(st.floats(0.0, 0.2), st.sampled_from([0.04, 0.05, 0.06]))   # near and on the band edges


@given(b_min=st.integers(1, 64), width=st.integers(0, 512), alpha=st.integers(1, 64), delta=st.integers(0, 32),
       d_sla=st.sampled_from([0.02, 0.05, 0.1]), eps=st.sampled_from([0.0, 0.01]),
       steps=st.lists(st.tuples(step_times, st.floats(0.0, 600.0), st.integers(0, 600)), min_size=1, max_size=30))
def test_compiled_algorithm_2_is_sla_controller_cap_bit_for_bit(b_min, width, alpha, delta, d_sla, eps, steps):
    """Each update of the compiled controller (one observation: the window's means, as the engine makes
    them) gives the Python controller's b_SLA, branch and interval, to the last bit."""
    cfg = SimConfig(mode="continuous_dynamic", b_min=b_min, b_max=b_min + width, sla_alpha=alpha, sla_delta=delta,
                    d_sla_tbt=d_sla, sla_eps=eps)
    s = settings(cfg, 1, 100_000, 1.0)
    python = SlaController(d_sla, eps, alpha, delta, cfg.b_min, cfg.b_max, 1)
    compiled = _sla_steps(s, gpu_records(s), np.array([(t, b) for t, b, _ in steps]),
                          np.array([n for _, _, n in steps], np.int64))
    for (tau, size, running), row in zip(steps, compiled):
        python.observe(tau, size)
        b, branch = python.cap(running)
        assert (row[0], row[1], row[2], row[3]) == (b, branch, python.b_low, python.b_high)

"""The latency queries the engines vectorise or invert: ``decode_step_times`` is the step time
cell by cell, ``steps_until`` is the fewest steps whose summed time reaches a budget — on the
parametric model (closed form) and on a calibration grid (the generic bisection)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchlab.calibration import load_bundled
from batchlab.core.latency import ParametricLatency
from batchlab.core.latency_grid import GridLatency

MODELS = {
    "parametric": ParametricLatency(),
    "steep": ParametricLatency(decode_base=1e-3, decode_per_seq=2e-4, decode_per_ctx_token=3e-7),
    "flat": ParametricLatency(decode_base=5e-3, decode_per_seq=1e-4, decode_per_ctx_token=0.0),
    "grid": GridLatency(load_bundled("qwen3-4b-sglang")),
}


def brute_steps_until(m, batch, context, max_steps, budget) -> int:
    for x in range(max_steps + 1):
        if m.decode_time(batch, context, x) >= budget:
            return x
    return max_steps


@pytest.mark.parametrize("name", sorted(MODELS))
@given(batch=st.integers(1, 256), context=st.floats(1, 20_000), max_steps=st.integers(0, 300),
       fraction=st.floats(-0.1, 1.2))
def test_steps_until_is_the_fewest_steps_reaching_the_budget(name, batch, context, max_steps, fraction):
    m = MODELS[name]
    budget = fraction * m.decode_time(batch, context, max_steps)
    x = m.steps_until(batch, context, max_steps, budget)
    assert x == brute_steps_until(m, batch, context, max_steps, budget)
    assert 0 <= x <= max_steps
    if x < max_steps:
        assert m.decode_time(batch, context, x) >= budget
    if x > 0:
        assert m.decode_time(batch, context, x - 1) < budget


@pytest.mark.parametrize("name", sorted(MODELS))
def test_steps_until_edges(name):
    m = MODELS[name]
    assert m.steps_until(8, 1000.0, 50, 0.0) == 0
    assert m.steps_until(8, 1000.0, 50, -1.0) == 0
    assert m.steps_until(8, 1000.0, 50, 1e9) == 50          # all steps stay below it
    one = m.decode_time(8, 1000.0, 1)
    assert m.steps_until(8, 1000.0, 50, one) == 1           # exactly one step's time is reached by one step
    assert m.steps_until(8, 1000.0, 50, one * 1.0001) == 2


@pytest.mark.parametrize("name", sorted(MODELS))
@given(pairs=st.lists(st.tuples(st.integers(1, 512), st.integers(1, 30_000)), min_size=0, max_size=30))
def test_decode_step_times_is_the_step_time_cell_by_cell(name, pairs):
    m = MODELS[name]
    batch = np.array([b for b, _ in pairs], dtype=np.int64)
    context = np.array([c for _, c in pairs], dtype=np.float64)
    got = m.decode_step_times(batch, context)
    want = [m.decode_step_time(int(b), float(c)) for b, c in pairs]
    assert got.shape == (len(pairs),)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)

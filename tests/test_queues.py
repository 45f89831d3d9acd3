"""What both engines share about waiting requests: Algorithm 1's windowed statistics and the bin policies."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchlab.core.queues import INF, QueueStats, pick_queue


@given(lengths=st.lists(st.tuples(st.integers(1, 20_000), st.integers(1, 4_000)), min_size=1, max_size=80),
       window=st.integers(0, 30), data=st.data())
def test_statistics_are_the_moments_of_the_last_window_of_positions(lengths, window, data):
    """moments(lo, hi): mean and (population) variance of prompts and predictions over the last ``window``
    positions of [lo, hi) (all of them with window 0)."""
    prompt, predicted = (np.array(column) for column in zip(*lengths))
    stats = QueueStats(prompt, predicted, window)
    lo = data.draw(st.integers(0, len(prompt) - 1))
    hi = data.draw(st.integers(lo, len(prompt)))
    got = stats.moments(lo, hi)
    if hi == lo:
        assert got == (0.0, 0.0, 0.0, 0.0)
        return
    first = max(lo, hi - window) if window else lo
    p, o = prompt[first:hi].astype(float), predicted[first:hi].astype(float)
    scale = (1.0, 1.0, max(p.var(), 1.0), max(o.var(), 1.0))
    for value, want, tol in zip(got, (p.mean(), o.mean(), p.var(), o.var()), scale):
        assert value == pytest.approx(want, rel=1e-9, abs=1e-6 * tol)


def test_each_bin_policy_picks_by_its_rule_and_ties_go_to_the_lower_bin():
    candidates = [0, 2, 3]
    heads = [5.0, INF, 1.0, 1.0]
    waiting = [4, 0, 7, 7]
    assert pick_queue("fcfs", candidates, heads, waiting, 0, 4) == 2          # oldest head; tie 2 vs 3
    assert pick_queue("longest", candidates, heads, waiting, 0, 4) == 2       # most waiting; tie 2 vs 3
    assert pick_queue("round_robin", candidates, heads, waiting, 1, 4) == 2   # the first at or after 1
    assert pick_queue("round_robin", candidates, heads, waiting, 3, 4) == 3
    assert pick_queue("round_robin", candidates, heads, waiting, 4, 4) == 0   # wraps around
    assert pick_queue("short_first", candidates, heads, waiting, 3, 4) == 0

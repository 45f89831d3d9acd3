"""Bins on predicted output length: equal-mass edges, the documented edge rule, and Paper 1's bin confusion
(each neighbour with probability p, drawn from the simulation's seed)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchlab.core import SimConfig, simulate
from batchlab.core.bins import assign_bins, equal_mass_edges
from batchlab.workloads.workload import Workload


# ------------------------------------------------------------------ edges --
@given(predicted=st.lists(st.integers(1, 5000), min_size=1, max_size=300), k=st.integers(1, 9))
def test_every_prediction_lies_in_its_bins_interval(predicted, k):
    """Bin i holds the predictions in (edge_i, edge_i+1]; bin 0 also holds its lower edge."""
    predicted = np.array(predicted)
    edges = equal_mass_edges(predicted, k)
    assert len(edges) == k + 1 and edges[0] == predicted.min() and edges[-1] == predicted.max()
    assert np.all(np.diff(edges) >= 0)
    bins = assign_bins(predicted, edges)
    assert bins.min() >= 0 and bins.max() <= k - 1
    lower = edges[bins]
    assert np.all((predicted > lower) | ((bins == 0) & (predicted == lower)))
    assert np.all(predicted <= edges[bins + 1])


def test_a_prediction_exactly_on_an_edge_goes_to_the_lower_bin():
    edges = np.array([1.0, 10.0, 20.0, 30.0])
    predicted = np.array([1, 9, 10, 11, 20, 21, 30])
    assert assign_bins(predicted, edges).tolist() == [0, 0, 0, 1, 1, 2, 2]


def test_equal_mass_edges_split_the_predictions_evenly():
    predicted = np.random.default_rng(0).permutation(np.arange(1, 1201))
    edges = equal_mass_edges(predicted, 4)
    assert np.bincount(assign_bins(predicted, edges)).tolist() == [300] * 4
    with pytest.raises(ValueError, match="k_bins"):
        equal_mass_edges(predicted, 0)


# -------------------------------------------------------------- confusion --
N = 400_000


def moves(k: int, p: float, seed: int):
    """For each bin b without confusion: the share of its requests confusion sends to b-1, keeps, and sends to b+1."""
    predicted = np.arange(N) % k + 1                   # k equally full bins
    edges = np.arange(k + 1, dtype=float) + 0.5
    edges[0] = 1.0
    true_bins = assign_bins(predicted, edges)
    assert np.bincount(true_bins).tolist() == [N // k] * k
    bins = assign_bins(predicted, edges, p, np.random.default_rng(seed))
    step = bins - true_bins
    assert set(np.unique(step)) <= {-1, 0, 1}
    return [tuple(float(np.mean(step[true_bins == b] == d)) for d in (-1, 0, 1)) for b in range(k)]


@pytest.mark.parametrize("k,p,seed", [(4, 0.1, 0), (5, 0.25, 1), (2, 0.5, 2)])
def test_confusion_moves_each_request_to_each_neighbour_with_probability_p(k, p, seed):
    """Interior bins: down p, up p, stay 1 - 2p; an edge bin moves to its one neighbour with p.
    400,000 requests: each share is within 0.01 of its probability by far more than 5 standard errors."""
    shares = moves(k, p, seed)
    for b, (down, stay, up) in enumerate(shares):
        want_down = p if b > 0 else 0.0
        want_up = p if b < k - 1 else 0.0
        assert down == pytest.approx(want_down, abs=0.01), b
        assert up == pytest.approx(want_up, abs=0.01), b
        assert stay == pytest.approx(1 - want_down - want_up, abs=0.01), b


def test_no_confusion_moves_nothing_and_one_bin_has_no_neighbours():
    predicted = np.arange(1, 101)
    edges = equal_mass_edges(predicted, 4)
    np.testing.assert_array_equal(assign_bins(predicted, edges, 0.0, np.random.default_rng(1)),
                                  assign_bins(predicted, edges))
    assert assign_bins(predicted, equal_mass_edges(predicted, 1), 0.5, np.random.default_rng(1)).max() == 0


def test_confusion_draws_follow_the_simulation_seed():
    """`--seed` is the simulation's seed: the same seed draws the same bins, another seed other bins,
    and the workload (its seed, its predictions) is the same in all three runs."""
    rng = np.random.default_rng(7)
    n = 2000
    out = rng.integers(1, 1000, n)
    w = Workload(np.sort(rng.uniform(0, 100, n)), rng.integers(10, 500, n), out, out, confusion_p=0.2)
    cfg = SimConfig(mode="multi_bin_dynamic", k_bins=4, gpu_mem_gb=40.0)
    plain = assign_bins(w.predicted, equal_mass_edges(w.predicted, 4))
    runs = {seed: simulate(cfg.replace(seed=seed), w).requests["bin"] for seed in (0, 1)}
    again = simulate(cfg.replace(seed=1), w).requests["bin"]
    np.testing.assert_array_equal(runs[1], again)
    assert (runs[0] != runs[1]).mean() > 0.2            # each run moves ~35 % of requests, independently
    for bins in runs.values():
        assert 0.25 < (bins != plain).mean() < 0.45      # 2p inside, p at the two edge bins: 0.3 expected

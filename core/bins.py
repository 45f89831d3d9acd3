"""Bins on predicted output length (Paper 1): equal-mass boundaries and assignment."""
from __future__ import annotations

import numpy as np


def equal_mass_edges(predicted: np.ndarray, k: int) -> np.ndarray:
    """k+1 edges [min, q_1/k, ..., q_(k-1)/k, max] of the predicted lengths.

    Lemma 4.1 of Paper 1: for uniform lengths the optimal boundaries split the
    probability mass equally; for empirical lengths these are quantiles. With
    many tied lengths some bins can be empty.
    """
    if k < 1:
        raise ValueError("k_bins: must be >= 1")
    qs = np.quantile(np.asarray(predicted, dtype=np.float64), np.linspace(0.0, 1.0, k + 1))
    return qs


def cached_edges(workload, k: int) -> np.ndarray:
    """equal_mass_edges memoized on the workload identity (diskcache)."""
    from batchlab.workloads.cache import memoize

    return memoize("bin_edges", {"workload": workload.key, "k": k},
                   lambda: equal_mass_edges(workload.predicted, k))


def assign_bins(predicted: np.ndarray, edges: np.ndarray, confusion_p: float = 0.0,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """Bin index of each request: bin i holds predictions in (edge_i, edge_i+1] (bin 0 includes its lower edge).

    With ``confusion_p`` > 0 each request moves to each neighbouring bin with
    probability p (an edge bin moves to its one neighbour with probability p),
    Paper 1's prediction-error model.
    """
    k = len(edges) - 1
    bins = np.searchsorted(edges[1:-1], predicted, side="left").astype(np.int64)
    if confusion_p > 0 and k > 1:
        rng = rng or np.random.default_rng(0)
        u = rng.random(len(bins))
        down = (u < confusion_p) & (bins > 0)
        up = (u >= confusion_p) & (u < 2 * confusion_p) & (bins < k - 1)
        bins = bins - down + up
    return bins

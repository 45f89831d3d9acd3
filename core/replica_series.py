"""Per-replica series of a continuous run: queue length, running requests and KV use of each replica over time.

The continuous engine's log has one row per span of iterations on a replica
(``gpu``), with the requests waiting for that replica when the span started
(``waiting``; with ``shared_queue``, every waiting request: the one queue),
the running requests (``size``) and the share of the replica's KV blocks in use
at the span's end (``kv_util``). Each value is held over its span, so a
window's figure is the time-weighted mean over the window, a replica counting 0
while idle (an idle replica has nothing waiting for it: it would have admitted
it). These are the charts of router imbalance; the run's summary has the
load-imbalance figure (``load_imbalance``: the busiest replica's busy time over
the mean replica's).
"""
from __future__ import annotations

import numpy as np

from .metrics import SERIES_POINTS, _window_sum

MAX_REPLICAS = 64  # beyond, no per-replica series is kept (the summary's load imbalance still is)
COLUMNS = ("busy", "waiting", "running", "kv_utilization")


def replica_series(log: dict, replicas: int, horizon: float, t0: float = 0.0, points: int = SERIES_POINTS):
    """Long table replica, time_s, busy, waiting, running, kv_utilization: each replica's time-weighted means
    in ``points`` equal windows over the horizon (``busy``: the share of the window it computed); None unless
    a continuous log of 2 to MAX_REPLICAS replicas."""
    import pandas as pd

    if not 1 < replicas <= MAX_REPLICAS or not {"waiting", "kv_util"} <= set(log) or horizon <= 0:
        return None
    edges = np.linspace(t0, t0 + horizon, points + 1)
    width = np.diff(edges)
    gpu = np.asarray(log["gpu"], dtype=np.int64)
    start = np.asarray(log["start"], dtype=np.float64)
    end = start + np.asarray(log["duration"], dtype=np.float64)
    values = {"busy": np.ones(len(gpu)), "waiting": log["waiting"], "running": log["size"],
              "kv_utilization": log["kv_util"]}
    frames = []
    for r in range(replicas):
        mine = gpu == r
        cols = {"replica": np.full(points, r, dtype=np.int64), "time_s": (edges[:-1] + edges[1:]) / 2}
        for name, v in values.items():
            total = _window_sum(start[mine], end[mine], np.asarray(v, dtype=np.float64)[mine], edges)
            mean = np.where(width > 0, total / np.where(width > 0, width, 1.0), 0.0)
            cols[name] = np.clip(mean, 0.0, 1.0 if name == "busy" else None)  # the prefix sums' rounding
        frames.append(pd.DataFrame(cols))
    return pd.concat(frames, ignore_index=True)

"""Per-replica series (core.replica_series): exact windowed means on a hand-made log, and on a simulated run
the busy shares that give the summary's load imbalance and the running means that the log integrates to."""
from __future__ import annotations

import numpy as np
import pytest

from batchlab.core import SimConfig, simulate
from batchlab.core.replica_series import MAX_REPLICAS, replica_series
from batchlab.workloads import WorkloadSpec, build_workload


def test_windowed_means_of_a_hand_made_log():
    """Two replicas over [0, 4) in two windows of 2 s: replica 0 runs [0, 1) with 3 running, 2 waiting and
    half its KV, then [1, 3) with 1 running; replica 1 runs [2, 4) with 4 running, none waiting, KV full."""
    log = {"gpu": np.array([0, 0, 1]), "start": np.array([0.0, 1.0, 2.0]), "duration": np.array([1.0, 2.0, 2.0]),
           "size": np.array([3, 1, 4]), "waiting": np.array([2, 0, 0]), "kv_util": np.array([0.5, 0.1, 1.0])}
    df = replica_series(log, 2, 4.0, 0.0, points=2).set_index(["replica", "time_s"])
    assert df.loc[(0, 1.0)].to_dict() == pytest.approx({"busy": 1.0, "waiting": 1.0, "running": 2.0,
                                                        "kv_utilization": 0.3})
    assert df.loc[(0, 3.0)].to_dict() == pytest.approx({"busy": 0.5, "waiting": 0.0, "running": 0.5,
                                                        "kv_utilization": 0.05})
    assert df.loc[(1, 1.0)].to_dict() == pytest.approx({"busy": 0.0, "waiting": 0.0, "running": 0.0,
                                                        "kv_utilization": 0.0})
    assert df.loc[(1, 3.0)].to_dict() == pytest.approx({"busy": 1.0, "waiting": 0.0, "running": 4.0,
                                                        "kv_utilization": 1.0})
    # one replica, too many, or a batch-level log (no waiting, no KV share): no series
    assert replica_series(log, 1, 4.0) is None and replica_series(log, MAX_REPLICAS + 1, 4.0) is None
    assert replica_series({k: v for k, v in log.items() if k != "waiting"}, 2, 4.0) is None


@pytest.mark.parametrize("router", ["random", "least_outstanding", "shared_queue"])
def test_a_runs_series_add_up_to_its_log_and_its_load_imbalance(router):
    w = build_workload(WorkloadSpec(num_requests=1500, rate=6.0))
    r = simulate(SimConfig(gpus=4, router=router), w)
    df = r.series()["replicas"]
    horizon, log = r.summary["makespan_s"], r.batches
    assert sorted(df["replica"].unique()) == [0, 1, 2, 3] and len(df) == 4 * 200
    busy = df.groupby("replica")["busy"].mean()   # equal windows: the share of the horizon
    assert busy.max() / busy.mean() == pytest.approx(r.summary["load_imbalance"], rel=1e-9)
    for g in range(4):
        mine = log["gpu"] == g
        assert df[df["replica"] == g]["running"].mean() == pytest.approx(
            float((log["size"][mine] * log["duration"][mine]).sum()) / horizon, rel=1e-9)
    assert df["kv_utilization"].between(0, 1 + 1e-12).all() and (df["waiting"] >= 0).all()
    assert df["busy"].between(0, 1 + 1e-12).all()
    one = simulate(SimConfig(gpus=1), w)
    assert "replicas" not in one.series()

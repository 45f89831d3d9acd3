"""What a simulation returns: plain arrays and a summary, no storage concerns."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import metrics
from .config import SimConfig
from .replica_series import replica_series


@dataclass
class RunResult:
    """One finished run.

    requests  per-request arrays in the workload's order: arrival, prompt, output,
              predicted, bin, gpu, start, first_token, finish, queue_delay, ttft,
              tbt (mean gap between tokens), tbt_max (largest gap), e2e (seconds),
              preemptions (evictions in the batch-level engine); plus batch (the
              completing batch, batch-level) or decode_steps (continuous)
    batches   the engine's log: one row per batch (start, prefill, decode, gpu, bin,
              size, max_prompt, steps, step_max, b_mem, b_sla, b_cap, branch,
              evicted, duration, kv_tokens) or, for a continuous mode, per span of
              iterations (start, duration, gpu, size, iterations, kv_tokens,
              kv_util, b_mem, b_sla, b_cap, branch, preempted); see core.metrics
    bin_edges k+1 boundaries on predicted output length
    summary   flat metrics (see core.metrics.summarize), ``bins`` per-bin dicts
    meta      run hash, identities, latency notes, wall time
    """

    config: SimConfig
    requests: dict[str, np.ndarray]
    batches: dict[str, np.ndarray]
    bin_edges: np.ndarray
    summary: dict
    meta: dict = field(default_factory=dict)

    @property
    def run_hash(self) -> str:
        return self.meta["run_hash"]

    def requests_frame(self):
        import pandas as pd

        return pd.DataFrame(self.requests)

    def batches_frame(self):
        import pandas as pd

        return pd.DataFrame(self.batches)

    def series(self) -> dict:
        """Chart-ready tables: latency_cdf, batch_timeline, gpu_utilization, batch_sizes, occupancy, and for a
        continuous run of several replicas ``replicas`` (each replica's queue, running requests and KV use)."""
        horizon = self.summary["makespan_s"]
        t0 = float(self.requests["arrival"].min())
        out = {
            "latency_cdf": metrics.latency_cdf(self.requests),
            "batch_timeline": metrics.batch_timeline(self.batches),
            "gpu_utilization": metrics.gpu_utilization_series(self.batches, self.config.n_replicas, horizon, t0),
            "batch_sizes": metrics.batch_size_histogram(self.batches),
            "occupancy": metrics.occupancy_series(self.batches, self.config.n_replicas, self.summary["eta_tokens"],
                                                  horizon, t0),
        }
        per_replica = replica_series(self.batches, self.config.n_replicas, horizon, t0)
        if per_replica is not None:
            out["replicas"] = per_replica
        return out

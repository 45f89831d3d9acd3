"""What a simulation returns: plain arrays and a summary, no storage concerns."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import metrics
from .config import SimConfig


@dataclass
class RunResult:
    """One finished run.

    requests  per-request arrays in the workload's order: arrival, prompt, output,
              predicted, bin, batch, gpu, start, first_token, finish, queue_delay,
              ttft, tbt, e2e (seconds)
    batches   per-batch log: start, prefill, decode, gpu, bin, pos, size,
              max_prompt, max_output, b_mem, b_sla, b_cap, branch, mem_truncated
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

    def requests_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.requests)

    def batches_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.batches)

    def series(self) -> dict[str, pd.DataFrame]:
        """Chart-ready tables: latency_cdf, batch_timeline, gpu_utilization, batch_sizes."""
        horizon = self.summary["makespan_s"]
        return {
            "latency_cdf": metrics.latency_cdf(self.requests),
            "batch_timeline": metrics.batch_timeline(self.batches),
            "gpu_utilization": metrics.gpu_utilization_series(
                self.batches, self.config.gpus, horizon, float(self.requests["arrival"].min())),
            "batch_sizes": metrics.batch_size_histogram(self.batches),
        }

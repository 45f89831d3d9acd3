"""``simulate(config, workload) -> RunResult``: the Python entry point of the simulator."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from workloads.workload import Workload

from . import metrics
from .bins import assign_bins, cached_edges
from .config import ConfigError, SimConfig
from .engine import run_engine
from .identity import SIM_VERSION, run_hash
from .latency import LatencyModel, ParametricLatency
from .memory import MemoryModel
from .result import RunResult


def build_latency_model(config: SimConfig, grid=None) -> LatencyModel:
    """The config's latency model; ``grid:NAME`` uses ``grid`` or a bundled calibration grid."""
    if config.latency == "parametric":
        return ParametricLatency(config.prefill_base, config.prefill_per_token, config.decode_base,
                                 config.decode_per_seq, config.decode_per_ctx_token)
    from .latency_grid import GridLatency

    name = config.latency.split(":", 1)[1]
    if grid is None:
        from calibration.data import bundled_grids, load_bundled

        if name not in bundled_grids():
            raise ConfigError("latency", f"no grid named {name!r} was given and none is bundled "
                                         f"(bundled: {', '.join(sorted(bundled_grids()))})")
        grid = load_bundled(name)
    return GridLatency(grid)


def run_identity(config: SimConfig, workload: Workload, latency: LatencyModel) -> str:
    return run_hash(config.relevant_dict(), workload.identity, latency.identity)


def simulate(config: SimConfig, workload: Workload, grid=None,
             progress: Callable[[float], None] | None = None,
             latency: LatencyModel | None = None) -> RunResult:
    """Run ``workload`` under ``config``; deterministic for a given seed."""
    wall = time.perf_counter()
    latency = latency or build_latency_model(config, grid)
    eta = MemoryModel.from_config(config).eta
    need = workload.prompt + workload.output
    too_big = np.flatnonzero(need > eta)
    if len(too_big):
        i = int(too_big[0])
        raise ConfigError("gpu_mem_gb", f"{len(too_big)} request(s) can never fit on one GPU: request {i} "
                                        f"needs {int(need[i])} KV tokens but the GPU holds {eta} "
                                        "(raise gpu_mem_gb or lower weights_gb)")
    k = config.bins
    if k > 1:
        edges = cached_edges(workload, k)
        rng = np.random.default_rng([config.seed, 0xB1])
        bins = assign_bins(workload.predicted, edges, workload.confusion_p, rng)
    else:
        edges = np.array([workload.predicted.min(), workload.predicted.max()], dtype=np.float64)
        bins = np.zeros(len(workload), dtype=np.int64)

    out = run_engine(config, workload.arrival, workload.prompt, workload.output, workload.predicted,
                     bins, latency, eta, progress)
    req = {"arrival": workload.arrival, "prompt": workload.prompt, "output": workload.output,
           "predicted": workload.predicted, "bin": bins}
    req.update(metrics.request_arrays(out.order, out.batches, workload.arrival))
    summary = metrics.summarize(config, req, out.batches, edges, eta)
    h = run_identity(config, workload, latency)
    summary["config_hash"] = h
    meta = {"run_hash": h, "sim_version": SIM_VERSION, "workload": workload.identity,
            "latency": latency.identity, "latency_notes": latency.run_notes(),
            "wall_s": time.perf_counter() - wall}
    summary["latency_notes"] = meta["latency_notes"]
    return RunResult(config, req, out.batches, edges, summary, meta)


"""The benchmark behind ``batchlab bench``: simulated requests per second and peak memory.

Each measurement runs in a fresh process (so peak RSS is that run's own) on a
synthetic workload with BurstGPT-fitted lengths: ``overload`` floods the GPUs
(large batches, the loop runs once per batch); ``light`` keeps them mostly idle
(every request is its own batch, the loop runs once per request); ``loaded`` offers
2.5 req/s a GPU, about 90 % of what the default continuous_dynamic serves within
its SLA (the cluster's case: many replicas, each busy, queues short). ``sim req/s``
is requests / wall time of ``simulate`` (engine plus metrics), excluding the
workload's generation; ``e2e req/s`` includes it; the medians of the repeats are reported.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from queue import Empty

from batchlab.workloads.fields import shown

from .lifetime import end_with

SCENARIO_RATES = {"overload": 1000.0, "light": 0.2}  # req/s; 4 default GPUs serve about 2-15 req/s
LOADED_PER_GPU = 2.5   # req/s a GPU of the "loaded" scenario
SCENARIOS = (*SCENARIO_RATES, "loaded")


def scenario_rate(scenario: str, gpus: int) -> float:
    """The arrival rate of a scenario on ``gpus`` GPUs."""
    return LOADED_PER_GPU * gpus if scenario == "loaded" else SCENARIO_RATES[scenario]
MAX_REPEATS = 1000


def _config(mode: str, gpus: int, router: str | None):
    from .config import CONTINUOUS_MODES, SimConfig

    return SimConfig(mode=mode, gpus=gpus, router=router if mode in CONTINUOUS_MODES else None)


def _measure(mode: str, scenario: str, n: int, gpus: int, router: str | None, queue, show: bool,
             owner: int) -> None:
    end_with(owner)  # no measurement outlives the benchmark
    os.environ["BATCHLAB_CACHE"] = "off"
    from batchlab.core import simulate
    from batchlab.workloads import WorkloadSpec, build_workload

    def progress(fraction: float) -> None:   # within a case, on the parent's terminal
        sys.stderr.write(f"\r    {scenario} {mode}: {100 * fraction:5.1f} % simulated")
        sys.stderr.flush()

    spec = WorkloadSpec(num_requests=n, arrival="poisson", rate=scenario_rate(scenario, gpus), workload_seed=1)
    t0 = time.perf_counter()
    workload = build_workload(spec)
    t1 = time.perf_counter()
    cfg = _config(mode, gpus, router)
    result = simulate(cfg, workload, progress=progress if show else None)
    t2 = time.perf_counter()
    if show:
        sys.stderr.write("\r" + " " * 60 + "\r")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    queue.put({"mode": mode, "scenario": scenario, "requests": n, "gpus": gpus, "router": cfg.routing,
               "workload_s": t1 - t0, "simulate_s": t2 - t1, "peak_rss_mb": rss_mb,
               "log_rows": len(result.batches["start"]),
               "mean_batch_size": result.summary["mean_batch_size"]})


def measure_once(mode: str, scenario: str, n: int, gpus: int, show: bool = False, router: str | None = None) -> dict:
    """One measurement in a fresh process (its peak RSS is the run's own)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(mode, scenario, n, gpus, router, queue, show, os.getpid()))
    proc.start()
    while True:
        try:
            row = queue.get(timeout=1.0)
            break
        except Empty:
            if not proc.is_alive():
                raise RuntimeError(f"the {scenario} {mode} measurement ended without a result "
                                   f"(exit code {proc.exitcode})") from None
    proc.join()
    return row


def check_cases(n: int, modes: list[str], scenarios: list[str], repeats: int, gpus: int,
                router: str | None = None) -> None:
    """Raise ValueError naming the first bad argument, before any child process starts (a child
    would otherwise die on it with a traceback of its own)."""
    from batchlab.workloads.spec import WorkloadSpec

    if not modes:
        raise ValueError("modes: give at least one scheduler mode")
    if not scenarios:
        raise ValueError(f"scenarios: give at least one of {', '.join(SCENARIOS)}")
    for s in scenarios:
        if s not in SCENARIOS:
            raise ValueError(f"scenario: unknown {shown(s)} (choose from {', '.join(SCENARIOS)})")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= MAX_REPEATS:
        raise ValueError(f"repeats: must be a whole number from 1 to {MAX_REPEATS:,}, got {shown(repeats)}")
    for scenario in scenarios:
        WorkloadSpec(num_requests=n, arrival="poisson", rate=scenario_rate(scenario, gpus), workload_seed=1)
    for mode in modes:
        _config(mode, gpus, router)


def run_bench(n: int, modes: list[str], scenarios: list[str], repeats: int, gpus: int,
              echo: Callable[[str], None] | None = print, show_progress: bool = False,
              router: str | None = None) -> list[dict]:
    """Median over ``repeats`` fresh-process runs of each (scenario, mode); the arguments are
    checked (:func:`check_cases`) before the first run starts. ``router``: the continuous modes' router
    (None: the default)."""
    check_cases(n, modes, scenarios, repeats, gpus, router)
    rows = []
    if echo:
        echo(f"{'scenario':<9} {'mode':<21} {'requests':>10} {'log rows':>9} {'sim req/s':>12} "
             f"{'sim s':>7} {'e2e req/s':>10} {'peak MB':>8}  (median of {repeats}; log rows: batches or spans)")
    cases = [(scenario, mode) for scenario in scenarios for mode in modes]
    for i, (scenario, mode) in enumerate(cases, 1):
        runs = []
        for r in range(repeats):
            if show_progress:   # across cases
                sys.stderr.write(f"\r  case {i}/{len(cases)} ({scenario} {mode}), run {r + 1}/{repeats}\n")
            runs.append(measure_once(mode, scenario, n, gpus, show_progress, router))
        wall = statistics.median(r["simulate_s"] for r in runs)
        e2e = statistics.median(r["workload_s"] + r["simulate_s"] for r in runs)
        row = dict(runs[0], simulate_s=wall, sim_requests_per_s=n / wall, e2e_requests_per_s=n / e2e,
                   peak_rss_mb=max(r["peak_rss_mb"] for r in runs),
                   all_simulate_s=[r["simulate_s"] for r in runs])
        rows.append(row)
        if echo:
            echo(f"{scenario:<9} {mode:<21} {n:>10,} {row['log_rows']:>9,} {row['sim_requests_per_s']:>12,.0f} "
                 f"{wall:>7.2f} {row['e2e_requests_per_s']:>10,.0f} {row['peak_rss_mb']:>8.0f}")
    return rows

"""The benchmark behind ``batchlab bench``: simulated requests per second and peak memory.

Each measurement runs in a fresh process (so peak RSS is that run's own) on a
synthetic workload with BurstGPT-fitted lengths: ``overload`` floods the GPUs
(large batches, the loop runs once per batch); ``light`` keeps them mostly idle
(every request is its own batch, the loop runs once per request). The figure is
requests / wall time of ``simulate`` (engine plus metrics), excluding the
workload's generation; the median of the repeats is reported.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import resource
import statistics
import time
from typing import Callable

SCENARIO_RATES = {"overload": 1000.0, "light": 0.2}  # req/s; 4 default GPUs serve about 5-20 req/s


def _measure(mode: str, scenario: str, n: int, gpus: int, queue) -> None:
    os.environ["BATCHLAB_CACHE"] = "off"
    from core import SimConfig, simulate
    from workloads import WorkloadSpec, build_workload

    spec = WorkloadSpec(num_requests=n, arrival="poisson", rate=SCENARIO_RATES[scenario], workload_seed=1)
    t0 = time.perf_counter()
    workload = build_workload(spec)
    t1 = time.perf_counter()
    result = simulate(SimConfig(mode=mode, gpus=gpus), workload)
    t2 = time.perf_counter()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    queue.put({"mode": mode, "scenario": scenario, "requests": n, "gpus": gpus,
               "workload_s": t1 - t0, "simulate_s": t2 - t1, "peak_rss_mb": rss_mb,
               "batches": result.summary["num_batches"],
               "mean_batch_size": result.summary["mean_batch_size"]})


def measure_once(mode: str, scenario: str, n: int, gpus: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(mode, scenario, n, gpus, queue))
    proc.start()
    row = queue.get()
    proc.join()
    return row


def run_bench(n: int, modes: list[str], scenarios: list[str], repeats: int, gpus: int,
              echo: Callable[[str], None] | None = print) -> list[dict]:
    """Median over ``repeats`` fresh-process runs of each (scenario, mode)."""
    for s in scenarios:
        if s not in SCENARIO_RATES:
            raise ValueError(f"scenario: unknown {s!r} (choose from {', '.join(SCENARIO_RATES)})")
    rows = []
    if echo:
        echo(f"{'scenario':<9} {'mode':<18} {'requests':>10} {'batches':>9} {'sim req/s':>12} "
             f"{'sim s':>7} {'peak MB':>8}  (median of {repeats})")
    for scenario in scenarios:
        for mode in modes:
            runs = [measure_once(mode, scenario, n, gpus) for _ in range(repeats)]
            wall = statistics.median(r["simulate_s"] for r in runs)
            row = dict(runs[0], simulate_s=wall, sim_requests_per_s=n / wall,
                       peak_rss_mb=max(r["peak_rss_mb"] for r in runs),
                       all_simulate_s=[r["simulate_s"] for r in runs])
            rows.append(row)
            if echo:
                echo(f"{scenario:<9} {mode:<18} {n:>10,} {row['batches']:>9,} {row['sim_requests_per_s']:>12,.0f} "
                     f"{wall:>7.2f} {row['peak_rss_mb']:>8.0f}")
    return rows

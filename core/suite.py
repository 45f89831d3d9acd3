"""The stress suite (``batchlab suite``): three steps that load the simulator and the schedulers.

Step 1, request scaling: 1K, 10K, 100K and 1M requests of the default workload
(BurstGPT-like, Gamma arrivals at 2 req/s) for static_fifo, dynamic_no_bins,
multi_bin_dynamic and continuous_dynamic on 4 GPUs, and multi_bin_dynamic also on
1 and 2 GPUs. What grows with the request count: SLA violations and latency when
a cluster is overloaded (the queue never drains), nothing when it keeps up.

Step 2, GPU scaling (weak): 1 to 100 GPUs at 1M requests, multi_bin_dynamic,
with the arrival rate proportional to the GPUs (0.5 req/s per GPU, the default
workload's load per GPU). Scaling efficiency = throughput(N) / (N x
throughput(1)): 1 means N GPUs keep up with N times the traffic. SLA attainment
and p99 latency show the pooling gain of one shared queue; the simulator's
wall time shows what 100 GPUs x 1M requests cost it.

Step 3, bin-count sensitivity: K = 1, 2, 4, 8, 16, 32 for multi_bin_dynamic on
4 GPUs: saturation throughput (100K requests arriving at 1000 req/s) and
capacity at 95 % SLA attainment (a search, 20K requests per probe, 5 %
tolerance).

``max_requests`` caps every run's request count (a small suite for tests); sizes the cap
makes equal run once.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from batchlab.workloads.spec import WorkloadSpec

from .capacity import CapacityResult
from .config import SimConfig
from .sweep import Member, MemberResult, SweepError

if TYPE_CHECKING:
    import pandas as pd

STEPS = (1, 2, 3)
# the columns a text table shows (CSV and JSON carry all)
DISPLAY = {
    "step1": ["mode", "gpus", "requests", "sla_attainment", "sla_violation_rate", "latency_p50_s", "latency_p99_s",
              "throughput_rps", "num_batches", "sim_s", "sim_requests_per_s"],
    "step2": ["gpus", "rate", "requests", "throughput_rps", "efficiency", "sla_attainment", "latency_p99_s",
              "num_batches", "sim_s", "sim_requests_per_s"],
    "step3": ["k_bins", "throughput_rps", "throughput_tps", "mean_batch_size", "capacity_rps", "capacity_status",
              "capacity_probes"],
}


@dataclass(frozen=True)
class SuitePlan:
    """What the suite runs; every field can be changed (``from_dict``) and is stored with it."""

    steps: tuple[int, ...] = STEPS
    max_requests: int | None = None
    step1_sizes: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    step1_modes: tuple[str, ...] = ("static_fifo", "dynamic_no_bins", "multi_bin_dynamic", "continuous_dynamic")
    step1_gpus: int = 4
    step1_rate: float = 2.0
    step1_multibin_gpus: tuple[int, ...] = (1, 2, 4)
    step2_requests: int = 1_000_000
    step2_gpus: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 100)
    step2_rate_per_gpu: float = 0.5
    step2_mode: str = "multi_bin_dynamic"
    step3_k: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    step3_mode: str = "multi_bin_dynamic"
    step3_gpus: int = 4
    step3_throughput_requests: int = 100_000
    step3_overload_rate: float = 1000.0
    step3_capacity_requests: int = 20_000
    capacity_target: float = 0.95
    capacity_tolerance: float = 0.05

    def __post_init__(self) -> None:
        bad = [s for s in self.steps if s not in STEPS]
        if bad or not self.steps:
            raise SweepError(f"--step: choose from 1, 2, 3 or all, got {', '.join(map(str, bad)) or 'none'}")
        if self.max_requests is not None and self.max_requests < 1:
            raise SweepError(f"--max-requests: must be >= 1, got {self.max_requests}")

    def n(self, requests: int) -> int:
        return min(requests, self.max_requests) if self.max_requests else requests

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> SuitePlan:
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise SweepError(f"suite: unknown setting {unknown[0]!r}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    # ---------------------------------------------------------------- runs --
    def members(self, step: int) -> list[Member]:
        """The plain runs of one step (step 3's capacity searches: :meth:`capacity_bases`)."""
        base, spec = SimConfig(), WorkloadSpec()
        out: list[Member] = []
        if step == 1:
            runs = [(m, self.step1_gpus) for m in self.step1_modes]
            runs += [("multi_bin_dynamic", g) for g in self.step1_multibin_gpus
                     if ("multi_bin_dynamic", g) not in runs]
            sizes = dict.fromkeys(self.n(size) for size in self.step1_sizes)  # a cap can make sizes equal
            for mode, gpus in runs:
                for n in sizes:
                    out.append(Member(base.replace(mode=mode, gpus=gpus),
                                      spec.replace(num_requests=n, rate=self.step1_rate),
                                      {"step": 1, "mode": mode, "gpus": gpus, "requests": n}))
        elif step == 2:
            n = self.n(self.step2_requests)
            for gpus in self.step2_gpus:
                rate = round(self.step2_rate_per_gpu * gpus, 9)
                out.append(Member(base.replace(mode=self.step2_mode, gpus=gpus),
                                  spec.replace(num_requests=n, rate=rate),
                                  {"step": 2, "mode": self.step2_mode, "gpus": gpus, "requests": n, "rate": rate}))
        elif step == 3:
            n = self.n(self.step3_throughput_requests)
            for k in self.step3_k:
                out.append(Member(base.replace(mode=self.step3_mode, gpus=self.step3_gpus, k_bins=k),
                                  spec.replace(num_requests=n, rate=self.step3_overload_rate, arrival="poisson"),
                                  {"step": 3, "mode": self.step3_mode, "k_bins": k, "requests": n}))
        # the longest runs first, so the last worker does not start a 1M-request run alone
        return sorted(out, key=lambda m: -m.spec.num_requests)

    def capacity_bases(self) -> tuple[list[tuple[SimConfig, WorkloadSpec]], list[dict]]:
        """Step 3's capacity searches (one per K) and their labels."""
        spec = WorkloadSpec(num_requests=self.n(self.step3_capacity_requests))
        bases = [(SimConfig(mode=self.step3_mode, gpus=self.step3_gpus, k_bins=k), spec) for k in self.step3_k]
        return bases, [{"step": 3, "mode": self.step3_mode, "k_bins": k} for k in self.step3_k]


def _count(n: int) -> str:
    """1000 as 1K, 1000000 as 1M (other counts with thousands separators)."""
    for size, suffix in ((1_000_000, "M"), (1_000, "K")):
        if n >= size and n % size == 0:
            return f"{n // size}{suffix}"
    return f"{n:,}"


def step_titles(plan: SuitePlan | None = None) -> dict[int, str]:
    """What each step runs, in a few words read from the plan (default: the suite's own sizes)."""
    p = plan or SuitePlan()
    return {1: f"request scaling {_count(min(p.step1_sizes))}-{_count(max(p.step1_sizes))}",
            2: f"GPU scaling {min(p.step2_gpus)}-{max(p.step2_gpus)} at {_count(p.step2_requests)} requests",
            3: f"bin-count sensitivity K = {min(p.step3_k)}-{max(p.step3_k)}"}


# -------------------------------------------------------------------- tables --
def _row(res: MemberResult) -> dict:
    s = res.summary or {}
    sim = res.sim_seconds
    n = s.get("num_requests")
    return {**res.point, "status": res.status, "sla_attainment": s.get("sla_attainment"),
            "sla_violation_rate": None if s.get("sla_attainment") is None else 1.0 - s["sla_attainment"],
            "latency_mean_s": s.get("latency_mean_s"), "latency_p50_s": s.get("latency_p50_s"),
            "latency_p99_s": s.get("latency_p99_s"), "throughput_rps": s.get("throughput_rps"),
            "throughput_tps": s.get("throughput_tps"), "mean_batch_size": s.get("mean_batch_size"),
            "num_batches": s.get("num_batches"), "sim_s": sim,
            "sim_requests_per_s": n / sim if n and sim else None, "error": res.error}


def tables(results: list[MemberResult], capacities: list[CapacityResult] | None = None) -> dict[str, pd.DataFrame]:
    """``step1``, ``step2``, ``step3`` tables from the members' results and step 3's capacities."""
    import pandas as pd  # here, not at the top: the command line reads the step titles at start-up

    rows = [_row(r) for r in results]
    out: dict[str, pd.DataFrame] = {}
    s1 = [r for r in rows if r["step"] == 1]
    if s1:
        out["step1"] = (pd.DataFrame(s1).drop(columns=["step"])
                        .sort_values(["mode", "gpus", "requests"], ignore_index=True))
    s2 = [r for r in rows if r["step"] == 2]
    if s2:
        df = pd.DataFrame(s2).drop(columns=["step"]).sort_values("gpus", ignore_index=True)
        one = df.loc[df["gpus"] == df["gpus"].min()].iloc[0]
        per_gpu = one["throughput_rps"] / one["gpus"] if one["throughput_rps"] else None
        df["efficiency"] = [t / (g * per_gpu) if per_gpu and t is not None and pd.notna(t) else None
                            for t, g in zip(df["throughput_rps"], df["gpus"])]
        out["step2"] = df
    s3 = [r for r in rows if r["step"] == 3]
    caps = {c.label.get("k_bins"): c for c in (capacities or [])}
    if s3 or caps:
        df = pd.DataFrame(s3).drop(columns=["step"]) if s3 else pd.DataFrame({"k_bins": sorted(caps)})
        df = df.rename(columns={"requests": "throughput_requests"})
        df["capacity_rps"] = [caps[k].capacity_rps if k in caps else None for k in df["k_bins"]]
        df["capacity_status"] = [caps[k].status if k in caps else None for k in df["k_bins"]]
        df["capacity_probes"] = [len(caps[k].probes) if k in caps else None for k in df["k_bins"]]
        out["step3"] = df.sort_values("k_bins", ignore_index=True)
    return out

"""Capacity: the highest arrival rate whose SLA attainment stays at or above a target.

Capacity is a search, never a throughput (docs/capacity-and-sweeps.md). For each
replication the search

1. brackets: probes ``start`` and then multiplies (or divides) the rate by
   ``factor`` until it holds a passing rate ``lo`` (attainment >= target) and a
   failing rate ``hi > lo``;
2. bisects: probes points inside ``(lo, hi)`` (one, or ``m`` equally spaced ones
   when ``m`` workers are free) until ``hi - lo <= (tolerance / 2) * lo``;
3. reports ``lo``: a rate *observed* to meet the target, at most half the
   tolerance below the rate ``hi`` observed to miss it. The other half of the
   tolerance is left for the sampling error of the estimated attainment: the
   answer is within ``tolerance`` of the true capacity when the run is long
   enough that a different seed moves the crossing by less than half of it
   (replications measure that spread).

Common random numbers: every probe of replication ``r`` uses workload seed and
scheduler seed ``base + r``; a synthetic workload (and a trace with
``arrival=trace``) at another rate is the same arrival sequence with its time
axis rescaled, so two probes differ only by the rate. With ``replications > 1``
the capacity is the mean of the per-replication capacities with a Student-t
confidence interval (seed-to-seed spread only; the bisection adds at most
``tolerance``).

Bisection assumes attainment falls as the rate rises. A scheduler that waits
for full batches (``fill=full`` without ``max_wait``) can do better at higher
rates; then the search finds one crossing, not necessarily the highest.
A target not met at ``min_rate`` gives capacity 0 (status ``unreachable``);
one still met at ``max_rate`` gives ``max_rate`` (status ``unbounded``);
replications that end differently give status ``mixed``; a probe whose run
fails ends its search with status ``failed`` and the error.

:func:`capacity` searches one configuration; :func:`search_capacities` runs
several (e.g. one per mode, or per GPU count for a planner) on one executor
at once.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import asdict, dataclass, field

from batchlab.workloads.spec import WorkloadSpec

from .config import SimConfig
from .slo_report import judged, target_attainment
from .stats import mean_ci
from .sweep import Member, MemberResult, SweepError, _outcome, default_workers, pool_for, simulate_member

DEFAULT_TOLERANCE = 0.02
DEFAULT_FACTOR = 4.0
MIN_RATE = 1e-3
MAX_RATE = 1e5
MAX_PROBES = 200
STATUSES = ("ok", "unreachable", "unbounded", "mixed", "failed")


@dataclass
class Probe:
    """One simulated rate of one replication."""

    rate: float
    replication: int
    attainment: float | None
    passed: bool
    throughput_rps: float | None = None
    latency_p99_s: float | None = None
    run_hash: str | None = None
    run_id: int | None = None
    cached: bool = False
    error: str | None = None


@dataclass
class CapacityResult:
    """A capacity search's answer; ``to_dict`` is what ``batchlab capacity --json`` prints."""

    mode: str
    target: float
    tolerance: float
    replications: int
    confidence: float
    capacity_rps: float | None
    ci_low: float | None
    ci_high: float | None
    per_replication: list[float | None]
    brackets: list[tuple[float | None, float | None]]
    status: str
    probes: list[Probe] = field(default_factory=list)
    error: str | None = None
    label: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["brackets"] = [list(b) for b in self.brackets]
        d["probes"] = sorted(d["probes"], key=lambda p: (p["replication"], p["rate"]))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CapacityResult:
        d = dict(d)
        d["probes"] = [Probe(**p) for p in d.get("probes", [])]
        d["brackets"] = [tuple(b) for b in d.get("brackets", [])]
        return cls(**d)


def _round(rate: float) -> float:
    return float(f"{rate:.7g}")


class BisectionSearch:
    """Bracket-then-bisect on the rate for one replication (a state machine: propose, observe)."""

    def __init__(self, target: float, tolerance: float, start: float, factor: float = DEFAULT_FACTOR,
                 min_rate: float = MIN_RATE, max_rate: float = MAX_RATE):
        self.target, self.tol, self.start, self.factor = target, tolerance, start, factor
        self.min_rate, self.max_rate = min_rate, max_rate
        self.seen: dict[float, bool] = {}
        self.status = "searching"
        self.error: str | None = None

    @property
    def lo(self) -> float | None:
        """The highest passing rate below the lowest failing one."""
        hi = self.hi
        ok = [r for r, p in self.seen.items() if p and (hi is None or r < hi)]
        return max(ok) if ok else None

    @property
    def hi(self) -> float | None:
        bad = [r for r, p in self.seen.items() if not p]
        return min(bad) if bad else None

    @property
    def capacity(self) -> float | None:
        if self.status == "unreachable":
            return 0.0
        if self.status in ("ok", "unbounded"):
            return self.lo
        return None

    def propose(self, m: int = 1) -> list[float]:
        lo, hi = self.lo, self.hi
        if lo is None and hi is None:
            half = (m - 1) // 2
            rates = [self.start * self.factor ** (j - half) for j in range(m)]
        elif hi is None:
            rates = [lo * self.factor ** j for j in range(1, m + 1)]
        elif lo is None:
            rates = [hi / self.factor ** j for j in range(1, m + 1)]
        else:
            rates = [lo + (hi - lo) * j / (m + 1) for j in range(1, m + 1)]
        out = []
        for r in rates:
            r = _round(min(max(r, self.min_rate), self.max_rate))
            if r not in self.seen and r not in out:
                out.append(r)
        return out

    def observe(self, rate: float, passed: bool) -> None:
        self.seen[rate] = passed
        lo, hi = self.lo, self.hi
        if hi is None and lo is not None and lo >= self.max_rate:
            self.status = "unbounded"
        elif lo is None and hi is not None and hi <= self.min_rate:
            self.status = "unreachable"
        elif lo is not None and hi is not None and hi - lo <= 0.5 * self.tol * lo * (1 + 1e-9):
            self.status = "ok"

    def fail(self, error: str) -> None:
        self.status, self.error = "failed", error

    def probes_left(self, m: int = 1) -> int:
        """About how many probes this search still runs at ``m`` per round, those in flight included (0 once
        it has ended): a bracketing round for each side not found yet, then the bisection rounds that
        shrink the bracket (``factor - 1`` of ``lo`` while a side is missing) to the tolerance. An
        estimate: a bracketing step may miss, and a round near the end may propose fewer rates."""
        if self.status != "searching":
            return 0
        lo, hi = self.lo, self.hi
        missing = (lo is None) + (hi is None)
        width = self.factor - 1 if missing else (hi - lo) / lo
        goal = 0.5 * self.tol
        rounds = math.ceil(math.log(width / goal) / math.log(m + 1) - 1e-9) if width > goal else 0
        return m * (missing + rounds)


def probe_member(config: SimConfig, spec: WorkloadSpec, rate: float, replication: int,
                 label: dict | None = None) -> Member:
    """The run behind one probe: the base settings at ``rate`` with replication ``r``'s seeds."""
    sim = config.replace(seed=config.seed + replication)
    wl = spec.replace(rate=rate, workload_seed=spec.workload_seed + replication)
    return Member(sim, wl, dict(label or {}, rate=rate, replication=replication))


def check_capacity_inputs(config: SimConfig, spec: WorkloadSpec, target: float, tolerance: float,
                          replications: int) -> None:
    """SweepError naming the first setting a capacity search cannot use."""
    if not 0 < target <= 1:
        raise SweepError(f"target: must be in (0, 1] (an SLA attainment), got {target:g}")
    if not 1e-4 <= tolerance <= 0.5:
        raise SweepError(f"tolerance: must be between 0.0001 and 0.5 (relative), got {tolerance:g}")
    if replications < 1:
        raise SweepError(f"replications: must be >= 1, got {replications}")
    if spec.rps_scaling != 1.0:
        raise SweepError("rps_scaling: capacity probes the arrival rate itself; leave rps_scaling at 1")
    if spec.real_timestamps:
        raise SweepError("real_timestamps: capacity rescales the arrival times; it cannot keep them real")
    if spec.ramp_up is not None:
        raise SweepError(f"ramp_up: capacity probes a steady arrival rate, and arrivals ramping {spec.ramp_up} "
                         "have none; drop ramp_up")
    if config.d_sla_ttft is None and config.d_sla_tbt is None and config.d_sla_e2e is None and not judged(config):
        raise SweepError("every SLA deadline is off, so every rate meets the target; enable a deadline")


def search_capacities(bases: list[tuple[SimConfig, WorkloadSpec]], target: float,
                      tolerance: float = DEFAULT_TOLERANCE, replications: int = 1,
                      executor: Executor | None = None, job: Callable[[Member], MemberResult] = simulate_member,
                      workers: int | None = None, start: float | list[float | None] | None = None,
                      factor: float | list[float] = DEFAULT_FACTOR,
                      min_rate: float = MIN_RATE, max_rate: float = MAX_RATE, confidence: float = 0.95,
                      labels: list[dict] | None = None,
                      on_probe: Callable[[int, Probe, BisectionSearch], None] | None = None,
                      on_left: Callable[[int], None] | None = None) -> list[CapacityResult]:
    """One capacity search per base (config, spec), all sharing ``executor`` (see the module doc).

    ``workers``: how many probes may run at once (default: the CPU count); each round a
    search probes ``max(1, workers // searches)`` rates, so the answer depends on the worker
    count but never on timing. ``start`` (the first rate probed; default the spec's rate) and
    ``factor`` (the bracketing step) are one value for every base or a list of one per base. ``labels``: a dict
    per base merged into its members' labels (e.g. ``{"mode": ...}``). ``on_probe(base index,
    probe, search)`` is called in this thread after every probe; ``on_left(n)`` at the start and after every
    probe, with about how many probes are left (:meth:`BisectionSearch.probes_left`, summed).
    """
    if not bases:
        raise SweepError("capacity: nothing to search")
    for cfg, spec in bases:
        check_capacity_inputs(cfg, spec, target, tolerance, replications)
    starts = list(start) if isinstance(start, (list, tuple)) else [start] * len(bases)
    factors = list(factor) if isinstance(factor, (list, tuple)) else [factor] * len(bases)
    if len(starts) != len(bases) or len(factors) != len(bases):
        raise SweepError("capacity: give one start and one factor per configuration, or one for all")
    if not (all(f > 1 for f in factors) and 0 < min_rate < max_rate):
        raise SweepError("capacity: need factor > 1 and 0 < min_rate < max_rate")
    labels = labels or [{"mode": cfg.mode} for cfg, _ in bases]
    workers = workers or default_workers()
    # probes per round, fixed for the whole search: the probed rates (and so the answer) never depend
    # on which run happened to finish first
    m = max(1, workers // (len(bases) * replications))
    searches = []
    for b, (_, spec) in enumerate(bases):
        first = starts[b] or spec.rate or 1.0
        for rep in range(replications):
            searches.append((b, rep, BisectionSearch(target, tolerance, min(max(first, min_rate), max_rate),
                                                     factors[b], min_rate, max_rate)))
    probes: list[list[Probe]] = [[] for _ in bases]
    in_flight: dict[Future, tuple[int, float, Member]] = {}

    def left() -> None:
        if on_left is not None:
            on_left(sum(s.probes_left(m) for _, _, s in searches))

    left()
    with pool_for(executor, workers) as pool:
        try:
            while True:
                active = [i for i, (_, _, s) in enumerate(searches) if s.status == "searching"]
                busy = {i for i, _, _ in in_flight.values()}
                for i in active:
                    if i in busy:
                        continue
                    b, rep, s = searches[i]
                    if len(probes[b]) >= MAX_PROBES * replications:
                        s.fail(f"no answer after {MAX_PROBES} probes")
                        continue
                    cfg, spec = bases[b]
                    rates = s.propose(m)
                    if not rates:  # the bracket is as tight as the rates' precision allows
                        s.status = "ok"
                    for rate in rates:
                        member = probe_member(cfg, spec, rate, rep, labels[b])
                        in_flight[pool.submit(job, member)] = (i, rate, member)
                if not in_flight:
                    break
                done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                for fut in done:
                    i, rate, member = in_flight.pop(fut)
                    b, rep, s = searches[i]
                    res = _outcome(fut, member)
                    probe = _probe(rate, rep, res, target)
                    probes[b].append(probe)
                    if res.ok:
                        if s.status == "searching":
                            s.observe(rate, probe.passed)
                    else:
                        s.fail(res.error or "the run failed")
                    left()
                    if on_probe is not None:
                        on_probe(b, probe, s)
        except BaseException:
            for fut in in_flight:
                fut.cancel()
            raise
    return [_result(bases[b][0].mode, [s for bb, _, s in searches if bb == b], probes[b], target, tolerance,
                    replications, confidence, labels[b]) for b in range(len(bases))]


def capacity(base_config: SimConfig, base_spec: WorkloadSpec, target: float = 0.99,
             tolerance: float = DEFAULT_TOLERANCE, replications: int = 1, executor: Executor | None = None,
             **options) -> CapacityResult:
    """The capacity of one configuration (options as :func:`search_capacities`)."""
    return search_capacities([(base_config, base_spec)], target, tolerance, replications, executor, **options)[0]


def _probe(rate: float, rep: int, res: MemberResult, target: float) -> Probe:
    s = res.summary or {}
    att = target_attainment(s)   # every class and percentile SLO, when given (core.slo_report)
    return Probe(rate=rate, replication=rep, attainment=att, passed=att is not None and att >= target,
                 throughput_rps=s.get("throughput_rps"), latency_p99_s=s.get("latency_p99_s"),
                 run_hash=res.run_hash, run_id=res.run_id, cached=res.cached, error=res.error)


def _result(mode: str, searches: list[BisectionSearch], probes: list[Probe], target: float, tolerance: float,
            replications: int, confidence: float, label: dict) -> CapacityResult:
    failed = [s for s in searches if s.status == "failed"]
    caps = [s.capacity for s in searches]
    brackets = [(s.lo, s.hi) for s in searches]
    if failed:
        return CapacityResult(mode, target, tolerance, replications, confidence, None, None, None, caps, brackets,
                              "failed", probes, failed[0].error, label)
    mean, low, high = mean_ci([float(c) for c in caps], confidence)
    statuses = {s.status for s in searches}
    status = statuses.pop() if len(statuses) == 1 else "mixed"
    if low is not None:
        low = max(low, 0.0)
    return CapacityResult(mode, target, tolerance, replications, confidence, _finite(mean), _finite(low),
                          _finite(high), caps, brackets, status, probes, None, label)


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)

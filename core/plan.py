"""Capacity planning: the fewest GPUs, and the batching configuration, that meet an SLA target.

:func:`plan` answers *how few GPUs do I need, and how should I batch, to serve
this traffic within this SLA?* for one workload at its own arrival rate (a
synthetic workload's ``rate``, or a trace's arrivals, rescaled or not), with the
choices of :class:`core.plan_options.PlanOptions`:

1. **Candidates.** Each mode in ``options.modes`` with its knobs from small sets:
   ``k_bins`` in ``k_values`` for multi-bin modes, ``b_max`` in ``b_max_values``
   for dynamic modes, ``batch_size`` in ``batch_values`` for the others
   (static_fifo, multi_bin_fixed, continuous_static), and its cluster: ``tp`` in
   ``tp_values`` (GPUs per replica), and for a continuous mode the ``router`` in
   ``routers`` and the prefill:decode ratio in ``pd_ratios`` (each list defaults to
   the base config's one value; no disaggregation). A batch-level mode runs one
   shared queue, not disaggregated, whatever the lists; a disaggregated candidate
   never has shared_queue. Every other setting is the base config's.
   The unit of the search is the GPU: a candidate of TP ``t`` runs *within* ``g``
   GPUs on ``floor(g / t)`` replicas, ``floor(g / t) x t`` GPUs (it does not fit
   below ``t``; a disaggregated one needs two replicas). A ratio ``p:d`` at ``R``
   replicas is ``P = R p / (p + d)`` prefill replicas, rounded half up and kept
   within 1..R-1, and ``D = R - P`` decode replicas (:func:`pd_split`): one
   candidate per ratio, whose split grows with the cluster, rather than every
   split at every size.
2. **Meeting the target.** A candidate *meets* the target within ``g`` GPUs when,
   over ``replications`` seeds (replication ``r`` adds ``r`` to the workload and
   scheduler seeds), ``rule="mean"``: the mean SLA attainment is >= target;
   ``rule="lower"``: the lower end of its Student-t confidence interval (at
   ``confidence``) is >= target, a guarantee against seed-to-seed noise that
   needs two or more replications.
3. **The fewest GPUs.** More GPUs do not lower attainment at a fixed rate
   (equivalently, capacity; up to a seed's noise, see 4), so "some candidate
   meets the target at ``g``" is monotone in ``g`` and the search bisects on ``g`` in
   ``[1, max_gpus]``. Each probed ``g`` runs only the candidates not already
   known to fail there: one that failed at ``g' >= g`` fails at ``g`` too, so
   after a passing probe only the passing candidates go lower. (Within ``g + 1``
   GPUs a candidate has at least the replicas it has within ``g``, so the budget
   keeps the search monotone whatever the TPs; the answer's configuration uses
   all ``g*`` GPUs, else a smaller budget would have met the target.)
   A synthetic workload of ``PILOT_FROM`` requests or more first gets a *pilot*:
   the same bisection on a tenth of the requests, whose answer ``p`` only
   chooses where the full-size search looks first (``p``, then 1, 2, 4, ...
   GPUs away from it until the answer is bracketed: two GPU counts when the
   pilot is right) before it bisects what is left; every decision is still made
   on full-size runs (``pilot=False`` skips it).
4. **Ranking and the boundary.** Every candidate is run at the answer ``g*`` and
   ranked: meeting the target first, then by attainment (higher first), then p99
   end-to-end latency (lower first), then candidate order. At ``g* - 1`` the best
   attainment is made exact by running every candidate whose attainment at ``g*``
   (an upper bound) exceeds the best measured there. Should that find a candidate
   meeting the target at ``g* - 1`` (attainment that is not monotone in ``g``, a
   seed's noise), the answer moves down and the check repeats, so a reported
   ``g*`` never has a measured passing configuration one GPU below.
5. **Evidence.** At ``g*``, each mode's best candidate gets a capacity search
   (:mod:`core.capacity`: the highest rate whose attainment stays >= target,
   with a confidence interval across replications), started at the planned rate,
   whose probe at that rate reuses the plan's own run. A candidate meeting the
   target there brackets upward by ``max(1.25, g*/(g* - 1))`` (one GPU fewer
   misses the rate, so its capacity is near it), the others by the default 4.

A target no candidate meets with ``max_gpus`` GPUs gives status ``unreachable``
(the ranking and the evidence are then at ``max_gpus``); a candidate whose run
fails (e.g. no request fits its memory) is left out with its error, and status
``failed`` means every candidate failed.

Runs go through ``job`` on ``executor`` like sweeps (:mod:`core.sweep`): the
results store supplies a job that stores every run, so planning again (a
tighter target, more GPUs) serves the runs it shares from the store. The
answer depends neither on timing nor on the worker count; the capacity
evidence's probed rates depend on the worker count (within its tolerance).
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from batchlab.workloads.spec import SpecError, WorkloadSpec
from batchlab.workloads.workload import WorkloadError

from .capacity import DEFAULT_FACTOR, BisectionSearch, check_capacity_inputs, search_capacities
from .config import (
    BATCH_ROUTER,
    BINNED_MODES,
    CONTINUOUS_MODES,
    CONTINUOUS_ROUTER,
    DYNAMIC_MODES,
    MAX_BATCH,
    MAX_BINS,
    MAX_GPUS,
    MAX_TP,
    MODES,
    ROUTERS,
    ConfigError,
    SimConfig,
)
from .plan_options import CLUSTER_OPTIONS, PILOT_FROM, PILOT_SHARE, RULES, PlanOptions
from .plan_report import gpu_label, label_of, plan_sentence, run_command, toml_config
from .slo_report import judged, target_attainment
from .stats import mean_ci
from .sweep import Member, MemberResult, SweepError, default_workers, pool_for, run_members, simulate_member

COST_KEYS = ("gpu_types", "cheapest")  # in a plan's answer only when it plans across GPU types
WINNER_FACTOR = 1.25  # the smallest bracketing step of a capacity search from a rate known to pass

OnRun = Callable[[str, bool], None]  # (phase, the run succeeded)
OnLeft = Callable[[int], None]  # about how many runs are left


# ----------------------------------------------------------------- inputs --
def pd_split(ratio: str, replicas: int) -> tuple[int, int]:
    """``ratio`` ``"p:d"`` at ``replicas`` replicas (2 or more): P = replicas x p / (p + d), rounded half up and
    kept within 1..replicas - 1, and D = replicas - P (1:3 at 8 replicas: 2 prefill, 6 decode)."""
    p, d = (int(x) for x in ratio.split(":"))
    prefill = min(replicas - 1, max(1, math.floor(replicas * p / (p + d) + 0.5)))
    return prefill, replicas - prefill


@dataclass(frozen=True)
class Candidate:
    """A mode with its knobs (``settings``: k_bins, b_max or batch_size) and its cluster (``tp`` GPUs per
    replica, ``router``, ``pd``: a prefill:decode ratio or None), before choosing the GPU count.
    ``named``: the cluster choices its label names (those the plan was given several of; TP > 1 always)."""

    mode: str
    settings: tuple[tuple[str, int], ...]
    tp: int = 1
    router: str = BATCH_ROUTER
    pd: str | None = None
    named: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return label_of(self.mode, dict(self.settings), self.cluster_choice())

    def cluster_choice(self) -> dict:
        """The cluster choices the label names."""
        shown = {"tp": self.tp, "router": self.router, "pd_ratio": self.pd}
        return {k: v for k, v in shown.items() if k in self.named or (k == "tp" and v != 1)}

    def gpus_within(self, budget: int) -> int | None:
        """The GPUs this candidate runs on with at most ``budget`` GPUs: whole replicas of ``tp`` GPUs (two or
        more when disaggregated); None when not even the fewest fit."""
        replicas = budget // self.tp
        return replicas * self.tp if replicas >= (2 if self.pd else 1) else None

    def config(self, base: SimConfig, gpus: int) -> SimConfig:
        """The candidate's run on ``gpus`` GPUs (a multiple of ``tp``, :meth:`gpus_within`)."""
        replicas = gpus // self.tp
        split = pd_split(self.pd, replicas) if self.pd else None
        changes: dict[str, Any] = {"mode": self.mode, "gpus": gpus, "replicas": None, "tp": self.tp,
                                   "router": self.router, "disaggregate": split and f"{split[0]}:{split[1]}",
                                   **dict(self.settings)}
        if base.fill != SimConfig(mode=base.mode).fill:
            changes["fill"] = base.fill  # a fill the user chose, not the base mode's own default
        return base.replace(**changes)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "settings": dict(self.settings), "tp": self.tp, "router": self.router,
                "pd_ratio": self.pd, "label": self.label}


def knobs(mode: str, options: PlanOptions) -> list[dict[str, int]]:
    """The settings each candidate of ``mode`` takes (K outermost)."""
    ks = [{"k_bins": k} for k in options.k_values] if mode in BINNED_MODES else [{}]
    sizes = ([{"b_max": b} for b in options.b_max_values] if mode in DYNAMIC_MODES
             else [{"batch_size": b} for b in options.batch_values])
    return [{**k, **s} for k in ks for s in sizes]


def cluster_lists(options: PlanOptions, base: SimConfig | None = None) -> tuple[tuple, tuple, tuple]:
    """(TPs, routers, P:D ratios) the plan tries: the options' lists, or the base config's own (its tp; its
    router, or the continuous default when the base mode is batch-level; no disaggregation)."""
    base = base or SimConfig()
    tps = options.tp_values if options.tp_values is not None else (base.tp,)
    routers = options.routers if options.routers is not None else (
        (base.routing if base.continuous else CONTINUOUS_ROUTER),)
    ratios = options.pd_ratios if options.pd_ratios is not None else (None,)
    return tuple(tps), tuple(routers), tuple(None if r is None else _ratio(r) for r in ratios)


def candidates(options: PlanOptions, base: SimConfig | None = None) -> list[Candidate]:
    """Every candidate, modes in the given order, then TP, router, P:D ratio, knobs. A continuous mode tries
    every router and ratio (a disaggregated cluster not with shared_queue); a batch-level mode runs one
    shared queue, not disaggregated, whatever the lists."""
    tps, routers, ratios = cluster_lists(options, base)
    out = []
    for m in options.modes:
        cont = m in CONTINUOUS_MODES
        pairs = ([(r, pd) for r in routers for pd in ratios if not (pd and r == BATCH_ROUTER)] if cont
                 else [(BATCH_ROUTER, None)])
        out += [Candidate(m, tuple(s.items()), t, r, pd) for t in tps for r, pd in pairs for s in knobs(m, options)]
    named = tuple(k for k, vals in (("tp", tps), ("router", routers), ("pd_ratio", ratios)) if len(vals) > 1)
    return [dataclasses.replace(c, named=named) for c in out]


def _ratio(text: object) -> str:
    """``"P:D"`` read and written canonically (SweepError otherwise)."""
    parts = str(text).replace(" ", "").split(":")
    if len(parts) != 2 or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise SweepError(f"pd_ratios: each ratio must be P:D with whole numbers from 1 (or none), got {text!r}")
    return f"{int(parts[0])}:{int(parts[1])}"


def _values(name: str, values: tuple[int, ...], top: int) -> None:
    if not values:
        raise SweepError(f"{name}: give at least one value")
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= top]
    if bad:
        raise SweepError(f"{name}: values must be whole numbers from 1 to {top:,}, got {bad[0]!r}")
    if len(set(values)) != len(values):
        raise SweepError(f"{name}: {sorted(v for v in values if values.count(v) > 1)[0]} is listed twice")


def _cluster_inputs(config: SimConfig, o: PlanOptions) -> None:
    """SweepError naming the first bad router, TP or P:D ratio list."""
    if config.disaggregate is not None:
        raise SweepError("disaggregate: the plan chooses it; give the P:D ratios to try (pd_ratios)")
    for name in CLUSTER_OPTIONS:
        if isinstance(getattr(o, name), str):
            raise SweepError(f"{name}: give a list of values, not one text")
    if o.routers is not None:
        bad = [r for r in o.routers if r not in ROUTERS]
        if bad or not o.routers:
            raise SweepError(f"routers: unknown router(s) {', '.join(map(str, bad)) or '(none)'}; choose from "
                             f"{', '.join(ROUTERS)}")
        if len(set(o.routers)) != len(o.routers):
            raise SweepError("routers: a router is listed twice")
    if o.tp_values is not None:
        _values("tp_values", o.tp_values, MAX_TP)
        if min(o.tp_values) > o.max_gpus:
            raise SweepError(f"tp_values: every TP needs more GPUs than max_gpus ({o.max_gpus})")
    if o.pd_ratios is not None:
        if not o.pd_ratios:
            raise SweepError("pd_ratios: give at least one ratio (none: no disaggregation)")
        ratios = [None if r is None else _ratio(r) for r in o.pd_ratios]
        if len(set(ratios)) != len(ratios):
            raise SweepError("pd_ratios: a ratio is listed twice")
    tps, routers, ratios = cluster_lists(o, config)
    for m in o.modes:
        if m in CONTINUOUS_MODES and not any(not (pd and r == BATCH_ROUTER) for r in routers for pd in ratios):
            raise SweepError(f"pd_ratios: a disaggregated cluster needs a router other than {BATCH_ROUTER}, so "
                             f"{m} has no candidate; add a router or none to the ratios")


def check_plan_inputs(config: SimConfig, spec: WorkloadSpec, options: PlanOptions) -> None:
    """SweepError naming the first input a plan cannot use (every candidate config is validated here)."""
    o = options
    if o.gpu_types is not None or o.gpu_costs is not None:
        _cost_inputs(config, o)
        if o.gpu_types is not None:
            o = dataclasses.replace(o, gpu_types=None, gpu_costs=None)
    if not 0 < o.target <= 1:
        raise SweepError(f"target: must be in (0, 1] (an SLA attainment), got {o.target:g}")
    bad = [m for m in o.modes if m not in MODES]
    if bad or not o.modes:
        raise SweepError(f"modes: unknown mode(s) {', '.join(bad) or '(none)'}; choose from {', '.join(MODES)}")
    if len(set(o.modes)) != len(o.modes):
        raise SweepError("modes: a mode is listed twice")
    if not 1 <= o.max_gpus <= MAX_GPUS:
        raise SweepError(f"max_gpus: must be between 1 and {MAX_GPUS}, got {o.max_gpus}")
    _values("k_values", o.k_values, MAX_BINS)
    _values("b_max_values", o.b_max_values, MAX_BATCH)
    _values("batch_values", o.batch_values, MAX_BATCH)
    _cluster_inputs(config, o)
    if o.replications < 1:
        raise SweepError(f"replications: must be >= 1, got {o.replications}")
    if o.rule not in RULES:
        raise SweepError(f"rule: must be one of {', '.join(RULES)}, got {o.rule!r}")
    if o.rule == "lower" and o.replications < 2:
        raise SweepError("rule: 'lower' (the confidence interval's lower end) needs replications >= 2")
    if not 0 < o.confidence < 1:
        raise SweepError(f"confidence: must be in (0, 1), got {o.confidence:g}")
    if not 1e-4 <= o.tolerance <= 0.5:
        raise SweepError(f"tolerance: must be between 0.0001 and 0.5 (relative), got {o.tolerance:g}")
    if config.d_sla_ttft is None and config.d_sla_tbt is None and config.d_sla_e2e is None and not judged(config):
        raise SweepError("every SLA deadline is off, so every configuration meets the target; enable a deadline")
    cands = candidates(o, config)
    for cand in cands:
        try:
            cand.config(config, cand.tp * (2 if cand.pd else 1))
        except ConfigError as exc:
            raise SweepError(f"candidate {cand.label}: {exc}") from None
    if not any(c.gpus_within(o.max_gpus) for c in cands):
        raise SweepError(f"max_gpus: no candidate fits in {o.max_gpus} GPUs (a disaggregated cluster needs two "
                         "replicas or more)")


def _cost_inputs(config: SimConfig, o: PlanOptions) -> None:
    """SweepError naming what a plan across GPU types cannot use."""
    from .hardware import gpu_catalogue

    known = gpu_catalogue()
    for name in (o.gpu_types or ()) + tuple(k for k, _ in o.gpu_costs or ()):
        if name not in known:
            raise SweepError(f"gpu_types: unknown GPU {name!r}; known: {', '.join(known)}")
    if o.gpu_types is not None:
        if not o.gpu_types:
            raise SweepError("gpu_types: give at least one catalogue GPU")
        if len(set(o.gpu_types)) != len(o.gpu_types):
            raise SweepError("gpu_types: a GPU is listed twice")
        if config.model is None:
            raise SweepError("gpu_types: a plan across GPU types needs model (the weights and KV shape on each GPU)")
        if config.gpu is not None:
            raise SweepError(f"gpu: the plan sets it from gpu_types; give gpu ({config.gpu}) or gpu_types, "
                             "not both")
    for name, price in o.gpu_costs or ():
        if isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price) or price <= 0:
            raise SweepError(f"gpu_costs: the price of {name!r} must be a positive number of USD per GPU-hour, "
                             f"got {price!r}")


def pilot_requests(spec: WorkloadSpec, options: PlanOptions) -> int | None:
    """The pilot's request count: a tenth of a synthetic workload of PILOT_FROM requests or more."""
    r = spec.resolved()
    if not options.pilot or r.workload != "synthetic" or r.num_requests < PILOT_FROM:
        return None
    return r.num_requests // PILOT_SHARE


def offered_rate(spec: WorkloadSpec) -> float:
    """The arrival rate the plan is for: a synthetic workload's rate, a trace's ``rate``, or else the
    workload's mean rate ((n - 1) / span: a trace window after ``rps_scaling``, a ramp's arrivals; the
    workload is built to read it)."""
    r = spec.resolved()
    if r.rate is not None:
        return float(r.rate)
    from batchlab.workloads.build import build_workload

    rate = build_workload(spec).mean_rate
    if not math.isfinite(rate):
        raise SweepError("rate: the trace window spans 0 s, so it has no arrival rate to plan for")
    return float(rate)


def capacity_spec(spec: WorkloadSpec, rate: float) -> WorkloadSpec:
    """``spec`` with its time scale given as a rate (what a capacity search varies)."""
    if spec.ramp_up is not None:
        raise SweepError(f"ramp_up: a capacity search varies a steady arrival rate, and arrivals ramping "
                         f"{spec.ramp_up} have none (drop ramp_up, or plan with --no-evidence)")
    try:
        return spec.replace(rate=rate, rps_scaling=1.0, real_timestamps=None)
    except (SpecError, WorkloadError) as exc:
        raise SweepError(str(exc)) from None


# ---------------------------------------------------------------- results --
@dataclass
class Cell:
    """One candidate at one GPU count, over the replications."""

    candidate: int
    gpus: int
    meets: bool
    attainment: float | None
    ci_low: float | None
    ci_high: float | None
    latency_p99_s: float | None
    throughput_rps: float | None
    runs: list[str | None]
    run_ids: list[int | None]
    reused: int
    error: str | None = None


@dataclass
class PlanResult:
    """A plan's answer; ``to_dict`` is what ``batchlab plan --json`` prints and the web page reads."""

    status: str
    target: float
    rule: str
    confidence: float
    replications: int
    rate_rps: float
    max_gpus: int
    gpus: int | None
    ranked_at: int | None
    sentence: str
    recommended: dict | None
    ranking: list[dict]
    below: dict | None
    capacities: list[dict]
    cells: list[dict]
    candidates: list[dict]
    counts: dict
    seconds: float
    phase_seconds: dict
    errors: dict = field(default_factory=dict)
    error: str | None = None
    gpu_types: list[dict] | None = None   # a plan across GPU types: one row per type (plan_across_gpus)
    cheapest: str | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return d if self.gpu_types is not None else {k: v for k, v in d.items() if k not in COST_KEYS}


def _mean(values: list[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(vals) if vals else None


# ----------------------------------------------------------------- search --
@dataclass(frozen=True)
class _Reuse:
    """A job that answers members the plan already ran from their results, and runs the others."""

    job: Callable[[Member], MemberResult]
    known: dict

    def __call__(self, member: Member) -> MemberResult:
        res = self.known.get(member.key)
        if res is not None:
            return dataclasses.replace(res, point=member.point, cached=True)
        return self.job(member)


class _Search:
    """The bookkeeping of one plan: measured cells, broken candidates, the runs' results."""

    def __init__(self, config: SimConfig, spec: WorkloadSpec, options: PlanOptions, executor: Executor, job,
                 workers: int, on_run: OnRun | None):
        self.config, self.spec, self.o = config, spec, options
        self.executor, self.job, self.workers, self.on_run = executor, job, workers, on_run
        self.cands = candidates(options, config)
        self.cells: dict[tuple[int, int], Cell] = {}  # (candidate, the GPUs it ran on)
        self.broken: dict[int, str] = {}
        self.results: dict[str, MemberResult] = {}
        self.runs = self.simulated = 0
        self.bounds = (1, options.max_gpus)  # the GPU counts the answer still lies between
        self.on_left: OnLeft | None = None
        self.after = 0  # runs expected after this search (a pilot's: the full-size search's)
        self.in_evidence = False

    # -- running -------------------------------------------------------
    def used(self, ci: int, budget: int) -> int | None:
        """The GPUs candidate ``ci`` runs on with at most ``budget`` GPUs (None: it does not fit)."""
        return self.cands[ci].gpus_within(budget)

    def cell(self, ci: int, budget: int) -> Cell | None:
        """Candidate ``ci``'s measured cell within ``budget`` GPUs, if any."""
        used = self.used(ci, budget)
        return None if used is None else self.cells.get((ci, used))

    def member(self, ci: int, gpus: int, rep: int) -> Member:
        cfg = self.cands[ci].config(self.config, gpus)
        cfg = cfg.replace(seed=cfg.seed + rep)
        spec = self.spec.replace(workload_seed=self.spec.workload_seed + rep)
        point = {"candidate": ci, "mode": cfg.mode, "gpus": gpus, **dict(self.cands[ci].settings),
                 "replicas": cfg.n_replicas, "tp": cfg.tp, "router": cfg.routing}
        if cfg.disaggregate is not None:
            point["disaggregate"] = cfg.disaggregate
        return Member(cfg, spec, point | {"replication": rep})

    def count(self, res: MemberResult) -> None:
        self.runs += 1
        self.simulated += 0 if res.cached else 1

    def evaluate(self, pairs: list[tuple[int, int]], phase: str) -> None:
        """Run every (candidate, GPU budget) pair of ``pairs`` not measured yet, each on the GPUs the
        candidate uses within its budget (one round on the executor)."""
        used = [(ci, self.used(ci, g)) for ci, g in pairs]
        pairs = [p for p in dict.fromkeys(used) if p[1] is not None and p not in self.cells and p[0] not in self.broken]
        if not pairs:
            return
        reps = self.o.replications
        members = [self.member(ci, g, r) for ci, g in pairs for r in range(reps)]
        before, todo = self.runs_left(), [len(members)]  # the estimate at the start of this round

        def done(member: Member, res: MemberResult) -> None:
            self.count(res)
            todo[0] -= 1
            if self.on_left is not None:
                self.on_left(max(before - (len(members) - todo[0]), todo[0]))
            if self.on_run is not None:
                self.on_run(phase, res.ok)

        results = run_members(members, self.job, self.executor, done, self.workers)
        for i, (ci, g) in enumerate(pairs):
            mine = results[i * reps:(i + 1) * reps]
            for m, res in zip(members[i * reps:(i + 1) * reps], mine):
                if res.ok:
                    self.results[m.key] = res
            self.cells[(ci, g)] = self._cell(ci, g, mine)
            if self.cells[(ci, g)].error is not None:
                self.broken.setdefault(ci, self.cells[(ci, g)].error)

    def _cell(self, ci: int, g: int, results: list[MemberResult]) -> Cell:
        failed = [r for r in results if not r.ok]
        atts = [target_attainment(r.summary or {}) for r in results]   # every class and SLO, when given
        if not failed and any(a is None for a in atts):
            failed = [dataclasses.replace(results[0], error="the run has no SLA attainment (no deadline is on)")]
        runs, ids = [r.run_hash for r in results], [r.run_id for r in results]
        reused = sum(r.cached for r in results)
        if failed:
            return Cell(ci, g, False, None, None, None, None, None, runs, ids, reused,
                        failed[0].error or "the run failed")
        mean, low, high = mean_ci([float(a) for a in atts], self.o.confidence)
        if low is not None:
            low, high = max(low, 0.0), min(high, 1.0)
        score = low if self.o.rule == "lower" else mean
        return Cell(ci, g, score is not None and score >= self.o.target, mean, low, high,
                    _mean([r.summary.get("latency_p99_s") for r in results]),
                    _mean([r.summary.get("throughput_rps") for r in results]), runs, ids, reused)

    def runs_left(self, at: int | None = None) -> int:
        """About how many runs the plan still makes from here (``at``: where the GPU search is assumed to
        end): what the bisection on the GPU count has left, each probe running every candidate not known
        to fail, then the ranking at the answer and each mode's capacity search (the check one GPU below
        left out). An estimate that shrinks as the search learns."""
        reps, alive = self.o.replications, self.usable()
        lo, hi = self.bounds if at is None else (at, at)
        rounds = math.ceil(math.log2(hi - lo + 1)) if hi > lo else 0
        ranking = sum(self.used(ci, hi) is not None and self.cell(ci, hi) is None for ci in alive)
        return (rounds * len(alive) + ranking) * reps + self.evidence_guess() + self.after

    def evidence_guess(self) -> int:
        """The capacity searches' probes, as a search that starts from nothing needs them."""
        if not self.o.evidence or self.in_evidence:
            return 0
        modes = len({self.cands[ci].mode for ci in self.usable()})
        m = max(1, self.workers // max(1, modes * self.o.replications))
        one = BisectionSearch(self.o.target, self.o.tolerance, 1.0, DEFAULT_FACTOR).probes_left(m)
        return modes * self.o.replications * one

    # -- monotone knowledge ----------------------------------------------
    def usable(self) -> list[int]:
        return [ci for ci in range(len(self.cands)) if ci not in self.broken]

    def fails_at(self, ci: int, g: int) -> bool:
        """Known to miss the target within ``g`` GPUs: it does not fit, or it missed the target on the GPUs
        it uses there or on more."""
        used = self.used(ci, g)
        return used is None or any(c.candidate == ci and c.gpus >= used and not c.meets for c in self.cells.values())

    def passes_at(self, ci: int, g: int) -> bool:
        """Known to meet the target within ``g`` GPUs: it met it on the GPUs it uses there or on fewer."""
        used = self.used(ci, g)
        return used is not None and any(c.candidate == ci and c.gpus <= used and c.meets for c in self.cells.values())

    def any_meets(self, g: int) -> bool:
        """Whether some candidate meets the target at ``g``, running only those not known to fail there."""
        alive = [ci for ci in self.usable() if not self.fails_at(ci, g)]
        if any(self.passes_at(ci, g) for ci in alive):
            return True
        self.evaluate([(ci, g) for ci in alive], f"{g} GPUs")
        return any((c := self.cell(ci, g)) is not None and c.meets for ci in self.usable())

    def best_at(self, g: int) -> Cell | None:
        cells = [c for ci in self.usable() if (c := self.cell(ci, g)) is not None and c.attainment is not None]
        return max(cells, key=lambda c: (c.attainment, -c.candidate)) if cells else None

    # -- the plan --------------------------------------------------------
    def fewest_gpus(self, guess: int | None = None) -> int | None:
        """The bisection on the GPU count; None when no candidate meets the target at max_gpus.

        ``guess`` (a pilot's answer) is probed first, then 1, 2, 4, ... GPUs away from it on the
        side the answer must lie until it is bracketed; the bisection goes on over what is left,
        so a wrong guess costs probes, never the answer."""
        G = self.o.max_gpus
        lo, hi, hi_ok = 1, G, False

        def probe(g: int) -> None:
            nonlocal lo, hi, hi_ok
            if self.any_meets(g):
                hi, hi_ok = g, True
            else:
                lo = g + 1
            self.bounds = (min(lo, hi), hi)

        if guess is not None and 1 <= guess <= G:
            self.bounds = (max(1, guess - 1), guess)  # two GPU counts when the guess is right
            probe(guess)  # then gallop away from it, 1, 2, 4, ... GPUs, until the answer is bracketed
            step = 1
            while self.usable() and lo < hi and hi_ok:
                g = max(lo, guess - step)
                probe(g)
                if hi != g:
                    break
                step *= 2
            while self.usable() and lo <= G and not hi_ok:
                g = min(G, guess + step)
                probe(g)
                if g == G:
                    break
                step *= 2
        while lo < hi and self.usable():
            probe((lo + hi) // 2)
        if not self.usable() or lo > G:
            return None
        if not hi_ok and not self.any_meets(hi):
            return None
        return hi

    def settle(self, g: int) -> int:
        """Rank everything at ``g`` and make the best attainment at ``g - 1`` exact; walk down while
        a candidate turns out to meet the target one GPU below (see the module doc)."""
        while True:
            self.evaluate([(ci, g) for ci in self.usable()], f"ranking at {g} GPUs")
            if g == 1:
                return g
            best = self.best_at(g - 1)
            floor = -1.0 if best is None else best.attainment
            todo = [(ci, g - 1) for ci in self.usable() if self.used(ci, g - 1) is not None
                    and self.cell(ci, g - 1) is None
                    and (c := self.cell(ci, g)) is not None and c.attainment is not None and c.attainment > floor]
            self.evaluate(todo, f"checking {g - 1} GPUs")
            if not any((c := self.cell(ci, g - 1)) is not None and c.meets for ci in self.usable()):
                return g
            g -= 1

    def ranking(self, g: int) -> list[Cell]:
        cells = [c for ci in self.usable() if (c := self.cell(ci, g)) is not None]
        return sorted(cells, key=lambda c: (not c.meets, -(c.attainment or 0.0),
                                            math.inf if c.latency_p99_s is None else c.latency_p99_s, c.candidate))

    def evidence(self, ranked: list[Cell], g: int, rate: float, on_run: OnRun | None) -> list[dict]:
        """A capacity search at ``g`` GPUs for each mode's best candidate."""
        best: dict[str, Cell] = {}
        for c in ranked:
            best.setdefault(self.cands[c.candidate].mode, c)
        chosen = [best[m] for m in self.o.modes if m in best]
        if not chosen:
            return []
        cap_spec = capacity_spec(self.spec, rate)
        bases = [(self.cands[c.candidate].config(self.config, c.gpus), cap_spec) for c in chosen]
        for cfg, s in bases:
            check_capacity_inputs(cfg, s, self.o.target, self.o.tolerance, self.o.replications)
        labels = [{"mode": self.cands[c.candidate].mode, "configuration": self.cands[c.candidate].label,
                   "candidate": c.candidate, "gpus": c.gpus} for c in chosen]
        known = {k: v for k, v in self.results.items()
                 if (v.point.get("candidate"), v.point.get("gpus")) in {(c.candidate, c.gpus) for c in chosen}}

        self.in_evidence = True

        def probed(b: int, probe, search) -> None:
            self.runs += 1
            self.simulated += 0 if probe.cached else 1
            if on_run is not None:
                on_run("capacity", probe.error is None)

        # a configuration meeting the target at g GPUs (and so, all of them missing it at g - 1) has about
        # g / (g - 1) times the rate as capacity: bracket upward by that step, not by the default 4
        factors = [max(WINNER_FACTOR, g / (g - 1)) if c.meets and g > 1 else DEFAULT_FACTOR for c in chosen]
        caps = search_capacities(bases, self.o.target, self.o.tolerance, self.o.replications, self.executor,
                                 _Reuse(self.job, known), self.workers, start=rate, factor=factors,
                                 confidence=self.o.confidence, labels=labels, on_probe=probed,
                                 on_left=self.on_left)
        return [c.to_dict() for c in caps]


def plan(config: SimConfig, spec: WorkloadSpec, options: PlanOptions | None = None, executor: Executor | None = None,
         job: Callable[[Member], MemberResult] = simulate_member, workers: int | None = None,
         on_run: OnRun | None = None, on_left: OnLeft | None = None) -> PlanResult:
    """The fewest GPUs and the best configuration meeting ``options.target`` on ``spec`` (module doc).

    ``config``: every setting but the planned ones (mode, gpus, replicas, k_bins, b_max, batch_size,
    disaggregate; router and tp too where ``options`` lists them).
    ``executor`` None: a local process pool of ``workers`` processes. ``on_run(phase, ok)`` is
    called in this thread after every run, then ``on_left(n)`` with about how many runs are left
    (:meth:`_Search.runs_left`: an estimate, since the search learns where to look as it runs).
    """
    t0 = time.perf_counter()
    o = options or PlanOptions()
    if o.gpu_types is not None:
        return plan_across_gpus(config, spec, o, executor, job, workers, on_run, on_left)
    check_plan_inputs(config, spec, o)
    rate = offered_rate(spec)
    if o.evidence:
        check_capacity_inputs(config, capacity_spec(spec, rate), o.target, o.tolerance, o.replications)
    workers = workers or default_workers()
    with pool_for(executor, workers) as pool:
        guess, pilot = None, None
        size = pilot_requests(spec, o)
        if size:
            pilot = _Search(config, spec.replace(num_requests=size), o, pool, job, workers,
                            None if on_run is None else lambda phase, ok: on_run(f"pilot, {phase}", ok))
            pilot.on_left = on_left
            pilot.after = 2 * len(pilot.cands) * o.replications  # the full-size search at the pilot's answer
            # (the pilot's own estimate already counts a ranking and the evidence: the full-size ones)
            guess = pilot.fewest_gpus()
        tp = time.perf_counter()
        s = _Search(config, spec, o, pool, job, workers, on_run)
        s.on_left = on_left
        g = s.fewest_gpus(guess)
        t1 = time.perf_counter()
        if g is not None:
            g = s.settle(g)
            at = g
        else:
            at = o.max_gpus
            s.evaluate([(ci, at) for ci in s.usable()], f"ranking at {at} GPUs")
        ranked = s.ranking(at)
        t2 = time.perf_counter()
        capacities = s.evidence(ranked, at, rate, on_run) if o.evidence and ranked else []
    t3 = time.perf_counter()
    phases = {"pilot": tp - t0, "search": t1 - tp, "ranking": t2 - t1, "evidence": t3 - t2}
    return _result(s, g, at, ranked, capacities, rate, t3 - t0, phases, pilot, guess)


# ---------------------------------------------------------------- answer --
def _row(s: _Search, c: Cell, rank: int | None = None) -> dict:
    cand = s.cands[c.candidate]
    replicas = c.gpus // cand.tp
    split = pd_split(cand.pd, replicas) if cand.pd else None
    row = {"rank": rank, "candidate": c.candidate, "mode": cand.mode, "settings": dict(cand.settings),
           "configuration": cand.label, "gpus": c.gpus, "replicas": replicas, "tp": cand.tp, "router": cand.router,
           "disaggregate": split and f"{split[0]}:{split[1]}", "pd_ratio": cand.pd,
           "meets": c.meets, "attainment": c.attainment,
           "ci_low": c.ci_low, "ci_high": c.ci_high, "latency_p99_s": c.latency_p99_s,
           "throughput_rps": c.throughput_rps, "run_hash": c.runs[0] if c.runs else None,
           "run_id": c.run_ids[0] if c.run_ids else None, "reused": c.reused, "error": c.error}
    if rank is None:
        del row["rank"]
    return row


def _result(s: _Search, g: int | None, at: int, ranked: list[Cell], capacities: list[dict], rate: float,
            seconds: float, phases: dict, pilot: _Search | None, guess: int | None) -> PlanResult:
    o = s.o
    errors = {s.cands[ci].label: err for ci, err in sorted(s.broken.items())}
    status = "failed" if not s.usable() else ("ok" if g is not None else "unreachable")
    ranking = [_row(s, c, i + 1) for i, c in enumerate(ranked)]
    recommended = None
    if ranked:
        top = ranked[0]
        cfg = s.cands[top.candidate].config(s.config, top.gpus)
        recommended = {**_row(s, top), "config": cfg.to_dict(), "spec": s.spec.to_dict(),
                       "command": run_command(cfg, s.spec), "toml": toml_config(cfg, s.spec)}
    below = None
    if g is not None and g > 1 and (b := s.best_at(g - 1)) is not None:
        below = {"gpus": g - 1, "attainment": b.attainment, "configuration": s.cands[b.candidate].label}
        if b.gpus != g - 1:  # a candidate of TP > 1 (or disaggregated) that uses fewer
            below["used_gpus"] = b.gpus
    cells = [_row(s, c) for c in sorted(s.cells.values(), key=lambda c: (c.candidate, c.gpus))]
    probes = sum(len(c.get("probes", [])) for c in capacities)
    p_runs, p_sim = (pilot.runs, pilot.simulated) if pilot is not None else (0, 0)
    grid = sum(len({u for g in range(1, o.max_gpus + 1) if (u := c.gpus_within(g))}) for c in s.cands)
    counts = {"candidates": len(s.cands), "grid_cells": grid, "cells": len(s.cells),
              "runs": s.runs + p_runs, "simulated": s.simulated + p_sim,
              "reused": s.runs + p_runs - s.simulated - p_sim,
              "capacity_probes": probes, "pilot_requests": pilot.spec.num_requests if pilot is not None else None,
              "pilot_cells": len(pilot.cells) if pilot is not None else 0, "pilot_guess": guess}
    result = PlanResult(status, o.target, o.rule, o.confidence, o.replications, rate, o.max_gpus, g,
                        at if ranked else None, "", recommended, ranking, below, capacities, cells,
                        [c.to_dict() for c in s.cands], counts, seconds, phases, errors,
                        next(iter(errors.values())) if status == "failed" else None)
    result.sentence = plan_sentence(result.to_dict())
    return result


# ------------------------------------------------------ across GPU types --
def gpu_price_table(options: PlanOptions) -> dict[str, tuple[float, str]]:
    """USD per GPU-hour of each of ``options.gpu_types`` and where it comes from: ``options.gpu_costs``
    (``"given"``) or the catalogue's default (its source and date)."""
    from .hardware import gpu_prices

    given, defaults = dict(options.gpu_costs or ()), gpu_prices()
    out = {}
    for name in options.gpu_types or ():
        if name in given:
            out[name] = (float(given[name]), "given (--gpu-cost)")
        else:
            p = defaults[name]
            out[name] = (p.price_per_hour, f"{p.price_source} ({p.price_date})")
    return out


def _type_config(config: SimConfig, gpu: str, tps: tuple[int, ...]) -> tuple[SimConfig | None, tuple[int, ...]]:
    """``config`` on ``gpu`` and the TPs of ``tps`` whose replicas hold the weights (None, (): none does).
    Its latency is the roofline where ``config``'s is parametric: the parametric model's step times are
    one GPU's whatever the type, so only the roofline tells GPUs apart (a grid is kept as given)."""
    from .hardware import gpu_spec

    usable = gpu_spec(gpu).usable_gb(config.gpu_memory_utilization)
    fit = tuple(t for t in tps if config.weights_gb < usable * t)
    if not fit:
        return None, ()
    try:
        latency = "roofline" if config.latency == "parametric" else config.latency
        return config.replace(gpu=gpu, tp=fit[0], replicas=1, latency=latency), fit
    except ConfigError:
        return None, ()


def plan_across_gpus(config: SimConfig, spec: WorkloadSpec, options: PlanOptions, executor: Executor | None = None,
                     job: Callable[[Member], MemberResult] = simulate_member, workers: int | None = None,
                     on_run: OnRun | None = None, on_left: OnLeft | None = None) -> PlanResult:
    """One :func:`plan` per GPU of ``options.gpu_types`` (``config`` with ``gpu`` set to it, every other
    setting and option equal; only the TPs whose replicas hold the weights), priced: per type the fewest
    GPUs meeting the target, USD per hour = GPUs x price per GPU-hour and USD per million requests =
    USD per hour / (rate x 3600) x 1e6. The answer is the cheapest type's plan (ties: fewer GPUs, then
    the order given) with ``gpu_types`` (one row per type) and ``cheapest``; a type that cannot hold the
    weights with any TP candidate, or misses the target within max_gpus, says so in its row."""
    t0 = time.perf_counter()
    check_plan_inputs(config, spec, options)
    prices = gpu_price_table(options)
    base_o = dataclasses.replace(options, gpu_types=None, gpu_costs=None)
    tps = cluster_lists(base_o, config)[0]
    rate = offered_rate(spec)
    results: dict[str, PlanResult] = {}
    rows = []
    workers = workers or default_workers()
    with pool_for(executor, workers) as pool:
        for name in options.gpu_types:
            price, source = prices[name]
            row = {"gpu": name, "price_per_hour": price, "price_source": source, "status": None, "gpus": None,
                   "configuration": None, "attainment": None, "cost_per_hour": None,
                   "cost_per_million_requests": None, "tp_values": None, "runs": None, "simulated": None,
                   "error": None}
            cfg, fit = _type_config(config, name, tps)
            if cfg is None:
                row.update(status="does not fit", error=f"{config.weights_gb:g} GB of weights do not fit "
                           f"{gpu_label(name)} replicas of TP {', '.join(map(str, tps))}")
                rows.append(row)
                continue
            o = dataclasses.replace(base_o, tp_values=fit if options.tp_values is not None or fit != tps else None)
            tagged = None if on_run is None else (lambda phase, ok, n=name: on_run(f"{gpu_label(n)}: {phase}", ok))
            try:
                res = plan(cfg, spec, o, pool, job, workers, tagged, on_left)
            except SweepError as exc:
                row.update(status="failed", error=str(exc))
                rows.append(row)
                continue
            results[name] = res
            rec = res.recommended or {}
            row.update(status=res.status, tp_values=list(fit), error=res.error,
                       configuration=rec.get("configuration"), attainment=rec.get("attainment"),
                       runs=res.counts["runs"], simulated=res.counts["simulated"])
            if res.status == "ok":
                cost = res.gpus * price
                row.update(gpus=res.gpus, cost_per_hour=cost, cost_per_million_requests=cost / (rate * 3600) * 1e6)
            rows.append(row)
    ok = [i for i, r in enumerate(rows) if r["status"] == "ok"]
    best = min(ok, key=lambda i: (rows[i]["cost_per_hour"], rows[i]["gpus"], i)) if ok else None
    for i, r in enumerate(rows):
        r["cheapest"] = i == best
    shown = rows[best]["gpu"] if best is not None else next(iter(results), None)
    if shown is None:   # no type could be planned at all
        err = "; ".join(f"{gpu_label(r['gpu'])}: {r['error']}" for r in rows)
        res = PlanResult("failed", options.target, options.rule, options.confidence, options.replications, rate,
                         options.max_gpus, None, None, "", None, [], None, [], [], [], {"runs": 0, "simulated": 0},
                         0.0, {}, {}, err)
    else:
        res = dataclasses.replace(results[shown])
        if best is None and res.status == "ok":
            res.status = "unreachable"
    res.gpu_types, res.cheapest = rows, rows[best]["gpu"] if best is not None else None
    if best is None and any(r["status"] in ("unreachable", "ok") for r in rows):
        res.status = "unreachable"
    res.counts = {**res.counts, "runs_all_types": sum(r.get("runs") or 0 for r in rows),
                  "simulated_all_types": sum(r.get("simulated") or 0 for r in rows)}
    res.seconds = time.perf_counter() - t0
    res.sentence = plan_sentence(res.to_dict())
    return res

"""The one catalog of run metrics: each summary key's label, unit, meaning, which direction is
better and where it is shown. The store's metric columns, the web cards and tables, the command
line's text and the exports all read it, so a metric is added (or renamed) in one line here.

Views of a run metric (:data:`METRICS`):

``card``     a headline card on the web run page
``table``    a row of the web metrics table (run page and comparisons)
``compare``  a row of ``batchlab compare``'s table
``sweep``    a column of sweep member tables (``batchlab sweep``, its CSV and JSON)
``column``   a REAL column of the store's ``runs`` table (filter and sort in SQL)
``list``     a column of ``batchlab runs list`` (headed by its ``short`` label)

Views of a per-bin metric (:data:`BIN_METRICS`): ``table`` (the web per-bin table), ``text``
(the per-bin lines of ``batchlab run``) and ``column`` (a REAL column of ``run_bins``).
Every run metric is exported, in catalog order (``batchlab runs export --format csv``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from . import units

RUN_VIEWS = frozenset({"card", "table", "compare", "sweep", "column", "list"})
BIN_VIEWS = frozenset({"table", "text", "column"})
# unit -> the suffix its values are written with ("s" and "share" have their own formats)
UNITS = {"s": "", "share": "", "req/s": "req/s", "tok/s": "tok/s", "req": "req", "tokens": "tokens",
         "batches": "batches", "iterations": "iterations", "count": ""}
RATES = ("req/s", "tok/s")
STYLES = ("full", "card", "bare")
BETTER = (None, "higher", "lower")

DEADLINE_RATES = ("sla_violation_rate_ttft", "sla_violation_rate_tbt", "sla_violation_rate_e2e")
NO_DEADLINE = "no deadline set"
OFF = "off"


def no_deadline(summary: dict) -> bool:
    """True when every SLA deadline of the run was off (attainment is then meaningless)."""
    return all(summary.get(k) is None for k in DEADLINE_RATES)


@dataclass(frozen=True)
class Metric:
    """One metric of a run's summary (or of a bin's dict).

    ``unit``: one of :data:`UNITS` (``share``: a fraction 0-1, written in %); ``whole``: a
    count (written without decimals); ``better``: ``higher``, ``lower`` or None (neither is a
    win); ``off``: what a None value reads (``off`` for a disabled deadline's violations,
    :data:`NO_DEADLINE` for attainment); ``short``: the header of narrow tables, naming the
    unit its ``bare`` values are in (defaults to ``label``).
    """

    key: str
    label: str
    unit: str
    description: str
    better: str | None = None
    views: frozenset[str] = frozenset()
    whole: bool = False
    off: str = units.DASH
    short: str = ""

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"{self.key}: unknown unit {self.unit!r} (one of {', '.join(UNITS)})")
        if self.better not in BETTER:
            raise ValueError(f"{self.key}: better must be 'higher', 'lower' or None, got {self.better!r}")
        unknown = set(self.views) - RUN_VIEWS - BIN_VIEWS
        if unknown:
            raise ValueError(f"{self.key}: unknown view(s) {', '.join(sorted(unknown))}")
        if not self.label or not self.description:
            raise ValueError(f"{self.key}: a label and a description are required")
        object.__setattr__(self, "views", frozenset(self.views))
        if not self.short:
            object.__setattr__(self, "short", self.label)

    def format(self, value: Any, summary: dict | None = None, style: str = "full") -> str:
        """The value as text: ``full`` (tables, reports) with its unit, ``card`` at three
        significant digits, ``bare`` the number alone in the unit ``short`` names (``-`` if missing)."""
        if style not in STYLES:
            raise ValueError(f"style: one of {', '.join(STYLES)}, got {style!r}")
        if self.off == NO_DEADLINE and summary is not None and no_deadline(summary):
            return NO_DEADLINE if style != "bare" else "-"
        if units.missing(value):
            return "-" if style == "bare" else (self.off if value is None else units.DASH)
        if style == "bare":
            return self._bare(value)
        if self.unit == "share":
            return units.pct(value)
        if self.unit == "s":
            return units.compact_seconds(value) if style == "card" else units.seconds(value)
        suffix = UNITS[self.unit]
        if self.unit in RATES:
            if style == "card":
                return units.compact_rate(value, suffix.removesuffix("/s"))
            return units.sig(value, suffix, 4)
        if self.whole and math.isfinite(float(value)):
            return units.number(int(value), suffix)
        return units.sig(value, suffix) if style == "card" else units.number(value, suffix)

    def _bare(self, value: Any) -> str:
        if self.unit == "share":
            return f"{100 * float(value):.1f}"
        if self.whole and math.isfinite(float(value)):
            return f"{int(value):,}"
        return units.sig(value, "", 4 if self.unit in RATES else 3)

    def comparable(self, value: Any, summary: dict) -> float | None:
        """The value as a float for picking the best run, or None when it takes no part."""
        if self.better is None or value is None or isinstance(value, bool):
            return None
        if self.off == NO_DEADLINE and no_deadline(summary):
            return None
        try:
            v = float(value)
        except (TypeError, ValueError):
            return None
        return v if math.isfinite(v) else None


def _m(key: str, label: str, unit: str, description: str, better: str | None = None, views: str = "",
       **kw) -> Metric:
    return Metric(key, label, unit, description, better, frozenset(views.split()), **kw)


METRICS: tuple[Metric, ...] = (
    _m("num_requests", "Requests", "req", "Requests in the workload.", views="table", whole=True),
    _m("completed", "Completed", "req", "Requests served to their last token.", "higher", whole=True),
    _m("rejected_requests", "Rejected", "req", "Requests never served: their KV cache exceeds one GPU's memory.",
       "lower", whole=True),
    _m("makespan_s", "Makespan", "s", "The horizon: first arrival to last completion.", "lower", "table column"),
    _m("throughput_rps", "Throughput", "req/s", "Completed requests per second over the horizon.", "higher",
       "card table compare sweep column list", short="req/s"),
    _m("throughput_tps", "Output throughput", "tok/s", "Output tokens per second over the horizon.", "higher",
       "card table compare sweep column"),
    _m("sla_attainment", "SLA attainment", "share", "Share of requests meeting every enabled deadline "
       "(a rejected request meets none).", "higher", "card table compare sweep column list", off=NO_DEADLINE,
       short="SLA %"),
    _m("sla_violation_rate_ttft", "TTFT violations", "share", "Share of requests missing the TTFT deadline.",
       "lower", "table compare column", off=OFF),
    _m("sla_violation_rate_tbt", "TBT violations", "share", "Share of requests of two or more tokens "
       "(and rejected ones) missing the TBT deadline (on their mean gap, or on their largest with tbt_sla=max).",
       "lower", "table compare column", off=OFF),
    _m("sla_violation_rate_e2e", "E2E violations", "share", "Share of requests missing the end-to-end deadline.",
       "lower", "table compare column", off=OFF),
    _m("latency_mean_s", "Latency mean", "s", "Mean end-to-end latency: arrival to last token.", "lower",
       "table compare sweep column"),
    _m("latency_p50_s", "Latency p50", "s", "Median end-to-end latency.", "lower", "table column"),
    _m("latency_p95_s", "Latency p95", "s", "95th percentile of end-to-end latency.", "lower", "table column"),
    _m("latency_p99_s", "Latency p99", "s", "99th percentile of end-to-end latency.", "lower",
       "card table compare sweep column list", short="p99 s"),
    _m("ttft_mean_s", "TTFT mean", "s", "Mean time to first token (queueing and prefill).", "lower", "column"),
    _m("ttft_p50_s", "TTFT p50", "s", "Median time to first token.", "lower", "table"),
    _m("ttft_p95_s", "TTFT p95", "s", "95th percentile of time to first token.", "lower"),
    _m("ttft_p99_s", "TTFT p99", "s", "99th percentile of time to first token.", "lower",
       "card table compare sweep column"),
    _m("tbt_mean_s", "TBT mean", "s", "Mean over requests (of two or more tokens) of their mean time between "
       "tokens.", "lower",
       "table compare sweep column"),
    _m("tbt_p99_s", "TBT p99", "s", "99th percentile over requests (of two or more tokens) of their mean time "
       "between tokens.", "lower",
       "table"),
    _m("queue_delay_mean_s", "Queueing delay mean", "s", "Mean wait from arrival to first admission.", "lower",
       "table column"),
    _m("queue_delay_p99_s", "Queueing delay p99", "s", "99th percentile of the wait from arrival to first "
       "admission.", "lower", "table"),
    _m("gpu_utilization", "GPU utilisation", "share", "Busy GPU time over GPUs x the horizon.", "higher",
       "card table compare sweep column"),
    _m("load_imbalance", "Load imbalance", "count", "The busiest replica's busy time over the mean replica's "
       "(1 = even; the router's doing, or chance).", "lower", "table compare sweep"),
    _m("tbt_max_p99_s", "Largest TBT gap p99", "s", "99th percentile over requests of their largest gap "
       "between tokens.", "lower", "table"),
    _m("num_batches", "Batches", "batches", "Batches run (run-to-completion modes; none in continuous modes).",
       views="table", whole=True),
    _m("iterations", "Iterations", "iterations", "Engine iterations (continuous modes; none in batch modes).",
       views="table", whole=True),
    _m("mean_batch_size", "Mean batch size", "req", "Mean requests per batch (continuous: running per "
       "iteration).", views="table compare sweep column"),
    _m("batch_size_p50", "Median batch size", "req", "Median requests per batch (continuous: per iteration)."),
    _m("batch_size_max", "Largest batch", "req", "The most requests in one batch or iteration.", views="table",
       whole=True),
    _m("b_mem_mean", "Mean b_mem", "req", "Mean batch cap of the memory controller (Algorithm 1; dynamic modes).",
       views="table"),
    _m("b_sla_mean", "Mean b_SLA", "req", "Mean batch cap of the SLA controller (Algorithm 2; dynamic modes).",
       views="table"),
    _m("b_mem_binding_share", "b_mem the tighter cap", "share", "Share of controller updates where b_mem < b_SLA "
       "(dynamic modes).", views="table"),
    _m("kv_utilization_mean", "KV cache in use (mean)", "share", "Time-average share of every GPU's KV cache "
       "in use.", views="table compare"),
    _m("kv_peak_tokens", "KV peak", "tokens", "The most KV-cache tokens one GPU held.", views="table", whole=True),
    _m("eta_tokens", "KV capacity", "tokens", "KV-cache tokens one GPU holds (eta).", whole=True),
    _m("prefix_hit_rate", "Prefix cache hit rate", "share", "Share of the prompt tokens looked up in the prefix "
       "cache (at each admission, as vLLM counts them) that it held (continuous modes, workloads with prefix "
       "keys).", "higher", "table compare"),
    _m("prefill_tokens_saved", "Prefill tokens saved", "tokens", "Prompt tokens whose prefill prefix-cache hits "
       "skipped.", "higher", "table", whole=True),
    _m("preemptions", "Preemptions", "count", "Requests preempted to free KV cache (continuous modes).", "lower",
       "table compare", whole=True),
    _m("oom_events", "Out-of-memory events", "count", "Batches that outgrew GPU memory (batch modes).", "lower",
       "table", whole=True),
    _m("evicted_requests", "Evicted requests", "req", "Requests evicted by out-of-memory batches and run "
       "again (batch modes).", "lower", "table compare", whole=True),
    _m("wasted_gpu_s", "Wasted GPU time", "s", "GPU time lost to evicted batches or recomputed after "
       "preemptions.", "lower", "table"),
)
BY_KEY = {m.key: m for m in METRICS}

# Summary keys that describe the run rather than measure it (never a metric row or column).
CONTEXT_KEYS = {
    "mode": "The scheduler mode.",
    "gpus": "GPUs simulated (replicas x tp).",
    "replicas": "Replicas, each running one scheduler on tp GPUs.",
    "tp": "Tensor parallelism: GPUs per replica.",
    "router": "How requests reach replicas (shared_queue: one queue for all).",
    "k_bins": "Bins on predicted output length.",
    "engine": "batch (run to completion) or continuous.",
    "tbt_sla": "What the TBT deadline applies to: each request's mean gap or its largest.",
    "sla_branch_counts": "Algorithm 2's branches taken: over, under, within (dynamic modes).",
    "bins": "Per-bin metrics, one dict per bin (see BIN_METRICS).",
    "config_hash": "The run's identity.",
    "latency_model": "The latency model: parametric or grid:NAME.",
    "latency_notes": "What the latency model noted, e.g. queries extrapolated beyond a grid.",
}


def _bin(key: str, views: str) -> Metric:
    """A run metric also reported per bin: the same label, unit and meaning, per-bin views."""
    return replace(BY_KEY[key], views=frozenset(views.split()))


BIN_METRICS: tuple[Metric, ...] = (
    _m("pred_lo", "Predicted output from", "tokens", "Lower edge of the bin's predicted output length.",
       views="column"),
    _m("pred_hi", "Predicted output to", "tokens", "Upper edge of the bin's predicted output length.",
       views="column"),
    _m("requests", "Requests", "req", "Requests in the bin.", views="table text", whole=True),
    _m("batches", "Batches", "batches", "Batches of the bin (run-to-completion modes).", views="table", whole=True),
    _bin("mean_batch_size", "table text column"),
    _m("mean_output", "Mean output", "tokens", "Mean output length of the bin's requests.", views="table"),
    _m("mean_predicted", "Mean predicted output", "tokens", "Mean predicted output length of the bin's requests."),
    _bin("latency_mean_s", "table text column"),
    _bin("latency_p99_s", "table text column"),
    _bin("ttft_mean_s", "column"),
    _bin("tbt_mean_s", "table column"),
    _m("rejected", "Rejected", "req", "Requests of the bin never served.", "lower", whole=True),
    _bin("preemptions", ""),
    _bin("sla_attainment", "table text column"),
    _bin("sla_violation_rate_ttft", "column"),
    _bin("sla_violation_rate_tbt", "column"),
    _bin("sla_violation_rate_e2e", "column"),
)
BIN_BY_KEY = {m.key: m for m in BIN_METRICS}
BIN_CONTEXT_KEYS = {"bin": "The bin's index (0 = shortest predicted outputs)."}


def shown_in(view: str, metrics: tuple[Metric, ...] = METRICS) -> tuple[Metric, ...]:
    """The metrics of ``view``, in catalog order."""
    if view not in RUN_VIEWS | BIN_VIEWS:
        raise ValueError(f"view: unknown {view!r}")
    return tuple(m for m in metrics if view in m.views)


def keys(view: str, metrics: tuple[Metric, ...] = METRICS) -> tuple[str, ...]:
    """The keys of the metrics of ``view``, in catalog order."""
    return tuple(m.key for m in shown_in(view, metrics))


STORED_COLUMNS = keys("column")
STORED_BIN_COLUMNS = keys("column", BIN_METRICS)
CARDS = shown_in("card")
EXPORT_COLUMNS = tuple(m.key for m in METRICS)


def format_value(key: str, value: Any, summary: dict | None = None, style: str = "full") -> str:
    """Format one summary value by its key (a key outside the catalog: a plain number)."""
    m = BY_KEY.get(key)
    if m is not None:
        return m.format(value, summary, style)
    return "-" if style == "bare" and units.missing(value) else units.number(value)


def best_runs(metric: Metric, summaries: list[dict]) -> set[int]:
    """Indices of the runs with the best value of ``metric`` (ties: all of them); empty when
    fewer than two runs have a value, when they are all equal, or when neither direction wins."""
    values = [(i, metric.comparable(s.get(metric.key), s)) for i, s in enumerate(summaries)]
    values = [(i, v) for i, v in values if v is not None]
    if len(values) < 2:
        return set()
    pick = max if metric.better == "higher" else min
    top = pick(v for _, v in values)
    if all(math.isclose(v, top, rel_tol=1e-12, abs_tol=1e-15) for _, v in values):
        return set()
    return {i for i, v in values if math.isclose(v, top, rel_tol=1e-12, abs_tol=1e-15)}

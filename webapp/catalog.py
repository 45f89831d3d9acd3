"""The summary metrics the pages show: one line per summary key says its label, how it is
formatted, which direction is better and whether it gets a headline card.

Adding a metric to the cards and the metrics table is one line in :data:`METRICS`, e.g.
``Metric("preemptions", "Preemptions", "count", "req", better="lower")``. A table row
appears only when at least one shown run has the key, so keys of one engine do not clutter
another's table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from . import fmt

DEADLINE_RATES = ("sla_violation_rate_ttft", "sla_violation_rate_tbt", "sla_violation_rate_e2e")
NO_DEADLINE = "no deadline set"
KINDS = ("count", "number", "rate", "seconds", "share", "attainment")


def no_deadline(summary: dict) -> bool:
    """True when every SLA deadline of the run was off (attainment is then meaningless)."""
    return all(summary.get(k) is None for k in DEADLINE_RATES)


@dataclass(frozen=True)
class Metric:
    """How one summary key is shown.

    ``kind``: ``count`` (a whole number), ``number`` (a mean of counts), ``rate`` (per second),
    ``seconds``, ``share`` (a fraction shown in %, None = that deadline is off) or
    ``attainment`` (a share that reads "no deadline set" when every deadline is off).
    ``better``: ``higher``, ``lower`` or None (neither is a win).
    """

    key: str
    label: str
    kind: str
    unit: str = ""
    better: str | None = None
    card: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.key}: unknown kind {self.kind!r}")
        if self.better not in (None, "higher", "lower"):
            raise ValueError(f"{self.key}: better must be 'higher', 'lower' or None")

    def format(self, value: Any, summary: dict | None = None, compact: bool = False) -> str:
        """The value with its unit; ``compact`` (cards): three significant digits."""
        if self.kind == "attainment" and summary is not None and no_deadline(summary):
            return NO_DEADLINE
        if self.kind in ("share", "attainment"):
            return fmt.pct(value, off="off" if self.key in DEADLINE_RATES else fmt.DASH)
        if self.kind == "seconds":
            return fmt.compact_seconds(value) if compact else fmt.seconds(value)
        if self.kind == "count":
            return fmt.number(None if value is None else int(value), self.unit)
        if self.kind == "rate":
            if compact:
                return fmt.compact_rate(value, self.unit.removesuffix("/s"))
            return fmt.sig(value, self.unit, 4)
        return fmt.sig(value, self.unit) if compact else fmt.number(value, self.unit)

    def comparable(self, value: Any, summary: dict) -> float | None:
        """The value as a float for picking the best run, or None when it takes no part."""
        if self.better is None or value is None or isinstance(value, bool):
            return None
        if self.kind == "attainment" and no_deadline(summary):
            return None
        try:
            v = float(value)
        except (TypeError, ValueError):
            return None
        return v if math.isfinite(v) else None


METRICS: tuple[Metric, ...] = (
    Metric("num_requests", "Requests", "count", "req"),
    Metric("makespan_s", "Makespan", "seconds", better="lower"),
    Metric("throughput_rps", "Throughput", "rate", "req/s", "higher", card=True),
    Metric("throughput_tps", "Output throughput", "rate", "tok/s", "higher", card=True),
    Metric("sla_attainment", "SLA attainment", "attainment", better="higher", card=True),
    Metric("sla_violation_rate_ttft", "TTFT violations", "share", better="lower"),
    Metric("sla_violation_rate_tbt", "TBT violations", "share", better="lower"),
    Metric("sla_violation_rate_e2e", "E2E violations", "share", better="lower"),
    Metric("latency_mean_s", "Latency mean", "seconds", better="lower"),
    Metric("latency_p50_s", "Latency p50", "seconds", better="lower"),
    Metric("latency_p95_s", "Latency p95", "seconds", better="lower"),
    Metric("latency_p99_s", "Latency p99", "seconds", better="lower", card=True),
    Metric("ttft_p50_s", "TTFT p50", "seconds", better="lower"),
    Metric("ttft_p99_s", "TTFT p99", "seconds", better="lower", card=True),
    Metric("tbt_mean_s", "TBT mean", "seconds", better="lower"),
    Metric("tbt_p99_s", "TBT p99", "seconds", better="lower"),
    Metric("queue_delay_mean_s", "Queueing delay mean", "seconds", better="lower"),
    Metric("queue_delay_p99_s", "Queueing delay p99", "seconds", better="lower"),
    Metric("gpu_utilization", "GPU utilisation", "share", better="higher", card=True),
    Metric("tbt_max_p99_s", "Largest TBT gap p99", "seconds", better="lower"),
    Metric("num_batches", "Batches", "count", "batches"),
    Metric("iterations", "Iterations", "count"),
    Metric("mean_batch_size", "Mean batch size", "number", "req"),
    Metric("batch_size_max", "Largest batch", "count", "req"),
    Metric("mem_truncated_batches", "Memory-truncated batches", "count", "batches", better="lower"),
    Metric("b_mem_mean", "Mean b_mem", "number", "req"),
    Metric("b_sla_mean", "Mean b_SLA", "number", "req"),
    Metric("b_mem_binding_share", "b_mem the tighter cap", "share"),
    Metric("kv_utilization_mean", "KV cache in use (mean)", "share"),
    Metric("kv_peak_tokens", "KV peak", "count", "tokens"),
    Metric("preemptions", "Preemptions", "count", better="lower"),
    Metric("oom_events", "Out-of-memory events", "count", better="lower"),
    Metric("evicted_requests", "Evicted requests", "count", "req", better="lower"),
    Metric("wasted_gpu_s", "Wasted GPU time", "seconds", better="lower"),
)
BY_KEY = {m.key: m for m in METRICS}
CARDS = tuple(m for m in METRICS if m.card)


def metric_value(key: str, value: Any, summary: dict | None = None) -> str:
    """Format one summary value by its key (an unknown key: a plain number)."""
    m = BY_KEY.get(key)
    return m.format(value, summary) if m else fmt.number(value)


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

"""Numbers with their units, for metric cards and tables (pure functions)."""
from __future__ import annotations

import math

DASH = "—"


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def seconds(v) -> str:
    """A duration: ``850 µs``, ``31.2 ms``, ``4.56 s``, ``1,234 s``."""
    if _missing(v):
        return DASH
    v = float(v)
    if math.isinf(v):
        return "∞ s"
    a = abs(v)
    if a == 0:
        return "0 s"
    if a < 1e-3:
        return f"{v * 1e6:.0f} µs"
    if a < 1:
        return f"{v * 1e3:.1f} ms"
    if a < 100:
        return f"{v:.2f} s"
    return f"{v:,.0f} s"


def pct(v, off: str = "off") -> str:
    """A fraction as a percentage; ``None`` means the metric is disabled (``off``)."""
    if _missing(v):
        return off
    return f"{100 * float(v):.1f} %"


def number(v, unit: str = "", digits: int = 1) -> str:
    """``1,234.5 req/s``; integers without decimals."""
    if _missing(v):
        return DASH
    if isinstance(v, (int,)) and not isinstance(v, bool):
        text = f"{v:,}"
    else:
        v = float(v)
        if math.isinf(v):
            text = "∞"
        else:
            text = f"{v:,.{digits}f}"
    return f"{text} {unit}".strip()


# label, summary key, formatter: the rows of every metrics table
METRIC_ROWS: list[tuple[str, str, callable]] = [
    ("Requests", "num_requests", lambda v: number(v, "req")),
    ("Makespan", "makespan_s", seconds),
    ("Throughput", "throughput_rps", lambda v: number(v, "req/s", 3)),
    ("Output throughput", "throughput_tps", lambda v: number(v, "tok/s", 1)),
    ("SLA attainment", "sla_attainment", pct),
    ("TTFT violations", "sla_violation_rate_ttft", pct),
    ("TBT violations", "sla_violation_rate_tbt", pct),
    ("E2E violations", "sla_violation_rate_e2e", pct),
    ("Latency mean", "latency_mean_s", seconds),
    ("Latency p50", "latency_p50_s", seconds),
    ("Latency p95", "latency_p95_s", seconds),
    ("Latency p99", "latency_p99_s", seconds),
    ("TTFT p50", "ttft_p50_s", seconds),
    ("TTFT p99", "ttft_p99_s", seconds),
    ("TBT mean", "tbt_mean_s", seconds),
    ("TBT p99", "tbt_p99_s", seconds),
    ("Queueing delay mean", "queue_delay_mean_s", seconds),
    ("GPU utilisation", "gpu_utilization", pct),
    ("Batches", "num_batches", lambda v: number(v, "batches")),
    ("Mean batch size", "mean_batch_size", lambda v: number(v, "req")),
    ("Largest batch", "batch_size_max", lambda v: number(v, "req")),
    ("Memory-truncated batches", "mem_truncated_batches", lambda v: number(v, "batches")),
    ("Mean b_mem", "b_mem_mean", lambda v: number(v, "req")),
    ("Mean b_SLA", "b_sla_mean", lambda v: number(v, "req")),
]


def metric_value(key: str, value) -> str:
    """Format one summary value by its key (falls back to a plain number)."""
    for _, k, f in METRIC_ROWS:
        if k == key:
            return f(value)
    return number(value)

"""Percentile SLOs, ``METRIC:pP:LIMIT`` (docs/semantics.md#percentile-slos): read them, and judge a run by them.

An SLO such as ``ttft:p99:500ms`` holds when the 99th percentile of the requests' TTFT is at most
500 ms. Metrics (names as ``vllm bench serve``, batchlab's own as aliases):

``ttft``   time to first token, queueing included;
``tpot``   a request's mean time between tokens (batchlab's ``tbt``); requests of one token have none
           and are left out, as in the summary's TBT percentiles;
``e2el``   end-to-end latency (``e2e``);
``queue``  queueing delay, arrival to first admission (``queue_delay``).

A percentile is numpy's (linear interpolation), the summary's definition, over every request with
the metric, where a *rejected* request (never served) counts as +inf: it misses every SLO it enters,
so a p99 SLO with more than 1 % of its requests rejected fails, and its measured value is inf.
Without rejections the measured value is exactly ``np.percentile`` of the served values (the
summary's ``ttft_p99_s`` for ``ttft:p99``). An SLO over no request (``tpot`` when every request
emits one token) has no measured value and holds (nothing can miss it).

Limits are durations with a unit, ``500ms``, ``0.5s``, ``800us`` (a bare number is seconds).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from .config import ConfigError

METRICS = {"ttft": "ttft", "tpot": "tbt", "e2el": "e2e", "queue": "queue_delay"}  # name -> request array
ALIASES = {"tbt": "tpot", "e2e": "e2el", "queue_delay": "queue"}
UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
FORM = "METRIC:pP:LIMIT, e.g. ttft:p99:500ms (metrics " + ", ".join(METRICS) + ")"
MAX_SLOS = 32
_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(us|µs|ms|s)?\s*")


class SloError(ConfigError):
    """SLO or class text that cannot be read; ``field`` is the setting (slo, classes), the message names the
    bad part."""


@dataclass(frozen=True)
class PercentileSlo:
    """``metric``'s ``percentile``-th percentile must be at most ``limit_s`` seconds."""

    metric: str
    percentile: float
    limit_s: float

    @property
    def text(self) -> str:
        return f"{self.metric}:p{self.percentile:g}:{duration_text(self.limit_s)}"


def duration_text(seconds: float) -> str:
    """A limit as it is read back: ``500ms``, ``1.5s``, ``800us``."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale or unit == "us":
            return f"{seconds / scale:.6g}{unit}"
    raise AssertionError("unreachable")


def parse_duration(text: str, where: str, field: str = "slo") -> float:
    """Seconds from ``500ms``, ``0.5s``, ``800us`` or a bare number of seconds; SloError names ``where``."""
    m = _DURATION.fullmatch(text)
    value = float(m.group(1)) * UNITS[m.group(2) or "s"] if m else math.nan
    if not (math.isfinite(value) and value > 0):
        raise SloError(field, f"{where}{text.strip()!r} is not a positive duration such as 500ms, 0.5s or 800us")
    return value


def parse_percentile(text: str, where: str) -> float:
    """``p99`` or ``p99.9`` -> 99.0 / 99.9 (in (0, 100])."""
    body = text.strip().lower()
    try:
        q = float(body[1:]) if body.startswith("p") else math.nan
    except ValueError:
        q = math.nan
    if not 0 < q <= 100:
        raise SloError("slo", f"{where}{text.strip()!r} is not a percentile p0.1 ... p100 (e.g. p50, p99, p99.9)")
    return q


def metric_name(text: str, where: str) -> str:
    """A metric's canonical name (aliases accepted); SloError names the known ones."""
    name = text.strip().lower()
    name = ALIASES.get(name, name)
    if name == "itl":
        raise SloError("slo", f"{where}itl (every gap between tokens) is not kept per request; use tpot (each "
                       "request's mean gap)")
    if name not in METRICS:
        raise SloError("slo", f"{where}unknown metric {text.strip()!r} (known: {', '.join(METRICS)})")
    return name


def parse_slo(text: str) -> PercentileSlo:
    """One SLO, ``METRIC:pP:LIMIT``."""
    parts = text.split(":")
    if len(parts) != 3:
        raise SloError("slo", f"{text.strip()!r}: expected {FORM}")
    where = f"{text.strip()!r}: "
    return PercentileSlo(metric_name(parts[0], where), parse_percentile(parts[1], where),
                         parse_duration(parts[2], where))


def parse_slos(text: str | None) -> tuple[PercentileSlo, ...]:
    """Comma-separated SLOs (``--slo`` given several times joins them); one per metric and percentile."""
    if text is None or not text.strip():
        return ()
    slos = tuple(parse_slo(part) for part in text.split(",") if part.strip())
    if len(slos) > MAX_SLOS:
        raise SloError("slo", f"at most {MAX_SLOS} SLOs, got {len(slos)}")
    seen = set()
    for s in slos:
        if (s.metric, s.percentile) in seen:
            raise SloError("slo", f"{s.text!r}: {s.metric} p{s.percentile:g} is given twice")
        seen.add((s.metric, s.percentile))
    return slos


def slos_text(slos: tuple[PercentileSlo, ...]) -> str:
    """The canonical text of parsed SLOs (what :func:`parse_slos` reads back)."""
    return ",".join(s.text for s in slos)


def percentile_with_rejected(values: np.ndarray, rejected: np.ndarray, q: float) -> float | None:
    """numpy's ``q``-th percentile (linear) of ``values`` (NaN = no value, left out) where the ``rejected``
    requests count as +inf; None when no request has a value."""
    served = values[~rejected & ~np.isnan(values)]
    n = len(served) + int(rejected.sum())
    if n == 0:
        return None
    h = (n - 1) * q / 100.0
    if math.ceil(h) >= len(served):   # the interpolation reaches a rejected (+inf) request
        return math.inf
    # the rejected sort last and are never reached: the percentile of all, with them set to the largest served
    padded = np.concatenate([served, np.full(n - len(served), served.max())])
    return float(np.percentile(padded, q))


def evaluate_slos(slos: tuple[PercentileSlo, ...], req: dict) -> list[dict]:
    """One row per SLO: its text, metric, percentile, limit, measured value, margin (measured - limit;
    negative = headroom), whether it is met, and the rejected requests it counted as +inf (JSON writes an
    infinite measured value as null, with ``met`` false)."""
    rejected = np.isnan(req["finish"])
    rows = []
    for s in slos:
        measured = percentile_with_rejected(np.asarray(req[METRICS[s.metric]], dtype=np.float64), rejected,
                                            s.percentile)
        rows.append({"slo": s.text, "metric": s.metric, "percentile": s.percentile, "limit_s": s.limit_s,
                     "measured_s": measured, "margin_s": None if measured is None else measured - s.limit_s,
                     "met": measured is None or measured <= s.limit_s, "rejected": int(rejected.sum())})
    return rows

"""What a run may return: the simulated time the engines represent, and the check of every result.

Simulated time stays below ``MAX_TIME_S`` = 2^62 ns (4.61e9 s, 146 years) in every
engine (:mod:`workloads.limits`). :func:`check_workload` refuses, before simulating,
a workload (built from arrays) outside that domain; the workload builders refuse
theirs earlier, naming the setting. :func:`check_result` is the last line of
defence, run on every result before it is returned (or stored ``done``):

* a served request has ``arrival <= start <= first_token <= finish < MAX_TIME_S``
  and finite, non-negative ``queue_delay``, ``ttft``, ``tbt``, ``tbt_max`` and
  ``e2e``, except that one of at most one output token has no gap between tokens
  (``tbt`` and ``tbt_max`` NaN); a rejected request (never served) has none of
  these (NaN);
* every float of the engine's log is finite, its times (start, durations) >= 0;
* every figure of the summary, per-bin ones included, is finite and >= 0, or
  None where the metric has no data (no deadline set, a bin that served nobody).

A violation raises :class:`SimulationError` naming the first request or figure.
"""
from __future__ import annotations

import numbers

import numpy as np

from batchlab.workloads.limits import MAX_TIME_S, MAX_TIME_TEXT, MAX_TOKENS
from batchlab.workloads.workload import Workload, WorkloadError

TIMES = ("arrival", "start", "first_token", "finish")   # in the order a served request passes them
LATENCIES = ("queue_delay", "ttft", "tbt", "tbt_max", "e2e")
GAPS = ("tbt", "tbt_max")                                # NaN for a request of at most one token
LOG_TIMES = ("start", "duration", "prefill", "decode", "step_max")


class SimulationError(ValueError):
    """A run whose result cannot be: out of the simulated time the engines represent, or impossible."""


def beyond_horizon(what: str) -> SimulationError:
    """The error of a run whose serving reaches MAX_TIME_S (``what``: how far it got)."""
    return SimulationError(f"the simulation {what}; the engines represent less than {MAX_TIME_TEXT} of simulated "
                           "time (fewer requests, more GPUs or a faster latency model would fit)")


def check_workload(workload: Workload) -> None:
    """Refuse a workload with an arrival or a token count the engines cannot represent."""
    last = float(workload.arrival[-1])
    if not last < MAX_TIME_S:
        raise WorkloadError(f"arrival: the last request arrives at {last:.3g} s; the engines represent less than "
                            f"{MAX_TIME_TEXT} of simulated time")
    for name in ("prompt", "output"):
        values = getattr(workload, name)
        i = int(np.argmax(values))
        if values[i] > MAX_TOKENS:
            raise WorkloadError(f"{name}: request {i} holds {int(values[i]):,} tokens; a request holds at most "
                                f"{MAX_TOKENS:,}")


def check_result(requests: dict, log: dict, summary: dict) -> None:
    """Refuse a result that cannot be (see the module docstring); cheap: a few numpy passes per array."""
    finish = requests["finish"]
    served = ~np.isnan(finish)
    every = bool(served.all())
    rows = None if every else np.flatnonzero(served)       # served requests' indices, when some were not
    pick = (lambda a: a) if every else (lambda a: a[rows])

    def refuse(name: str, i: int, value: float, rule: str):
        request = i if rows is None else int(rows[i])
        raise SimulationError(f"impossible result, refused: request {request} has {name} {value!r} ({rule})")

    if not every:
        rejected = np.flatnonzero(~served)
        for name in TIMES[1:] + LATENCIES:
            bad = ~np.isnan(requests[name][rejected])
            if bad.any():
                i = int(rejected[np.argmax(bad)])
                raise SimulationError(f"impossible result, refused: request {i} was never served but has "
                                      f"{name} {float(requests[name][i])!r}")
    for before, after in zip(TIMES, TIMES[1:]):
        a, b = pick(requests[before]), pick(requests[after])
        bad = ~(a <= b)
        if bad.any():
            i = int(np.argmax(bad))
            refuse(after, i, float(b[i]), f"before its {before} {float(a[i])!r}")
    last = pick(finish)
    i = int(np.argmax(last))
    if not last[i] < MAX_TIME_S:
        raise beyond_horizon(f"finishes request {i if rows is None else int(rows[i])} at {last[i]:.3g} s")
    gapless = pick(requests["output"]) <= 1          # one token: no gap, no TBT
    for name in LATENCIES:
        values = pick(requests[name])
        bad = ~((values >= 0) & (values < MAX_TIME_S))   # NaN and inf too
        if name in GAPS:
            bad = np.where(gapless, ~np.isnan(values), bad)
        if bad.any():
            i = int(np.argmax(bad))
            refuse(name, i, float(values[i]), "a request of one token has no gap between tokens"
                   if name in GAPS and gapless[i] else "a latency is finite and >= 0")
    for name, values in log.items():
        if values.dtype.kind != "f":
            continue
        floor = 0.0 if name in LOG_TIMES else -np.inf
        bad = ~((values >= floor) & np.isfinite(values))
        if bad.any():
            j = int(np.argmax(bad))
            raise SimulationError(f"impossible result, refused: row {j} of the engine's log has {name} "
                                  f"{float(values[j])!r}")
    _check_figures(summary, "")


def _check_figures(value, where: str) -> None:
    """Every number in a summary (nested dicts and lists) is finite and >= 0; None is no data."""
    if isinstance(value, dict):
        for key, v in value.items():
            _check_figures(v, f"{where}.{key}" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_figures(v, f"{where}[{i}]")
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        if not (np.isfinite(value) and value >= 0):
            raise SimulationError(f"impossible result, refused: the summary's {where} is {value!r} "
                                  "(every figure is finite and >= 0)")

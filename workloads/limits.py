"""What any workload may hold, so that every engine can represent its run.

Simulated time stays below ``MAX_TIME_S`` = 2^62 ns (4.61e9 s, 146 years) in
every engine: the continuous engine counts its 1 ns clock in int64 below 2^62
(:mod:`core.continuous_kernel`), and float64 seconds still resolve a microsecond
there. A workload's arrivals must lie below it; a run whose serving reaches it is
refused by the engines (:mod:`core.validity`). A request's prompt or output holds
at most ``MAX_TOKENS`` tokens: far beyond any model's context, and token sums
over the largest workload (10^7 requests) stay far inside int64. Builders check
these limits where the setting that breaks them is known, so the error names it.
"""
from __future__ import annotations

from .workload import WorkloadError

MAX_TIME_S = 2.0**62 / 1e9
MAX_TIME_TEXT = f"{MAX_TIME_S:.3g} s ({MAX_TIME_S / (365.25 * 86400):.0f} years)"
MAX_TOKENS = 10**9


def check_span(span: float, field: str, what: str) -> None:
    """Refuse arrivals spanning MAX_TIME_S or more: ``field: <what> would span <span> s; ...``."""
    if not span < MAX_TIME_S:
        raise WorkloadError(f"{field}: {what} would span {span:.3g} s; the engines represent less than "
                            f"{MAX_TIME_TEXT} of simulated time")

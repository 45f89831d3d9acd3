"""Numbers with their units as text (pure functions), for the command line and the web app alike.

Two precisions: :func:`seconds` / :func:`number` for tables and reports (as many digits as
the metric needs) and :func:`sig` / :func:`compact_seconds` / :func:`compact_rate` for metric
cards, where a value must fit a narrow card: three significant digits, never more than about
ten characters. A missing value (None or NaN) reads :data:`DASH`.
"""
from __future__ import annotations

import math

DASH = "—"


def missing(v) -> bool:
    """True for None and NaN (a value the run does not have)."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def _no_scale(v) -> str | None:
    """How a duration with no unit to pick reads (missing, infinite, zero); None for any other."""
    if missing(v):
        return DASH
    v = float(v)
    if math.isinf(v):
        return "∞ s"
    return "0 s" if v == 0 else None


def seconds(v) -> str:
    """A duration: ``850 µs``, ``31.2 ms``, ``4.56 s``, ``1,234 s``."""
    if (text := _no_scale(v)) is not None:
        return text
    v = float(v)
    a = abs(v)
    if a < 1e-3:
        return f"{v * 1e6:.0f} µs"
    if a < 1:
        return f"{v * 1e3:.1f} ms"
    if a < 100:
        return f"{v:.2f} s"
    return f"{v:,.0f} s"


def pct(v, off: str = "off", digits: int = 1) -> str:
    """A fraction as a percentage; ``None`` means the metric is disabled (``off``)."""
    if missing(v):
        return off
    return f"{100 * float(v):.{digits}f} %"


def number(v, unit: str = "", digits: int = 1) -> str:
    """``1,234.5 req/s``; integers without decimals."""
    if missing(v):
        return DASH
    if isinstance(v, int) and not isinstance(v, bool):
        text = f"{v:,}"
    else:
        v = float(v)
        text = "∞" if math.isinf(v) else f"{v:,.{digits}f}"
    return f"{text} {unit}".strip()


def sig(v, unit: str = "", digits: int = 3) -> str:
    """``v`` to ``digits`` significant digits (whole numbers >= 10**digits keep all their digits,
    with thousands separators): ``2.04 req/s``, ``246 tok/s``, ``12,345 tok/s``, ``0.0123``."""
    if missing(v):
        return DASH
    v = float(v)
    if math.isinf(v):
        text = "∞"
    elif v == 0:
        text = "0"
    else:
        magnitude = math.floor(math.log10(abs(v)))
        decimals = max(0, digits - 1 - magnitude)
        text = f"{round(v, decimals):,.{decimals}f}"
    return f"{text} {unit}".strip()


def compact_rate(v, unit: str = "req", digits: int = 3) -> str:
    """A rate short enough for a card: ``2.04 req/s``, ``98.8k tok/s``, ``36.7 req/h`` (below
    0.1/s the hour reads better than five leading zeros)."""
    if missing(v):
        return DASH
    v = float(v)
    a = abs(v)
    if math.isinf(v) or a == 0 or 0.1 <= a < 10_000:
        return sig(v, f"{unit}/s", digits)
    if a < 0.1:
        return sig(v * 3600, f"{unit}/h", digits)
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= factor:
            return sig(v / factor, "", digits) + f"{prefix} {unit}/s"
    return sig(v, f"{unit}/s", digits)


def compact_seconds(v, digits: int = 3) -> str:
    """A duration in the unit that keeps it short: ``850 µs``, ``31.2 ms``, ``4.57 s``, ``95.2 s``,
    ``1,234 s``, ``3.47 h``."""
    if (text := _no_scale(v)) is not None:
        return text
    v = float(v)
    a = abs(v)
    if a < 1e-3:
        return sig(v * 1e6, "µs", digits)
    if a < 1:
        return sig(v * 1e3, "ms", digits)
    if a < 10_000:
        return sig(v, "s", digits)
    return sig(v / 3600, "h", digits)

"""Numbers with their units, and text made safe for Markdown (pure functions).

The number formatters live in :mod:`core.units` (the command line uses them too) and are
re-exported here; :func:`short_seconds` reads a setting as typed, :func:`md` escapes Markdown.
"""
from __future__ import annotations

import re

from batchlab.core.units import DASH, compact_rate, compact_seconds, missing, number, pct, seconds, sig

__all__ = ["DASH", "clip", "compact_rate", "compact_seconds", "md", "number", "pct", "rate", "seconds", "short_seconds",
           "sig", "upload_limit"]


def short_seconds(v) -> str:
    """A setting in seconds as typed: ``60 s``, ``50 ms``, ``2.5 s``."""
    if missing(v):
        return DASH
    v = float(v)
    return f"{v * 1000:g} ms" if 0 < abs(v) < 1 else f"{v:g} s"


def rate(v, unit: str = "req/s") -> str:
    """A rate as a setting reads, to 3 significant digits without trailing zeros: ``12 req/s``,
    ``2.12 req/s`` (not ``2.12109``), ``0.05 req/s``, ``1,234 req/s``."""
    if missing(v):
        return DASH
    v = float(v)
    text = f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    return f"{text} {unit}".strip()


MAX_SHOWN = 1000  # characters: the most of any message the web shows (a 100,000-character value echoes no more)


def clip(text, limit: int = MAX_SHOWN) -> str:
    """``text`` cut to ``limit`` characters, ending in "…" when cut."""
    text = str(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$&=])")


def md(text) -> str:
    """``text`` as literal Markdown: every character Markdown (or Streamlit's ``:color[]``,
    ``:emoji:`` and ``$math$`` directives) could read as syntax is backslash-escaped, so a
    file name like ``[x](http://y).csv`` stays text."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def upload_limit(limit_bytes: int) -> str:
    """What an uploader's size limit means to a user: the browser refuses a larger file before it is sent,
    and marks it with only a red "!"."""
    return (f"Up to {limit_bytes // 2**20} MB. A larger file is refused before it is sent (the uploader then "
            "shows only a red !): upload a window of the trace, or run the whole file from the command line "
            "(`batchlab run --trace FILE`).")

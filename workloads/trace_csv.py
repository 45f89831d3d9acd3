"""Read a trace CSV whose columns are named by a mapping: Azure, Splitwise/Vidur, plain, or any CSV.

A :class:`Columns` says which column holds each request's arrival, prompt and
output tokens (and, optionally, its priority) and the arrival's unit. The named
formats are fixed mappings (see docs/traces.md):

* azure (AzurePublicDataset's LLM inference traces 2023/2024):
  ``TIMESTAMP`` (a date-time such as ``2023-11-16 18:15:46.6805900``, or a number
  of seconds), ``ContextTokens``, ``GeneratedTokens``;
* splitwise (Splitwise's and Vidur's request CSVs): ``arrived_at`` (s),
  ``num_prefill_tokens``, ``num_decode_tokens``; a file without ``arrived_at``
  (Vidur's length traces) has no arrival times, so its arrivals must be re-drawn;
* csv (batchlab's plain layout, what ``workload export --to csv`` writes):
  ``arrival`` (s), ``prompt``, ``output`` and an optional ``priority``.

Any other CSV is read with ``trace_columns``, a mapping such as
``arrival=ts:ms,prompt=in,output=out,priority=prio`` (:func:`parse_columns`).
Values follow BurstGPT's rules (:mod:`workloads.burstgpt`: blank lines skipped,
whole token counts in [0, MAX_TOKENS], finite times, errors naming the CSV line
and column) and the window rules of :mod:`workloads.trace_window`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .burstgpt import (
    Source,
    _blank,
    _cell,
    _check_span,
    _excerpt,
    _header,
    _numbers,
    _priorities,
    _read_csv,
    _readable,
    find_columns,
)
from .trace_window import TraceData, check_window, cut_window
from .workload import WorkloadError

ROLES = ("arrival", "prompt", "output", "priority")
UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "date": None}   # seconds per unit; date: date-times
MAPPING_FORM = "role=column[:unit],... with roles arrival, prompt, output, priority and units s, ms, us, ns, date"


@dataclass(frozen=True)
class Columns:
    """Which column holds what; ``arrival`` None: the file has no arrival times."""

    prompt: str
    output: str
    arrival: str | None = None
    unit: str = "s"
    priority: str | None = None
    priority_optional: bool = False   # read the priority column only when the file has it

    def text(self) -> str:
        """The mapping as ``trace_columns`` writes it (canonical: roles in order, unit s left out)."""
        parts = [f"arrival={self.arrival}" + (f":{self.unit}" if self.unit != "s" else "")] if self.arrival else []
        parts += [f"prompt={self.prompt}", f"output={self.output}"]
        return ",".join(parts + ([f"priority={self.priority}"] if self.priority else []))


AZURE = Columns(arrival="TIMESTAMP", unit="date", prompt="ContextTokens", output="GeneratedTokens")
SPLITWISE = Columns(arrival="arrived_at", prompt="num_prefill_tokens", output="num_decode_tokens")
VIDUR = Columns(prompt="num_prefill_tokens", output="num_decode_tokens")
PLAIN = Columns(arrival="arrival", prompt="prompt", output="output", priority="priority", priority_optional=True)


def parse_columns(text: str, field: str = "trace_columns") -> Columns:
    """``arrival=ts:ms,prompt=in,output=out[,priority=p]`` as :class:`Columns`; a bad part is an error
    naming it. arrival may be left out (then the arrivals must be re-drawn); its unit defaults to s."""
    roles: dict[str, str] = {}
    unit = "s"
    for part in str(text).split(","):
        role, eq, column = (s.strip() for s in part.partition("="))
        if not eq or not role or not column:
            raise WorkloadError(f"{field}: {_excerpt(part)!r} is not role=column ({MAPPING_FORM})")
        if role not in ROLES:
            raise WorkloadError(f"{field}: unknown role {_excerpt(role)!r} (the roles are {', '.join(ROLES)})")
        if role in roles:
            raise WorkloadError(f"{field}: {role} is mapped twice")
        name, colon, suffix = column.rpartition(":")
        if colon and role == "arrival":
            if suffix.strip() not in UNITS:
                raise WorkloadError(f"{field}: unknown time unit {_excerpt(suffix)!r} for arrival (units: "
                                    f"{', '.join(UNITS)})")
            column, unit = name.strip(), suffix.strip()
            if not column:
                raise WorkloadError(f"{field}: arrival names no column before :{unit}")
        roles[role] = column
    for role in ("prompt", "output"):
        if role not in roles:
            raise WorkloadError(f"{field}: {role} is not mapped ({MAPPING_FORM})")
    return Columns(prompt=roles["prompt"], output=roles["output"], arrival=roles.get("arrival"), unit=unit,
                   priority=roles.get("priority"))


def _dates(df, column: int, name: str, lines: np.ndarray, src) -> np.ndarray:
    """Seconds after the earliest of a column of date-times (or of numbers, read as seconds)."""
    import pandas as pd

    col = df.iloc[:, column]
    numbers = pd.to_numeric(col, errors="coerce")
    if numbers.notna().all():
        return _numbers(df, column, name, lines, src, tokens=False)
    try:
        stamps = pd.to_datetime(col.astype(str).str.strip(), format="ISO8601", errors="coerce", utc=True)
    except (ValueError, TypeError, OverflowError):
        stamps = pd.Series(pd.NaT, index=col.index)
    bad = stamps.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        text = _cell(src, int(lines[i]), column)
        raise WorkloadError(f"trace: line {lines[i]}, column {name}: {_excerpt(text)!r} is not a date-time "
                            "(such as 2023-11-16 18:15:46.6805900) or a number of seconds")
    ns = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return (ns - ns.min()) / 1e9


def load_columns(source: Source, columns: Columns, *, what: str, layout: str, offset: int = 0,
                 num_requests: int | None = None, keep_failed: bool = False) -> TraceData:
    """Read ``num_requests`` rows from row ``offset`` (None: to the end) of a CSV mapped by ``columns``;
    ``what`` names the format in errors ("an Azure trace CSV"), ``layout`` in the workload's identity."""
    check_window(offset, num_requests)
    src = _readable(source)
    header = _header(src)
    needed = tuple(c for c in (columns.arrival, columns.prompt, columns.output) if c)
    needed += (columns.priority,) if columns.priority and not columns.priority_optional else ()
    optional = (columns.priority,) if columns.priority and columns.priority_optional else ()
    at = find_columns(header, tuple(dict.fromkeys(needed)), optional, what)
    df = _read_csv(src, index_col=False, skip_blank_lines=False, low_memory=False)
    df = df[~_blank(df)]
    if len(df) == 0:
        raise WorkloadError("trace: the file has a header but no data rows")
    lines = df.index.to_numpy() + 2    # the header is line 1
    if columns.arrival is None:
        t = np.zeros(len(df))
    elif columns.unit == "date":
        t = _dates(df, at[columns.arrival], columns.arrival, lines, src)
    else:
        t = _numbers(df, at[columns.arrival], columns.arrival, lines, src, tokens=False) * UNITS[columns.unit]
    if columns.arrival is not None:
        _check_span(t, at[columns.arrival], lines, src, columns.arrival)
    prompt = _numbers(df, at[columns.prompt], columns.prompt, lines, src, tokens=True).astype(np.int64)
    output = _numbers(df, at[columns.output], columns.output, lines, src, tokens=True).astype(np.int64)
    priority = (_priorities(df, at[columns.priority], lines, src, columns.priority)
                if columns.priority in at else None)
    return cut_window(t, prompt, output, priority, offset=offset, num_requests=num_requests,
                      keep_failed=keep_failed, layout=layout, output_name=columns.output,
                      timed=columns.arrival is not None)

"""Plain-text tables and headers for the ``batchlab runs`` / ``grids`` commands.

The runs table fits a terminal: one line per run with the settings that tell
runs apart (mode, GPUs, bins, arrivals, SLA deadlines TTFT/TBT/E2E, latency
model), the key metrics (the catalog's ``list`` view), and the workload label cut to the width left (a run
that is not done says its state there). Typical rows need about 100 columns
plus the label; ``--json`` has every field.
"""
from __future__ import annotations

import textwrap
from datetime import datetime

from batchlab.core.metric_catalog import shown_in
from batchlab.workloads.fields import shown

from .records import GridRow, RunRow, StoredRun
from .settings import non_default_settings

DEFAULT_WIDTH = 120
MIN_LABEL = 16
SHOWN_IN_HEADER = frozenset({"mode", "gpus", "k_bins", "d_sla_ttft", "d_sla_tbt", "d_sla_e2e", "latency"})


def _when(t: datetime | None) -> str:
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _cut(text: str | None, width: int) -> str:
    text = text or ""
    return text if len(text) <= width else text[: width - 1] + "…"


def deadline(v: float | None, sep: str = "") -> str:
    """A deadline in seconds as ``50ms`` / ``10s`` (``off`` when disabled)."""
    if v is None:
        return "off"
    return f"{float(f'{v * 1000:.4g}'):g}{sep}ms" if v < 1 else f"{float(f'{v:.4g}'):g}{sep}s"


def deadlines(ttft: float | None, tbt: float | None, e2e: float | None) -> str:
    """``TTFT/TBT/E2E`` deadlines in one cell, e.g. ``10s/50ms/60s``."""
    return "/".join(deadline(v) for v in (ttft, tbt, e2e))


def arrivals(arrival: str | None, rate: float | None, rps_scaling: float | None) -> str:
    """The arrival process and rate: ``gamma 2/s``, ``trace``, ``trace x3`` (the trace's own rate, 3 times)."""
    text = arrival or "-"
    if rate is not None:
        text += f" {rate:g}/s"
    if rps_scaling not in (None, 1, 1.0):
        text += f" x{rps_scaling:g}"
    return text


def describe_filters(mode: str | None = None, status: str | None = None, search: str | None = None) -> str:
    """The listing's filters in words ('' when there are none)."""
    parts = [f"mode {mode}" if mode else "", f"status {status}" if status else "",
             f"search {shown(search)}" if search else ""]
    return ", ".join(p for p in parts if p)


def _empty_message(total: int | None, filters: str, in_store: int | None) -> str:
    if filters:
        if total:
            return f"no runs on this page ({total:,} match {filters})"
        if in_store is None:
            return f"no runs match {filters}"
        held = f"{in_store:,} run{'s' if in_store != 1 else ''} in the store" if in_store else "the store is empty"
        return f"no runs match {filters} ({held})"
    return f"no runs on this page ({total:,} in all)" if total else "no runs in the store"


# (header, right-aligned, cell)
_COLUMNS = (
    ("id", True, lambda r: str(r.id)),
    ("mode", False, lambda r: r.mode),
    ("gpus", True, lambda r: str(r.gpus)),
    ("bins", True, lambda r: str(r.k_bins)),
    ("arrivals", False, lambda r: arrivals(r.arrival, r.arrival_rate, r.rps_scaling)),
    ("deadlines", False, lambda r: deadlines(r.d_sla_ttft, r.d_sla_tbt, r.d_sla_e2e)),
    ("latency", False, lambda r: _cut(r.latency or "-", 22)),
    # the catalog's list metrics: headed by their short label, which names the unit of the bare number
    *((m.short, True, lambda r, m=m: m.format(getattr(r, m.key), style="bare")) for m in shown_in("list")),
)


def _tail(r: RunRow) -> str:
    """The workload label of a done run; a run in any other state says so first."""
    if r.status == "failed":
        return f"FAILED: {r.error or ''}"
    return r.label or "" if r.state == "done" else f"{r.state.upper()}: {r.label or ''}"


def format_runs_table(rows: list[RunRow], total: int | None = None, *, width: int = DEFAULT_WIDTH,
                      filters: str = "", in_store: int | None = None) -> str:
    """One line per run, at most ``width`` characters (the workload label is cut to fit).

    ``total``: runs matching the filters (for the paging note); ``filters``: the filters in
    words (:func:`describe_filters`); ``in_store``: all runs in the store, for an empty result.
    """
    if not rows:
        return _empty_message(total, filters, in_store)
    cells = [[cell(r) for _, _, cell in _COLUMNS] for r in rows]
    widths = [max(len(head), *(len(c[i]) for c in cells)) for i, (head, _, _) in enumerate(_COLUMNS)]

    def line(values: list[str], tail: str) -> str:
        parts = [v.rjust(w) if right else v.ljust(w) for v, w, (_, right, _) in zip(values, widths, _COLUMNS)]
        return "  ".join(parts + [tail])

    label_width = max(MIN_LABEL, width - sum(widths) - 2 * len(widths))
    lines = [line([head for head, _, _ in _COLUMNS], "workload").rstrip()]
    for r, c in zip(rows, cells):
        lines.append(line(c, _cut(_tail(r), label_width)).rstrip())
    if total is not None and total > len(rows):
        lines.append(f"({len(rows):,} of {total:,} runs shown; use --limit/--offset)")
    return "\n".join(lines)


def _other_settings(run: StoredRun) -> dict:
    """Settings of the run that differ from its mode's defaults (only those that matter to the mode)."""
    from batchlab.core.config import SimConfig, config_fields

    cfg = run.config
    if cfg is not None:
        base = SimConfig(mode=cfg.mode)
        mine, defaults = cfg.relevant_dict(), base.to_dict() | {"router": base.routing}
    else:  # not a valid config in this version: compare the raw settings with the field defaults
        mine = dict(run.config_dict)
        defaults = {f.name: f.default for f in config_fields()}
    return {k: v for k, v in non_default_settings(mine, defaults).items() if k not in SHOWN_IN_HEADER}


def format_run_header(run: StoredRun, width: int = DEFAULT_WIDTH) -> str:
    """Identity, status and settings lines printed above a run's summary."""
    s = run.settings
    lines = [f"run {run.id}  {run.hash}",
             f"  state            {run.state}" + ("  (its process is gone or it timed out; the next run of "
                                                 "this config takes it over)" if run.stale else ""),
             f"  created          {_when(run.created_at)}; finished {_when(run.finished_at)}"
             + (f"; simulated in {run.duration_s:.2f} s" if run.duration_s is not None else ""),
             f"  code             {run.code_version}",
             f"  workload         {run.label or run.workload.get('kind', '?')}",
             f"  scheduler        {run.mode} on {run.gpus} GPU(s), {run.k_bins} bin(s)",
             f"  arrivals         {arrivals(s['arrival'], s['arrival_rate'], s['rps_scaling'])}",
             f"  SLA deadlines    TTFT {deadline(s['d_sla_ttft'], ' ')}, TBT {deadline(s['d_sla_tbt'], ' ')}, "
             f"E2E {deadline(s['d_sla_e2e'], ' ')}",
             f"  latency model    {s['latency'] or run.latency.get('kind', '?')}"]
    other = _other_settings(run)
    if other:
        text = ", ".join(f"{k} {v}" for k, v in other.items())
        wrapped = textwrap.wrap(text, max(40, width - 19)) or [""]
        lines.append(f"  other settings   {wrapped[0]}")
        lines += [" " * 19 + w for w in wrapped[1:]]
    if run.stored_requests is not None:
        kept = (f"{run.stored_requests:,} of {run.num_requests:,} (uniform sample)" if run.sampled
                else f"all {run.num_requests:,}")
        lines.append(f"  per-request data {kept}")
    if run.error:
        lines.append("  error            " + run.error.split("\n", 1)[0])
    return "\n".join(lines)


def format_grids_table(rows: list[GridRow]) -> str:
    if not rows:
        return "no calibration grids"
    lines = [f"{'name':<28}  {'where':<7}  {'model':<24}  {'device':<20}  {'dtype':<9}  {'rows':>5}  {'sha256':<12}  "
             "uploaded"]
    for g in rows:
        lines.append(f"{_cut(g.name, 28):<28}  {g.where:<7}  {_cut(g.model or '-', 24):<24}  "
                     f"{_cut(g.device or '-', 20):<20}  {_cut(g.dtype or '-', 9):<9}  {g.rows:>5}  "
                     f"{g.sha256[:12]:<12}  "
                     f"{_when(g.uploaded_at)}")
    return "\n".join(lines)


def format_grid(row: GridRow, table=None, max_rows: int = 20) -> str:
    origin = f"uploaded  {_when(row.uploaded_at)}" if row.where == "stored" else "bundled with batchlab"
    lines = [f"grid {row.name}  sha256 {row.sha256}", f"  {origin}; {row.rows} rows"]
    lines += [f"  {k:<9} {v}" for k, v in row.meta.items()]
    lines += [f"  warning: {w}" for w in row.warnings]
    if table is not None:
        shown = table.head(max_rows).to_string(index=False)
        lines += ["", shown] + ([f"... ({len(table) - max_rows} more rows)"] if len(table) > max_rows else [])
    return "\n".join(lines)

"""Plain-text tables and headers for the ``batchlab runs`` / ``grids`` commands."""
from __future__ import annotations

from datetime import datetime

from .records import GridRow, RunRow, StoredRun


def _when(t: datetime | None) -> str:
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _num(v, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def _cut(text: str | None, width: int) -> str:
    text = text or ""
    return text if len(text) <= width else text[: width - 1] + "…"


def format_runs_table(rows: list[RunRow], total: int | None = None) -> str:
    """One line per run: id, hash prefix, state, created, mode, size, key metrics, workload."""
    if not rows:
        return "no runs in the store" if not total else f"no runs on this page ({total:,} in all)"
    head = (f"{'id':>5}  {'hash':<10}  {'state':<7}  {'created':<19}  {'mode':<17}  {'gpus':>4}  {'bins':>4}  "
            f"{'requests':>9}  {'req/s':>8}  {'p99 s':>8}  {'SLA':>6}  {'sim s':>7}  workload")
    lines = [head]
    for r in rows:
        sla = "-" if r.sla_attainment is None else f"{100 * r.sla_attainment:.1f}%"
        tail = r.label if r.status != "failed" else f"FAILED: {r.error or ''}"
        lines.append(f"{r.id:>5}  {r.hash[:10]:<10}  {r.state:<7}  {_when(r.created_at):<19}  {_cut(r.mode, 17):<17}  "
                     f"{r.gpus:>4}  {r.k_bins:>4}  {r.num_requests:>9,}  {_num(r.throughput_rps, '{:.3f}'):>8}  "
                     f"{_num(r.latency_p99_s, '{:.2f}'):>8}  {sla:>6}  {_num(r.duration_s, '{:.2f}'):>7}  "
                     f"{_cut(tail, 70)}")
    if total is not None and total > len(rows):
        lines.append(f"({len(rows):,} of {total:,} runs shown; use --limit/--offset)")
    return "\n".join(lines)


def format_run_header(run: StoredRun) -> str:
    """Identity and status lines printed above a run's summary."""
    lines = [f"run {run.id}  {run.hash}",
             f"  state            {run.state}" + ("  (its process is gone or it timed out; the next run of "
                                                 "this config takes it over)" if run.stale else ""),
             f"  created          {_when(run.created_at)}; finished {_when(run.finished_at)}"
             + (f"; simulated in {run.duration_s:.2f} s" if run.duration_s is not None else ""),
             f"  code             {run.code_version}",
             f"  workload         {run.label or run.workload.get('kind', '?')}",
             f"  latency model    {run.latency.get('kind', '?')}"
             + (f" {run.config_dict.get('latency')}" if run.latency.get("kind") != "parametric" else "")]
    if run.stored_requests is not None:
        kept = (f"{run.stored_requests:,} of {run.num_requests:,} (uniform sample)" if run.sampled
                else f"all {run.num_requests:,}")
        lines.append(f"  per-request data {kept}")
    if run.error:
        lines.append("  error            " + run.error.split("\n", 1)[0])
    return "\n".join(lines)


def format_grids_table(rows: list[GridRow]) -> str:
    if not rows:
        return "no calibration grids in the store"
    lines = [f"{'name':<24}  {'model':<24}  {'device':<20}  {'dtype':<9}  {'rows':>5}  {'sha256':<12}  uploaded"]
    for g in rows:
        lines.append(f"{_cut(g.name, 24):<24}  {_cut(g.model or '-', 24):<24}  {_cut(g.device or '-', 20):<20}  "
                     f"{_cut(g.dtype or '-', 9):<9}  {g.rows:>5}  {g.sha256[:12]:<12}  {_when(g.uploaded_at)}")
    return "\n".join(lines)


def format_grid(row: GridRow, table=None, max_rows: int = 20) -> str:
    lines = [f"grid {row.name}  sha256 {row.sha256}", f"  uploaded  {_when(row.uploaded_at)}; {row.rows} rows"]
    lines += [f"  {k:<9} {v}" for k, v in row.meta.items()]
    lines += [f"  warning: {w}" for w in row.warnings]
    if table is not None:
        shown = table.head(max_rows).to_string(index=False)
        lines += ["", shown] + ([f"... ({len(table) - max_rows} more rows)"] if len(table) > max_rows else [])
    return "\n".join(lines)

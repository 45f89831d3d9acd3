"""Tables of sweep, capacity and suite results (pandas), shared by the CLI, the web app and exports."""
from __future__ import annotations

import json
import math

import pandas as pd

from .capacity import CapacityResult
from .metric_catalog import keys
from .sweep import MemberResult

MEMBER_METRICS = keys("sweep")  # the catalog's sweep view, in catalog order
# the cluster a run had (its summary's), shown beside the varied values where it differs between members
CLUSTER_COLUMNS = ("gpus", "replicas", "tp", "router", "disaggregate")


def cluster_columns(points: list[dict], summaries: list[dict]) -> list[str]:
    """The cluster columns a sweep table adds: those not varied whose values differ between the members'
    summaries (varying tp at a fixed GPU count changes the replicas; varying the mode, the router)."""
    varied = {k for p in points for k in p}
    return [c for c in CLUSTER_COLUMNS if c not in varied
            and len({json.dumps(s.get(c)) for s in summaries if s}) > 1]


def member_frame(results: list[MemberResult]) -> pd.DataFrame:
    """One row per member: its varied values, the cluster where it differs (:func:`cluster_columns`),
    status, headline metrics, run id, source and error."""
    cluster = cluster_columns([r.point for r in results], [r.summary or {} for r in results])
    rows = []
    for r in results:
        s = r.summary or {}
        rows.append({**r.point, **{c: s.get(c) for c in cluster}, "status": r.status,
                     **{m: s.get(m) for m in MEMBER_METRICS},
                     "run_id": r.run_id, "source": "store" if r.cached else "simulated", "error": r.error})
    return pd.DataFrame(rows)


def capacity_frame(results: list[CapacityResult]) -> pd.DataFrame:
    """One row per searched configuration: capacity, its interval and bracket, status, probes."""
    rows = []
    for c in results:
        lows = [b[0] for b in c.brackets if b[0] is not None]
        highs = [b[1] for b in c.brackets if b[1] is not None]
        rows.append({**{k: v for k, v in c.label.items() if k != "mode"}, "mode": c.mode,
                     "capacity_rps": c.capacity_rps, "ci_low": c.ci_low, "ci_high": c.ci_high,
                     "fails_at_rps": highs[0] if c.replications == 1 and highs and lows else None,
                     "status": c.status,
                     "target": c.target, "tolerance": c.tolerance, "replications": c.replications,
                     "probes": len(c.probes), "error": c.error})
    return pd.DataFrame(rows)


def probes_frame(results: list[CapacityResult]) -> pd.DataFrame:
    """Every probed point: configuration label, rate, replication, attainment, pass, p99, throughput."""
    rows = []
    for c in results:
        for p in sorted(c.probes, key=lambda p: (p.replication, p.rate)):
            rows.append({**{k: v for k, v in c.label.items() if k != "mode"}, "mode": c.mode, "rate": p.rate,
                         "replication": p.replication, "attainment": p.attainment, "passed": p.passed,
                         "latency_p99_s": p.latency_p99_s, "throughput_rps": p.throughput_rps,
                         "run_id": p.run_id, "error": p.error})
    return pd.DataFrame(rows)


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def format_frame(df: pd.DataFrame, columns: list[str] | None = None) -> str:
    """A plain-text table (numbers to 4 significant digits, missing values as '-')."""
    if df.empty:
        return "(no rows)"
    cols = [c for c in (columns or list(df.columns)) if c in df.columns]
    cells = [[_cell(v) for v in row] for row in df[cols].astype(object).itertuples(index=False)]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def format_capacities(results: list[CapacityResult]) -> str:
    """The capacity comparison as text, with a line on what the numbers mean."""
    df = capacity_frame(results)
    c0 = results[0]
    text = format_frame(df, [c for c in df.columns if c not in ("target", "tolerance", "error")])
    head = (f"capacity = highest arrival rate with SLA attainment >= {100 * c0.target:g} % "
            f"(relative tolerance {100 * c0.tolerance:g} %, {c0.replications} replication(s)"
            + (f", {100 * c0.confidence:g} % CI)" if c0.replications > 1 else ")"))
    notes = [f"{c.mode}: {c.error}" for c in results if c.error]
    notes += [f"{c.mode}: target not met even at the lowest probed rate" for c in results if c.status == "unreachable"]
    notes += [f"{c.mode}: target still met at the highest probed rate" for c in results if c.status == "unbounded"]
    return "\n".join([head, text, *notes])

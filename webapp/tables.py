"""The tables of a result page: metrics per run (best value per metric marked) and per bin."""
from __future__ import annotations

import pandas as pd

from batchlab.core import metric_catalog as catalog

from . import fmt

BEST_STYLE = "background-color: #dcfce7; font-weight: 600"


# the cluster each run had, the table's first rows (never marked best): row name -> summary key
CLUSTER_ROWS = {"GPUs": "gpus", "Replicas": "replicas", "TP (GPUs per replica)": "tp", "Router": "router"}


def cluster_value(summary: dict, key: str) -> str:
    """A cluster row's cell: the router reads "one shared queue" for shared_queue and "—" on one replica."""
    v = summary.get(key)
    if v is None:
        return fmt.DASH
    if key == "router":
        if (summary.get("replicas") or 1) <= 1:
            return fmt.DASH
        return "one shared queue" if v == "shared_queue" else str(v)
    return f"{v:,}"


def metrics_table(views: list[dict], labels: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows: the cluster (GPUs, replicas, TP, router), then metrics (only those some run has); columns: runs.
    Returns the formatted values and a
    same-shaped mask of the best value per metric (see :func:`catalog.best_runs`; runs whose shown
    value equals the best's share it, and a row where every run ties marks none)."""
    summaries = [v["summary"] for v in views]
    rows = [m for m in catalog.shown_in("table") if any(m.key in s for s in summaries)]
    cluster = [(name, key) for name, key in CLUSTER_ROWS.items() if any(key in s for s in summaries)]
    index = pd.Index([name for name, _ in cluster] + [m.label for m in rows], name="Metric")
    values = pd.DataFrame({lab: [cluster_value(s, key) for _, key in cluster]
                           + [m.format(s[m.key], s) if m.key in s else fmt.DASH for m in rows]
                           for lab, s in zip(labels, summaries)}, index=index)
    best = pd.DataFrame(False, index=index, columns=list(labels))
    for r, m in enumerate(rows, start=len(cluster)):
        winners = catalog.best_runs(m, summaries)
        shown = {values.iat[r, j] for j in winners}  # a run that shows the same value shares the win
        winners |= {j for j in range(len(labels)) if values.iat[r, j] in shown}
        if len(winners) < len(labels):
            for j in winners:
                best.iat[r, j] = True
    return values, best


def styled(values: pd.DataFrame, best: pd.DataFrame):
    """``values`` for ``st.table`` with the best cells highlighted; labels escaped for Markdown."""
    shown = values.rename(columns=fmt.md)
    mask = best.rename(columns=fmt.md)
    return shown.style.apply(lambda col: [BEST_STYLE if b else "" for b in mask[col.name]], axis=0)


def bins_table(summary: dict) -> pd.DataFrame:
    """One row per bin: its predicted-output range, then the catalog's per-bin ``table`` metrics;
    a value a mode does not have (batches in a continuous mode) reads "—"."""
    shown = catalog.shown_in("table", catalog.BIN_METRICS)
    rows = []
    for b in summary.get("bins", []):
        lo, hi = b.get("pred_lo"), b.get("pred_hi")
        row = {"Bin": b["bin"],
               "Predicted output (tokens)": fmt.DASH if lo is None or hi is None else f"{lo:,.0f} – {hi:,.0f}"}
        row.update({m.label: m.format(b[m.key], summary) if m.key in b else fmt.DASH for m in shown})
        rows.append(row)
    return pd.DataFrame(rows)

"""Reproduce page helpers: a paper's tables as a stored job (kind ``reproduce``, run by the job
runner, :mod:`webapp.jobs`), and their drawing beside the formulas.

The job's plan names only the paper, so the store finds a paper's reproduction by its plan's key
(:func:`job_for`): the page shows the last one whichever way it is opened, and a result is kept
when the page is left."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from batchlab.core.reproduce import PAPER2_REPLICATIONS, PAPER2_SLA, PAPER2_STATIC_CAPS
from batchlab.store.job_runs import reproduce_plan
from batchlab.store.sweep_jobs import plan_key

from . import jobs, services
from . import sweep_charts as charts
from .sweeps import download_row

LAST = "_repro.last"  # session state: the paper last shown (a widget's own key is dropped on another page)
PAPERS = {"paper1": "Paper 1 · multi-bin batching", "paper2": "Paper 2 · dynamic batching under a TBT SLA"}
ABOUT = {
    "paper1": "Guldogan et al., arXiv 2412.04504. One server, B = 128, service times U[1, 20] s, 128,000 requests, "
              "k = 1..5 equal-mass bins: eq. 4 throughput B / E[t_service,k] (the paper's plateaus 6.4, 8.4, 9.4, "
              "9.9, 10.3) and Lemma 5.1 latency E[t_service,k] + (B-1)k/(2λ) with unlimited servers (B = 8, "
              "λ = 10), each simulated beside its formula.",
    "paper2": f"Pang et al., arXiv 2503.05248. Static batch caps B = {', '.join(map(str, PAPER2_STATIC_CAPS))} "
              "against the SLA-aware dynamic cap (Algorithms 1 and 2) under the paper's "
              f"{1000 * PAPER2_SLA['d_sla_tbt']:g} ms TBT deadline (TTFT {PAPER2_SLA['d_sla_ttft']:g} s): "
              f"throughput at saturation and capacity at 95 % SLA attainment over {PAPER2_REPLICATIONS} seeds. "
              "The paper reports +8 to 28 % throughput and capacity 5.4 → 6.6 req/s (LLaMA3-70B, vLLM continuous "
              "batching).",
}


# the paper 2 table as the page shows it: (column, header, help); the CSV keeps every raw column
PAPER2_COLUMNS = [
    ("static", "Static cap", "The run-to-completion or continuous mode with a fixed batch cap B"),
    ("dynamic", "Dynamic cap", "The same engine with the SLA-aware cap of Algorithms 1 and 2"),
    ("static_throughput_rps", "Throughput, static (req/s)", "At saturation: requests arriving at 1000 req/s"),
    ("dynamic_throughput_rps", "Throughput, dynamic (req/s)", "At saturation: requests arriving at 1000 req/s"),
    ("throughput_gain", "Throughput gain", "Dynamic over static throughput (the paper: +8 to 28 %)"),
    ("static_tbt_p99_ms", "TBT p99, static (ms)", "99th percentile time between tokens (deadline 50 ms)"),
    ("dynamic_tbt_p99_ms", "TBT p99, dynamic (ms)", "99th percentile time between tokens (deadline 50 ms)"),
    ("static_capacity", "Capacity, static (req/s)", "Highest rate with 95 % of requests within the SLA, "
                                                    "mean [95 % interval] over the seeds"),
    ("dynamic_capacity", "Capacity, dynamic (req/s)", "Highest rate with 95 % of requests within the SLA, "
                                                      "mean [95 % interval] over the seeds"),
    ("capacity_gain", "Capacity gain", "Dynamic over static capacity, seed by seed, with its interval "
                                       "(the paper: 5.4 → 6.6 req/s, +22 %)"),
]


def paper2_columns() -> dict:
    """The headers and hover texts of :func:`paper2_frame`'s columns (numbers to three figures)."""
    numbers = {"static_throughput_rps", "dynamic_throughput_rps", "static_tbt_p99_ms", "dynamic_tbt_p99_ms"}
    return {k: st.column_config.NumberColumn(label, help=why, format="%.3g") if k in numbers
            else st.column_config.Column(label, help=why) for k, label, why in PAPER2_COLUMNS}


def job_for(paper: str):
    """The store's reproduction job of ``paper`` (None when it was never started here)."""
    return services.get_store().find_sweep(plan_key(reproduce_plan(paper)))


def _interval(mean, low, high, gain: bool = False) -> str:
    """``mean [low, high]`` (a gain as a signed percentage), ``-`` for none."""
    if mean is None or pd.isna(mean):
        return "-"
    text = (lambda v: f"{100 * (v - 1):+.0f} %") if gain else (lambda v: f"{v:.3g}")
    if low is None or pd.isna(low) or high is None or pd.isna(high):
        return text(mean)
    return f"{text(mean)} [{text(low)}, {text(high)}]"


def paper2_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Paper 2's table in words a reader takes in: gains as percentages, TBT in milliseconds, each
    capacity with its interval in one cell (columns of :data:`PAPER2_COLUMNS`)."""
    out = pd.DataFrame({"static": df["static"], "dynamic": df["dynamic"],
                        "static_throughput_rps": df["static_throughput_rps"],
                        "dynamic_throughput_rps": df["dynamic_throughput_rps"]})
    out["throughput_gain"] = [_interval(r, None, None, gain=True) for r in df["throughput_ratio"]]
    out["static_tbt_p99_ms"] = 1000.0 * df["static_tbt_p99_s"]
    out["dynamic_tbt_p99_ms"] = 1000.0 * df["dynamic_tbt_p99_s"]
    for side in ("static", "dynamic"):
        out[f"{side}_capacity"] = [_interval(m, lo, hi) for m, lo, hi in zip(
            df[f"{side}_capacity_rps"], df[f"{side}_capacity_low"], df[f"{side}_capacity_high"])]
    out["capacity_gain"] = [_interval(m, lo, hi, gain=True) for m, lo, hi in zip(
        df["capacity_ratio"], df["capacity_ratio_low"], df["capacity_ratio_high"])]
    return out[[c for c, _, _ in PAPER2_COLUMNS]]


def paper2_capacities(df: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (each static cap, each dynamic mode once): its capacity and interval."""
    rows = []
    for _, r in df.iterrows():
        rows.append({"series": r["static"], "capacity_rps": r["static_capacity_rps"],
                     "ci_low": r["static_capacity_low"], "ci_high": r["static_capacity_high"]})
        rows.append({"series": r["dynamic"], "capacity_rps": r["dynamic_capacity_rps"],
                     "ci_low": r["dynamic_capacity_low"], "ci_high": r["dynamic_capacity_high"]})
    out = pd.DataFrame(rows, columns=["series", "capacity_rps", "ci_low", "ci_high"])
    return out.drop_duplicates("series", ignore_index=True)


def start(paper: str) -> int:
    """The paper's reproduction job (a finished one is reused: its tables depend on the code only)."""
    return jobs.launch(reproduce_plan(paper))


def tables(params: dict) -> dict[str, pd.DataFrame] | None:
    """A finished reproduction's tables from its job's result (None until it is done)."""
    result = params.get("result") if params.get("status") == "done" else None
    if not result:
        return None
    columns = result.get("columns") or {}
    return {name: pd.DataFrame(rows, columns=columns.get(name)) for name, rows in result["tables"].items()}


def show(paper: str, result: dict[str, pd.DataFrame]) -> None:
    if paper == "paper1":
        thr, lat = result["paper1_throughput"], result["paper1_latency"]
        c = st.columns(2)
        with c[0]:
            chart = charts.formula_vs_simulated(thr, "formula_rps", "simulated_rps", "Eq. 4: throughput vs bins",
                                                "Throughput (req/s)")
            st.altair_chart(chart, width="stretch")
            download_row(thr, chart, "paper1-throughput", "p1t")
            st.dataframe(thr, hide_index=True, width="stretch")
        with c[1]:
            chart = charts.formula_vs_simulated(lat, "formula_s", "simulated_s", "Lemma 5.1: latency vs bins",
                                                "Mean latency (s)")
            st.altair_chart(chart, width="stretch")
            download_row(lat, chart, "paper1-latency", "p1l")
            st.dataframe(lat, hide_index=True, width="stretch")
        return
    df = result["paper2"]
    caps = paper2_capacities(df)
    c = st.columns([2, 3])
    with c[0]:
        chart = charts.capacity_bars(caps)
        st.altair_chart(chart, width="stretch")
        download_row(caps, chart, "paper2-capacity", "p2c")
    with c[1]:
        st.dataframe(paper2_frame(df), hide_index=True, width="stretch", column_config=paper2_columns())
        download_row(df, None, "paper2", "p2")

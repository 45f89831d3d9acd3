"""Reproduce page helpers: a paper's tables as a stored job (kind ``reproduce``, run by the job
runner, :mod:`webapp.jobs`), and their drawing beside the formulas."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from batchlab.store.job_runs import reproduce_plan

from . import jobs
from . import sweep_charts as charts
from .sweeps import download_row

PAPERS = {"paper1": "Paper 1 · multi-bin batching", "paper2": "Paper 2 · dynamic batching under a TBT SLA"}
ABOUT = {
    "paper1": "Guldogan et al., arXiv 2412.04504. One server, B = 128, service times U[1, 20] s, 128,000 requests, "
              "k = 1..5 equal-mass bins: eq. 4 throughput B / E[t_service,k] (the paper's plateaus 6.4, 8.4, 9.4, "
              "9.9, 10.3) and Lemma 5.1 latency E[t_service,k] + (B-1)k/(2λ) with unlimited servers (B = 8, "
              "λ = 10), each simulated beside its formula.",
    "paper2": "Pang et al., arXiv 2503.05248. Static batch caps B = 8, 16, 32, 64 against the SLA-aware dynamic cap "
              "(Algorithms 1 and 2) under the paper's 50 ms TBT deadline (TTFT 10 s): throughput at saturation and "
              "capacity at 95 % SLA attainment. The paper reports +8 to 28 % throughput and capacity 5.4 → 6.6 "
              "req/s (LLaMA3-70B, vLLM continuous batching).",
}


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
    st.dataframe(df, hide_index=True, width="stretch")
    download_row(df, None, "paper2", "p2")

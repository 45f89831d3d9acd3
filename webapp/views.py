"""Draw one stored run or a comparison of stored runs (metric cards, tables, charts)."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from core.config import DYNAMIC_MODES

from . import charts, fmt, services
from .charts import LATENCY_METRICS


# ------------------------------------------------------------------ labels --
def run_labels(views: list[dict]) -> list[str]:
    """Short, unique labels: the mode, plus GPUs/bins/hash only where needed to tell runs apart."""
    base = [v["summary"]["mode"] for v in views]
    if len(set(base)) == len(base):
        return base
    detailed = [f"{v['summary']['mode']} · {v['summary']['gpus']} GPU · {v['summary']['k_bins']} bin" for v in views]
    if len(set(detailed)) == len(detailed):
        return detailed
    return [f"{d} · {v['hash'][:6]}" for d, v in zip(detailed, views)]


def workload_label(view: dict) -> str:
    w = view.get("workload") or {}
    return w.get("label") or view.get("label") or "workload"


def when(ts: Any) -> str:
    if isinstance(ts, datetime):
        return ts.strftime("%Y-%m-%d %H:%M:%S")
    return str(ts or "")


def share_link(params: dict[str, str], page: str = "") -> str:
    """An absolute link when the server's URL is known, else a relative one."""
    query = urlencode(params, safe=":,")
    base = ""
    try:
        url = st.context.url or ""
        base = url.split("?", 1)[0].rstrip("/")
        for suffix in ("/compare", "/calibration", "/history", "/run"):
            base = base.removesuffix(suffix)
    except Exception:  # noqa: BLE001 - outside a browser session there is no URL
        base = ""
    path = f"{base}/{page}" if base else (f"./{page}" if page else "./")
    return f"{path}?{query}"


# ------------------------------------------------------------------- tables --
def metrics_table(views: list[dict], labels: list[str]) -> pd.DataFrame:
    """Rows: metric (with unit in the value); columns: runs. Disabled deadlines read 'off'."""
    data = {"Metric": [label for label, _, _ in fmt.METRIC_ROWS]}
    for lab, v in zip(labels, views):
        s = v["summary"]
        data[lab] = [f(s.get(key)) if key in s else fmt.DASH for _, key, f in fmt.METRIC_ROWS]
    return pd.DataFrame(data)


def bins_table(summary: dict) -> pd.DataFrame:
    rows = []
    for b in summary.get("bins", []):
        rows.append({
            "Bin": b["bin"],
            "Predicted output (tokens)": f"{b['pred_lo']:,.0f} – {b['pred_hi']:,.0f}",
            "Requests": f"{b['requests']:,}",
            "Batches": f"{b['batches']:,}",
            "Mean batch (req)": fmt.number(b.get("mean_batch_size")),
            "Mean output (tokens)": fmt.number(b.get("mean_output"), digits=0),
            "Latency mean": fmt.seconds(b.get("latency_mean_s")),
            "Latency p99": fmt.seconds(b.get("latency_p99_s")),
            "TBT mean": fmt.seconds(b.get("tbt_mean_s")),
            "SLA attainment": fmt.pct(b.get("sla_attainment"), off=fmt.DASH),
        })
    return pd.DataFrame(rows)


def _chart(chart) -> None:
    st.altair_chart(chart, width="stretch")


# -------------------------------------------------------------------- parts --
def _latency_cdf(cdf: pd.DataFrame, key: str) -> None:
    metric = st.segmented_control("Latency metric", list(LATENCY_METRICS), default="e2e", key=key,
                                  format_func=LATENCY_METRICS.get, label_visibility="collapsed") or "e2e"
    _chart(charts.latency_cdf(cdf, metric))


def _controller(view: dict, label: str, key: str) -> None:
    s, timeline = view["summary"], view["series"]["batch_timeline"]
    if s["mode"] not in DYNAMIC_MODES:
        cfg = view.get("config") or {}
        st.caption(f"**{label}**: fixed batch size B = {cfg.get('batch_size', '?')} requests — "
                   "no b_mem / b_SLA controller in this mode.")
        return
    bins = sorted(int(b) for b in timeline["bin"].unique())
    chart_area = st.container()
    choice = "all"
    if len(bins) > 1:
        choice = st.selectbox(f"Bin ({label})", ["all", *bins], key=key,
                              format_func=lambda b: "all bins (mean per time window)" if b == "all" else f"bin {b}")
    with chart_area:
        _chart(charts.controller_trace(timeline, None if choice == "all" else int(choice),
                                       title=f"Controller trace: {label}"))


def _per_run(views: list[dict], labels: list[str], draw, per_row: int = 3) -> None:
    for i in range(0, len(views), per_row):
        cols = st.columns(per_row)
        for col, v, lab in zip(cols, views[i:i + per_row], labels[i:i + per_row]):
            with col:
                draw(v, lab)


# ---------------------------------------------------------------- run view --
def show_run(view: dict, note: str | None = None, share: dict[str, str] | None = None) -> None:
    """One stored run: what it is, headline metrics, charts, per-bin table, settings."""
    s = view["summary"]
    label = run_labels([view])[0]
    st.subheader(f"{label} · {s['gpus']} GPU{'s' if s['gpus'] != 1 else ''} · {s['k_bins']} "
                 f"bin{'s' if s['k_bins'] != 1 else ''}")
    st.caption(f"Workload: {workload_label(view)} · run `{view['hash'][:12]}` · stored {when(view['created_at'])}")
    if note:
        st.success(note, icon=":material/check_circle:")
    if share:
        st.caption(f"Shareable link: `{share_link(share)}`")
    _caveats([view], [label])
    cards = [("Throughput", fmt.number(s["throughput_rps"], "req/s", 3)),
             ("Output throughput", fmt.number(s["throughput_tps"], "tok/s", 0)),
             ("SLA attainment", fmt.pct(s["sla_attainment"])),
             ("Latency p99", fmt.seconds(s["latency_p99_s"])),
             ("TTFT p99", fmt.seconds(s["ttft_p99_s"])),
             ("GPU utilisation", fmt.pct(s["gpu_utilization"]))]
    for col, (name, value) in zip(st.columns(len(cards)), cards):
        col.metric(name, value, border=True)
    series = view["series"]
    stacked = {name: charts.stack({label: df}) for name, df in series.items()}
    c1, c2 = st.columns(2, gap="large")
    with c1:
        _latency_cdf(stacked["latency_cdf"], key="run_cdf_metric")
    with c2:
        _chart(charts.violation_rates({label: s}))
    c1, c2 = st.columns(2, gap="large")
    with c1:
        _chart(charts.batch_size_over_time(series["batch_timeline"], "Batch size over time, per bin"))
    with c2:
        _controller(view, label, key="run_ctl_bin")
    c1, c2 = st.columns(2, gap="large")
    with c1:
        _chart(charts.gpu_utilization(stacked["gpu_utilization"]))
    with c2:
        _chart(charts.batch_size_histogram(stacked["batch_sizes"]))
    if len(s.get("bins", [])) > 1:
        st.markdown("##### Per bin")
        st.table(bins_table(s).set_index("Bin"))
    _details([view], [label])


def _caveats(views: list[dict], labels: list[str]) -> None:
    """Warnings a reader must see with the numbers: grid extrapolation, sampled request data."""
    for lab, v in zip(labels, views):
        notes = v["summary"].get("latency_notes") or {}
        if notes.get("extrapolated_queries"):
            st.warning(f"{lab}: {notes['extrapolated_queries']:,} latency queries were extrapolated beyond the "
                       "calibration grid's measured cells.", icon=":material/warning:")


def _details(views: list[dict], labels: list[str]) -> None:
    panel = st.expander("Settings and identities", key="details_open", on_change="rerun",
                        icon=":material/data_object:")
    if not panel.open:  # drawn only when opened
        return
    with panel:
        for lab, v in zip(labels, views):
            st.markdown(f"**{lab}** — run `{v['hash']}`")
            st.code(json.dumps({"config": v.get("config"), "workload": v.get("workload"),
                                "latency": v.get("latency")}, indent=2, default=str), language="json")


# --------------------------------------------------------- comparison view --
def show_comparison(views: list[dict], share: dict[str, str] | None = None, note: str | None = None) -> None:
    """Several stored runs side by side: metrics table and the comparison charts."""
    labels = run_labels(views)
    workloads = list(dict.fromkeys(workload_label(v) for v in views))
    st.subheader(f"{len(views)} runs compared")
    st.caption("Workload: " + (workloads[0] if len(workloads) == 1 else " | ".join(workloads)))
    if note:
        st.success(note, icon=":material/check_circle:")
    if share:
        st.caption(f"Shareable link: `{share_link(share, 'compare')}`")
    _caveats(views, labels)
    summaries = {lab: v["summary"] for lab, v in zip(labels, views)}
    stacked = {name: charts.stack({lab: v["series"][name] for lab, v in zip(labels, views)})
               for name in ("latency_cdf", "gpu_utilization", "batch_sizes")}
    t1, t2 = st.columns([2, 3], gap="large")
    with t1:
        st.markdown("##### Metrics")
        st.table(metrics_table(views, labels).set_index("Metric"))
    with t2:
        _latency_cdf(stacked["latency_cdf"], key="cmp_cdf_metric")
        _chart(charts.violation_rates(summaries))
    c1, c2 = st.columns(2, gap="large")
    with c1:
        _chart(charts.throughput(summaries, "throughput_rps"))
        _chart(charts.throughput(summaries, "throughput_tps"))
    with c2:
        _chart(charts.gpu_utilization(stacked["gpu_utilization"]))
    st.markdown("##### Batch size over time, per bin")
    _per_run(views, labels, lambda v, lab: _chart(
        charts.batch_size_over_time(v["series"]["batch_timeline"], title=lab)))
    st.markdown("##### Controller traces (b_mem, b_SLA, chosen b)")
    _per_run(views, labels, lambda v, lab: _controller(v, lab, key=f"cmp_ctl_{v['hash'][:12]}"))
    _chart(charts.batch_size_histogram(stacked["batch_sizes"]))
    _details(views, labels)


def load_views(refs: list[str]) -> tuple[list[dict], list[str]]:
    """Stored runs that are done, and messages for those missing or unfinished."""
    views, problems = [], []
    for ref in refs:
        v = services.run_view(ref)
        if v is None:
            problems.append(f"run {ref[:12]} is not in the store (deleted, or another database)")
        elif "summary" not in v:
            problems.append(f"run {ref[:12]} is {v['status']}" + (f": {v['error']}" if v.get("error") else ""))
        else:
            views.append(v)
    return views, problems

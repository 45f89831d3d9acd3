"""Draw one stored run or a comparison of stored runs (metric cards, tables, charts).

Every text that came from a user (a trace's file name inside a workload label, a grid name)
goes through :func:`fmt.md` before it reaches Markdown.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from batchlab.core import metric_catalog as catalog
from batchlab.core.config import DYNAMIC_MODES, ConfigError, SimConfig

from . import charts, fmt, guard, labels, services, state, tables
from .charts import LATENCY_METRICS

CARDS_PER_ROW = 3


# ------------------------------------------------------------------ labels --
def when(ts: Any) -> str:
    if isinstance(ts, datetime):
        return ts.strftime("%Y-%m-%d %H:%M:%S")
    return str(ts or "")


def settings_of_view(view: dict) -> dict:
    """Form settings that recompute a stored run (raises ConfigError if they no longer fit)."""
    return state.settings_from_run(SimConfig.from_dict(view["config"]), view.get("workload"))


def run_share(view: dict) -> dict | None:
    """The shareable query parameters of a stored run (None if its settings no longer fit)."""
    try:
        return state.run_params(view["hash"], settings_of_view(view))
    except (ConfigError, TypeError, KeyError):
        return None


def comparison_share(hashes: list[str], views: list[dict]) -> dict | None:
    """The shareable query parameters of a comparison of stored runs (all of ``hashes``, in order)."""
    try:
        return state.comparison_params(hashes, [settings_of_view(v) for v in views])
    except (ConfigError, TypeError, KeyError):
        return None


def share_link(params: dict, page: str = "") -> str:
    """An absolute link when the server's URL is known, else a relative one."""
    query = urlencode(params, safe=":,", doseq=True)
    base = ""
    try:
        url = st.context.url or ""
        base = url.split("?", 1)[0].rstrip("/")
        for suffix in ("/compare", "/calibration", "/history", "/run", "/sweeps", "/plan", "/reproduce"):
            base = base.removesuffix(suffix)
    except Exception:  # noqa: BLE001 - outside a browser session there is no URL
        base = ""
    path = f"{base}/{page}" if base else (f"./{page}" if page else "./")
    return f"{path}?{query}"


def _chart(chart) -> None:
    st.altair_chart(chart, width="stretch")


# -------------------------------------------------------------------- parts --
def cards(summary: dict) -> None:
    """The headline metrics, three to a row so every value fits its card at >= 900 px."""
    shown = [m for m in catalog.CARDS if m.key in summary]
    for i in range(0, len(shown), CARDS_PER_ROW):
        for col, m in zip(st.columns(CARDS_PER_ROW), shown[i:i + CARDS_PER_ROW]):
            col.metric(m.label, m.format(summary[m.key], summary, style="card"), border=True,
                      help=m.description)


def _latency_cdf(views: list[dict], cdf: pd.DataFrame, key: str) -> None:
    metric = st.segmented_control("Latency metric", list(LATENCY_METRICS), default="e2e", key=key,
                                  format_func=charts.LATENCY_SHORT.get, label_visibility="collapsed") or "e2e"
    part = cdf[cdf["metric"] == metric]
    if len(part) and not (part["seconds"] > 0).any():
        st.markdown(f"**{LATENCY_METRICS[metric]}: CDF**")
        st.info(f"{LATENCY_METRICS[metric]} is 0 s for every request"
                + (": no request waited for a GPU." if metric == "queue_delay" else "."),
                icon=":material/info:")
        return
    _chart(charts.latency_cdf(cdf, metric, deadlines=labels.deadlines(views, metric)))
    zero = part[part["seconds"] <= 0].groupby("run")["quantile"].max()
    if len(zero) and (zero > 0).any():
        st.caption("Not drawn on the log scale: requests at 0 s ("
                   + ", ".join(f"{fmt.md(r)} {100 * q:.0f} %" for r, q in zero.items() if q > 0) + ").")


def _violations(summaries: dict[str, dict]) -> None:
    df = charts.violation_frame({lab: s for lab, s in summaries.items() if not catalog.no_deadline(s)})
    if df.empty or (df["rate_pct"] == 0).all():
        st.markdown("**SLA violations by kind**")
        if df.empty:
            st.info("No SLA deadline is set, so no request can violate one.", icon=":material/info:")
        else:
            st.success("No request missed an SLA deadline: 0 % violations of every kind.",
                       icon=":material/check_circle:")
        return
    _chart(charts.violation_rates(summaries))


def _controller(view: dict, label: str, key: str) -> None:
    s, timeline = view["summary"], view["series"]["batch_timeline"]
    if s["mode"] not in DYNAMIC_MODES:
        cfg = view.get("config") or {}
        st.caption(f"**{fmt.md(label)}**: batch size cap B = {cfg.get('batch_size', '?')} requests — "
                   "no b_mem / b_SLA controller in this mode.")
        return
    bins = sorted(int(b) for b in timeline["bin"].unique())
    chart_area = st.container()
    choice = "all"
    if len(bins) > 1:
        choice = st.selectbox(f"Bin ({fmt.md(label)})", ["all", *bins], key=key,
                              format_func=lambda b: "all bins (mean per time window)" if b == "all" else f"bin {b}")
    with chart_area:
        _chart(charts.controller_trace(timeline, None if choice == "all" else int(choice),
                                       title=f"Controller trace: {label}"))


PREFIX_KEYS = ("prefix_hit_rate", "prefill_tokens_saved")
PREFIX_NOTE = ("Cached, free: prefix blocks kept after the requests that used them ended; a later request "
               "with the same prefix reuses them instead of prefilling again, until they are evicted (least "
               "recently used first) to make room.")


def has_prefix_cache(view: dict) -> bool:
    """True for a continuous run that looked its prompts up in the prefix cache and whose occupancy
    series has the cached share (runs stored before prefix caching have none)."""
    s, occ = view["summary"], (view.get("series") or {}).get("occupancy")
    return (s.get("engine") == "continuous" and s.get("prefix_hit_rate") is not None and occ is not None
            and "kv_cached" in occ.columns)


def _prefix_cards(summary: dict) -> None:
    """The prefix cache's headline figures, as the run page's cards."""
    for col, key in zip(st.columns(len(PREFIX_KEYS)), PREFIX_KEYS):
        m = catalog.BY_KEY[key]
        col.metric(m.label, m.format(summary.get(key), summary, style="card"), border=True, help=m.description)


def _prefix_section(views: list[dict], run_labels: list[str], cards_too: bool) -> None:
    """The prefix-cache chart of the runs that have one (nothing when none has), with the hit rate and
    tokens saved as cards beside it (``cards_too``: one run) or, for several, a note of the runs left out."""
    shown = [(v, lab) for v, lab in zip(views, run_labels) if has_prefix_cache(v)]
    if not shown:
        return
    occ = charts.stack({lab: v["series"]["occupancy"] for v, lab in shown})
    if cards_too:
        c1, c2 = st.columns(2, gap="large")
        with c1:
            _chart(charts.prefix_cache(occ))
        with c2:
            st.markdown("**Prefix cache**")
            _prefix_cards(shown[0][0]["summary"])
            st.caption(PREFIX_NOTE)
        return
    _chart(charts.prefix_cache(occ))
    left_out = [lab for v, lab in zip(views, run_labels) if not has_prefix_cache(v)]
    st.caption(PREFIX_NOTE + " The metrics table gives each run's hit rate and prefill tokens saved."
               + (f" Not drawn (no prefix cache looked up: a batch mode, caching off or no shared prefixes): "
                  f"{fmt.md(', '.join(left_out))}." if left_out else ""))


def _per_run(views: list[dict], run_labels: list[str], draw, per_row: int = 3) -> None:
    for i in range(0, len(views), per_row):
        cols = st.columns(per_row)
        for col, v, lab in zip(cols, views[i:i + per_row], run_labels[i:i + per_row]):
            with col:
                draw(v, lab)


def _caveats(views: list[dict], run_labels: list[str]) -> None:
    """Warnings a reader must see with the numbers: grid extrapolation."""
    for lab, v in zip(run_labels, views):
        notes = v["summary"].get("latency_notes") or {}
        if notes.get("extrapolated_queries"):
            st.warning(f"{fmt.md(lab)}: {notes['extrapolated_queries']:,} latency queries were extrapolated "
                       "beyond the calibration grid's measured cells.", icon=":material/warning:")


def _details(views: list[dict], run_labels: list[str]) -> None:
    panel = st.expander("Settings and identities", key="details_open", on_change="rerun",
                        icon=":material/data_object:")
    if not panel.open:  # drawn only when opened
        return
    with panel:
        for lab, v in zip(run_labels, views):
            st.markdown(f"**{fmt.md(lab)}** — run `{v['hash']}`")
            st.code(json.dumps({"config": v.get("config"), "workload": v.get("workload"),
                                "latency": v.get("latency")}, indent=2, default=str), language="json")


def _share(params: dict | None, page: str) -> None:
    if not params:
        return
    traces = params.get("trace") or []
    traces = [traces] if isinstance(traces, str) else traces
    uploaded = [t for t in dict.fromkeys(traces) if not guard.bundled_trace(t)]
    what = ("it recomputes the results on any batchlab store" if not uploaded else
            "elsewhere, recomputing needs the uploaded trace " + ", ".join(uploaded))
    st.caption(f"Shareable link ({fmt.md(what)}): `{share_link(params, page)}`")


# ---------------------------------------------------------------- replicas --
def cluster_words(s: dict) -> str:
    """``8 GPUs``, ``8 GPUs = 4 replicas × TP 2 · router least_outstanding``, ``4 GPUs · one shared queue``:
    the cluster a run had (runs stored before replicas existed: the GPUs only)."""
    text = f"{s['gpus']} GPU{'s' if s['gpus'] != 1 else ''}"
    replicas, tp = s.get("replicas"), s.get("tp") or 1
    if replicas is None:
        return text
    if tp > 1:
        text += f" = {replicas} replica{'s' if replicas != 1 else ''} × TP {tp}"
    if replicas > 1 and s.get("router"):
        text += " · one shared queue" if s["router"] == "shared_queue" else f" · router {s['router']}"
    return text


REPLICA_NOTE = ("Each replica's figures are time-weighted means per time window, 0 while it is idle; a "
                "request waits at the replica its router sent it to, so one replica can queue while another idles.")
SHARED_NOTE = " With one shared queue every replica sees the same queue: its row shows that queue while it ran."


def _replicas(view: dict) -> None:
    """A run of several replicas: its load imbalance, each replica's busy time and, for a continuous run,
    each replica's queue, running requests and KV use over time (runs stored before these series: the
    figure only)."""
    s = view["summary"]
    if (s.get("replicas") or 1) <= 1:
        return
    st.markdown("##### Replicas")
    series = (view.get("series") or {}).get("replicas")
    m = catalog.BY_KEY["load_imbalance"]
    c1, c2 = st.columns([1, 2], gap="large")
    with c1:
        st.metric(m.label, m.format(s.get("load_imbalance"), s, style="card"), border=True, help=m.description)
        st.caption(f"{fmt.md(cluster_words(s))}. " + m.description)
    if series is None or series.empty:
        c2.caption("No per-replica series: a batch-level run (one shared queue), or a run stored before they "
                   "were kept.")
        return
    with c2:
        _chart(charts.replica_busy(series))
    c1, c2 = st.columns(2, gap="large")
    with c1:
        _chart(charts.replica_heatmap(series, "waiting"))
    with c2:
        _chart(charts.replica_heatmap(series, "running"))
    c1, c2 = st.columns(2, gap="large")
    with c1:
        _chart(charts.replica_heatmap(series, "kv_utilization"))
    with c2:
        st.caption(REPLICA_NOTE + (SHARED_NOTE if s.get("router") == "shared_queue" else ""))


# ---------------------------------------------------------------- run view --
def show_run(view: dict, note: str | None = None, share: dict | None = None) -> None:
    """One stored run: what it is and the workload it ran, headline metrics, charts, per-bin table."""
    s = view["summary"]
    label = s["mode"]
    st.subheader(f"{label} · {cluster_words(s)} · {s['k_bins']} bin{'s' if s['k_bins'] != 1 else ''}")
    st.markdown(f"**Workload run:** {fmt.md(labels.workload_label(view))}")
    st.caption(f"run `{view['hash'][:12]}` · stored {when(view['created_at'])}")
    if note:
        st.success(note, icon=":material/check_circle:")
    _share(share, "")
    _caveats([view], [label])
    cards(s)
    series = view["series"]
    stacked = {name: charts.stack({label: df}) for name, df in series.items() if name != "replicas"}
    c1, c2 = st.columns(2, gap="large")
    with c1:
        _latency_cdf([view], stacked["latency_cdf"], key="run_cdf_metric")
    with c2:
        _violations({label: s})
    c1, c2 = st.columns(2, gap="large")
    with c1:
        if s.get("engine") == "continuous" and "occupancy" in stacked:
            _chart(charts.occupancy(stacked["occupancy"], "running"))
        else:
            _chart(charts.batch_size_over_time(series["batch_timeline"], "Batch size over time, per bin"))
    with c2:
        _controller(view, label, key="run_ctl_bin")
    c1, c2 = st.columns(2, gap="large")
    with c1:
        _chart(charts.gpu_utilization(stacked["gpu_utilization"]))
    with c2:
        if "occupancy" in stacked:
            _chart(charts.occupancy(stacked["occupancy"], "kv_utilization"))
    _prefix_section([view], [label], cards_too=True)
    _replicas(view)
    _chart(charts.batch_size_histogram(stacked["batch_sizes"]))
    if len(s.get("bins", [])) > 1:
        st.markdown("##### Per bin")
        st.table(tables.bins_table(s).set_index("Bin"))
    _downloads(view)
    _details([view], [label])


def _downloads(view: dict) -> None:
    """Download the run's per-request table (CSV, Parquet) or its result as vllm bench serve writes it."""
    from batchlab.core.extras import missing

    row = st.columns(4)
    row[0].markdown("**Download**")
    stem = f"run-{view['hash'][:12]}"
    for col, (kind, (label, mime, ext)) in zip(row[1:], services.RUN_FILES.items()):
        if kind == "parquet" and missing("parquet"):
            col.caption("Parquet needs batchlab[parquet] (pyarrow)")
            continue
        col.download_button(label, data=lambda kind=kind: services.run_file(view["hash"], kind),
                            file_name=f"{stem}.{ext}" if kind != "vllm-bench" else f"{stem}-vllm-bench.json",
                            mime=mime, key=f"dl_{kind}", on_click="ignore")
    if view.get("sampled"):
        st.caption(f"The store kept a sample of this run's {view['summary']['num_requests']:,} requests: the "
                   "files hold the sample (`batchlab run --format vllm-bench` re-simulates the whole run).")


# --------------------------------------------------------- comparison view --
def show_comparison(views: list[dict], share: dict | None = None, note: str | None = None,
                    of: int | None = None) -> None:
    """Several stored runs side by side: who wins each metric, and the comparison charts.
    ``of``: how many runs the comparison has when only some are shown."""
    run_labels = labels.run_labels(views)
    n = len(views)
    heading = f"{n} run{'s' if n != 1 else ''} compared" if not of or of == n else f"{n} of {of} runs shown"
    st.subheader(heading)
    if n == 1 and (not of or of == 1):
        st.caption("To compare it with others, open **Set up a comparison** and pick modes or stored runs.")
    workloads = list(dict.fromkeys(labels.workload_label(v) for v in views))
    st.markdown("**Workload run:** " + " | ".join(fmt.md(w) for w in workloads))
    differ = labels.workloads_differ(views)
    if differ:
        st.warning("These runs use different workloads (" + fmt.md("; ".join(differ)) + "): a difference in "
                   "their metrics may come from the traffic, not the scheduler.", icon=":material/warning:")
    if note:
        st.success(note, icon=":material/check_circle:")
    _share(share, "compare")
    _caveats(views, run_labels)
    summaries = {lab: v["summary"] for lab, v in zip(run_labels, views)}
    stacked = {name: charts.stack({lab: v["series"][name] for lab, v in zip(run_labels, views)
                                   if name in v["series"]})
               for name in ("latency_cdf", "gpu_utilization", "batch_sizes", "occupancy")}
    st.markdown("##### Metrics")
    values, best = tables.metrics_table(views, run_labels)
    st.table(tables.styled(values, best))
    if n > 1:
        st.caption("Green: the best value of each metric (higher or lower, as the metric wants).")
    t1, t2 = st.columns(2, gap="large")
    with t1:
        _latency_cdf(views, stacked["latency_cdf"], key="cmp_cdf_metric")
    with t2:
        _violations(summaries)
    c1, c2 = st.columns(2, gap="large")
    with c1:
        _chart(charts.throughput(summaries, "throughput_rps"))
        _chart(charts.throughput(summaries, "throughput_tps"))
    with c2:
        _chart(charts.gpu_utilization(stacked["gpu_utilization"]))
    if len(stacked["occupancy"]):
        c1, c2 = st.columns(2, gap="large")
        with c1:
            _chart(charts.occupancy(stacked["occupancy"], "running"))
        with c2:
            _chart(charts.occupancy(stacked["occupancy"], "kv_utilization"))
    _prefix_section(views, run_labels, cards_too=False)
    batched = [(v, lab) for v, lab in zip(views, run_labels) if v["summary"].get("engine") != "continuous"]
    if batched:
        st.markdown("##### Batch size over time, per bin")
        _per_run([v for v, _ in batched], [lab for _, lab in batched], lambda v, lab: _chart(
            charts.batch_size_over_time(v["series"]["batch_timeline"], title=lab)))
    st.markdown("##### Controller traces (b_mem, b_SLA, chosen b)")
    # two to a row: a third leaves a 900 px window's chart too narrow for its legend
    _per_run(views, run_labels, lambda v, lab: _controller(v, lab, key=f"cmp_ctl_{v['hash'][:12]}"), per_row=2)
    _chart(charts.batch_size_histogram(stacked["batch_sizes"]))
    _details(views, run_labels)


def load_views(refs: list[str]) -> tuple[list[dict], list[tuple[int, str, dict | None]]]:
    """Stored runs that are done, and ``(position, ref, view or None)`` for each one that is
    missing (None) or not done (failed, running, stale)."""
    done, missing = [], []
    for i, ref in enumerate(refs):
        v = services.run_view(ref)
        if v is not None and "summary" in v:
            done.append(v)
        else:
            missing.append((i, ref, v))
    return done, missing

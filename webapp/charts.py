"""Altair charts from the run series (``latency_cdf``, ``batch_timeline``, ``gpu_utilization``,
``batch_sizes``, ``occupancy``) and summaries. Data shaping is in small pure functions so tests can check it.

Every chart's axes carry units; runs are told apart by the ``run`` column (a short label).
"""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from batchlab.core import metric_catalog
from batchlab.core.config import CONTINUOUS_MODES

from . import fmt, palette

LATENCY_METRICS = {
    "e2e": "End-to-end latency",
    "ttft": "Time to first token",
    "queue_delay": "Queueing delay",
    "tbt": "Time between tokens",
}
LATENCY_SHORT = {"e2e": "End-to-end", "ttft": "TTFT", "queue_delay": "Queueing", "tbt": "TBT"}  # the picker
VIOLATION_KINDS = {"sla_violation_rate_ttft": "TTFT", "sla_violation_rate_tbt": "TBT",
                   "sla_violation_rate_e2e": "E2E", "any": "Any (SLA missed)"}
CONTROLLER_SERIES = {"b_cap": "chosen b = min(b_mem, b_SLA)", "size": "actual batch size",
                     "b_mem": "b_mem (memory cap)", "b_sla": "b_SLA (SLA cap)"}  # drawn in this order
BUCKETS = 120
HEIGHT = palette.PLOT_AND_AXES  # total height without a legend (Streamlit fits title, axes and legend in it)


def _run_color(runs: list[str]) -> alt.Color:
    """Runs by colour, each in its mode's colour (:mod:`webapp.palette`; a run's label starts with its
    mode). The legend sits under the plot and is left out for a single run, whose name is the heading."""
    return palette.series_color("run", runs, show_legend=len(runs) > 1)


def _run_dash(runs: list[str]) -> dict:
    """A ``strokeDash`` encoding when two runs share a mode (so their lines differ by more than shade)."""
    if not palette.repeats(runs):
        return {}
    return {"strokeDash": palette.series_dash("run", runs, show_legend=len(runs) > 1)}


def _modes(runs: list[str]) -> set[str | None]:
    return {palette.key_of(r) for r in runs}


# ------------------------------------------------------------------ shaping --
def stack(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Concatenate per-run frames with a ``run`` column (label -> frame)."""
    parts = [df.assign(run=label) for label, df in frames.items() if df is not None and len(df)]
    if not parts:
        return pd.DataFrame({"run": pd.Series(dtype=str)})
    return pd.concat(parts, ignore_index=True)


def time_buckets(timeline: pd.DataFrame, columns: list[str], by: list[str], buckets: int = BUCKETS) -> pd.DataFrame:
    """Mean of ``columns`` per (``by``, time window): ``buckets`` equal windows over the run."""
    if timeline.empty:
        return pd.DataFrame(columns=[*by, "time_s", *columns])
    t = timeline["time_s"].to_numpy(dtype=float)
    lo, hi = float(t.min()), float(t.max())
    width = (hi - lo) / buckets if hi > lo else 1.0
    idx = np.minimum(((t - lo) / width).astype(np.int64), buckets - 1)
    df = timeline[[*by, *columns]].assign(_b=idx)
    out = df.groupby([*by, "_b"], as_index=False)[columns].mean()
    out["time_s"] = lo + (out["_b"].to_numpy() + 0.5) * width
    return out.drop(columns="_b")


def violation_frame(summaries: dict[str, dict]) -> pd.DataFrame:
    """Long table run, kind, rate (percent); disabled deadlines are left out."""
    rows = []
    for run, s in summaries.items():
        for key, kind in VIOLATION_KINDS.items():
            att = s.get("sla_attainment")
            v = (None if att is None else 1.0 - att) if key == "any" else s.get(key)
            if v is not None:
                rows.append({"run": run, "kind": kind, "rate_pct": 100.0 * float(v)})
    return pd.DataFrame(rows, columns=["run", "kind", "rate_pct"])


def throughput_frame(summaries: dict[str, dict]) -> pd.DataFrame:
    return pd.DataFrame([{"run": run, "throughput_rps": s["throughput_rps"], "throughput_tps": s["throughput_tps"]}
                         for run, s in summaries.items()],
                        columns=["run", "throughput_rps", "throughput_tps"])


# ------------------------------------------------------------------- charts --
DEADLINE_COLOR = "#dc2626"


def deadline_frame(deadlines: list[float]) -> pd.DataFrame:
    """One row per SLA deadline to draw: seconds and its label (``deadline 50 ms``)."""
    return pd.DataFrame({"seconds": [float(d) for d in deadlines],
                         "label": [f"deadline {fmt.short_seconds(d)}" for d in deadlines]})


def latency_cdf(cdf: pd.DataFrame, metric: str = "e2e", log_x: bool = True,
                deadlines: list[float] = ()) -> alt.LayerChart | alt.Chart:
    """CDF of one latency metric per run (``cdf`` is stacked ``latency_cdf`` series), with the
    SLA ``deadlines`` on that metric drawn as dashed vertical rules."""
    runs = list(dict.fromkeys(cdf["run"]))
    df = cdf.loc[cdf["metric"] == metric, ["run", "quantile", "seconds"]].assign(
        percent=lambda d: 100.0 * d["quantile"])
    if log_x:
        df = df[df["seconds"] > 0]
    title = f"{LATENCY_METRICS.get(metric, metric)} (s{', log scale' if log_x else ''})"
    x = alt.X("seconds:Q", title=title, scale=alt.Scale(type="log") if log_x else alt.Scale())
    line = alt.Chart(df).mark_line(interpolate="step-after").encode(
        x=x,
        y=alt.Y("percent:Q", title="Requests at or below (%)", scale=alt.Scale(domain=[0, 100])),
        color=_run_color(runs), **_run_dash(runs),
        tooltip=[alt.Tooltip("run:N", title="Run"), alt.Tooltip("seconds:Q", title="Latency (s)", format=".3f"),
                 alt.Tooltip("percent:Q", title="Requests (%)", format=".1f")],
    )
    chart_title = f"{LATENCY_METRICS.get(metric, metric)}: CDF"
    if not len(deadlines):
        return line.properties(title=chart_title, height=palette.height(runs, HEIGHT))
    rules = deadline_frame(list(deadlines))
    rule = alt.Chart(rules).mark_rule(color=DEADLINE_COLOR, strokeDash=[5, 3], strokeWidth=1.5).encode(
        x=alt.X("seconds:Q"), tooltip=[alt.Tooltip("label:N", title="SLA")])
    text = alt.Chart(rules).mark_text(align="left", baseline="top", dx=4, dy=4, color=DEADLINE_COLOR).encode(
        x=alt.X("seconds:Q"), y=alt.value(0), text="label:N")
    return alt.layer(line, rule, text).properties(title=chart_title, height=palette.height(runs, HEIGHT))


def violation_rates(summaries: dict[str, dict]) -> alt.Chart:
    """Grouped bars: SLA violation rate by kind (TTFT, TBT, E2E, any) per run."""
    df = violation_frame(summaries)
    runs = list(summaries)
    return alt.Chart(df, title="SLA violations by kind").mark_bar().encode(
        x=alt.X("kind:N", title="Deadline", sort=list(VIOLATION_KINDS.values()), axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("run:N", sort=runs),
        y=alt.Y("rate_pct:Q", title="Requests violating (%)"),
        color=_run_color(runs),
        tooltip=[alt.Tooltip("run:N", title="Run"), alt.Tooltip("kind:N", title="Deadline"),
                 alt.Tooltip("rate_pct:Q", title="Violating (%)", format=".2f")],
    ).properties(height=palette.height(runs, HEIGHT))


def bars_height(n: int) -> int:
    """Total height of a horizontal bar chart of ``n`` runs: its title and axis take about 110 px
    of it, so even one run's bar stays a bar (at 110 px in total it collapsed to a hairline)."""
    return 110 + 36 * max(n, 1)


VALUE_ROOM = 1.3  # a bar chart's value axis runs to this times its longest bar
# axis number formats of the throughput bars; titles and units come from the metric catalog
THROUGHPUT = {"throughput_rps": ".3f", "throughput_tps": ",.1f"}


def throughput(summaries: dict[str, dict], key: str = "throughput_rps") -> alt.Chart:
    """Horizontal bars of one throughput metric (``throughput_rps`` or ``throughput_tps``) per run."""
    df = throughput_frame(summaries)
    runs = list(summaries)
    f, metric = THROUGHPUT[key], metric_catalog.BY_KEY[key]
    title, axis = metric.label, f"{metric.label} ({metric.unit})"
    top = float(df[key].max()) if len(df) else 0.0
    bars = alt.Chart(df).mark_bar().encode(
        y=alt.Y("run:N", title=None, sort=runs, axis=alt.Axis(labelLimit=0)),
        # room right of the longest bar for its value label (at 900 px it ran off the chart)
        x=alt.X(f"{key}:Q", title=axis, scale=alt.Scale(domain=[0, VALUE_ROOM * top] if top > 0 else [0, 1])),
        color=palette.series_color("run", runs, show_legend=False),
        tooltip=[alt.Tooltip("run:N", title="Run"), alt.Tooltip(f"{key}:Q", title=axis, format=f)])
    text = bars.mark_text(align="left", dx=4).encode(text=alt.Text(f"{key}:Q", format=f), color=alt.value("#31333f"))
    return alt.layer(bars, text).properties(title=title, height=bars_height(len(runs)))


def gpu_utilization(util: pd.DataFrame) -> alt.Chart:
    """Fraction of GPUs busy over time, per run (stacked ``gpu_utilization`` series)."""
    runs = list(dict.fromkeys(util["run"]))
    df = util.assign(percent=100.0 * util["utilization"])
    return alt.Chart(df, title="GPU utilisation over time").mark_line().encode(
        x=alt.X("time_s:Q", title="Time (s)"),
        y=alt.Y("percent:Q", title="GPUs busy (%)", scale=alt.Scale(domain=[0, 100])),
        color=_run_color(runs), **_run_dash(runs),
        tooltip=[alt.Tooltip("run:N", title="Run"), alt.Tooltip("time_s:Q", title="Time (s)", format=",.0f"),
                 alt.Tooltip("percent:Q", title="Busy (%)", format=".1f")],
    ).properties(height=palette.height(runs, HEIGHT))


def occupancy(occ: pd.DataFrame, column: str) -> alt.Chart:
    """KV cache in use (% of capacity) or running requests per GPU over time, per run (stacked
    ``occupancy`` series)."""
    runs = list(dict.fromkeys(occ["run"]))
    if column == "kv_utilization":
        df, title = occ.assign(value=100.0 * occ[column]), "KV cache in use over time"
        axis, fmt_ = "KV in use (%)", ".1f"
    else:
        df, title, axis, fmt_ = occ.assign(value=occ[column]), "Running requests per GPU over time", "Requests", ".1f"
    return alt.Chart(df, title=title).mark_line().encode(
        x=alt.X("time_s:Q", title="Time (s)"),
        y=alt.Y("value:Q", title=axis),
        color=_run_color(runs), **_run_dash(runs),
        tooltip=[alt.Tooltip("run:N", title="Run"), alt.Tooltip("time_s:Q", title="Time (s)", format=",.0f"),
                 alt.Tooltip("value:Q", title=axis, format=fmt_)],
    ).properties(height=palette.height(runs, HEIGHT))


PREFIX_SERIES = {"kv_utilization": "In use by running requests", "kv_cached": "Cached, free (reusable prefixes)"}
PREFIX_TITLE = "Prefix cache over time"


def prefix_cache_frame(occ: pd.DataFrame) -> pd.DataFrame:
    """Long table run, time_s, series, percent: KV in use and cached-but-free (% of capacity) per time
    window of each run whose ``occupancy`` series has ``kv_cached`` (continuous runs stored since prefix
    caching; other runs are left out)."""
    columns = ["run", "time_s", "series", "percent"]
    if "kv_cached" not in occ.columns:
        return pd.DataFrame(columns=columns)
    keep = occ.loc[occ["kv_cached"].notna(), ["run", "time_s", *PREFIX_SERIES]]
    long = keep.melt(id_vars=["run", "time_s"], value_vars=list(PREFIX_SERIES), var_name="series",
                     value_name="share")
    long["series"] = long["series"].map(PREFIX_SERIES)
    long["percent"] = 100.0 * long["share"]
    return long[columns]


def prefix_cache(occ: pd.DataFrame) -> alt.Chart:
    """KV in use and cached-but-free over time (% of KV capacity): for one run, stacked areas in its
    mode's colour (the top edge is all the KV the GPUs hold); for several, a line per run and series
    (runs by colour, the cached share dashed)."""
    df = prefix_cache_frame(occ)
    runs = list(dict.fromkeys(df["run"]))
    order = list(PREFIX_SERIES.values())
    tooltip = [alt.Tooltip("run:N", title="Run"), alt.Tooltip("series:N", title="KV"),
               alt.Tooltip("time_s:Q", title="Time (s)", format=",.0f"),
               alt.Tooltip("percent:Q", title="Share of capacity (%)", format=".1f")]
    x = alt.X("time_s:Q", title="Time (s)")
    if len(runs) <= 1:
        base = palette.label_colors(runs)[0] if runs else palette.OTHER[0]
        color = alt.Color("series:N", title=None, sort=order,
                          scale=alt.Scale(domain=order, range=[base, palette.shade(base, 4)]),
                          legend=palette.legend(order))
        return alt.Chart(df, title=PREFIX_TITLE).mark_area(opacity=0.85).encode(
            x=x, y=alt.Y("percent:Q", title="KV capacity (%)", stack="zero"), color=color,
            order=alt.Order("series_order:Q"), tooltip=tooltip,
        ).transform_calculate(series_order=f"indexof({order!r}, datum.series)").properties(
            height=palette.height(order))
    dash = alt.StrokeDash("series:N", title=None, sort=order, legend=palette.legend(order),
                          scale=alt.Scale(domain=order, range=[[1, 0], [6, 3]]))
    return alt.Chart(df, title=PREFIX_TITLE).mark_line().encode(
        x=x, y=alt.Y("percent:Q", title="KV capacity (%)"), color=_run_color(runs), strokeDash=dash,
        detail="series:N", tooltip=tooltip,
    ).properties(height=palette.height(runs, HEIGHT) + palette.LEGEND_ROW)


def batch_size_over_time(timeline: pd.DataFrame, title: str = "Batch size over time") -> alt.Chart:
    """Mean batch size per bin in each time window of one run."""
    df = time_buckets(timeline, ["size"], ["bin"])
    df["bin"] = df["bin"].astype(int)
    return alt.Chart(df, title=title).mark_line().encode(
        x=alt.X("time_s:Q", title="Time (s)"),
        y=alt.Y("size:Q", title="Mean batch size (requests)"),
        color=alt.Color("bin:O", title="Bin", scale=alt.Scale(scheme="viridis")),
        tooltip=[alt.Tooltip("bin:O", title="Bin"), alt.Tooltip("time_s:Q", title="Time (s)", format=",.0f"),
                 alt.Tooltip("size:Q", title="Mean size (req)", format=".1f")],
    ).properties(height=HEIGHT)


def controller_frame(timeline: pd.DataFrame, bin_: int | None = None) -> pd.DataFrame:
    """Long table time_s, series, value: b_mem, b_SLA, chosen b and actual size per time window."""
    df = timeline if bin_ is None else timeline[timeline["bin"] == bin_]
    agg = time_buckets(df, list(CONTROLLER_SERIES), [])
    long = agg.melt(id_vars=["time_s"], value_vars=list(CONTROLLER_SERIES), var_name="series", value_name="value")
    long["series"] = long["series"].map(CONTROLLER_SERIES)
    return long


def controller_trace(timeline: pd.DataFrame, bin_: int | None = None, title: str = "Controller trace") -> alt.Chart:
    """b_mem (Algorithm 1), b_SLA (Algorithm 2), the chosen cap and the actual batch size over time.
    A title ``Controller trace: <run>`` is drawn on two lines, split after the ": " (one line was cut
    to ``Controller trace: multi_bi…`` in a narrow chart)."""
    df = controller_frame(timeline, bin_)
    order = list(CONTROLLER_SERIES.values())
    head, sep, rest = title.partition(": ")
    heading = [head + ":", rest] if sep else title
    return alt.Chart(df, title=heading).mark_line().encode(
        x=alt.X("time_s:Q", title="Time (s)"),
        y=alt.Y("value:Q", title="Batch size (requests)"),
        color=alt.Color("series:N", title=None, sort=order,
                        scale=alt.Scale(domain=order, range=["#2563eb", "#7f7f7f", "#9467bd", "#d62728"]),
                        legend=alt.Legend(orient="bottom", direction="vertical", labelLimit=0)),
        strokeDash=alt.StrokeDash("series:N", sort=order, legend=None,
                                  scale=alt.Scale(domain=order, range=[[1, 0], [2, 2], [6, 3], [6, 3]])),
        strokeWidth=alt.StrokeWidth("series:N", sort=order, legend=None,
                                    scale=alt.Scale(domain=order, range=[3.5, 1.5, 2, 2])),
        tooltip=[alt.Tooltip("series:N", title="Series"), alt.Tooltip("time_s:Q", title="Time (s)", format=",.0f"),
                 alt.Tooltip("value:Q", title="Requests", format=".1f")],
    ).properties(height=HEIGHT + 70)


def size_distribution(sizes: pd.DataFrame, max_groups: int = 16) -> pd.DataFrame:
    """Share of each run's batches per batch-size range (common ranges for all runs)."""
    top = int(sizes["size"].max()) if len(sizes) else 1
    width = max(1, -(-top // max_groups))
    lo = ((sizes["size"] - 1) // width) * width + 1
    df = sizes.assign(lo=lo).groupby(["run", "lo"], as_index=False)["batches"].sum()
    df["share_pct"] = 100.0 * df["batches"] / df.groupby("run")["batches"].transform("sum")
    df["range"] = [f"{a}" if width == 1 else f"{a}–{a + width - 1}" for a in df["lo"]]
    return df


def histogram_words(runs: list[str]) -> tuple[str, str, str]:
    """Title, x-axis and y-axis titles of the batch-size histogram for the engines of ``runs`` (a batch-level
    run has batches; a continuous one has iterations, whose size is the running requests)."""
    modes = _modes(runs)
    continuous = {m in CONTINUOUS_MODES for m in modes if m is not None}
    if continuous == {True}:
        return ("Batch size distribution (running requests per iteration)", "Running requests per iteration",
                "Iterations (% of the run's iterations)")
    if continuous == {False}:
        return "Batch size distribution", "Batch size (requests)", "Batches (% of the run's batches)"
    return ("Batch size distribution (continuous modes: running requests per iteration)",
            "Batch size (requests)", "Batches or iterations (% of the run's)")


def batch_size_histogram(sizes: pd.DataFrame) -> alt.Chart:
    """Share of batches by batch size, per run (stacked ``batch_sizes`` series), as grouped bars."""
    runs = list(dict.fromkeys(sizes["run"]))
    df = size_distribution(sizes)
    order = [r for _, r in sorted(set(zip(df["lo"], df["range"])))]
    title, x_title, y_title = histogram_words(runs)
    return alt.Chart(df, title=title).mark_bar().encode(
        x=alt.X("range:O", title=x_title, sort=order, axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("run:N", sort=runs),
        y=alt.Y("share_pct:Q", title=y_title),
        color=_run_color(runs),
        tooltip=[alt.Tooltip("run:N", title="Run"), alt.Tooltip("range:O", title="Batch size (req)"),
                 alt.Tooltip("batches:Q", title="Batches"),
                 alt.Tooltip("share_pct:Q", title="Share (%)", format=".1f")],
    ).properties(height=palette.height(runs, HEIGHT))


def grid_heatmap(table: pd.DataFrame, column: str, title: str) -> alt.Chart:
    """Measured ``column`` (seconds, shown in ms) over batch size x context length; gaps stay blank."""
    df = table.loc[table[column].notna(), ["batch_size", "context_len", column]].copy()
    df["ms"] = 1000.0 * df[column]
    return alt.Chart(df, title=title).mark_rect().encode(
        x=alt.X("context_len:O", title="Context length (tokens)", sort="ascending"),
        y=alt.Y("batch_size:O", title="Batch size (requests)", sort="descending"),
        color=alt.Color("ms:Q", title="ms", scale=alt.Scale(type="log", scheme="viridis")),
        tooltip=[alt.Tooltip("batch_size:O", title="Batch size"),
                 alt.Tooltip("context_len:O", title="Context (tokens)"),
                 alt.Tooltip("ms:Q", title="Time (ms)", format=".3f")],
    ).properties(height=HEIGHT + 40)


# -------------------------------------------------------------- replicas --
# the per-replica heatmaps: series column -> (title, colour legend title, scale to the shown value, format)
REPLICA_CHARTS = {
    "waiting": ("Requests waiting per replica over time", "Waiting (requests)", 1.0, ".1f"),
    "running": ("Running requests per replica over time", "Running (requests)", 1.0, ".1f"),
    "kv_utilization": ("KV cache in use per replica over time", "KV in use (%)", 100.0, ".1f"),
}
BUSY_TITLE = "Busy time per replica"


def replica_frame(series: pd.DataFrame, column: str) -> pd.DataFrame:
    """One run's ``replicas`` series as heatmap cells: replica, each time window's bounds (t0, t1) and
    ``value`` (``column`` in the unit :data:`REPLICA_CHARTS` shows: KV in percent)."""
    scale = REPLICA_CHARTS[column][2]
    d = series[["replica", "time_s", column]].copy()
    times = np.sort(d["time_s"].unique())
    half = (times[1] - times[0]) / 2 if len(times) > 1 else 0.5
    d["t0"], d["t1"] = d["time_s"] - half, d["time_s"] + half
    d["value"] = scale * d[column]
    return d[["replica", "time_s", "t0", "t1", "value"]]


def replica_heatmap(series: pd.DataFrame, column: str) -> alt.Chart:
    """One row per replica, time across, colour = the replica's ``column`` (waiting, running requests or KV in
    use) in each time window: where a router leaves one replica queueing while others idle."""
    title, legend, _, f = REPLICA_CHARTS[column]
    d = replica_frame(series, column)
    n = int(d["replica"].nunique())
    return alt.Chart(d, title=title).mark_rect().encode(
        x=alt.X("t0:Q", title="Time (s)", scale=alt.Scale(nice=False, zero=False)), x2="t1:Q",
        y=alt.Y("replica:O", title="Replica", sort="ascending",
                axis=alt.Axis(labelOverlap="greedy", labelAngle=0)),
        color=alt.Color("value:Q", title=legend, scale=alt.Scale(scheme="blues"),
                        legend=alt.Legend(orient="bottom", gradientLength=200)),
        tooltip=[alt.Tooltip("replica:O", title="Replica"), alt.Tooltip("time_s:Q", title="Time (s)", format=",.0f"),
                 alt.Tooltip("value:Q", title=legend, format=f)],
    ).properties(height=max(HEIGHT, 60 + 14 * n) + palette.LEGEND_ROW)


def busy_frame(series: pd.DataFrame) -> pd.DataFrame:
    """Each replica's busy share of the run (%), from its ``busy`` series (equal windows: the mean of the
    windows' shares is the share of the horizon), and ``ratio``: its busy time over the mean replica's (the
    largest ratio is the run's load imbalance)."""
    d = series.groupby("replica", as_index=False)["busy"].mean()
    d["busy_pct"] = 100.0 * d["busy"]
    mean = d["busy"].mean()
    d["ratio"] = d["busy"] / mean if mean > 0 else 1.0
    return d[["replica", "busy_pct", "ratio"]]


def replica_busy(series: pd.DataFrame) -> alt.LayerChart:
    """Bars of each replica's busy share of the run, and the mean replica's as a dashed rule."""
    d = busy_frame(series)
    mean = pd.DataFrame({"busy_pct": [float(d["busy_pct"].mean())],
                         "label": [f"mean {float(d['busy_pct'].mean()):.1f} %"]})
    bars = alt.Chart(d).mark_bar(color=palette.OTHER[0]).encode(
        x=alt.X("replica:O", title="Replica", axis=alt.Axis(labelAngle=0, labelOverlap="greedy")),
        y=alt.Y("busy_pct:Q", title="Busy (% of the run)", scale=alt.Scale(domain=[0, 100])),
        tooltip=[alt.Tooltip("replica:O", title="Replica"), alt.Tooltip("busy_pct:Q", title="Busy (%)", format=".1f"),
                 alt.Tooltip("ratio:Q", title="Over the mean replica's", format=".3f")])
    rule = alt.Chart(mean).mark_rule(strokeDash=[6, 4], color=DEADLINE_COLOR).encode(y="busy_pct:Q")
    text = alt.Chart(mean).mark_text(align="left", dx=4, dy=-6, color=DEADLINE_COLOR).encode(
        y="busy_pct:Q", x=alt.value(0), text="label:N")
    return alt.layer(bars, rule, text).properties(title=BUSY_TITLE, height=HEIGHT)

"""Altair charts of sweeps, capacity searches, the stress suite and the paper reproductions.

Pure functions (no Streamlit): the web pages draw them, the CLI saves them
(:func:`save_suite`). :func:`export` renders a chart to SVG or PNG on this
machine with vl-convert (nothing is fetched from elsewhere).
"""
from __future__ import annotations

import json
from pathlib import Path

import altair as alt
import pandas as pd

from . import palette

HEIGHT = palette.PLOT_AND_AXES  # a chart without a legend; :func:`height` adds the legend's rows


def height(labels: list, titled: bool = False) -> int:
    """Total height of a chart with a legend of ``labels``: the plot keeps >= 260 px however long the legend."""
    return palette.height([str(x) for x in labels], titled=titled)


def _color(field: str, title: str | None, order: list) -> alt.Color:
    """Colour by a series label: each in its scheduler mode's colour (:mod:`webapp.palette`)."""
    return palette.series_color(field, order, title)


def _dash(field: str, title: str | None, order: list) -> dict:
    """Dashes for lines whose series share a mode (they share its hue too)."""
    return {"strokeDash": palette.series_dash(field, order, title)} if palette.repeats(order) else {}


def over_seeds(df: pd.DataFrame, by: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean of each of ``metrics`` per ``by`` group over the seeds (replications), with the spread:
    ``<metric>_min``, ``<metric>_max`` and ``seeds`` (how many values each mean has)."""
    g = df.groupby(by, as_index=False, sort=False)
    out = g[metrics].mean()
    for m in metrics:
        out[f"{m}_min"] = g[m].min()[m].to_numpy()
        out[f"{m}_max"] = g[m].max()[m].to_numpy()
    out["seeds"] = g[metrics[0]].count()[metrics[0]].to_numpy()
    return out


def series_label(df: pd.DataFrame, names: list[str]) -> pd.Series:
    """One text label per row from the columns ``names`` (``mode · gpus=4``)."""
    if not names:
        return pd.Series(["all"] * len(df), index=df.index, dtype=str)
    parts = [df[n].astype(str) if n == "mode" else (n + "=" + df[n].astype(str)) for n in names]
    out = parts[0]
    for p in parts[1:]:
        out = out + " · " + p
    return out.astype(str)


VALUE_ROOM = 1.3  # a bar chart's value axis runs to this times its longest bar (room for the value label)


# ---------------------------------------------------------- rate curves --
def metric_vs_rate(df: pd.DataFrame, metric: str = "attainment", series: str = "series",
                   target: float | None = None, capacities: pd.DataFrame | None = None) -> alt.LayerChart:
    """``metric`` against the arrival rate, one line per ``series``; the SLA target as a dashed rule,
    each capacity (``capacities``: series, capacity_rps) as a vertical rule of its series' colour, and
    where ``df`` has ``<metric>_min`` / ``_max`` (:func:`over_seeds`) the spread across seeds as a band."""
    pct = metric in ("attainment", "sla_attainment")
    d = df.dropna(subset=[metric]).copy()
    scale = 100.0 if pct else 1.0
    d["value"] = scale * d[metric]
    spread = f"{metric}_min" in d and f"{metric}_max" in d and (d.get("seeds", pd.Series([1])) > 1).any()
    if spread:
        d["low"], d["high"] = scale * d[f"{metric}_min"], scale * d[f"{metric}_max"]
    order = list(dict.fromkeys(d[series]))
    if pct:
        title, y_title = "SLA attainment vs arrival rate", "Requests meeting the SLA (%)"
    else:
        title, y_title = "p99 end-to-end latency vs arrival rate", "p99 latency (s, log scale)"
        d = d[d["value"] > 0]
        if spread:
            d = d[d["low"] > 0]
    y = alt.Y("value:Q", title=y_title, scale=alt.Scale(type="log") if not pct else alt.Scale(zero=False))
    tips = [alt.Tooltip(f"{series}:N", title="Series"), alt.Tooltip("rate:Q", title="Rate (req/s)", format=".4g"),
            alt.Tooltip("value:Q", title=y_title + (", mean over seeds" if spread else ""), format=".4g")]
    if spread:
        tips += [alt.Tooltip("low:Q", title="Lowest seed", format=".4g"),
                 alt.Tooltip("high:Q", title="Highest seed", format=".4g"), alt.Tooltip("seeds:Q", title="Seeds")]
    base = alt.Chart(d).encode(x=alt.X("rate:Q", title="Arrival rate (req/s)"), y=y,
                               color=_color(series, None, order), tooltip=tips)
    layers = []
    if spread:  # the spread across seeds: a band from the lowest to the highest seed at each rate
        layers.append(base.mark_area(opacity=0.18).encode(y="low:Q", y2="high:Q"))
    layers.append(base.mark_line(point=True).encode(**_dash(series, None, order)))
    if pct and target is not None:
        rule = pd.DataFrame({"target": [100.0 * target], "label": [f"target {100 * target:g} %"]})
        layers.append(alt.Chart(rule).mark_rule(strokeDash=[6, 4], color="#d62728").encode(y="target:Q"))
        layers.append(alt.Chart(rule).mark_text(align="left", dx=4, dy=-6, color="#d62728")
                      .encode(y="target:Q", x=alt.value(0), text="label:N"))
    if capacities is not None and len(capacities):
        caps = capacities.dropna(subset=["capacity_rps"])
        layers.append(alt.Chart(caps).mark_rule(strokeDash=[2, 2], size=2).encode(
            x="capacity_rps:Q", color=_color(series, None, order),
            tooltip=[alt.Tooltip(f"{series}:N", title="Series"),
                     alt.Tooltip("capacity_rps:Q", title="Capacity (req/s)", format=".4g")]))
    return alt.layer(*layers).properties(title=title, height=height(order))


def capacity_bars(caps: pd.DataFrame, series: str = "series", reach: float = 0.0) -> alt.LayerChart:
    """Capacity per configuration with its confidence interval (when there are replications); the
    axis runs past the longest bar (its value label fits) and to ``reach`` (a rule drawn over it)."""
    d = caps.copy()
    order = list(dict.fromkeys(d[series]))
    top = max([float(v) for v in pd.concat([d["capacity_rps"], d.get("ci_high", d["capacity_rps"])])
               if pd.notna(v)] or [0.0])
    end = max(VALUE_ROOM * top, 1.05 * reach)
    x_scale = alt.Scale(domain=[0, end]) if end > 0 else alt.Scale()
    bars = alt.Chart(d).mark_bar().encode(
        y=alt.Y(f"{series}:N", title=None, sort=order, axis=alt.Axis(labelLimit=0)),
        x=alt.X("capacity_rps:Q", title="Capacity (req/s)", scale=x_scale),
        color=palette.series_color(series, order, show_legend=False),
        tooltip=[alt.Tooltip(f"{series}:N", title="Series"),
                 alt.Tooltip("capacity_rps:Q", title="Capacity (req/s)", format=".4g"),
                 alt.Tooltip("ci_low:Q", title="CI low", format=".4g"),
                 alt.Tooltip("ci_high:Q", title="CI high", format=".4g")])
    layers = [bars, bars.mark_text(align="left", dx=4).encode(text=alt.Text("capacity_rps:Q", format=".3g"),
                                                               color=alt.value("#31333f"))]
    ci = d.dropna(subset=["ci_low", "ci_high"])
    if len(ci):
        layers.append(alt.Chart(ci).mark_errorbar(ticks=True).encode(
            y=alt.Y(f"{series}:N", sort=order), x=alt.X("ci_low:Q", title="Capacity (req/s)"),
            x2="ci_high:Q"))
    return alt.layer(*layers).properties(title="Capacity per configuration", height=max(120, 45 * len(d) + 60))


# ------------------------------------------------------------------ suite --
def log_x(values, field: str, title: str, base: int = 10) -> alt.X:
    """A log-scale x axis whose ticks are the measured values, each labelled once (a log axis left to
    itself labels every power of ``base`` and its steps, which collide on a short span); one value
    gets a span around it, a bare point has none to draw."""
    ticks = sorted({float(v) for v in values if pd.notna(v) and float(v) > 0})
    scale = alt.Scale(type="log", base=base)
    if len(ticks) == 1:
        scale = alt.Scale(type="log", base=base, domain=[ticks[0] / base, ticks[0] * base])
    return alt.X(f"{field}:Q", title=title, scale=scale,
                 axis=alt.Axis(values=ticks, format="~s", labelOverlap="greedy", labelAngle=0))


def suite_step1(df: pd.DataFrame, metric: str) -> alt.Chart:
    """Step 1: SLA violations (``sla_violation_rate``) or p99 latency against the request count."""
    d = df.dropna(subset=[metric]).copy()
    d["series"] = d["mode"] + " · " + d["gpus"].astype(str) + " GPU"
    pct = metric == "sla_violation_rate"
    d["value"] = 100.0 * d[metric] if pct else d[metric]
    if not pct:
        d = d[d["value"] > 0]
    order = list(dict.fromkeys(d["series"]))
    title = "SLA violations vs requests" if pct else "p99 latency vs requests"
    y_title = "Requests violating the SLA (%)" if pct else "p99 end-to-end latency (s, log scale)"
    return alt.Chart(d, title=title).mark_line(point=True).encode(
        x=log_x(d["requests"], "requests", "Requests (log scale)"),
        y=alt.Y("value:Q", title=y_title, scale=alt.Scale(type="log") if not pct else alt.Scale()),
        color=_color("series", "Scheduler · GPUs", order), **_dash("series", "Scheduler · GPUs", order),
        tooltip=["series:N", alt.Tooltip("requests:Q", format=","), alt.Tooltip("value:Q", format=".4g")],
    ).properties(height=height(order, titled=True))


def suite_step2(df: pd.DataFrame) -> alt.Chart:
    """Step 2: scaling efficiency and SLA attainment against the GPU count (weak scaling)."""
    d = df.melt(id_vars=["gpus"], value_vars=["efficiency", "sla_attainment"], var_name="metric", value_name="v")
    d["metric"] = d["metric"].map({"efficiency": "scaling efficiency", "sla_attainment": "SLA attainment"})
    d["percent"] = 100.0 * d["v"]
    return alt.Chart(d, title="GPU scaling (rate proportional to GPUs)").mark_line(point=True).encode(
        x=log_x(d["gpus"], "gpus", "GPUs (log scale)"),
        y=alt.Y("percent:Q", title="Percent"),
        color=_color("metric", "Metric", list(dict.fromkeys(d["metric"]))),
        tooltip=["metric:N", "gpus:Q", alt.Tooltip("percent:Q", format=".1f")],
    ).properties(height=height(list(dict.fromkeys(d["metric"])), titled=True))


def suite_step3(df: pd.DataFrame) -> alt.Chart:
    """Step 3: saturation throughput and capacity against the number of bins K."""
    d = df.melt(id_vars=["k_bins"], value_vars=["throughput_rps", "capacity_rps"], var_name="metric",
                value_name="rps").dropna(subset=["rps"])
    d["metric"] = d["metric"].map({"throughput_rps": "saturation throughput", "capacity_rps": "capacity at the SLA"})
    return alt.Chart(d, title="Throughput and capacity vs bins").mark_line(point=True).encode(
        x=log_x(d["k_bins"], "k_bins", "Bins K (log scale)", base=2),
        y=alt.Y("rps:Q", title="Requests per second"),
        color=_color("metric", "Metric", list(dict.fromkeys(d["metric"]))),
        tooltip=["metric:N", "k_bins:Q", alt.Tooltip("rps:Q", format=".4g")],
    ).properties(height=height(list(dict.fromkeys(d["metric"])), titled=True))


def suite_charts(tables: dict[str, pd.DataFrame]) -> dict[str, alt.TopLevelMixin]:
    """The suite's charts by file stem, for the steps present in ``tables``."""
    out = {}
    if "step1" in tables and len(tables["step1"]):
        out["step1_sla_violations"] = suite_step1(tables["step1"], "sla_violation_rate")
        out["step1_p99_latency"] = suite_step1(tables["step1"], "latency_p99_s")
    if "step2" in tables and len(tables["step2"]):
        out["step2_gpu_scaling"] = suite_step2(tables["step2"])
    if "step3" in tables and len(tables["step3"]):
        out["step3_bins"] = suite_step3(tables["step3"])
    return out


# ------------------------------------------------------------- reproduce --
def formula_vs_simulated(df: pd.DataFrame, formula: str, simulated: str, title: str, y_title: str) -> alt.Chart:
    d = df.melt(id_vars=["k"], value_vars=[formula, simulated], var_name="source", value_name="value")
    d["source"] = d["source"].map({formula: "formula", simulated: "simulated"})
    return alt.Chart(d, title=title).mark_line(point=True).encode(
        x=alt.X("k:O", title="Bins k", axis=alt.Axis(labelAngle=0)), y=alt.Y("value:Q", title=y_title),
        color=_color("source", "Source", ["formula", "simulated"]), strokeDash=alt.StrokeDash("source:N", legend=None),
        tooltip=["source:N", "k:O", alt.Tooltip("value:Q", format=".4g")],
    ).properties(height=height(["formula", "simulated"], titled=True))


# ----------------------------------------------------------------- export --
def export(chart: alt.TopLevelMixin, fmt: str) -> bytes:
    """The chart as SVG or PNG bytes, rendered here by vl-convert."""
    import vl_convert as vlc

    spec = chart.properties(width=640).to_json()
    if fmt == "svg":
        return vlc.vegalite_to_svg(spec).encode("utf-8")
    if fmt == "png":
        return vlc.vegalite_to_png(spec, scale=2)
    raise ValueError(f"export: format must be svg or png, got {fmt!r}")


def save_suite(tables: dict[str, pd.DataFrame], folder: Path) -> list[Path]:
    """Write each table (CSV, JSON) and chart (SVG, PNG) into ``folder`` (created if missing, its
    parent must exist), each file whole or not at all (:mod:`core.output`); returns the paths."""
    from batchlab.core.output import failure, write_bytes

    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise failure(exc, folder) from None
    files: dict[Path, bytes] = {}
    for name, df in tables.items():
        files[folder / f"{name}.csv"] = df.to_csv(index=False).encode()
        files[folder / f"{name}.json"] = json.dumps(json.loads(df.to_json(orient="records")), indent=2).encode()
    for stem, chart in suite_charts(tables).items():
        for fmt in ("svg", "png"):
            files[folder / f"{stem}.{fmt}"] = export(chart, fmt)
    for path, data in files.items():
        write_bytes(path, data)
    return list(files)

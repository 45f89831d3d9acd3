"""Plan page helpers: the form, launching a capacity plan in the background, and its answer and evidence.

A plan is stored as a job of kind ``plan`` (``store.sweep_jobs``) and runs in
its own runner process (:mod:`webapp.jobs`), so its link, ``/plan?plan=<key>&spec=...``
(:func:`webapp.sweeps.open_link`), shows it, its progress and its answer from anywhere,
and runs it again on a store without it. An uploaded trace is saved under
``BATCHLAB_HOME/uploads`` (named by its sha256), so the runner can read it; the
session remembers the path, the only file besides the bundled traces that its
settings may name (:mod:`webapp.guard`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from batchlab.core.config import CONTINUOUS_MODES, CONTINUOUS_ROUTER, MODE_HELP, MODES, ROUTERS, SimConfig
from batchlab.core.hardware import gpu_catalogue
from batchlab.core.plan_options import (
    B_MAX_VALUES,
    BATCH_VALUES,
    CANDIDATE_LISTS,
    DEFAULT_MAX_GPUS,
    DEFAULT_MODES,
    K_VALUES,
    PLANNED,
    RULES,
    PlanOptions,
    parse_gpu_costs,
)
from batchlab.core.plan_report import counts_text, gpu_label, gpus_text, rule_text, shown_column
from batchlab.core.sweep import SweepError
from batchlab.core.sweep_report import capacity_frame, probes_frame
from batchlab.store import job_runs
from batchlab.store.sweep_jobs import gpu_plan
from batchlab.workloads import MAX_UPLOAD_BYTES, build_workload
from batchlab.workloads.burstgpt import bundled_traces
from batchlab.workloads.spec import SYNTHETIC_RATE, SYNTHETIC_REQUESTS, TRACE_WORKLOADS

from . import fmt, forms, guard, jobs, palette, services, state, sweeps
from . import sweep_charts as charts

SOURCES = {"synthetic": "Synthetic (BurstGPT-like)", "bundled": "Bundled BurstGPT excerpt",
           "upload": "Upload a BurstGPT CSV", "mooncake": "Upload a Mooncake trace"}
# an upload source: its workload, the uploader's label and file type, and what to ask for
UPLOADS = {"upload": ("burstgpt", "BurstGPT trace CSV", "csv", "a BurstGPT CSV file"),
           "mooncake": ("mooncake", "Mooncake trace (JSON Lines)", "jsonl", "a Mooncake JSONL trace")}
SETTINGS_HELP = ("Any other `batchlab run` setting, one NAME=VALUE per line (gpu_mem_gb=40, "
                 "predictor=oracle, output_lengths=uniform:1:500, interconnect_gbps=450). The plan chooses mode, "
                 "gpus, replicas, k_bins, b_max, batch_size and disaggregate itself, and tries the routers, TPs "
                 "and P:D ratios of the boxes above.")
ROUTERS_HELP = ("How requests reach the replicas of a continuous mode; each router is a candidate. shared_queue is "
                "one queue every replica pulls from, the least loaded with room first: an ideal no deployment "
                "reaches. Batch-level modes "
                "always share one queue.")
TP_HELP = ("Tensor parallelism: GPUs per replica, comma-separated (1,2,4). A candidate of TP t runs floor(g / t) "
           "replicas within g GPUs, so the plan still counts GPUs.")
PD_HELP = ("Prefill:decode ratios the continuous modes try, comma-separated; none = no disaggregation "
           "(none,1:1,1:3). At R replicas, p:d is P = R p / (p + d) prefill replicas (rounded, 1 to R - 1) and R - P "
           "decode replicas. Empty: no disaggregation only.")
MISSING_FLOOR = 0.01  # percent: where a configuration missing nothing is drawn on the log scale
SENTENCE_ICON = {"ok": ":material/check_circle:", "unreachable": ":material/warning:", "failed": ":material/error:"}


# ------------------------------------------------------------------ charts --
# the cluster choices a plan's chart tells apart when the plan tried several: cell column -> label part
SERIES_PARTS = {"router": lambda v: str(v), "tp": lambda v: f"TP {v}",
                "pd_ratio": lambda v: "P:D none" if v is None else f"P:D {v}"}


def series_of(cells: pd.DataFrame) -> tuple[pd.Series, str]:
    """Each cell's line on the GPU chart: its mode, with its router, TP and P:D ratio where the plan tried
    several (``continuous_dynamic · random · TP 2``); and what one line is, for the title."""
    cont = cells[cells["mode"].isin(CONTINUOUS_MODES)]  # a batch-level mode has one shared queue, whatever
    parts = [c for c in SERIES_PARTS if c in cells
             and (cells if c == "tp" else cont)[c].astype(str).nunique() > 1]
    out = cells["mode"].astype(str)
    for c in parts:
        out = out + " · " + cells[c].map(SERIES_PARTS[c])
    what = " · ".join(["mode", *("P:D ratio" if c == "pd_ratio" else c.replace("tp", "TP") for c in parts)])
    return out, what


def _series_encoding(order: list[str], what: str) -> dict:
    """Modes alone: the mode scale; modes with routers, TPs or ratios: each line in its mode's colour, dashed
    where lines share a mode."""
    if what == "mode":
        return {"color": palette.mode_color("mode", order)}
    enc = {"color": palette.series_color("series", order)}
    if palette.repeats(order):
        enc["strokeDash"] = palette.series_dash("series", order)
    return enc


def attainment_vs_gpus(cells: pd.DataFrame, target: float) -> alt.LayerChart:
    """Each mode's best configuration (each mode's and router's, TP's, P:D ratio's where the plan tried several)
    at every GPU count the search ran: the share of requests *missing* the SLA on a log scale (so 0.8 % and
    1.4 % stay apart next to 97 %), and the target's allowance as a dashed rule; below the rule meets the
    target. A share of 0 is drawn at the floor, 0.01 %."""
    series, what = series_of(cells)
    d = cells.assign(series=series)[["series", "mode", "configuration", "gpus", "attainment"]]
    d = d.dropna(subset=["attainment"])
    d = d.sort_values("attainment", ascending=False).drop_duplicates(["series", "gpus"]).sort_values("gpus")
    d["missing"] = (100.0 * (1.0 - d["attainment"])).clip(lower=MISSING_FLOOR)
    d["within"] = 100.0 * d["attainment"]
    order = list(dict.fromkeys(series))
    line = alt.Chart(d).mark_line(point=True).encode(
        x=alt.X("gpus:Q", title="GPUs", axis=alt.Axis(tickMinStep=1, format="d")),
        y=alt.Y("missing:Q", title="Requests missing the SLA (%, log scale)", scale=alt.Scale(type="log")),
        **_series_encoding(order, what),
        tooltip=[alt.Tooltip("series:N", title=what.capitalize()),
                 alt.Tooltip("configuration:N", title="Best configuration"),
                 alt.Tooltip("gpus:Q", title="GPUs"), alt.Tooltip("within:Q", title="Within SLA (%)", format=".2f")])
    allowed = max(100.0 * (1.0 - target), MISSING_FLOOR)
    rule = alt.Chart(pd.DataFrame({"allowed": [allowed], "label": [f"target {100 * target:g} %"]}))
    return alt.layer(line, rule.mark_rule(strokeDash=[6, 4], color="#d62728").encode(y="allowed:Q"),
                     rule.mark_text(align="left", dx=4, dy=-6, color="#d62728").encode(
                         y="allowed:Q", x=alt.value(0), text="label:N")) \
        .properties(title=f"Missing the SLA vs GPUs (each {what}'s best, every count the search ran)",
                    height=charts.height(order, titled=True))


def capacity_at_gpus(caps: pd.DataFrame, rate: float) -> alt.LayerChart:
    """Each mode's capacity at the chosen GPU count (with its interval) and the planned rate as a rule."""
    bars = charts.capacity_bars(caps, reach=rate)
    rule = alt.Chart(pd.DataFrame({"rate": [rate], "label": [f"planned rate {rate:.3g} req/s"]}))
    return alt.layer(bars, rule.mark_rule(strokeDash=[6, 4], color="#d62728").encode(x="rate:Q"),
                     rule.mark_text(align="right", dx=-4, dy=-6, color="#d62728", baseline="bottom")
                     .encode(x="rate:Q", y=alt.value(0), text="label:N"))  # left of the rule: the axis ends there


def cells_frame(answer: dict) -> pd.DataFrame:
    """Every (configuration, GPU count) the plan ran, one row each (the knobs as columns)."""
    df = pd.DataFrame(answer["cells"])
    if df.empty:
        return df
    knobs = pd.DataFrame(list(df.pop("settings")), index=df.index)
    return pd.concat([df[["configuration", "mode"]], knobs, df.drop(columns=["configuration", "mode"])], axis=1)


def ranking_frame(answer: dict) -> pd.DataFrame:
    df = pd.DataFrame(answer["ranking"])
    if df.empty:
        return df
    cols = ["rank", "configuration", "gpus", "replicas", "tp", "router", "disaggregate", "meets", "attainment",
            "ci_low", "ci_high", "latency_p99_s", "throughput_rps", "run_hash", "error"]
    if answer["replications"] == 1:
        cols = [c for c in cols if c not in ("ci_low", "ci_high")]
    return df[[c for c in cols if c in df.columns and shown_column(df[c])]]


# ------------------------------------------------------------------ links --
def run_link_params(rec: dict) -> dict[str, str]:
    """Query parameters of the Run page for the recommended run (its hash and the settings that recompute it)."""
    return state.run_params(rec["run_hash"], {"sim": rec["config"], "spec": rec["spec"]})


# ------------------------------------------------------------------- form --
@dataclass
class Launch:
    """A submitted form: the validated plan and where to run it (a cluster the operator offers, by
    name; None: the local process pool)."""

    plan: dict
    cluster: str | None
    workers: int | None


def save_upload(name: str, data: bytes) -> Path:
    """Keep an uploaded trace where the plan's runner can read it (named by content,
    :func:`store.job_runs.save_upload`); this session may name it in its settings from now on."""
    path = job_runs.save_upload(name, data)
    guard.remember_upload(str(path))
    return path


def _planned_names(text: str) -> list[str]:
    """The settings typed in *Other settings* that the plan chooses, or whose candidates the form has."""
    names = [line.split("#", 1)[0].partition("=")[0].strip().replace("-", "_") for line in text.splitlines()]
    return [n for n in names if n in PLANNED or n in CANDIDATE_LISTS]


def _ratios(text: str) -> tuple[str | None, ...] | None:
    """P:D ratios typed as ``none,1:1,1:3`` (None for an empty box: no disaggregation only)."""
    parts = [x.strip() for x in text.split(",") if x.strip()]
    if not parts:
        return None
    return tuple(None if p.lower() in ("none", "off") else p for p in parts)


def cluster_options(routers: list[str], tps: str, ratios: str) -> dict:
    """The plan's cluster lists from the form (checked by the plan): each left at None, the base config's one
    value, where the form holds the default (least_outstanding, TP 1, no disaggregation), so a plan that tries
    nothing new keeps its identity."""
    if not routers:
        raise SweepError("routers: pick at least one router")
    tp_values = _ints(tps, "TP")
    pd = _ratios(ratios)
    return {"routers": None if list(routers) == [CONTINUOUS_ROUTER] else tuple(routers),
            "tp_values": None if tp_values == (1,) else tp_values,
            "pd_ratios": None if pd == (None,) else pd}


def cost_options(gpu_types: list[str], costs: str) -> dict:
    """PlanOptions' gpu_types and gpu_costs from the form (none when no GPU type is chosen)."""
    if not gpu_types:
        if costs.strip():
            raise SweepError("gpu_costs: they price the GPU types: choose GPU types too")
        return {}
    try:
        return {"gpu_types": tuple(gpu_types), "gpu_costs": parse_gpu_costs(costs) if costs.strip() else None}
    except ValueError as exc:
        raise SweepError(str(exc)) from None


def gpu_types_frame(answer: dict) -> pd.DataFrame:
    """The per-GPU-type table of a plan across GPU types."""
    cols = ["gpu", "status", "gpus", "configuration", "attainment", "price_per_hour", "cost_per_hour",
            "cost_per_million_requests", "cheapest", "price_source", "error"]
    return pd.DataFrame(answer["gpu_types"]).reindex(columns=cols)


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise SweepError(f"{what}: {text!r} is not a comma-separated list of whole numbers") from None
    if not values:
        raise SweepError(f"{what}: give at least one value")
    return values


def source_picker() -> str:
    return st.radio("Workload", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="plan.source",
                    help="Synthetic requests with BurstGPT-like lengths and bursty (gamma) arrivals, a BurstGPT "
                         "excerpt shipped with batchlab, or your own BurstGPT CSV or Mooncake JSONL trace (at its "
                         "own arrivals). Shared system prompts and conversations: Other settings "
                         "(system_prompts=8, conversation_turns=4).")


def plan_form(source: str) -> Launch | None:
    """The plan's settings; a validated :class:`Launch` once submitted."""
    upload = None
    if source in UPLOADS:
        _, what, ext, _ = UPLOADS[source]
        key = "plan.upload" if source == "upload" else f"plan.upload.{source}"
        upload = st.file_uploader(what, type=[ext], key=key, max_upload_size=MAX_UPLOAD_BYTES // 2**20)
        if upload is None:
            st.caption(fmt.upload_limit(MAX_UPLOAD_BYTES))
    with st.form("plan_form"):
        spec_lines: list[str] = []
        c = st.columns(3)
        if source == "synthetic":
            n = c[0].number_input("Requests", 100, 10_000_000, SYNTHETIC_REQUESTS, 1000, key="plan.requests")
            rate = c[1].number_input("Arrival rate (req/s)", 0.001, 1e6, SYNTHETIC_RATE, 1.0, format="%g",
                                     key="plan.rate")
            arrival = c[2].selectbox("Arrivals", ["gamma", "poisson"], key="plan.arrival",
                                     help="gamma: bursty, CV 1.41 as in BurstGPT; poisson: CV 1.")
            spec_lines += [f"num_requests={n}", f"rate={rate!r}", f"arrival={arrival}"]
        else:
            if source == "bundled":
                trace = c[0].selectbox("Trace excerpt", bundled_traces(), key="plan.trace")
                spec_lines += ["workload=burstgpt", f"trace={trace}"]
            scale = c[1].number_input("Time compression (x)", 1e-6, 1e6, 1.0, 0.5, format="%g", key="plan.scale",
                                      help="2 = the trace's arrivals at twice their rate (rps_scaling).")
            rate = c[2].number_input("Or an arrival rate (req/s)", 0.001, 1e6, None, 1.0, format="%g",
                                     key="plan.trace_rate", placeholder="the trace's own",
                                     help="Rescale the trace's timestamps to this mean rate instead.")
            spec_lines += [f"rate={rate!r}"] if rate is not None else [f"rps_scaling={scale!r}"]
        st.markdown("**SLA**")
        c, sla = st.columns(4), SimConfig()
        ttft = c[0].number_input("TTFT deadline (s)", min_value=0.001, value=sla.d_sla_ttft, step=1.0, format="%g",
                                 key="plan.ttft", placeholder="off",
                                 help="Time to first token, queueing included. Empty = off.")
        tbt = c[1].number_input("TBT deadline (s)", min_value=0.0001, value=sla.d_sla_tbt, step=0.01, format="%g",
                                key="plan.tbt", placeholder="off", help="Mean time between tokens. Empty = off.")
        e2e = c[2].number_input("End-to-end deadline (s)", min_value=0.001, value=sla.d_sla_e2e, step=1.0, format="%g",
                                key="plan.e2e", placeholder="off", help="Empty = off.")
        target = c[3].number_input("Target (% within SLA)", 1.0, 100.0, 100 * PlanOptions().target, 0.5,
                                   key="plan.target") / 100
        sim_lines = [f"d_sla_ttft={'none' if ttft is None else repr(ttft)}",
                     f"d_sla_tbt={'none' if tbt is None else repr(tbt)}",
                     f"d_sla_e2e={'none' if e2e is None else repr(e2e)}"]
        st.markdown("**Hardware**")
        picked = forms.hardware_pickers("plan.")
        st.markdown("**Search**")
        # the modes take the whole width: four chips fit a 900 px window
        modes = st.multiselect("Modes", MODES, default=list(DEFAULT_MODES), key="plan.modes",
                               help="\n\n".join(f"**{m}**: {h}" for m, h in MODE_HELP.items()))
        c = st.columns(3)
        max_gpus = c[0].number_input("Max GPUs", 1, 1000, DEFAULT_MAX_GPUS, key="plan.max_gpus")
        reps = c[1].number_input("Seeds", 1, 100, 1, key="plan.reps",
                                 help="Replications: each configuration runs with this many seeds.")
        rule = c[2].selectbox("Meets the target when", RULES, key="plan.rule",
                              format_func={"mean": "mean ≥ target", "lower": "CI low ≥ target"}.get,
                              help="mean: the mean attainment over the seeds; lower: the lower end of its 95 % "
                                   "confidence interval (needs 2 or more seeds).")
        with st.expander("Candidates, other settings, where to run", icon=":material/tune:"):
            c = st.columns(3)
            ks = c[0].text_input("K (multi-bin modes)", ",".join(map(str, K_VALUES)), key="plan.k")
            bmax = c[1].text_input("B_max (dynamic modes)", ",".join(map(str, B_MAX_VALUES)), key="plan.bmax")
            bs = c[2].text_input("B (static modes)", ",".join(map(str, BATCH_VALUES)), key="plan.batch")
            c = st.columns(3)
            routers = c[0].multiselect("Routers (continuous modes)", ROUTERS, default=[CONTINUOUS_ROUTER],
                                       key="plan.routers", help=ROUTERS_HELP)
            tps = c[1].text_input("TP (GPUs per replica)", "1", key="plan.tp", help=TP_HELP)
            ratios = c[2].text_input("P:D ratios (continuous modes)", "", key="plan.pd", placeholder="none",
                                     help=PD_HELP)
            c = st.columns(2)
            gpu_types = c[0].multiselect("GPU types (one plan each; needs a model)", list(gpu_catalogue()),
                                         default=[], key="plan.gpu_types", format_func=gpu_label,
                                         help="Plan once per catalogue GPU and recommend the cheapest meeting the "
                                              "target: GPUs x USD per GPU-hour. Leave Hardware's GPU at none.")
            costs = c[1].text_input("GPU costs (USD per GPU-hour)", "", key="plan.gpu_costs",
                                    placeholder="the catalogue's list prices",
                                    help="Override the default prices, e.g. h100=2.5,l4=0.8 (docs/hardware.md "
                                         "lists the defaults with their sources and dates).")
            other = st.text_area("Other settings", "", key="plan.settings", help=SETTINGS_HELP)
            c = st.columns(4)
            evidence = c[0].checkbox("Capacity evidence", True, key="plan.evidence",
                                     help="Search each mode's capacity at the chosen GPU count.")
            cluster = sweeps.cluster_picker("plan.cluster", c[1])
            workers = c[2].number_input("Workers (0 = one per CPU)", 0, 4096, 0, key="plan.workers")
        go = st.form_submit_button("Plan", icon=":material/calculate:", type="primary")
    if not go:
        return None
    planned = _planned_names(other)
    if planned:
        raise SweepError(f"{planned[0]}: the plan chooses it; set the candidates instead")  # router, tp: above
    if source in UPLOADS:
        workload, _, _, what = UPLOADS[source]
        if upload is None:
            raise SweepError(f"trace: upload {what} first")
        spec_lines += [f"workload={workload}", f"trace={save_upload(upload.name, upload.getvalue())}"]
    cfg, spec = sweeps.web_settings(sim_lines + spec_lines + other.splitlines(), picked)
    if spec.workload in TRACE_WORKLOADS:
        build_workload(spec)  # a trace that cannot be read is named here, not in the background
    options = PlanOptions(target=target, modes=tuple(modes), max_gpus=int(max_gpus), k_values=_ints(ks, "K"),
                          b_max_values=_ints(bmax, "B_max"), batch_values=_ints(bs, "B"), replications=int(reps),
                          rule=rule, evidence=evidence, **cluster_options(routers, tps, ratios),
                          **cost_options(gpu_types, costs))
    return Launch(gpu_plan(cfg, spec, options), cluster, int(workers) or None)


def start(launch: Launch) -> None:
    sweeps.open_sweep(sweeps.launch(launch.plan, launch.cluster, launch.workers))


# ------------------------------------------------------------------ answer --
def show_plan(plan_id: int) -> None:
    store = services.get_store()
    row = store.get_sweep(plan_id)
    if row is None or (row.params.get("plan") or {}).get("kind") != "plan":
        st.warning(f"There is no plan {plan_id} in this store.", icon=":material/warning:")
        return
    st.caption(f"Plan {row.id}: {fmt.md(row.name)} · {sweeps.share_caption(row)} · "
               f"created {row.created_at:%Y-%m-%d %H:%M}")
    live = jobs.state_of(row.params) in jobs.LIVE
    st.fragment(sweeps.progress, run_every=1.5 if live else None)(plan_id)
    params = store.get_sweep(plan_id).params
    answer = (params.get("result") or {}).get("answer")
    if answer is None:
        if not live:
            st.info("This plan has no answer (it did not finish); resume it above.", icon=":material/info:")
        return
    show_answer(answer)
    with st.expander("Plan settings", icon=":material/description:"):
        st.json(params["plan"], expanded=False)


def show_answer(answer: dict) -> None:
    status = answer["status"]
    box = {"ok": st.success, "unreachable": st.warning, "failed": st.error}[status]
    box(f"**{answer['sentence']}**", icon=SENTENCE_ICON[status])
    if answer.get("gpu_types") is not None:
        st.markdown("#### GPU types")
        st.caption(f"USD per hour = GPUs x price per GPU-hour; per million requests at {answer['rate_rps']:.3g} req/s. "
                   + (f"The plan of {gpu_label(answer['cheapest'])} follows." if answer.get("cheapest") else ""))
        st.dataframe(gpu_types_frame(answer), hide_index=True, width="stretch")
    rec = answer.get("recommended")
    if rec is None:
        return
    row = st.container(horizontal=True, vertical_alignment="center")
    if rec.get("run_hash"):
        row.page_link("app_pages/run.py", label="Open the recommended run", icon=":material/open_in_new:",
                      query_params=run_link_params(rec))
    row.download_button("Config (TOML)", rec["toml"].encode(), "plan.toml", "application/toml", key="plan.toml",
                        icon=":material/download:", on_click="ignore")
    c = st.columns(2)
    c[0].code(rec["command"], language="bash", wrap_lines=True)
    c[1].code(rec["toml"], language="toml")
    at = answer["ranked_at"]
    st.markdown(f"#### Evidence at {gpus_text(at)}")
    caps = answer["capacities"]
    if caps:
        from batchlab.core.capacity import CapacityResult

        results = [CapacityResult.from_dict(c) for c in caps]
        cf, pf = capacity_frame(results), probes_frame(results)
        cf["series"], pf["series"] = cf["configuration"], pf["configuration"]
        agg = charts.over_seeds(pf.dropna(subset=["attainment"]), ["series", "rate"], ["attainment", "latency_p99_s"])
        st.caption("Capacity = the highest arrival rate whose attainment stays at or above "
                   f"{100 * answer['target']:g} %"
                   f" with {gpus_text(at)}, for each mode's best configuration (relative tolerance "
                   f"{100 * results[0].tolerance:g} %" + (f", {100 * answer['confidence']:g} % confidence interval "
                   f"over {answer['replications']} seeds)" if answer["replications"] > 1 else ")") + ".")
        cols = st.columns(2)
        with cols[0]:
            sweeps.chart_block(capacity_at_gpus(cf, answer["rate_rps"]), cf.drop(columns=["series"]),
                               "plan-capacity")
        with cols[1]:
            sweeps.chart_block(charts.metric_vs_rate(agg, "attainment", target=answer["target"], capacities=cf),
                               agg, "plan-capacity-probes")
    cells = cells_frame(answer)
    if not cells.empty:
        sweeps.chart_block(attainment_vs_gpus(cells, answer["target"]), cells, "plan-gpus")
    st.markdown(f"#### Every configuration at {gpus_text(at)}")
    st.caption("Ranked: meeting the target first (" + rule_text(answer) + "), then by attainment, then by p99 "
               "end-to-end latency.")
    ranking = ranking_frame(answer)
    st.dataframe(ranking, hide_index=True, width="stretch", column_config=sweeps.metric_columns(ranking))
    sweeps.download_row(ranking, None, "plan-ranking", "plan-ranking")
    for name, err in (answer.get("errors") or {}).items():
        st.caption(f"Left out: {fmt.md(name)}: {fmt.md(fmt.clip(err))}")
    st.caption(counts_text(answer).capitalize() + ".")


def defaults_note() -> str:
    d = SimConfig()
    return (f"Every other setting is the default ({d.gpu_mem_gb:g} GB GPU with {d.weights_gb:g} GB of weights "
            f"unless a model and GPU are picked, the parametric latency model, a noisy output-length predictor); "
            f"*Other settings* change any of them.")

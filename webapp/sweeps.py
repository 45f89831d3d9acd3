"""Sweeps page helpers: forms for plans, launching them in the background, progress, results, links.

A plan launched here is a stored job (:mod:`webapp.jobs`) run by its own runner
process, detached from the page: closing the browser does not stop it, and the store
holds its progress and results. Its link, ``/sweeps?sweep=<key>&spec=<definition>``
(``/plan?plan=...`` for a capacity plan, :mod:`webapp.state`), names it by its content
and carries its plan, so it opens from anywhere: :func:`open_link` finds the job by its
key, or offers to run the plan on a store that lacks it, and never shows a job the link
does not define. Every plan passes the web's policy (:mod:`webapp.guard`) before it is
stored or launched, and runs on the local process pool or a cluster the operator offers
(:mod:`webapp.clusters`).
"""
from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from batchlab.core import metric_catalog
from batchlab.core.capacity import CapacityResult
from batchlab.core.config import MODES, ConfigError, config_fields
from batchlab.core.suite import DISPLAY, STEPS, SuitePlan, step_titles
from batchlab.core.sweep import parse_settings, parse_vary
from batchlab.core.sweep_report import MEMBER_METRICS, capacity_frame, cluster_columns, probes_frame
from batchlab.store.sweep_jobs import capacity_plan, grid_plan, plan_from_link, plan_key, plan_title, suite_plan
from batchlab.workloads.spec import TRACE_WORKLOADS, SpecError

from . import clusters, fmt, forms, guard, jobs, services, state, views
from . import sweep_charts as charts

SWEEP, PLAN = "sweep", "plan"  # the query keys of the Sweeps and Plan pages' links
KINDS = {"grid": "Sweep", "capacity": "Capacity comparison", "suite": "Stress suite", "plan": "Capacity plan"}
_SIM = {f.name for f in config_fields()}
_NEW_KEY = "_job_new_key"  # session state: keys that a rebuilt link's plan got (shown once)
SETTINGS_HELP = ("Base settings, one NAME=VALUE per line: any `batchlab run` setting by its field name "
                 "(gpus=8, d_sla_tbt=none, output_lengths=uniform:1:500, num_requests=20000). "
                 "Everything else keeps its default. A model and GPU picked below apply as model=NAME and "
                 "gpu=NAME lines would.")


# ------------------------------------------------------------------ launch --
def launch(plan: dict, cluster: str | None = None, workers: int | None = None) -> int:
    """Store the plan as a job (the same plan reopens its job) and run it unless it runs or finished
    (:func:`webapp.jobs.launch`). ``cluster``: the name of a cluster the operator offers (None: the
    local process pool)."""
    guard.check_plan(plan, guard.session_uploads())
    return jobs.launch(plan, clusters.address(cluster), workers)


def open_sweep(sweep_id: int) -> None:
    """Show the job ``sweep_id`` under its link (the Plan page's for a capacity plan)."""
    st.query_params.from_dict(share_params(services.get_store().get_sweep(sweep_id)) or {})
    st.rerun()


# ------------------------------------------------------------------- links --
def _query_key(plan: dict) -> str:
    return PLAN if plan.get("kind") == "plan" else SWEEP


def _page(plan: dict) -> str:
    return "plan" if plan.get("kind") == "plan" else "sweeps"


def share_params(row) -> dict | None:
    """The link of a stored job: its key and its plan (:func:`webapp.state.job_params`); None for a job with
    no key (made by hand, not from a plan) or no plan."""
    plan = (row.params.get("plan") or {}) if row is not None else {}
    if row is None or row.key is None or not plan:
        return None
    return state.job_params(_query_key(plan), row.key, plan)


def share_caption(row) -> str:
    """The Markdown of a job's shareable link, saying what it carries."""
    params = share_params(row)
    if params is None:
        return "no shareable link (this job was not made from a plan)"
    plan = row.params["plan"]
    link = views.share_link(params, _page(plan))
    trace = (plan.get("spec") or {}).get("trace")
    uploaded = (plan.get("spec") or {}).get("workload") in TRACE_WORKLOADS and not guard.bundled_trace(str(trace))
    what = (f"elsewhere, running it again needs the uploaded trace {fmt.md(state.link_trace(trace))}" if uploaded
            else "it names this job by its content and carries its definition, so any batchlab store can run it")
    return f"[Shareable link]({link}) ({what})"


def open_link(name: str, params: dict) -> int | None:
    """The stored job a Sweeps (``name`` = ``sweep``) or Plan (``plan``) link names, by its key; the address
    then holds its full link. None when this store has no such job, after saying why and offering what can
    be done: run the plan the link carries, or (an old row-number link) open this store's row under its own
    link. Never shows a job other than the one the link defines."""
    what = "plan" if name == PLAN else "sweep"
    raw = params.get(name)
    ref = state.job_ref(raw)
    if ref is None:
        st.warning(f"Link: {fmt.md(fmt.clip(str(raw)))} names no {what} (a {what} link names its key, "
                   "16 hexadecimal digits).", icon=":material/link_off:")
        return None
    if isinstance(ref, int):
        _old_link(name, ref)
        return None
    row = services.get_store().find_sweep(ref)
    if row is not None and (name == SWEEP or (row.params.get("plan") or {}).get("kind") == "plan"):
        if st.session_state.get(_NEW_KEY, {}).pop(ref, False):
            st.info(f"Run again with this version of batchlab, the {what} got a new identity (the simulator or "
                    "its settings differ from the link's); the address now names it.", icon=":material/info:")
        share = share_params(row)
        if share and state.read_params(st.query_params) != share:
            st.query_params.from_dict(share)  # the address bar holds the full, shareable link
        return row.id
    _rebuild(name, ref, params.get(state.SPEC))
    return None


def _old_link(name: str, row_id: int) -> None:
    """An old link names a store's row, which on another store holds another job: say so, and offer to open
    this store's row under its own link."""
    what = "plan" if name == PLAN else "sweep"
    st.warning(f"This is an old link: it names row {row_id} of the results store it was made on, not a {what}, "
               f"and another store's row {row_id} may hold another job, so it is not opened. Links made now name "
               f"a {what} by its content and carry its definition.", icon=":material/link_off:")
    row = services.get_store().get_sweep(row_id)
    plan = (row.params.get("plan") or {}) if row is not None else {}
    share = share_params(row)
    if share is None or (name == PLAN) != (plan.get("kind") == "plan"):
        st.caption(f"This store has no {what} in row {row_id}.")
        return
    st.caption(f"Row {row_id} of this store: {KINDS.get(plan.get('kind'), 'job').lower()} "
               f"**{fmt.md(row.name)}**, created {row.created_at:%Y-%m-%d %H:%M}.")
    if st.button(f"Open this store's row {row_id}", icon=":material/open_in_new:", key=f"old_link.{row_id}"):
        st.query_params.from_dict(share)
        st.rerun()


def _rebuild(name: str, key: str, spec) -> None:
    """A link whose job this store lacks: run the plan it carries here (a button), if it carries one that
    this version and the web's policy accept; otherwise say why not."""
    what = "plan" if name == PLAN else "sweep"
    store = services.get_store()
    if not spec:
        st.warning(f"There is no {what} {key} in this store, and this link names only its key, not its "
                   "definition, so it cannot be run here (links batchlab writes carry both).",
                   icon=":material/link_off:")
        return
    try:
        plan = plan_from_link(state.decode_plan(spec))
    except ValueError as exc:
        st.warning(f"There is no {what} {key} in this store, and this link's definition cannot be used: "
                   f"{fmt.md(fmt.clip(str(exc)))}.", icon=":material/link_off:")
        return
    if (plan["kind"] == "plan") != (name == PLAN):
        other = "a capacity plan" if plan["kind"] == "plan" else "a sweep"
        st.warning(f"This link defines {other}, not a {what}: open it on the "
                   f"{'Plan' if plan['kind'] == 'plan' else 'Sweeps'} page.", icon=":material/link_off:")
        return
    rebuilt = plan_key(plan)
    row = store.find_sweep(rebuilt) if rebuilt != key else None
    if row is not None:  # stored already, under the key this version gives it
        st.session_state.setdefault(_NEW_KEY, {})[rebuilt] = True
        st.query_params.from_dict(share_params(row))
        st.rerun()
    st.warning(f"This {what} is not in this store. The link carries its definition: it can be run here.",
               icon=":material/warning:")
    st.markdown(f"**{fmt.md(KINDS[plan['kind']])}: {fmt.md(plan_title(plan))}**")
    with st.expander("Its definition", icon=":material/description:"):
        st.json(plan, expanded=False)
    try:
        guard.check_plan(plan, guard.session_uploads())
    except (ConfigError, SpecError) as exc:
        trace = (plan.get("spec") or {}).get("trace")
        if isinstance(exc, SpecError) and exc.field == "trace":
            st.info(f"It ran on the uploaded trace **{fmt.md(str(trace))}**: a link cannot carry the file. Upload "
                    "it on the Plan page and plan again.", icon=":material/upload_file:")
        else:
            st.error(f"It cannot run here: {fmt.md(fmt.clip(str(exc)))}", icon=":material/error:")
        return
    if st.button(f"Run this {what} here", type="primary", icon=":material/play_arrow:", key=f"rebuild.{key}"):
        with services.shown_errors(f"Cannot start the {what}") as box:
            job_id = launch(plan)
        if not box.failed:
            if rebuilt != key:
                st.session_state.setdefault(_NEW_KEY, {})[rebuilt] = True
            open_sweep(job_id)


# ------------------------------------------------------------------- forms --
def web_settings(lines: list[str], picked: dict[str, str] | None = None):
    """(SimConfig, WorkloadSpec) from ``NAME=VALUE`` lines a web user typed and the model, GPU and latency
    picked beside them (:func:`webapp.forms.hardware_pickers`, applied as if typed), checked by the web's
    policy before anything reads a file (:mod:`webapp.guard`; a model path is refused by the core in the
    app's process)."""
    cfg, spec = parse_settings(forms.with_picked(picked or {}, lines))
    guard.check(cfg, spec, guard.session_uploads())
    return cfg, spec


def _settings(text: str, picked: dict[str, str]):
    return web_settings(text.splitlines(), picked)


def capacity_form() -> dict | None:
    with st.form("cap_form"):
        # the modes take the form's whole width: their chips are cut in a column at 900 px
        modes = st.multiselect("Scheduler modes", MODES, default=["static_fifo", "dynamic_no_bins",
                                                                  "multi_bin_dynamic"], key="cap.modes")
        c = st.columns(3)
        target = c[0].number_input("SLA target (%)", 1.0, 100.0, 99.0, 0.5, key="cap.target") / 100
        tol = c[1].number_input("Tolerance (%)", 0.01, 50.0, 2.0, 0.5, key="cap.tol") / 100
        reps = c[2].number_input("Replications", 1, 100, 1, key="cap.reps")
        text = st.text_area("Base settings", "num_requests=10000", key="cap.settings", help=SETTINGS_HELP)
        picked = forms.hardware_pickers("cap.")
        cluster, workers = _where("cap")
        go = st.form_submit_button("Find capacity", icon=":material/speed:", type="primary")
    if not go:
        return None
    cfg, spec = _settings(text, picked)
    return {"plan": capacity_plan(cfg.replace(mode=modes[0]) if modes else cfg, spec, list(modes), target, tol,
                                  int(reps)), "cluster": cluster, "workers": workers}


def grid_form() -> dict | None:
    with st.form("grid_form"):
        vary = st.text_area("Vary (one per line)", "rate=0.5:4:0.5\nmode=static_fifo,multi_bin_dynamic",
                            key="grid.vary", help="NAME=START:STOP:STEP (STOP included) or NAME=A,B,C; "
                                                  "the grid is the product of the lines.")
        c = st.columns([3, 1])
        text = c[0].text_area("Base settings", "num_requests=10000", key="grid.settings", help=SETTINGS_HELP)
        reps = c[1].number_input("Replications (seeds)", 1, 100, 1, key="grid.reps")
        picked = forms.hardware_pickers("grid.")
        cluster, workers = _where("grid")
        go = st.form_submit_button("Run sweep", icon=":material/grid_view:", type="primary")
    if not go:
        return None
    cfg, spec = _settings(text, picked)
    values = dict(parse_vary(line) for line in vary.splitlines() if line.strip())
    return {"plan": grid_plan(cfg, spec, values, int(reps)), "cluster": cluster, "workers": workers}


def suite_caption() -> str:
    """The Stress suite tab's line: what each step runs, from the suite's own sizes."""
    text = ", ".join(step_titles().values())
    return text[0].upper() + text[1:] + "."


def suite_form() -> dict | None:
    with st.form("suite_form"):
        c = st.columns([2, 2])
        steps = c[0].multiselect("Steps", STEPS, default=list(STEPS), key="suite.steps",
                                 format_func=lambda s: f"{s} · {step_titles()[s]}")
        cap = c[1].number_input("Cap on requests per run (0 = the suite's sizes, up to 1M)", 0, 1_000_000, 0,
                                key="suite.cap")
        cluster, workers = _where("suite")
        go = st.form_submit_button("Run the suite", icon=":material/bolt:", type="primary")
    if not go:
        return None
    plan = SuitePlan(steps=tuple(sorted(steps)), max_requests=int(cap) or None)
    return {"plan": suite_plan(plan), "cluster": cluster, "workers": workers}


def cluster_picker(key: str, where=st):
    """Where to run: the local process pool or a Dask cluster the operator offers, by name (never an address)."""
    choice = where.selectbox("Where to run", [clusters.LOCAL_POOL, *clusters.configured()], key=key,
                             help="The local process pool, or a Dask cluster offered by whoever runs this app "
                                  "(batchlab app --cluster NAME=ADDRESS).")
    return None if choice == clusters.LOCAL_POOL else choice


def _where(prefix: str) -> tuple[str | None, int | None]:
    c = st.columns(2)
    cluster = cluster_picker(f"{prefix}.cluster", c[0])
    workers = c[1].number_input("Workers (0 = one per CPU)", 0, 4096, 0, key=f"{prefix}.workers")
    return cluster, (int(workers) or None)


def _open_link(row) -> str | None:
    """A plan opens on the Plan page, every other kind here, by its key (the page writes the full link)."""
    if row.key is None:
        return None
    plan = row.params.get("plan") or {}
    return f"./{_page(plan)}?{_query_key(plan)}={row.key}"


def sweeps_table() -> pd.DataFrame:
    """The stored sweeps, capacity searches, suites and plans (not the pages' run and reproduction jobs)."""
    rows = [r for r in services.get_store().list_sweeps() if (r.params.get("plan") or {}).get("kind") in KINDS]
    return pd.DataFrame([{
        "open": _open_link(r), "id": r.id, "what": r.name,
        "kind": KINDS.get((r.params.get("plan") or {}).get("kind"), "?"), "status": jobs.state_of(r.params),
        "runs": r.runs, "created": r.created_at} for r in rows])


# ------------------------------------------------------------------ results --
def _varied(name: str, cfg: dict, spec: dict) -> Any:
    """A varied setting's value from a member's stored settings (replicas: folded into gpus there)."""
    if name == "replicas" and cfg.get("replicas") is None and cfg.get("gpus") and cfg.get("tp"):
        return int(cfg["gpus"]) // int(cfg["tp"])
    return cfg.get(name) if name in _SIM else spec.get(name)


def grid_frame(members: list[dict], plan: dict) -> pd.DataFrame:
    """One row per stored member: the varied values (from its stored settings), the cluster where it differs
    between members (replicas, tp, router: :func:`core.sweep_report.cluster_columns`) and its metrics."""
    names = list(plan["vary"])
    base_seed = int(plan["spec"].get("workload_seed", 0))
    cluster = cluster_columns([dict.fromkeys(names)], [m["summary"] or {} for m in members])
    rows = []
    for m in members:
        cfg, spec, s = m["config"] or {}, m["spec"] or {}, m["summary"] or {}
        row: dict[str, Any] = {n: _varied(n, cfg, spec) for n in names}
        if plan.get("replications", 1) > 1:
            row["replication"] = int(spec.get("workload_seed", base_seed)) - base_seed
        row.update({c: s.get(c) for c in cluster})
        row.update({"status": m["status"], **{k: s.get(k) for k in MEMBER_METRICS},
                    "run": m["hash"][:12], "error": m["error"]})
        rows.append(row)
    return pd.DataFrame(rows)


def download_row(data: pd.DataFrame, chart, stem: str, key: str) -> None:
    """CSV of the chart's data; SVG and PNG of the chart (rendered on the server when asked for)."""
    row = st.container(horizontal=True)
    row.download_button("CSV", data.to_csv(index=False).encode(), f"{stem}.csv", "text/csv", key=f"{key}.csv",
                         icon=":material/download:", on_click="ignore")
    if chart is not None:
        row.download_button("SVG", lambda: charts.export(chart, "svg"), f"{stem}.svg", "image/svg+xml",
                             key=f"{key}.svg", icon=":material/download:", on_click="ignore")
        row.download_button("PNG", lambda: charts.export(chart, "png"), f"{stem}.png", "image/png",
                             key=f"{key}.png", icon=":material/download:", on_click="ignore")


def chart_block(chart, data: pd.DataFrame, stem: str) -> None:
    st.altair_chart(chart, width="stretch")
    download_row(data, chart, stem, stem)


def show_sweep(sweep_id: int) -> None:
    store = services.get_store()
    row = store.get_sweep(sweep_id)
    if row is None:
        st.warning(f"There is no sweep {sweep_id} in this store.", icon=":material/warning:")
        return
    plan = row.params.get("plan") or {}
    st.subheader(f"{KINDS.get(plan.get('kind'), 'Sweep')} {row.id}: {fmt.md(row.name)}")
    st.caption(f"{share_caption(row)} · created {row.created_at:%Y-%m-%d %H:%M}")
    live = jobs.state_of(row.params) in jobs.LIVE
    st.fragment(progress, run_every=1.5 if live else None)(sweep_id)
    params = store.get_sweep(sweep_id).params
    if plan.get("kind") == "grid":
        _show_grid(store.sweep_members(sweep_id), plan)
    elif plan.get("kind") == "capacity":
        _show_capacity(params)
    elif plan.get("kind") == "suite":
        _show_suite(params)
    elif plan.get("kind") == "plan":
        st.page_link("app_pages/plan.py", label="Open this capacity plan on the Plan page",
                     icon=":material/calculate:", query_params=share_params(row) or {})
    with st.expander("Plan", icon=":material/description:"):
        st.json(plan, expanded=False)


def progress(sweep_id: int) -> None:
    """A job's progress while it runs (with a Cancel button); its end state (and a Resume button) after.
    Drawn in a fragment that reruns the page when the job's state changes."""
    params = services.get_store().get_sweep(sweep_id).params
    state = jobs.state_of(params)
    prog = params.get("progress") or {}
    done, failed = prog.get("done", 0), prog.get("failed", 0)
    if state in jobs.LIVE:
        frac, text = jobs.progress_of(params)
        row = st.container(horizontal=True, vertical_alignment="center")
        row.progress(frac, text=f"{state}: {text}")
        if row.button("Cancel", icon=":material/cancel:", key=f"cancel.{sweep_id}"):
            jobs.cancel(sweep_id)
            st.rerun(scope="app")
        if st.session_state.get(f"_sweep_state.{sweep_id}") not in (None, state):
            st.rerun(scope="app")
    else:
        msg = {"done": ":material/check_circle: finished", "interrupted": ":material/pause_circle: interrupted",
               "cancelled": ":material/cancel: cancelled", "failed": ":material/error: failed",
               "stopped": ":material/pause_circle: stopped (its runner is gone)"}
        error = f" · error: {fmt.md(jobs.error_of(params))}" if state == "failed" else ""
        st.markdown(f"{msg.get(state, fmt.md(state))} · {done} runs" + (f", {failed} failed" if failed else "")
                    + error)
        if state in ("interrupted", "stopped", "failed", "cancelled"):
            if st.button("Resume", icon=":material/play_arrow:", key=f"resume.{sweep_id}"):
                with services.shown_errors("Cannot resume") as box:
                    resume(params["plan"])
                if not box.failed:
                    st.rerun(scope="app")
        if st.session_state.get(f"_sweep_state.{sweep_id}") in jobs.LIVE:
            st.session_state[f"_sweep_state.{sweep_id}"] = state
            st.rerun(scope="app")
    st.session_state[f"_sweep_state.{sweep_id}"] = state


def resume(plan: dict) -> int:
    """Run a stored job again: a sweep's kinds pass the web's policy again (:func:`launch`)."""
    if plan.get("kind") in KINDS:
        return launch(plan)
    return jobs.launch(plan, again=True)


def _show_grid(members: list[dict], plan: dict) -> None:
    df = grid_frame(members, plan)
    if df.empty:
        st.info("No finished runs yet.", icon=":material/hourglass_empty:")
        return
    names = list(plan["vary"])
    if "rate" in names:
        d = df[df["status"] == "done"].copy()
        others = [n for n in names if n != "rate"]
        d["series"] = charts.series_label(d, others)
        agg = charts.over_seeds(d, ["series", "rate"], ["sla_attainment", "latency_p99_s"])
        c = st.columns(2)
        with c[0]:
            chart_block(charts.metric_vs_rate(agg, "sla_attainment"), agg, "sweep-attainment")
        with c[1]:
            chart_block(charts.metric_vs_rate(agg, "latency_p99_s"), agg, "sweep-p99")
    st.dataframe(df, hide_index=True, width="stretch", column_config=metric_columns(df))
    download_row(df, None, "sweep-runs", "sweep-runs")


def metric_columns(df: pd.DataFrame) -> dict:
    """Headers and hover text of a table's metric columns, from the metric catalog (the CSV keeps the keys)."""
    return {k: st.column_config.Column(f"{m.label} ({m.unit})" if m.unit not in ("count", "share") else m.label,
                                       help=m.description)
            for k in df.columns if (m := metric_catalog.BY_KEY.get(k)) is not None}


def _show_capacity(params: dict) -> None:
    result = params.get("result")
    if not result:
        st.info("The capacity search is still running; its results appear here when it ends.",
                icon=":material/hourglass_empty:")
        return
    caps = [CapacityResult.from_dict(c) for c in result["capacities"]]
    cf, pf = capacity_frame(caps), probes_frame(caps)
    cf["series"], pf["series"] = cf["mode"], pf["mode"]
    agg = charts.over_seeds(pf.dropna(subset=["attainment"]), ["series", "rate"], ["attainment", "latency_p99_s"])
    target = caps[0].target
    st.markdown(f"**Capacity** = the highest arrival rate whose SLA attainment stays at or above "
                f"**{100 * target:g} %**, found by bracketing and bisection with the same seeds at every rate "
                f"(relative tolerance {100 * caps[0].tolerance:g} %, {caps[0].replications} replication(s)).")
    chart_block(charts.capacity_bars(cf), cf, "capacity-bars")
    c = st.columns(2)
    with c[0]:
        chart_block(charts.metric_vs_rate(agg, "attainment", target=target, capacities=cf), agg,
                    "capacity-attainment")
    with c[1]:
        chart_block(charts.metric_vs_rate(agg, "latency_p99_s", capacities=cf), agg, "capacity-p99")
    st.dataframe(cf.drop(columns=["series"]), hide_index=True, width="stretch", column_config=metric_columns(cf))
    with st.expander(f"All {len(pf)} probes"):
        st.dataframe(pf.drop(columns=["series"]), hide_index=True, width="stretch", column_config=metric_columns(pf))
        download_row(pf, None, "capacity-probes", "capacity-probes")


def _show_suite(params: dict) -> None:
    result = params.get("result")
    if not result:
        st.info("The suite is still running; its tables and charts appear here when it ends.",
                icon=":material/hourglass_empty:")
        return
    tables = {k: pd.DataFrame(v) for k, v in result["tables"].items()}
    secs = result.get("step_seconds") or {}
    if secs:
        st.caption("Wall time per step: " + ", ".join(f"step {k} {v:.1f} s" for k, v in secs.items()))
    figures = charts.suite_charts(tables)
    by_table = {"step1": ["step1_sla_violations", "step1_p99_latency"], "step2": ["step2_gpu_scaling"],
                "step3": ["step3_bins"]}
    titles = {"step1": "Step 1 · request scaling", "step2": "Step 2 · GPU scaling", "step3": "Step 3 · bin count"}
    for name, df in tables.items():
        st.markdown(f"#### {titles.get(name, name)}")
        stems = [s for s in by_table.get(name, []) if s in figures]
        cols = st.columns(max(len(stems), 1))
        for col, stem in zip(cols, stems):
            with col:
                chart_block(figures[stem], df, stem)
        shown = df[[c for c in DISPLAY.get(name, df.columns) if c in df.columns]]
        st.dataframe(shown, hide_index=True, width="stretch", column_config=metric_columns(shown))
        if not stems:
            download_row(df, None, name, name)


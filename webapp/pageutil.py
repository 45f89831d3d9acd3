"""Steps shared by the Run and Compare pages: apply a URL to the form, take a trace upload,
launch runs with progress, and remember how each result was obtained."""
from __future__ import annotations

from typing import Mapping

import streamlit as st

from core.config import ConfigError, SimConfig
from workloads import MAX_UPLOAD_BYTES, WorkloadError, WorkloadSpec

from . import forms, fmt, services, state, views

OUTCOMES = "_outcomes"


def apply_url(page: str, params: Mapping, refs: list[str]) -> None:
    """Seed the form: from the URL the first time this page sees it, else from the last settings.

    Settings in the URL win; a URL with only run hashes takes the first stored run's settings
    (and, on Compare, the modes of all of them). A bare URL (page switch) keeps the last
    submitted settings; widget state does not survive a page switch, so it is re-seeded then.
    """
    switched = st.session_state.get("_page") != page
    st.session_state["_page"] = page
    if not params or not state.applied_once(page, params):
        forms.seed_settings(st.session_state.get("settings") or state.default_settings(), overwrite=switched)
        return
    settings, problems = state.settings_from_params(params)
    has_settings = any(k not in (state.RUN, state.COMPARE) for k in params)
    if refs and not has_settings:
        shown = [v for v in (services.run_view(r) for r in refs) if v and "summary" in v]
        if shown:
            try:
                cfg = SimConfig.from_dict(shown[0]["config"])
                settings = state.settings_from_run(cfg, shown[0]["workload"])
                settings["modes"] = list(dict.fromkeys(v["summary"]["mode"] for v in shown))
            except (ConfigError, TypeError) as exc:
                problems.append(f"the stored run's settings do not fit this version ({exc})")
    for p in problems:
        st.warning(f"Link: {p}", icon=":material/link_off:")
    forms.seed_settings(settings, overwrite=True)
    st.session_state["settings"] = settings


def trace_uploader(source: str) -> services.Upload | None:
    """The BurstGPT CSV upload (only for the upload source), checked at once."""
    if source != "upload":
        return None
    f = st.file_uploader("BurstGPT trace CSV", type=["csv"], key="trace_upload",
                         max_upload_size=MAX_UPLOAD_BYTES // 2**20,
                         help="A BurstGPT CSV (6-column _1/_2 or 8-column _3 layout): Timestamp, "
                              "Request tokens and Response tokens are read; failed rows are dropped "
                              "unless 'Keep failed rows' is set.")
    if f is None:
        return None
    upload = services.Upload(f.name, f.getvalue())
    with services.shown_errors(f"Cannot read {f.name}") as box:
        w = services.make_workload(WorkloadSpec(workload="burstgpt", trace=f.name), upload)
    if box.failed:
        return None
    d = w.describe()
    st.caption(f"{f.name}: {d['requests']:,} requests over {fmt.seconds(d['duration_s'])} "
               f"(mean {fmt.number(d['mean_rate_rps'], 'req/s', 3)}), mean prompt "
               f"{fmt.number(d['prompt_mean'], 'tokens', 0)}, mean output {fmt.number(d['output_mean'], 'tokens', 0)}.")
    return upload


def launch(page: str, values: forms.FormValues, source: str, upload: services.Upload | None,
           modes: list[str]) -> list[services.Outcome] | None:
    """Validate the form, run ``modes`` with a progress bar, then point the URL at the result."""
    outcomes = None
    with services.shown_errors("Could not run the simulation") as box:
        if not modes:
            raise ConfigError("mode", "pick at least one scheduler mode")
        if source == "upload":
            if upload is None:
                raise WorkloadError("trace: upload a BurstGPT CSV file first")
            values.spec["trace"] = upload.name
        _, spec = forms.build(values.sim, values.spec)
        bar = st.progress(0.0, text="Building the workload…")
        last = [-1.0]

        def progress(frac: float, mode: str) -> None:
            if frac - last[0] >= 0.02 or frac >= 1.0:
                last[0] = frac
                bar.progress(min(frac, 1.0), text=f"Simulating {mode}… {frac:.0%}")

        outcomes = services.run_modes(values.sim, modes, spec, upload, progress)
        bar.empty()
    if box.failed or not outcomes:
        return None
    st.session_state["settings"] = {"sim": dict(values.sim), "spec": dict(values.spec), "source": source,
                                    "modes": list(modes) if page == "compare" else
                                    st.session_state.get("settings", state.default_settings())["modes"]}
    notes = st.session_state.setdefault(OUTCOMES, {})
    for o in outcomes:
        notes[o.hash] = o
    if page == "compare":
        qp = {state.COMPARE: ",".join(o.hash for o in outcomes)} | state.settings_to_params(
            values.sim, values.spec, modes)
    else:
        qp = {state.RUN: outcomes[0].hash} | state.settings_to_params(values.sim, values.spec)
    st.query_params.from_dict(qp)
    state.mark_applied(page, qp)
    return outcomes


def note_for(hashes: list[str]) -> str | None:
    """How these results were obtained in this session: simulated now or served from the store."""
    notes = st.session_state.get(OUTCOMES, {})
    known = [notes[h] for h in hashes if h in notes]
    if not known:
        return None
    if len(known) == 1:
        o = known[0]
        if o.cached:
            return (f"Served from the store: this exact run was computed on {views.when(o.created_at)}; "
                    f"not recomputed (loaded in {fmt.seconds(o.seconds)}).")
        return f"Simulated in {fmt.seconds(o.seconds)} and saved to the store."
    cached = [o for o in known if o.cached]
    fresh = [o for o in known if not o.cached]
    parts = []
    if fresh:
        parts.append(f"{len(fresh)} simulated ({fmt.seconds(sum(o.seconds for o in fresh))})")
    if cached:
        parts.append(f"{len(cached)} served from the store, not recomputed ({', '.join(o.mode for o in cached)})")
    return f"{len(known)} runs: " + "; ".join(parts) + "."


def stored_run_picker(limit: int = 300) -> list[str]:
    """Pick any finished stored runs to compare; returns their hashes once submitted."""
    with services.shown_errors("Cannot list stored runs") as box:
        df = services.list_runs(status="done", limit=limit)
    if box.failed:
        return []
    if df.empty:
        st.caption("No stored runs yet: run a simulation first.")
        return []
    labels = {r.hash: f"{r.mode} · {r.gpus} GPU · {r.label or 'workload'} · {views.when(r.created_at)} · {r.hash[:8]}"
              for r in df.itertuples()}
    with st.form("pick_runs", border=False):
        chosen = st.multiselect("Stored runs", list(labels), format_func=labels.get, key="cmp.picked",
                                max_selections=8, placeholder="Choose two or more runs",
                                help="Newest first; up to 8 runs.")
        go = st.form_submit_button("Compare selected runs", icon=":material/compare_arrows:")
    if go and not chosen:
        st.warning("Choose at least one run.")
    return list(chosen) if go else []

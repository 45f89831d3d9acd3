"""Run page: the settings form, progress, and one run's result (``?run=<hash>`` reopens it)."""
import streamlit as st

from webapp import forms, pageutil, services, state, views

params = st.query_params.to_dict()
if state.COMPARE in params and state.RUN not in params:
    st.switch_page("app_pages/compare.py", query_params=params)  # /?compare=... is a comparison

st.title("Run a simulation")
ref = state.run_param(params)
pageutil.apply_url("run", params, [ref] if ref else [])
shown, problems = views.load_views([ref]) if ref else ([], [])

# a stored run's link opens with the settings folded and not even drawn (60 widgets), so it loads fast
first_open = st.session_state.setdefault("run.settings_first", not shown)  # fixed per session: keeps the state
panel = st.expander("Settings", expanded=first_open, key="run.settings", on_change="rerun", icon=":material/tune:")
if panel.open:
    with panel:
        source = forms.source_picker()
        upload = pageutil.trace_uploader(source)
        values = forms.settings_form("run_form", source, services.latency_options(), "Run simulation")
    if values.submitted:
        outcomes = pageutil.launch("run", values, source, upload, [values.sim["mode"]])
        if outcomes:
            ref = outcomes[0].hash
            shown, problems = views.load_views([ref])

for p in problems:
    st.warning(f"{p}. The form holds the link's settings: press **Run simulation** to compute it.",
               icon=":material/warning:")
if shown:
    views.show_run(shown[0], note=pageutil.note_for([ref]), share=st.query_params.to_dict())
elif not ref:
    st.info("Choose the settings and press **Run simulation**. The defaults simulate 10,000 BurstGPT-like "
            "requests at 2 req/s on 4 GPUs with the multi-bin dynamic scheduler.", icon=":material/info:")

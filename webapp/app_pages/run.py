"""Run page: the settings form, progress, and one run's result (``?run=<hash>&mode=...`` reopens it, and
recomputes it on a store without it)."""
import streamlit as st

from batchlab.webapp import forms, intro, jobs, pageutil, recover, services, state, views

jobs.prepare()  # a warm runner waits for the next job
params = state.read_params(st.query_params)
job_id = pageutil.job_of("run", params)
if state.COMPARE in params and state.RUN not in params:
    st.switch_page("app_pages/compare.py", query_params=params)  # /?compare=... is a comparison

st.title("Run a simulation")
ref = state.run_param(params)
pageutil.apply_url("run", params, [ref] if ref else [])

# a result's link opens with the settings folded and not even drawn (60 widgets), so it loads fast
busy = job_id is not None
panel = pageutil.settings_panel("run", "Settings", default_open=not (ref or busy))
if panel.open:
    with panel:
        source = forms.source_picker()
        upload = pageutil.trace_uploader(source)
        values = forms.settings_form("run_form", source, services.latency_options(), "Run simulation")
    if values.submitted:
        members = pageutil.form_members(values, source, [values.sim["mode"]])
        pageutil.start("run", members, upload, url=state.settings_to_params(values.sim, values.spec),
                       remember=True)

done = pageutil.follow("run", job_id)
if done:
    ref = done[0]
shown, missing = views.load_views([ref]) if ref else ([], [])
if shown:
    view = shown[0]
    share = views.run_share(view)
    if share and not done and state.read_params(st.query_params) != share:
        st.query_params.from_dict(share)  # the address bar holds the full, shareable link
        state.mark_applied("run", share)
    views.show_run(view, note=pageutil.note_for([ref]), share=share)
elif missing:
    recover.run_problem(ref, missing[0][2], pageutil.run_link_settings(ref, params))
elif not busy:
    st.info(intro.run_hint(), icon=":material/info:")

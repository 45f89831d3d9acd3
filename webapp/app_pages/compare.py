"""Compare page: scheduler modes on one workload, or any stored runs (``?compare=<h1>,<h2>``)."""
import streamlit as st

from batchlab.webapp import forms, intro, jobs, pageutil, recover, services, state, views

SET_UPS = {"modes": "Scheduler modes on one workload", "runs": "Stored runs"}

st.title("Compare schedulers")
jobs.prepare()  # a warm runner waits for the next job
params = state.read_params(st.query_params)
job_id = pageutil.job_of("compare", params)
hashes = state.compare_param(params)
pageutil.apply_url("compare", params, hashes)
members, member_problems = state.members_from_params(params) if hashes else (None, [])

# a shared comparison opens with the set-up folded and not even drawn (60 widgets), so it loads fast
busy = job_id is not None
panel = pageutil.settings_panel("compare", "Set up a comparison", default_open=not (hashes or busy))
if panel.open:
    # a choice, not st.tabs: tabs inside a foldable expander sometimes open with their content hidden
    with panel:
        what = st.segmented_control("Compare", list(SET_UPS), default="modes", format_func=SET_UPS.get,
                                    key="cmp.what", required=True, label_visibility="collapsed")
        if what == "modes":
            source = forms.source_picker()
            upload = pageutil.trace_uploader(source)
            values = forms.settings_form("compare_form", source, services.latency_options(), "Run comparison",
                                         compare=True)
            picked = []
        else:
            values, picked = None, pageutil.stored_run_picker()
    if values is not None and values.submitted:
        pageutil.start("compare", pageutil.form_members(values, source, values.modes), upload,
                       url=state.settings_to_params(values.sim, values.spec, values.modes), remember=True)
    elif picked:
        hashes, members = picked, None
        qp = {state.COMPARE: ",".join(picked)}
        st.query_params.from_dict(qp)
        state.mark_applied("compare", qp)

pageutil.link_warnings(member_problems)
done = pageutil.follow("compare", job_id)
if done:
    hashes, members = done, None
shown, missing = views.load_views(hashes) if hashes else ([], [])
if missing:
    recover.comparison_problems(hashes, missing, members)
if shown:
    share = views.comparison_share(hashes, shown) if not missing else (
        state.comparison_params(hashes, members) if members else None)
    if share and not done and state.read_params(st.query_params) != share:
        st.query_params.from_dict(share)  # the address bar holds the full, shareable link
        state.mark_applied("compare", share)
    views.show_comparison(shown, share=share, note=pageutil.note_for(hashes), of=len(hashes))
elif not hashes and not busy:
    st.info(intro.compare_hint(), icon=":material/info:")

"""Compare page: scheduler modes on one workload, or any stored runs (``?compare=<h1>,<h2>``)."""
import streamlit as st

from webapp import forms, pageutil, services, state, views

st.title("Compare schedulers")
params = st.query_params.to_dict()
hashes = state.compare_param(params)
pageutil.apply_url("compare", params, hashes)
shown, problems = views.load_views(hashes) if hashes else ([], [])

# a shared comparison opens with the set-up folded and not even drawn (60 widgets), so it loads fast
first_open = st.session_state.setdefault("cmp.settings_first", not shown)  # fixed per session: keeps the state
panel = st.expander("Set up a comparison", expanded=first_open, key="cmp.settings", on_change="rerun",
                    icon=":material/tune:")
if panel.open:
    by_mode, by_run = panel.tabs(["Scheduler modes on one workload", "Stored runs"])
    with by_mode:
        source = forms.source_picker()
        upload = pageutil.trace_uploader(source)
        values = forms.settings_form("compare_form", source, services.latency_options(), "Run comparison",
                                     compare=True)
    with by_run:
        picked = pageutil.stored_run_picker()
    new = None
    if values.submitted:
        outcomes = pageutil.launch("compare", values, source, upload, values.modes)
        new = [o.hash for o in outcomes] if outcomes else None
    elif picked:
        new = picked
        qp = {state.COMPARE: ",".join(picked)}
        st.query_params.from_dict(qp)
        state.mark_applied("compare", qp)
    if new:
        hashes = new
        shown, problems = views.load_views(hashes)

for p in problems:
    st.warning(p, icon=":material/warning:")
if shown:
    views.show_comparison(shown, share=st.query_params.to_dict(), note=pageutil.note_for(hashes))
elif not hashes:
    st.info("Pick scheduler modes and press **Run comparison** (defaults: static FIFO, dynamic without bins "
            "and multi-bin dynamic on 10,000 synthetic requests), or compare runs already in the store.",
            icon=":material/info:")

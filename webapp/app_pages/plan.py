"""Plan page: the fewest GPUs and the batching configuration that meet an SLA target; ``?plan=<key>&spec=...``
reopens one (or runs it again on a store without it)."""
import streamlit as st

from batchlab.webapp import plan, services, state, sweeps

st.title("Plan capacity")
params = state.read_params(st.query_params)
if sweeps.PLAN in params:
    if st.button("New plan", icon=":material/add:"):
        st.query_params.clear()
        st.rerun()
    plan_id = sweeps.open_link(sweeps.PLAN, params)
    if plan_id is not None:
        plan.show_plan(plan_id)
else:
    st.caption("How few GPUs, and which batching policy, serve this traffic within this SLA? The plan bisects on "
               "the GPU count (replicas x TP), tries each mode with its K, B_max or B and each router, TP and "
               "P:D ratio it is given, and backs the answer with each mode's capacity. Every run is stored, so "
               "planning again reuses them.")
    source = plan.source_picker()
    with services.shown_errors("Cannot start the plan"):
        launch = plan.plan_form(source)
        st.caption(plan.defaults_note())
        if launch is not None:
            plan.start(launch)

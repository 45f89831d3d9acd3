"""Sweeps page: launch a sweep, a capacity comparison or the stress suite; follow it; ``?sweep=<key>&spec=...``
reopens it (or runs it again on a store without it)."""
import streamlit as st

from batchlab.webapp import services, state, sweeps

st.title("Sweeps and capacity")
params = state.read_params(st.query_params)
if sweeps.SWEEP in params:
    if st.button("New sweep", icon=":material/add:"):
        st.query_params.clear()
        st.rerun()
    sweep_id = sweeps.open_link(sweeps.SWEEP, params)
    if sweep_id is not None:
        sweeps.show_sweep(sweep_id)
else:
    cap, grid, suite, stored = st.tabs(["Capacity comparison", "Sweep", "Stress suite", "Stored sweeps"])
    launched = None
    with cap:
        st.caption("The highest arrival rate each scheduler sustains at the SLA target: a search, not a throughput.")
        with services.shown_errors("Cannot start the capacity search"):
            launched = sweeps.capacity_form() or launched
    with grid:
        st.caption("Any settings varied over a grid; every run is stored as it finishes.")
        with services.shown_errors("Cannot start the sweep"):
            launched = sweeps.grid_form() or launched
    with suite:
        st.caption(sweeps.suite_caption())
        with services.shown_errors("Cannot start the suite"):
            launched = sweeps.suite_form() or launched
    with stored:
        with services.shown_errors("Cannot list the sweeps"):
            table = sweeps.sweeps_table()
            if table.empty:
                st.caption("No sweeps yet.")
            else:
                st.dataframe(table, hide_index=True, width="stretch",
                             column_config={"open": st.column_config.LinkColumn("open", display_text="open")})
    if launched:
        with services.shown_errors("Cannot start it"):
            sweeps.open_sweep(sweeps.launch(launched["plan"], launched["cluster"], launched["workers"]))

"""Reproduce page: the papers' figures simulated beside their formulas (``batchlab reproduce``);
``?job=ID`` reopens a reproduction, and each paper's last one shows without it."""
import streamlit as st

from batchlab.webapp import jobs, reproduce, services, sweeps

jobs.prepare()  # a warm runner waits for the next job
st.title("Reproduce the papers")
job_id = jobs.job_param(st.query_params)
row = jobs.get(job_id) if job_id is not None else None
plan = (row.params.get("plan") or {}) if row is not None else {}
# the paper shown: the link's, else this session's last (kept while other pages are open), else paper 1
st.session_state.setdefault("repro.paper", plan["paper"] if plan.get("kind") == "reproduce"
                            else st.session_state.get(reproduce.LAST, "paper1"))
paper = st.segmented_control("Paper", list(reproduce.PAPERS), key="repro.paper",
                             format_func=reproduce.PAPERS.get) or "paper1"
st.session_state[reproduce.LAST] = paper
st.caption(reproduce.ABOUT[paper])
if st.button("Reproduce", icon=":material/science:", type="primary", key="repro.go"):
    with services.shown_errors(f"Cannot reproduce {paper}") as box:
        job_id = reproduce.start(paper)
    if not box.failed:
        st.query_params.from_dict({jobs.JOB: str(job_id)})
        st.rerun()
if job_id is not None and plan.get("kind") != "reproduce":
    st.warning(f"There is no reproduction job {job_id} in this store.", icon=":material/warning:")
else:
    shown = row if plan.get("paper") == paper else reproduce.job_for(paper)
    if shown is not None:
        st.fragment(sweeps.progress, run_every=1.0 if jobs.live(shown.params) else None)(shown.id)
        result = reproduce.tables(jobs.get(shown.id).params)
        if result is not None:
            with services.shown_errors(f"Cannot show {paper}"):
                reproduce.show(paper, result)

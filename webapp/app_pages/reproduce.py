"""Reproduce page: the papers' figures simulated beside their formulas (``batchlab reproduce``)."""
import streamlit as st

from webapp import reproduce, services

st.title("Reproduce the papers")
paper = st.segmented_control("Paper", list(reproduce.PAPERS), default="paper1", key="repro.paper",
                             format_func=reproduce.PAPERS.get) or "paper1"
st.caption(reproduce.ABOUT[paper])
if st.button("Reproduce", icon=":material/science:", type="primary", key="repro.go"):
    st.session_state[f"repro.{paper}"] = True
if st.session_state.get(f"repro.{paper}"):
    with services.shown_errors(f"Cannot reproduce {paper}"), st.spinner("Simulating…"):
        reproduce.show(paper, reproduce.tables(paper))

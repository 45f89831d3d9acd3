"""History page: stored runs, filterable and sortable; open, compare, export or delete them."""
import streamlit as st

from batchlab.webapp import history

st.title("Run history")
filters = history.filter_bar()
table = history.runs_table(filters)
if table is not None:
    history.actions(table)

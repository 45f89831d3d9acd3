"""Calibration page: upload a latency-grid CSV, see it as heatmaps, store it for runs."""
import streamlit as st

from batchlab.webapp import calib

st.title("Calibration grids")
st.caption("A grid holds measured prefill and decode-step times over batch size × context length; a run with "
           "latency model `grid:NAME` interpolates it instead of the parametric model.")

left, right = st.columns([1, 2], gap="large")
with left:
    st.markdown("##### Upload a grid")
    grid = calib.upload_panel()
    st.markdown("##### Available grids")
    shown = calib.grid_list()
with right:
    if grid is not None:
        calib.show_grid(grid, "Uploaded grid (not stored yet)" if not calib.is_stored(grid) else "Uploaded grid")
    elif shown is not None:
        calib.show_grid(shown, shown.name)

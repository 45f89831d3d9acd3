"""Calibration page helpers: validate an uploaded grid, list grids, draw a grid's heatmaps."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from batchlab.calibration import MAX_GRID_BYTES, named, parse_grid, upload_name
from batchlab.calibration.legacy import SPLIT_HELP
from batchlab.store.grids import bundled_grid_rows

from . import charts, fmt, services

FORMAT_HELP = ("CSV with columns batch_size, context_len, prefill_s, decode_step_s (seconds), optional "
               "peak_mem_gib, kv_cache_gib; optional `# key: value` metadata lines on top (`# name:` names "
               "the grid). Empty time cells mark cells that could not be measured. The older "
               "batch_size, max_seq_len, mean_latency_sec format is converted.")


def validate_upload(data: bytes, file_name: str, legacy_split: str | None = None):
    """Parse an uploaded grid, named by its ``# name:`` metadata, else the file stem; the
    GridError message names the line and column of the problem."""
    grid = parse_grid(data, legacy_split=legacy_split)
    return replace(grid, name=upload_name(grid, file_name))


def upload_panel():
    """File uploader, legacy split (legacy files only), name and save button; returns the
    validated uploaded Grid or None."""
    f = st.file_uploader("Grid CSV", type=["csv"], key="grid_upload", help=FORMAT_HELP,
                         max_upload_size=max(1, MAX_GRID_BYTES // 2**20))
    if f is None:
        st.caption(FORMAT_HELP)
        return None
    with services.shown_errors(f"{fmt.md(f.name)} is not a valid grid") as box:
        grid = validate_upload(f.getvalue(), f.name)
        if grid.meta.get("derived_from") == "legacy":
            split = st.text_input("Legacy split", value="writer", key=f"grid_split.{f.file_id}",
                                  help=f"This is a legacy whole-generation file: {SPLIT_HELP}.").strip()
            grid = validate_upload(f.getvalue(), f.name, split or None)
    if box.failed:
        return None
    name = st.text_input("Grid name", value=grid.name, key=f"grid_name.{f.file_id}",
                         help="Runs refer to it as latency model grid:NAME.").strip()
    t = grid.table
    st.success(f"Valid grid: {len(t):,} cells, {t['batch_size'].nunique()} batch sizes × "
               f"{t['context_len'].nunique()} context lengths.", icon=":material/check_circle:")
    if grid.warnings:
        with st.expander(f"{len(grid.warnings)} warning{'s' if len(grid.warnings) != 1 else ''} "
                         "(usable, but check these cells)", icon=":material/warning:"):
            for w in grid.warnings:
                st.warning(w)
    with services.shown_errors("Cannot save under this name") as naming:
        grid = named(grid, name)
    if not naming.failed and st.button("Save to the store", type="primary", icon=":material/save:",
                                       key="grid_save"):
        with services.shown_errors("Could not save the grid") as box:
            row, created = services.save_grid(grid)
        if not box.failed:
            what = "Saved" if created else "Already stored (same file)"
            st.success(f"{what} as **grid:{fmt.md(row.name)}**: choose it under *Latency model* on the Run or "
                       "Compare page.", icon=":material/check_circle:")
    return grid


def is_stored(grid) -> bool:
    try:
        return any(r.sha256 == grid.sha256 for r in services.get_store().list_grids())
    except Exception:  # noqa: BLE001 - only decides a caption
        return False


def grids_frame() -> pd.DataFrame:
    """Bundled and stored grids: name, where, model, device, cells, added."""
    rows = [{"name": r.name, "where": r.where, "model": r.model, "device": r.device, "cells": r.rows,
             "added": r.uploaded_at} for r in bundled_grid_rows() + services.get_store().list_grids()]
    return pd.DataFrame(rows, columns=["name", "where", "model", "device", "cells", "added"])


def grid_list():
    """Table of grids, a picker to view one, and delete for stored grids; returns the picked Grid."""
    with services.shown_errors("Cannot list grids") as box:
        df = grids_frame()
    if box.failed or df.empty:
        return None
    st.dataframe(df, hide_index=True, column_order=["name", "where", "model", "cells", "added"], column_config={
        "cells": st.column_config.NumberColumn("cells", format="%d"),
        "added": st.column_config.DatetimeColumn("added", format="YYYY-MM-DD HH:mm")})
    names = df["name"].tolist()
    pick = st.selectbox("Show grid", names, key="grid_pick")
    where = dict(zip(df["name"], df["where"]))[pick]
    grid = None
    with services.shown_errors(f"Cannot load grid {fmt.md(pick)}") as loaded:
        grid = services.resolve_grid(f"grid:{pick}")
    if where == "stored":
        with st.popover("Delete this grid", icon=":material/delete:"):
            st.write(f"Delete the stored grid **{fmt.md(pick)}**? Runs already computed with it stay in the store.")
            if st.button("Delete", type="primary", key="grid_delete"):
                with services.shown_errors("Could not delete the grid") as box:
                    services.get_store().delete_grid(pick)
                if not box.failed:
                    st.rerun()
    return None if loaded.failed else grid


def show_grid(grid, title: str) -> None:
    """Heatmaps of prefill and decode-step time (ms), metadata and the measured table."""
    st.markdown(f"##### {fmt.md(title)}")
    c1, c2 = st.columns(2)
    with c1:
        st.altair_chart(charts.grid_heatmap(grid.table, "prefill_s", "Prefill time (ms)"), width="stretch")
    with c2:
        st.altair_chart(charts.grid_heatmap(grid.table, "decode_step_s", "Decode step time (ms)"), width="stretch")
    st.caption("Blank cells were not measured (out of memory or skipped); the grid model extrapolates them.")
    if grid.meta:
        with st.expander("Metadata"):
            st.dataframe(pd.DataFrame({"key": list(grid.meta), "value": [str(v) for v in grid.meta.values()]}),
                         hide_index=True)
    with st.expander("Measured cells"):
        st.dataframe(grid.table, hide_index=True, column_config={
            "prefill_s": st.column_config.NumberColumn("prefill (s)", format="%.5f"),
            "decode_step_s": st.column_config.NumberColumn("decode step (s)", format="%.5f"),
            "peak_mem_gib": st.column_config.NumberColumn("peak memory (GiB)", format="%.2f"),
            "kv_cache_gib": st.column_config.NumberColumn("KV cache (GiB)", format="%.3f"),
        })
    st.caption(f"sha256 `{grid.sha256[:16]}…` · use it as latency model **grid:{fmt.md(grid.name)}**")

"""History page helpers: filters, the runs table with links, and actions on the selection."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

import pandas as pd
import streamlit as st

from batchlab.core import metric_catalog
from batchlab.core.config import MODES
from batchlab.workloads.spec import SYNTHETIC_RATE, SYNTHETIC_REQUESTS

from . import fmt, services, state

# the stored metric columns a page sorts by, labelled as the catalog labels them
SORTS = {"created_at": "Created",
         **{k: metric_catalog.BY_KEY[k].label for k in ("throughput_rps", "latency_p99_s", "sla_attainment",
                                                         "gpu_utilization", "num_requests")},
         "duration_s": "Compute time", "mode": "Mode"}
STATUSES = ("done", "failed", "running", "stale")
PAGE_SIZE = 25
# the columns the grid shows; their widths (COLUMN_WIDTHS, px) with the selection column sum to the
# 740 px a 900 px window gives the grid, the workload column takes the rest at a wider window
SHOWN = ("open", "created", "status", "mode", "GPU×bin", "deadlines", "req/s", "p99 (s)", "SLA %", "workload")
ROW_HEIGHT = 66  # px: three lines of text (Streamlit wraps a cell's text in rows above 64 px)
HEADER_HEIGHT = 36


def grid_height(rows: int) -> int:
    """The grid's height in px for ``rows`` rows: every row shown, no scrolling inside the grid."""
    return HEADER_HEIGHT + ROW_HEIGHT * max(rows, 1) + 2


def _describe(key: str) -> str:
    """A runs-table column's hover text: the catalog's label and description of its metric."""
    m = metric_catalog.BY_KEY[key]
    return f"{m.label}: {m.description}"


@dataclass
class Filters:
    search: str | None
    mode: str | None
    status: str | None
    order_by: str
    descending: bool
    page: int


def filter_bar() -> Filters:
    c = st.columns([3, 2, 2, 2, 2, 1], vertical_alignment="bottom")
    search = c[0].text_input("Search", key="hist.search", placeholder="workload label, mode or hash prefix")
    mode = c[1].selectbox("Mode", [None, *MODES], key="hist.mode", format_func=lambda m: m or "all modes")
    status = c[2].selectbox("Status", [None, *STATUSES], key="hist.status", format_func=lambda s: s or "any status")
    order_by = c[3].selectbox("Sort by", list(SORTS), key="hist.order", format_func=SORTS.get)
    descending = c[4].toggle("Descending", value=True, key="hist.desc")
    page = c[5].number_input("Page", min_value=1, value=1, step=1, key="hist.page")
    return Filters(search.strip() or None, mode, status, order_by, descending, int(page))


def arrivals_text(workload: dict | None) -> str:
    """How requests arrived, from a workload identity: ``2.12 req/s`` (a set mean rate, rounded),
    ``trace`` (the trace's own times), ``trace ×50`` (compressed 50x), ``poisson`` (re-drawn at the trace's rate)."""
    spec = (workload or {}).get("spec") or {}
    if not spec:
        return ""
    if spec.get("workload", "synthetic") == "synthetic":
        return fmt.rate(spec.get("rate") or SYNTHETIC_RATE)
    if spec.get("rate"):
        return fmt.rate(spec["rate"])
    scale = float(spec.get("rps_scaling") or 1.0)
    return (spec.get("arrival") or "trace") + (f" ×{scale:.3g}" if scale != 1 else "")


DEADLINES = (("TTFT", "d_sla_ttft"), ("TBT", "d_sla_tbt"), ("E2E", "d_sla_e2e"))


def deadlines_text(config: dict | None) -> str:
    """The SLA deadlines of a stored config, ``TTFT 10 s TBT 50 ms E2E 60 s`` (``off`` for one switched
    off): in the runs table's narrow column each wraps onto a line of its own."""
    config = config or {}
    if not any(key in config for _, key in DEADLINES):
        return ""
    return " ".join(f"{name} " + ("off" if config.get(key) is None else fmt.short_seconds(config[key]))
                    for name, key in DEADLINES)


def workload_text(workload: dict | None, latency: str = "") -> str:
    """A workload in a few words for the runs table: source and size, arrivals (rates rounded),
    lengths when not BurstGPT's, shared system prompts and conversations, predictor, a seed other than 0,
    and a latency model other than the parametric one (``synthetic 2,000 req, 12 req/s, noisy:0.5``).
    The stored label when there is no spec."""
    workload = workload or {}
    spec = workload.get("spec") or {}
    if not spec:
        return str(workload.get("label") or "")
    n = spec.get("num_requests")
    if spec.get("workload", "synthetic") == "synthetic":
        parts = [f"synthetic {int(n or SYNTHETIC_REQUESTS):,} req", arrivals_text(workload)]
        if spec.get("arrival") not in (None, "gamma"):
            parts[-1] += f" {spec['arrival']}"
        lengths = (spec.get("prompt_lengths", "burstgpt"), spec.get("output_lengths", "burstgpt"))
        if lengths != ("burstgpt", "burstgpt"):
            parts.append(f"prompt {lengths[0]}, output {lengths[1]}")
        if spec.get("system_prompts"):
            parts.append(f"{int(spec['system_prompts']):,} system prompt{'s' if spec['system_prompts'] != 1 else ''}")
        if spec.get("conversation_turns"):
            parts.append(f"{int(spec['conversation_turns']):,}-turn conversations")
    else:
        name = PurePath(str(spec.get("trace") or "trace")).stem
        rows = f"{int(n):,} req" if n else "all rows"
        offset = int(spec.get("offset") or 0)
        parts = [f"{name} {rows}" + (f" from row {offset:,}" if offset else ""), arrivals_text(workload)]
    parts.append(str(spec.get("predictor") or "noisy:0.5"))
    if spec.get("workload_seed"):
        parts.append(f"seed {spec['workload_seed']}")
    if latency and latency != "parametric":
        parts.append(str(latency))
    return ", ".join(p for p in parts if p)


def _facts(hashes: pd.Series) -> pd.DataFrame:
    """Latency model, arrivals, deadlines and the workload in words of each run (from its stored
    settings; fixed by its hash)."""
    rows = []
    for h in hashes:
        found = services.run_settings(h) or {}
        config = found.get("config") or {}
        latency = config.get("latency", "")
        rows.append({"latency": latency, "arrivals": arrivals_text(found.get("workload")),
                     "deadlines": deadlines_text(config), "workload": workload_text(found.get("workload"), latency)})
    return pd.DataFrame(rows, columns=["latency", "arrivals", "deadlines", "workload"], index=hashes.index)


def _num(col: pd.Series, scale: float = 1.0) -> pd.Series:
    """Numbers for a numeric column; a run without the metric (failed, running) is an empty cell."""
    return scale * pd.to_numeric(col, errors="coerce").astype("float64")


def display_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The table the user sees: units in headers, percentages as percent, an open link. ``latency`` and
    ``arrivals`` are in the workload's words too; the grid shows those (:data:`SHOWN`)."""
    if rows.empty:
        return rows
    facts = _facts(rows["hash"])
    return pd.DataFrame({
        "open": "./?" + state.RUN + "=" + rows["hash"],
        "created": rows["created_at"],
        "status": rows["state"],
        "mode": rows["mode"],
        "GPU×bin": rows["gpus"].astype(str) + "×" + rows["k_bins"].astype(str),
        "latency": facts["latency"],
        "arrivals": facts["arrivals"],
        "req/s": _num(rows["throughput_rps"]),
        "p99 (s)": _num(rows["latency_p99_s"]),
        "deadlines": facts["deadlines"],
        "SLA %": _num(rows["sla_attainment"], 100.0),
        # a run whose settings are gone (failed before it stored them) keeps its stored label
        "workload": facts["workload"].where(facts["workload"] != "", rows["label"]),
    })


def runs_table(f: Filters) -> pd.DataFrame | None:
    """Draw the filtered page of runs (multi-row selection); returns the selected rows."""
    query = {"mode": f.mode, "status": f.status, "search": f.search}
    with services.shown_errors("Cannot read the store") as box:
        total = services.count_runs(**query)
        rows = services.list_runs(**query, order_by=f.order_by, descending=f.descending, limit=PAGE_SIZE,
                                  offset=(f.page - 1) * PAGE_SIZE)
    if box.failed:
        return None
    pages = max(1, -(-total // PAGE_SIZE))
    matches = "1 stored run matches" if total == 1 else f"{total:,} stored runs match"
    st.caption(f"{matches} · page {min(f.page, pages)} of {pages} · select rows to open, compare, export or "
               "delete them")
    if rows.empty:
        st.info("No stored runs match. Runs appear here after you run them on the Run or Compare page.",
                icon=":material/info:")
        return None
    shown = display_frame(rows)
    event = st.dataframe(
        shown, hide_index=True, key="hist.table", on_select="rerun", selection_mode="multi-row",
        column_order=SHOWN, row_height=ROW_HEIGHT, height=grid_height(len(shown)),
        placeholder="—",  # a failed or running run has no metrics: a dash, not "None"
        column_config={  # widths sum to what a 900 px window shows; long text wraps within its row
            "open": st.column_config.LinkColumn("open", display_text="open", width=40),
            "created": st.column_config.DatetimeColumn("created", format="MM-DD HH:mm", width=78,
                                                       help="When the run was stored (the export has the year)"),
            "status": st.column_config.TextColumn(width=50, help="done, failed (open it for the reason), "
                                                                 "running, or stale (interrupted)"),
            "mode": st.column_config.TextColumn(width=138),
            "GPU×bin": st.column_config.TextColumn(width=56, help="GPUs × bins on predicted output length"),
            "deadlines": st.column_config.TextColumn(width=84, help="SLA deadlines: time to first token, mean "
                                                                    "time between tokens, end to end"),
            "req/s": st.column_config.NumberColumn(format="%.3g", width=46, help=_describe("throughput_rps")),
            "p99 (s)": st.column_config.NumberColumn(format="%.3g", width=48, help=_describe("latency_p99_s")),
            "SLA %": st.column_config.NumberColumn(format="%.1f", width=44, help=_describe("sla_attainment")),
            "workload": st.column_config.TextColumn(
                width=120, help="Source and requests, mean arrival rate (or the trace's own times, ×N "
                                "compressed), lengths, output-length predictor; a latency model other than parametric"),
        })
    picked = list(event.selection.rows) if event is not None else []
    return rows.iloc[picked]


def actions(selected: pd.DataFrame) -> None:
    """Open / compare / export / delete for the selected runs."""
    hashes = selected["hash"].tolist()
    n = len(hashes)
    bar = st.container(horizontal=True, vertical_alignment="center", gap="small")
    c = [bar] * 5
    if n == 1:
        c[0].page_link("app_pages/run.py", label="Open run", icon=":material/open_in_new:",
                       query_params={state.RUN: hashes[0]})
    else:
        c[0].button("Open run", disabled=True, help="Select one run", key="hist.open_off")
    if n >= 2:
        c[1].page_link("app_pages/compare.py", label=f"Compare {n} runs", icon=":material/compare_arrows:",
                       query_params={state.COMPARE: ",".join(hashes)})
    else:
        c[1].button("Compare", disabled=True, help="Select two or more runs", key="hist.cmp_off")
    what = f"{n} selected" if n else "all stored"
    ids = hashes if n else None
    c[2].download_button(f"Export {what} (CSV)", data=lambda: services.export_runs(ids, "csv"),
                         file_name="batchlab_runs.csv", mime="text/csv", icon=":material/download:",
                         key="hist.csv", on_click="ignore")
    c[3].download_button(f"Export {what} (JSON)", data=lambda: services.export_runs(ids, "json"),
                         file_name="batchlab_runs.json", mime="application/json", icon=":material/download:",
                         key="hist.json", on_click="ignore")
    with c[4].popover(f"Delete {n} selected" if n else "Delete", icon=":material/delete:", disabled=not n):
        st.write(f"Delete {n} run{'s' if n != 1 else ''} and all their stored data? This cannot be undone.")
        if st.button("Delete", type="primary", key="hist.delete"):
            with services.shown_errors("Could not delete") as box:
                gone = services.delete_runs(hashes)
            if not box.failed:
                st.session_state.pop("hist.table", None)
                st.toast(f"Deleted {gone} run{'s' if gone != 1 else ''}.", icon=":material/delete:")
                st.rerun()

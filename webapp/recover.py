"""What a page says about runs a link names but cannot show (not in this store, failed,
interrupted, still being computed), each with one button that recomputes them from the
settings the link or the stored row carries."""
from __future__ import annotations

import streamlit as st

from batchlab.core.config import ConfigError

from . import fmt, forms, jobs, pageutil, views

REASON = {"failed": "failed", "stale": "was interrupted before it finished", "running": "is being computed"}


def first_line(error: str | None) -> str:
    """The one-line reason of a stored error (its details stay in the server log)."""
    line = (error or "").strip().split("\n", 1)[0].strip()
    return fmt.clip(line) or "no reason was recorded"


def _settings(view: dict | None, fallback: dict | None) -> dict | None:
    """Settings to recompute a run: the stored row's own, else what the link carries."""
    if view is not None and view.get("config"):
        try:
            return views.settings_of_view(view)
        except (ConfigError, TypeError, KeyError):
            pass
    return fallback


def _follow_running(refs: list[str]) -> bool:
    """Show the progress of a stored job computing one of ``refs``, then rerun."""
    job_id = next((j for j in (jobs.computing(r) for r in refs) if j is not None), None)
    if job_id is None:
        return False
    pageutil.wait(job_id, "Being computed in the background; it appears here when it is stored.", "recover")
    st.rerun()
    return True


def _upload_note(settings: dict) -> None:
    name = settings["spec"].get("trace", "")
    source = forms.SOURCE_LABELS.get(settings.get("source"), forms.SOURCE_LABELS["upload"])
    st.info(f"It ran on the uploaded trace **{fmt.md(name)}**: a link cannot carry the file. Upload it in "
            f"the settings (Workload source: {source}) and run again.", icon=":material/upload_file:")


def run_problem(ref: str, view: dict | None, link_settings: dict | None) -> None:
    """Run page: the linked run is not done. Say why, in one line, and offer to compute it."""
    status = None if view is None else view["status"]
    if status == "running":
        if not _follow_running([ref]):
            st.info("This run is being computed by another process; it appears here once it is stored.",
                    icon=":material/hourglass_top:")
            st.button("Check again", key="run.check", icon=":material/refresh:")
        return
    settings = _settings(view, link_settings)
    if status == "failed":
        st.error(f"This run failed: {fmt.md(first_line(view.get('error')))}. The details are in the server log.",
                 icon=":material/error:")
        label = "Recompute with its own settings"
    elif status == "stale":
        st.warning("An earlier attempt to compute this run was interrupted before it finished.",
                   icon=":material/warning:")
        label = "Compute this run"
    elif settings is not None:
        st.warning("This run is not in this store. The link carries its settings (the form holds them too): "
                   "it can be computed here.", icon=":material/warning:")
        label = "Compute this run"
    else:
        st.warning(f"Run {fmt.md(ref[:12])} is not in this store, and this link names only its hash, not its "
                   "settings, so it cannot be recomputed here (links batchlab writes carry both).",
                   icon=":material/link_off:")
        return
    if settings is None:
        return
    if settings["source"] in forms.UPLOAD_SOURCES:
        _upload_note(settings)
    elif st.button(label, type="primary", icon=":material/play_arrow:", key="run.recompute"):
        pageutil.start("run", [settings], expect=[ref])


def comparison_problems(hashes: list[str], missing: list[tuple[int, str, dict | None]],
                        members: list[dict] | None) -> None:
    """Compare page: some runs of the comparison are not done. Name them and what happened to
    each; one button recomputes every one that can be (served from the store if it is there)."""
    running = [ref for _, ref, v in missing if v is not None and v["status"] == "running"]
    if running and _follow_running(running):
        return
    lines, todo, uploads = [], [], []
    for i, ref, v in missing:
        settings = _settings(v, members[i] if members else None)
        mode = settings["sim"]["mode"] if settings else (v or {}).get("mode") or f"run {ref[:12]}"
        status = None if v is None else v["status"]
        if status == "failed":
            what = f"failed ({first_line(v.get('error'))})"
        elif status is None:
            what = "is not in this store"
        else:
            what = REASON.get(status, status)
        lines.append(f"{mode} {what}")
        if status == "running":
            continue
        if settings is None:
            uploads.append(None)
        elif settings["source"] in forms.UPLOAD_SOURCES:
            uploads.append(settings)
        else:
            todo.append((i, settings))
    k, n = len(missing), len(hashes)
    st.warning(f"{k} of {n} run{'s' if n != 1 else ''} of this comparison cannot be shown: "
               + fmt.md("; ".join(lines)) + ".", icon=":material/warning:")
    if running:
        st.button("Check again", key="cmp.check", icon=":material/refresh:")
    if any(u is None for u in uploads):
        st.caption("This link names some runs only by their hash, not their settings, so they cannot be "
                   "recomputed here (links batchlab writes carry both).")
    for settings in (u for u in uploads if u is not None):
        _upload_note(settings)
    if todo and members is not None and len(members) == n:
        word = f"the {len(todo)} missing run{'s' if len(todo) != 1 else ''}"
        if st.button(f"Recompute {word}", type="primary", icon=":material/play_arrow:", key="cmp.recompute"):
            todo_at = {i for i, _ in todo}
            slots = [None if i in todo_at else h for i, h in enumerate(hashes)]
            every = [dict(members[i]) for i in range(n)]
            for i, settings in todo:
                every[i] = settings
            pageutil.start("compare", [s for _, s in todo], slots=slots, every=every, expect=list(hashes))

"""Steps shared by the Run and Compare pages: apply a URL to the form, take a trace upload,
start runs in the background and follow them, and remember how each result was obtained.

A submitted form (or a "recompute" button) validates its settings here, starts a stored
``runs`` job (:mod:`webapp.jobs`), folds the settings panel and reruns; :func:`follow` then
shows the job's progress where the results will appear, and returns the run hashes when it
is done. The job is stored, not kept by the script run: a user who switches page and comes
back, reloads, or opens the ``?job=ID`` link in another tab finds the progress (or the
result) again.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass

import streamlit as st

from batchlab.core.config import CONTINUOUS_MODES, ConfigError
from batchlab.store.job_runs import COMPILING, runs_plan, upload_ref
from batchlab.workloads import MAX_UPLOAD_BYTES, WorkloadError, WorkloadSpec

from . import fmt, forms, guard, jobs, services, state, views

OUTCOMES = "_outcomes"
UPLOAD = "_upload"  # the last valid trace upload of this session (per source: a BurstGPT CSV, a Mooncake trace)
BAD_UPLOAD = "_upload_bad"  # the name of an uploaded file that could not be read (while it stays uploaded)


@dataclass(frozen=True)
class UploadKind:
    """How a workload source takes its trace: the uploader's label, key and file types, what to ask for."""

    label: str
    key: str
    types: tuple[str, ...]
    what: str
    help: str


UPLOADS = {
    "upload": UploadKind("Trace file (BurstGPT, Azure, Splitwise/Vidur or plain CSV; vllm bench JSON; Mooncake "
                         "JSONL)", "trace_upload", ("csv", "json", "jsonl"), "a trace file",
                         "A BurstGPT CSV (6-column _1/_2 or 8-column _3 layout: Timestamp, Request tokens and "
                         "Response tokens are read), an Azure LLM inference CSV, a Splitwise or Vidur request CSV, "
                         "a plain arrival,prompt,output CSV, a vllm bench serve --save-detailed result or a "
                         "Mooncake JSONL trace; the format is told from the file's content (docs/traces.md). "
                         "Failed rows are dropped unless 'Keep failed rows' is set."),
    "mooncake": UploadKind("Mooncake trace (JSON Lines)", "mooncake_upload", ("jsonl",), "a Mooncake JSONL trace",
                           "A Mooncake trace: one JSON object per line with timestamp (ms), input_length, "
                           "output_length and hash_ids (the ids of the prompt's blocks of 'Tokens per hash id' "
                           "tokens; requests with equal ids share those blocks, for prefix caching). Rows with "
                           "output_length 0 are dropped unless 'Keep failed rows' is set."),
}


def _upload_key(source: str) -> str:
    """Where the session keeps a source's last valid upload (the BurstGPT one under :data:`UPLOAD`)."""
    return UPLOAD if source == "upload" else f"{UPLOAD}.{source}"
CONTEXT = {"run": "Could not run the simulation", "compare": "Could not run the comparison"}
POLL_S = 0.1  # how often a page reads a running job's progress
_compiled: list[bool] = []  # [True] once this server found the continuous engine compiled on disk


def apply_url(page: str, params: Mapping, refs: list[str]) -> None:
    """Seed the form: from the URL the first time this page sees it, else from the last settings.

    Settings in the URL win; a URL with only run hashes takes the first stored run's settings
    (and, on Compare, the modes of all of them). A bare URL (page switch) keeps the last
    submitted settings; widget state does not survive a page switch, so it is re-seeded then.
    """
    switched = st.session_state.get("_page") != page
    st.session_state["_page"] = page
    if not params or not state.applied_once(page, params):
        forms.seed_settings(st.session_state.get("settings") or state.default_settings(), overwrite=switched)
        return
    settings, problems = state.settings_from_params(params)
    has_settings = any(k not in (state.RUN, state.COMPARE) for k in params)
    if refs and not has_settings:
        shown = [v for v in (services.run_view(r) for r in refs) if v and "summary" in v]
        if shown:
            try:
                settings = views.settings_of_view(shown[0])
                settings["modes"] = list(dict.fromkeys(v["summary"]["mode"] for v in shown))
            except (ConfigError, TypeError) as exc:
                problems.append(f"the stored run's settings do not fit this version ({exc})")
    link_warnings(problems)
    forms.seed_settings(settings, overwrite=True)
    st.session_state["settings"] = settings


@functools.cache
def default_run_hash() -> str:
    """The hash of the run the Run form's defaults make here: a bare ``?run=<hash>`` link (written
    before run links named the mode) with this hash is the default run, which any store can recompute."""
    from batchlab.core.identity import run_identity
    from batchlab.core.latency import build_latency_model

    defaults = state.default_settings()
    cfg, spec = forms.build(defaults["sim"], defaults["spec"])
    return run_identity(cfg, services.make_workload(spec), build_latency_model(cfg))


def run_link_settings(ref: str, params: Mapping) -> dict | None:
    """The settings a run link carries (None: it names only a hash, and not the default run's)."""
    if any(k != state.RUN for k in params):
        return state.settings_from_params(params)[0]
    return state.default_settings() if ref == default_run_hash() else None


def link_warnings(problems: list[str]) -> None:
    """One warning per value a link carried that cannot be used (each cut to a readable length)."""
    for p in problems:
        st.warning(f"Link: {fmt.md(fmt.clip(p))}", icon=":material/link_off:")


def settings_panel(page: str, title: str, default_open: bool):
    """The foldable settings panel; folded after a submit so the results come into view."""
    key = f"{page}.settings"
    if st.session_state.pop(f"_fold.{page}", False):
        st.session_state[key] = False
    st.session_state.setdefault(key, default_open)
    return st.expander(title, key=key, on_change="rerun", icon=":material/tune:")


def trace_uploader(source: str) -> services.Upload | None:
    """The trace upload of an upload source (a BurstGPT CSV, a Mooncake JSONL trace), checked at once;
    None for the other sources. Its bytes are read, never a server path."""
    kind = UPLOADS.get(source)
    if kind is None:
        return None
    f = st.file_uploader(kind.label, type=list(kind.types), key=kind.key,
                         max_upload_size=MAX_UPLOAD_BYTES // 2**20, help=kind.help)
    if f is None:
        st.session_state.pop(BAD_UPLOAD, None)
        kept = st.session_state.get(_upload_key(source))
        if kept is not None:  # the uploader is not drawn while the settings are folded
            st.caption(f"Using **{fmt.md(kept.name)}**, uploaded earlier; upload another file to replace it.")
        else:
            st.caption(fmt.upload_limit(MAX_UPLOAD_BYTES))
        return kept
    upload = services.Upload(f.name, f.getvalue())
    with services.shown_errors(f"Cannot read {fmt.md(f.name)}") as box:
        w = services.make_workload(_upload_spec(source, f.name), upload)
    if box.failed:
        st.session_state.pop(_upload_key(source), None)
        st.session_state[BAD_UPLOAD] = f.name
        return None
    st.session_state.pop(BAD_UPLOAD, None)
    st.session_state[_upload_key(source)] = upload
    d = w.describe()
    shared = (f", {100 * d['shared_block_fraction']:.0f} % of its {d['prefix_block']:,}-token prompt blocks "
              "shared with another request" if "shared_block_fraction" in d else "")
    st.caption(f"{fmt.md(f.name)}: {d['requests']:,} requests over {fmt.seconds(d['duration_s'])} "
               f"(mean {fmt.sig(d['mean_rate_rps'], 'req/s')}), mean prompt "
               f"{fmt.number(d['prompt_mean'], 'tokens', 0)}, mean output {fmt.number(d['output_mean'], 'tokens', 0)}"
               f"{shared}.")
    return upload


def _upload_spec(source: str, name: str) -> WorkloadSpec:
    """The spec an upload is first read with (the whole file; a Mooncake trace in the form's hash_block)."""
    workload = forms.SOURCE_WORKLOADS[source]
    block = st.session_state.get(forms.WL + "hash_block") if workload == "mooncake" else None
    extra = {"hash_block": block} if isinstance(block, int) and not isinstance(block, bool) else {}
    try:
        return WorkloadSpec(workload=workload, trace=name, **extra)
    except WorkloadError:
        return WorkloadSpec(workload=workload, trace=name)


# ------------------------------------------------------------ background runs --
def missing_upload(source: str = "upload") -> str:
    """Why a run that reads an upload cannot start: no file yet, or the uploaded one could not be read."""
    what = UPLOADS[source].what
    bad = st.session_state.get(BAD_UPLOAD)
    if bad:
        return (f"trace: the uploaded file {bad} could not be read (the reason is under the uploader); "
                f"upload {what} that can be")
    return f"trace: upload {what} first"


def form_members(values: forms.FormValues, source: str, modes: list[str]) -> list[dict]:
    """One settings dict per mode from a submitted form. In a comparison of several modes the router and
    the prefill/decode split are the continuous modes': a batch-level mode runs its one shared queue."""
    def sim(mode: str) -> dict:
        out = {**values.sim, "mode": mode}
        if len(modes) > 1 and mode not in CONTINUOUS_MODES:
            out |= {"router": None, "disaggregate": None}
        return out

    return [{"sim": sim(m), "spec": dict(values.spec), "source": source} for m in modes]


def start(page: str, members: list[dict], upload: services.Upload | None = None,
          slots: list[str | None] | None = None, every: list[dict] | None = None, url: dict | None = None,
          remember: bool = False, expect: list[str] | None = None) -> None:
    """Validate ``members`` (settings dicts), start computing them as a stored job (:mod:`webapp.jobs`),
    fold the settings panel and rerun. Errors a user can fix are shown here and nothing starts.

    ``slots``: the hashes of the result, None where a member's run is still to come (default:
    all of them); ``every``: the settings of every slot (default: ``members``), for the link
    written when the job is done. ``url``: query parameters to show while the job runs (with
    ``job=ID``, so a reload or another tab finds it). ``remember``: these are the settings the
    form submitted (reseed it with them later). ``expect``: the hashes a link named, when this
    recomputes them. Every member passes the web's policy (:mod:`webapp.guard`): its trace is
    bundled or ``upload``.
    """
    with services.shown_errors(CONTEXT[page]) as box:
        if not members:
            raise ConfigError("mode", "pick at least one scheduler mode")
        built = []
        for m in members:
            uses = m["source"] in UPLOADS
            if uses:
                if upload is None:
                    raise WorkloadError(missing_upload(m["source"]))
                m["spec"]["trace"] = upload.name
            cfg, spec = forms.build(m["sim"], m["spec"])
            guard.check(cfg, spec, guard.session_uploads() | ({upload.name} if uses else set()))
            services.resolve_grid(cfg.latency)  # an unknown grid is named here, not in the background
            built.append((cfg, spec, uses))
        uses_upload = any(uses for _, _, uses in built)
        ref = upload_ref(upload.name, upload.data) if uses_upload else None
        job_id = jobs.launch(runs_plan(built, ref), again=True)
    if box.failed:
        return
    slots = list(slots) if slots is not None else [None] * len(members)
    st.session_state[f"_job.{page}"] = {"id": job_id, "slots": slots, "members": every or members,
                                        "expect": list(expect or [])}
    if remember:
        modes = [m["sim"]["mode"] for m in members] if page == "compare" else \
            (st.session_state.get("settings") or state.default_settings())["modes"]
        st.session_state["settings"] = {**members[0], "sim": dict(members[0]["sim"]), "modes": list(modes)}
    if url is not None:
        st.query_params.from_dict({**url, jobs.JOB: str(job_id)})
        state.mark_applied(page, url)
    st.session_state[f"_fold.{page}"] = True
    st.rerun()


def job_of(page: str, params: dict) -> int | None:
    """The job this page follows: the session's, else the one the URL names (``?job=ID``, taken
    out of ``params``)."""
    from_url = jobs.job_param(params)
    params.pop(jobs.JOB, None)
    mine = st.session_state.get(f"_job.{page}")
    if mine:
        return mine["id"]
    if from_url is not None:
        st.session_state[f"_job.{page}"] = {"id": from_url, "slots": None, "members": None, "expect": []}
    return from_url


def wait(job_id: int, message: str | None = None, key: str = "job") -> dict:
    """Draw the job's progress, with a Cancel button, until it ends (a page switch stops the
    drawing, not the job); its params then (a failure when the job was deleted meanwhile)."""
    holder = st.empty()
    with holder.container():
        if message:
            st.info(message, icon=":material/hourglass_top:")
        row = st.container(horizontal=True, vertical_alignment="center")
        bar = row.empty()
        if row.button("Cancel", icon=":material/cancel:", key=f"cancel.{key}.{job_id}"):
            jobs.cancel(job_id)
    row = jobs.get(job_id)
    while row is not None and jobs.live(row.params):
        bar.progress(*progress_of(row.params))
        time.sleep(POLL_S)
        row = jobs.get(job_id)
    holder.empty()
    return row.params if row is not None else {"status": "failed", "error": "the job was deleted",
                                                "user_error": True}


def progress_of(params: dict) -> tuple[float, str]:
    """(fraction done, text) of a job (:func:`webapp.jobs.progress_of`); a job not started yet while the
    continuous engine is not compiled on this machine waits for its runner to compile it, and says so."""
    frac, text = jobs.progress_of(params)
    if params.get("status", "new") in ("new", "starting") and not params.get("progress") and engine_compiling():
        return frac, COMPILING
    return frac, text


def engine_compiling() -> bool:
    """Whether the continuous engine still needs compiling on this machine (numba's disk cache, read by
    :func:`core.continuous_engine.compiling`; once compiled, it is not read again)."""
    if _compiled:
        return False
    from batchlab.core.continuous_engine import compiling

    if compiling():
        return True
    _compiled.append(True)
    return False


def follow(page: str, job_id: int | None) -> list[str] | None:
    """The page's job: its progress while it runs; its run hashes once done (the URL then names
    them), None when there is none or it did not finish (the reason is shown)."""
    plan = st.session_state.get(f"_job.{page}")
    if job_id is None or not plan:
        return None
    row = jobs.get(job_id)
    if row is None or (row.params.get("plan") or {}).get("kind") != "runs":
        st.session_state.pop(f"_job.{page}", None)
        st.warning(f"There is no run job {job_id} in this store: a finished run is in History; otherwise "
                   "press the button again.", icon=":material/warning:")
        return None
    params = row.params
    if jobs.live(params):
        params = wait(job_id, "Computing in the background: you may switch pages or close this tab; the result "
                              "is stored when it is done and shown here when you come back.", page)
    st.session_state.pop(f"_job.{page}", None)
    status = jobs.state_of(params)
    if status != "done":
        _not_done(page, job_id, status, params)
        return None
    outcomes = [services.Outcome(o["hash"], o["mode"], o["cached"], o["seconds"], _when(o.get("created_at")),
                                 o.get("compile_s", 0.0))
                for o in (params.get("result") or {}).get("outcomes", [])]
    notes = st.session_state.setdefault(OUTCOMES, {})
    for o in outcomes:
        notes[o.hash] = o
    if plan["slots"] is None:  # found by its link: the page draws the stored runs and their share link
        qp = {state.RUN: outcomes[0].hash} if page == "run" else \
            {state.COMPARE: ",".join(o.hash for o in outcomes)}
        st.query_params.from_dict(qp)
        st.rerun()
    computed = iter(outcomes)
    hashes = [h or next(computed).hash for h in plan["slots"]]
    if plan.get("expect") and hashes != plan["expect"]:
        st.info("Recomputed with this version of batchlab, the runs got new identities (the simulator or "
                "its bundled data differ from the link's); the address now names them.", icon=":material/info:")
    members = plan["members"]
    qp = state.run_params(hashes[0], members[0]) if page == "run" else state.comparison_params(hashes, members)
    st.query_params.from_dict(qp)
    state.mark_applied(page, qp)
    return hashes


def _not_done(page: str, job_id: int, status: str, params: dict) -> None:
    """Say why the job has no result: it failed (its error), was cancelled, or its runner is gone."""
    if status == "failed":
        st.error(f"{CONTEXT[page]}: {fmt.md(jobs.error_of(params))}", icon=":material/error:")
        st.caption("Open the settings to change them.")
    elif status == "cancelled":
        st.warning("Cancelled: nothing more was computed. Press the button again to compute it.",
                   icon=":material/cancel:")
    else:
        st.warning("The computation stopped before it finished (its runner process is gone, or it was "
                   "interrupted): runs it finished are stored.", icon=":material/warning:")
        if st.button("Resume", icon=":material/play_arrow:", key=f"resume.{page}.{job_id}"):
            with services.shown_errors(CONTEXT[page]) as box:
                plan = jobs.get(job_id).params["plan"]
                jobs.launch(plan, again=True)
            if not box.failed:
                st.session_state[f"_job.{page}"] = {"id": job_id, "slots": None, "members": None, "expect": []}
                st.query_params[jobs.JOB] = str(job_id)
                st.rerun()


def _when(text: str | None):
    from datetime import datetime

    return datetime.fromisoformat(text) if text else None


def note_for(hashes: list[str]) -> str | None:
    """How these results were obtained in this session: simulated now or served from the store."""
    notes = st.session_state.get(OUTCOMES, {})
    known = [notes[h] for h in hashes if h in notes]
    if not known:
        return None
    if len(known) == 1:
        o = known[0]
        if o.cached:
            return (f"Served from the store: this exact run was computed on {views.when(o.created_at)}; "
                    f"not recomputed (loaded in {fmt.seconds(o.seconds)}).")
        return f"Simulated in {fmt.seconds(o.seconds)}{_compile_part(known)} and saved to the store."
    cached = [o for o in known if o.cached]
    fresh = [o for o in known if not o.cached]
    parts = []
    if fresh:
        parts.append(f"{len(fresh)} simulated ({fmt.seconds(sum(o.seconds for o in fresh))}{_compile_part(fresh)})")
    if cached:
        parts.append(f"{len(cached)} served from the store, not recomputed ({', '.join(o.mode for o in cached)})")
    return f"{len(known)} runs: " + "; ".join(parts) + "."


def _compile_part(outcomes: list) -> str:
    """", plus N s compiling the continuous engine" when these runs compiled it first ("" otherwise)."""
    seconds = sum(o.compile_s for o in outcomes)
    return f", plus {fmt.seconds(seconds)} compiling the continuous engine (once after an install)" if seconds else ""


def stored_run_picker(limit: int = 300) -> list[str]:
    """Pick any finished stored runs to compare; returns their hashes once submitted."""
    with services.shown_errors("Cannot list stored runs") as box:
        df = services.list_runs(status="done", limit=limit)
    if box.failed:
        return []
    if df.empty:
        st.caption("No stored runs yet: run a simulation first.")
        return []
    labels = {r.hash: f"{r.mode} · {r.gpus} GPU · {r.label or 'workload'} · {views.when(r.created_at)} · {r.hash[:8]}"
              for r in df.itertuples()}
    with st.form("pick_runs", border=False):
        chosen = st.multiselect("Stored runs", list(labels), format_func=labels.get, key="cmp.picked",
                                max_selections=8, placeholder="Choose two or more runs",
                                help="Newest first; up to 8 runs.")
        go = st.form_submit_button("Compare selected runs", icon=":material/compare_arrows:")
    if go and not chosen:
        st.warning("Choose at least one run.")
    return list(chosen) if go else []

"""The web's run, comparison and reproduction jobs as stored plans (kinds ``runs`` and ``reproduce``).

A ``runs`` plan lists each run's config and workload spec, and whether it reads the uploaded
trace the plan names (kept under ``BATCHLAB_HOME/uploads``, named by its sha256, read back
and checked against that hash). Its runner builds each workload and stores each run through
``Store.get_or_run`` exactly as ``batchlab run`` does, so a run started on the web has the
run hash it has on the command line. A ``reproduce`` plan names a paper of
:mod:`core.reproduce`; its tables are the job's result.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from batchlab.core.config import ConfigError, SimConfig
from batchlab.core.sweep import SweepError
from batchlab.workloads import MAX_UPLOAD_BYTES, WorkloadSpec

from .errors import StoreError
from .paths import data_home

UPLOADS = "uploads"
COMPILING = "Compiling the continuous engine (once after an install, usually 30-90 s)…"
Report = Callable[[float, str, list], None]  # (fraction done, phase, run hashes)


# ------------------------------------------------------------------ uploads --
def save_upload(name: str, data: bytes) -> Path:
    """Keep an uploaded trace under the data home, named by its content (written whole, then
    renamed, so a runner never reads half a file); its path."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise SweepError(f"trace: the upload is larger than the {MAX_UPLOAD_BYTES // 2**20} MB limit")
    folder = data_home() / UPLOADS
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem)[:60] or "trace"
    path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}-{stem}.csv"
    if not path.exists():
        part = path.with_suffix(f".{os.getpid()}.part")
        part.write_bytes(data)
        part.replace(path)
    return path


def upload_ref(name: str, data: bytes) -> dict:
    """What a ``runs`` plan records of an upload: the name the user gave it, the kept file's name
    (never a path) and the sha256 of its bytes."""
    path = save_upload(name, data)
    return {"name": str(name), "file": path.name, "sha256": hashlib.sha256(data).hexdigest()}


def read_upload(ref: dict) -> bytes:
    """The bytes of an upload a plan names; StoreError when it is gone or changed."""
    file = str(ref.get("file", ""))
    if not file or Path(file).name != file or file.startswith("."):
        raise StoreError(f"the job's upload {file!r} is not a file name")
    path = data_home() / UPLOADS / file
    try:
        data = path.read_bytes()
    except OSError:
        raise StoreError(f"the uploaded trace {ref.get('name')!r} is no longer kept on the server: "
                         "upload it again") from None
    if hashlib.sha256(data).hexdigest() != ref.get("sha256"):
        raise StoreError(f"the uploaded trace {ref.get('name')!r} kept on the server has changed: upload it again")
    return data


# -------------------------------------------------------------------- plans --
def runs_plan(members: list[tuple[SimConfig, WorkloadSpec, bool]], upload: dict | None = None) -> dict:
    """A run (one member) or a comparison; each member says whether it reads ``upload``
    (:func:`upload_ref`)."""
    if not members:
        raise ConfigError("mode", "pick at least one scheduler mode")
    if any(uses for _, _, uses in members) and upload is None:
        raise SweepError("trace: upload a BurstGPT CSV file first")
    used = upload if any(uses for _, _, uses in members) else None
    return {"kind": "runs", "upload": used,
            "members": [{"config": c.to_dict(), "spec": s.to_dict(), "upload": bool(uses)} for c, s, uses in members]}


def reproduce_plan(paper: str) -> dict:
    from batchlab.core.reproduce import PAPERS

    if paper not in PAPERS:
        raise SweepError(f"paper: choose from {', '.join(PAPERS)}, not {paper!r}")
    return {"kind": "reproduce", "paper": paper}


def runs_title(plan: dict) -> str:
    modes = [m["config"].get("mode", "?") for m in plan["members"]]
    return f"run of {modes[0]}" if len(modes) == 1 else f"comparison of {', '.join(modes)}"


# ------------------------------------------------------------------ running --
def _members(plan: dict) -> list[tuple[SimConfig, WorkloadSpec, bool]]:
    try:
        return [(SimConfig.from_dict(m["config"]), WorkloadSpec.from_dict(m["spec"]), bool(m.get("upload")))
                for m in plan["members"]]
    except (ConfigError, TypeError, KeyError) as exc:
        raise SweepError(f"the stored job does not fit this version: {exc}") from None


def run_runs(plan: dict, store, sweep_id: int | None, report: Report) -> list[dict]:
    """Compute and store every member (served from the store when it holds it); one outcome per
    member: hash, mode, whether the store served it, seconds (a compile of the continuous engine left
    out: ``compile_s``, while it compiles the phase says :data:`COMPILING`), when it was computed."""
    from batchlab.calibration import resolve_grid
    from batchlab.core.continuous_engine import COMPILE_NOTICE, compile_watch
    from batchlab.core.identity import run_identity
    from batchlab.core.latency import build_latency_model
    from batchlab.workloads import build_workload, load_trace_bytes

    members = _members(plan)
    data = read_upload(plan["upload"]) if plan.get("upload") else None
    workloads, runs = {}, []
    report(0.0, "Building the workload…", [])
    for cfg, spec, uses in members:
        key = json.dumps([spec.to_dict(), uses], sort_keys=True, default=str)
        if key not in workloads:
            workloads[key] = (load_trace_bytes(data, plan["upload"]["name"], spec=spec) if uses
                              else build_workload(spec))
        grid = resolve_grid(cfg.latency, stored=store.get_grid, files=False)
        runs.append((cfg, workloads[key], grid))
    hashes = [run_identity(c, w, build_latency_model(c, g)) for c, w, g in runs]
    n, outcomes = len(runs), []
    for i, (cfg, workload, grid) in enumerate(runs):
        def step(frac: float, i=i, mode=cfg.mode) -> None:
            frac = min(max(frac, 0.0), 1.0)
            phase = f"Saving {mode} to the store…" if frac >= 1.0 else f"Simulating {mode}… {frac:.0%}"
            report((i + frac) / n, phase + (f" (run {i + 1} of {n})" if n > 1 else ""), hashes)

        def on_compile(text: str, i=i) -> None:
            if text == COMPILE_NOTICE:
                report(i / n, COMPILING, hashes)

        step(0.0)
        t0 = time.perf_counter()
        with compile_watch(on_compile) as watch:
            run, cached = store.get_or_run(cfg, workload, grid=grid, progress=step, sweep_id=sweep_id)
        if run.status != "done":
            raise StoreError(f"run {run.hash[:12]} of {cfg.mode} is {run.status}: {run.error or 'no result'}")
        created = run.created_at.isoformat() if run.created_at is not None else None
        outcomes.append({"hash": run.hash, "mode": cfg.mode, "cached": bool(cached),
                         "seconds": time.perf_counter() - t0 - watch.seconds, "compile_s": watch.seconds,
                         "created_at": created})
    report(1.0, "Done", hashes)
    return outcomes


def run_reproduce(plan: dict, executor, workers: int | None, on_run=None, on_left=None) -> dict:
    """The paper's tables (core.reproduce) on ``executor``, with its progress callbacks."""
    from batchlab.core.reproduce import reproduce

    return reproduce(plan["paper"], executor=executor, workers=workers, on_run=on_run, on_left=on_left)

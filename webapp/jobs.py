"""Runs computed outside the Streamlit script thread, so leaving a page never stops them.

A page validates its settings, then :func:`submit` starts a daemon thread that builds the
workload(s) and runs each member through ``Store.get_or_run`` (the store's claim protocol:
one row per run hash, written in one transaction when the run is done). The script thread
only polls :class:`Job` for progress; when the user switches page, Streamlit stops the
script (``StopException`` in the polling loop) and the job goes on. Nothing here calls
Streamlit, so no script-control exception can reach the simulation or the store.

Jobs live in a module-level registry keyed by what they compute; submitting the same work
while it runs joins the running job. A process that dies mid-run leaves a ``running`` claim
that the store reports as stale and the next request takes over, never a ``failed`` row.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from core.config import SimConfig
from core.identity import run_identity
from core.latency import build_latency_model
from store import StoreError
from workloads import WorkloadSpec

from .services import USER_ERRORS, Outcome, Upload, make_workload, user_message

log = logging.getLogger("batchlab.webapp.jobs")
KEEP_S = 1800.0  # finished jobs are kept this long for the page that started them
KEEP_MAX = 64


@dataclass(frozen=True)
class Member:
    """One run of a job: its validated settings and, for ``grid:NAME``, the grid to use."""

    config: SimConfig
    spec: WorkloadSpec
    grid: Any = None


@dataclass(eq=False)
class Job:
    """Progress and result of one background computation (read by any script thread)."""

    key: str
    modes: list[str]
    fraction: float = 0.0
    phase: str = "Building the workload…"
    hashes: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def running(self) -> bool:
        return not self.done.is_set()

    def text(self) -> str:
        """What the progress bar says now."""
        n = len(self.modes)
        if n == 1 or not self.hashes or not self.running:
            return self.phase
        return f"{self.phase} (run {min(len(self.outcomes) + 1, n)} of {n})"


_lock = threading.Lock()
_jobs: dict[str, Job] = {}


def job_key(members: list[Member], upload: Upload | None) -> str:
    """What a job computes: the members' settings and the uploaded trace's bytes."""
    blob = json.dumps([[m.config.to_dict(), m.spec.to_dict()] for m in members], sort_keys=True, default=str)
    h = hashlib.sha256(blob.encode())
    if upload is not None:
        h.update(upload.name.encode() + b"\0" + hashlib.sha256(upload.data).digest())
    return h.hexdigest()


def submit(store, members: list[Member], upload: Upload | None = None) -> Job:
    """Start computing ``members`` in the background (or join the same running job)."""
    key = job_key(members, upload)
    with _lock:
        _prune()
        job = _jobs.get(key)
        if job is not None and job.running:
            return job
        job = Job(key, [m.config.mode for m in members])
        _jobs[key] = job
    threading.Thread(target=_work, args=(job, store, members, upload), name=f"batchlab-job-{key[:8]}",
                     daemon=True).start()
    return job


def get(key: str | None) -> Job | None:
    with _lock:
        return _jobs.get(key) if key else None


def computing(run_hash: str) -> Job | None:
    """The running job that is computing the run ``run_hash``, if any (in this process)."""
    with _lock:
        return next((j for j in _jobs.values() if j.running and run_hash in j.hashes), None)


def _prune() -> None:
    now = time.monotonic()
    old = [k for k, j in _jobs.items() if j.finished is not None and now - j.finished > KEEP_S]
    for k in old:
        del _jobs[k]
    finished = sorted((j.finished, k) for k, j in _jobs.items() if j.finished is not None)
    for _, k in finished[:max(0, len(_jobs) - KEEP_MAX)]:
        del _jobs[k]


def _work(job: Job, store, members: list[Member], upload: Upload | None) -> None:
    n = len(members)
    try:
        workloads: dict[str, Any] = {}
        for m in members:
            k = json.dumps(m.spec.to_dict(), sort_keys=True, default=str)
            if k not in workloads:
                workloads[k] = make_workload(m.spec, upload)
        runs = [(m, workloads[json.dumps(m.spec.to_dict(), sort_keys=True, default=str)]) for m in members]
        job.hashes = [run_identity(m.config, w, build_latency_model(m.config, m.grid)) for m, w in runs]
        for i, (m, w) in enumerate(runs):
            mode = m.config.mode

            def step(frac: float, i=i, mode=mode) -> None:
                frac = min(max(frac, 0.0), 1.0)
                job.fraction = (i + frac) / n
                job.phase = (f"Saving {mode} to the store…" if frac >= 1.0 else
                             f"Simulating {mode}… {frac:.0%}")

            step(0.0)
            t0 = time.perf_counter()
            run, cached = store.get_or_run(m.config, w, grid=m.grid, progress=step)
            if run.status != "done":
                raise StoreError(f"run {run.hash[:12]} of {mode} is {run.status}: {run.error or 'no result'}")
            job.outcomes.append(Outcome(run.hash, mode, cached, time.perf_counter() - t0, run.created_at))
        job.fraction, job.phase = 1.0, "Done"
    except USER_ERRORS as exc:
        log.info("job %s: %s", job.key[:12], exc)
        job.error = user_message(exc)
    except Exception as exc:  # noqa: BLE001 - a one-line message for the page, the traceback for the log
        log.exception("job %s failed", job.key[:12])
        job.error = user_message(exc)
    finally:
        job.finished = time.monotonic()
        job.done.set()

"""Every background job the pages start: one stored job, run by one runner process.

A run, a comparison, a sweep, a capacity search, the stress suite, a capacity plan and a
paper's reproduction are each a stored plan (a sweep row, :mod:`store.sweep_jobs`): its
params hold the plan, its ``status`` (starting, running, done, failed, cancelled,
interrupted), its ``progress`` and its ``result``. The same plan reopens the same job, so
submitting work that runs already joins it; ``?job=ID`` (on the Sweeps and Plan pages, the job's
link, ``?sweep=<key>`` or ``?plan=<key>``: :mod:`webapp.sweeps`) finds it from another tab or after
a reload.

:func:`launch` hands the job to a warm standby runner (``python -m store.sweep_jobs --standby``:
modules imported, the engine compiled, waiting on its stdin), then starts the next standby, so
a click does not wait for a Python process to start. The runner is detached from the server:
closing the browser or restarting the server does not stop it. A job whose runner is gone
(killed, or its machine restarted) reads ``stopped`` and can be resumed; :func:`cancel` sets
the job's ``cancel`` flag and signals its runner, which ends it ``cancelled``.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from batchlab.store import claims
from batchlab.store.sweep_jobs import ENV_PREFIX, open_plan, runner_alive, worker_env

from . import fmt, services

log = logging.getLogger("batchlab.webapp.jobs")
ROOT = Path(__file__).resolve().parents[1]
STANDBY = [sys.executable, "-m", "batchlab.store.sweep_jobs", "--standby"]
LIVE = ("new", "starting", "running")
JOB = "job"
NEXT_AFTER_S = 2.0  # the next standby starts this long after a launch: its warm-up would take the CPU that
# the job and the page drawing its result need

_lock = threading.Lock()
_standby: subprocess.Popen | None = None
_handed: list[subprocess.Popen] = []  # runners handed a job, reaped once they end
_next_at = 0.0  # no standby starts on its own before this time (time.monotonic)


# ------------------------------------------------------------------ state --
def state_of(params: dict) -> str:
    """The job's status, with ``stopped`` for a live one whose runner process is gone."""
    status = params.get("status", "new")
    if status in ("starting", "running") and not runner_alive(params):
        return "stopped"
    return status


def live(params: dict) -> bool:
    return state_of(params) in LIVE


def get(job_id: int | None):
    """The job's row (None when there is none)."""
    return services.get_store().get_sweep(job_id) if job_id is not None else None


def error_of(params: dict) -> str:
    """A failed job's error as a page shows it: a user's mistake in its own words (one line),
    anything else by its kind only (the details are in the runner's log)."""
    text = (params.get("error") or "").strip()
    if not text:
        return "no reason was recorded"
    if params.get("user_error"):
        return fmt.clip(text.split(": ", 1)[1] if ": " in text.split("\n", 1)[0] else text)
    kind = text.split(":", 1)[0].strip().rsplit(".", 1)[-1] or "error"
    return f"unexpected {kind}; the details are in the server's job log"


def progress_of(params: dict) -> tuple[float, str]:
    """(fraction done, what the job does now) for a progress bar. A job that knows its runs beforehand
    counts them (``3 of 12 runs done``); a search that learns how many it needs as it goes (a capacity
    search, a plan, a reproduction) records its estimate (``left``), and the bar is the share of the
    runs done and estimated left, said as an estimate."""
    prog = params.get("progress") or {}
    done, total, failed, left = prog.get("done", 0), prog.get("total"), prog.get("failed", 0), prog.get("left")
    if "fraction" in prog:
        return min(max(float(prog["fraction"]), 0.0), 1.0), prog.get("phase") or "Starting…"
    if params.get("status", "new") in ("new", "starting") and not prog:
        return 0.0, "Starting…"
    phase = f"{prog['phase']} · " if prog.get("phase") else ""
    bad = f", {failed:,} failed" if failed else ""
    if left is not None:
        planned = done + left
        frac = done / planned if planned else 1.0
        return frac, f"{phase}{done:,} of about {planned:,} runs done{bad}, about {left:,} left"
    if total:
        return min(done / total, 1.0), f"{phase}{done:,} of {total:,} runs done{bad}"
    return 0.0, f"{phase}{done:,} runs done{bad}; how many it needs is not known yet"


def computing(run_hash: str) -> int | None:
    """The live job computing the run ``run_hash``, if any."""
    for row in services.get_store().list_sweeps():
        plan = row.params.get("plan") or {}
        if plan.get("kind") == "runs" and live(row.params) and \
                run_hash in (row.params.get("progress") or {}).get("hashes", []):
            return row.id
    return None


def job_param(params) -> int | None:
    raw = params.get(JOB)
    text = (raw[-1] if isinstance(raw, list) else raw) or ""
    return int(text) if str(text).strip().isdigit() else None


# ----------------------------------------------------------------- launch --
def launch(plan: dict, cluster_address: str | None = None, workers: int | None = None, again: bool = False) -> int:
    """Store ``plan`` as a job (the same plan reopens its job) and run it unless it runs already or
    (unless ``again``) it finished. ``cluster_address``: a Dask scheduler the operator offers."""
    store = services.get_store()
    job_id = open_plan(store, plan)
    with _lock:
        params = store.get_sweep(job_id).params
        if state_of(params) in ("starting", "running"):
            return job_id
        if not again and params.get("status") == "done" and params.get("result") is not None:
            return job_id
        runner = _take_standby()
        me = claims.this_process()
        store.update_sweep(job_id, status="starting", cancel=False, error=None, user_error=None, result=None,
                           progress={}, started_at=None, finished_at=None,
                           runner={"host": me.host, "pid": runner.pid, "proc_start": claims.process_start(runner.pid)})
        order = {"sweep": job_id, "cluster": cluster_address, "workers": workers,
                 "env": {k: v for k, v in {**os.environ, **worker_env(store)}.items() if k.startswith(ENV_PREFIX)}}
        try:
            runner.stdin.write(json.dumps(order) + "\n")
            runner.stdin.close()
        except OSError as exc:  # it died since we looked: the job reads stopped, and can be resumed
            log.warning("could not hand job %s to runner %s: %s", job_id, runner.pid, exc)
        _handed.append(runner)
        _later(runner)
    return job_id


def cancel(job_id: int) -> None:
    """Ask the job to stop: its ``cancel`` flag, which its runner reads when it starts and each time it
    reports progress (wherever it runs), and SIGTERM to a running runner on this machine (at once)."""
    store = services.get_store()
    params = store.update_sweep(job_id, cancel=True)
    runner = params.get("runner") or {}
    if params.get("status") == "running" and runner.get("host") == socket.gethostname() and runner_alive(params):
        try:
            os.kill(int(runner["pid"]), signal.SIGTERM)
        except OSError:
            pass  # it ended since we looked
    elif params.get("status") == "new" or (params.get("status") == "starting" and not runner_alive(params)):
        store.update_sweep(job_id, status="cancelled", runner=None)  # nothing runs it


# ----------------------------------------------------------------- standby --
def prepare(now: bool = False) -> None:
    """Start a standby runner if none waits (and, unless ``now``, none is due to start soon), so the next
    job starts at once."""
    with _lock:
        if now or time.monotonic() >= _next_at:
            prepare_locked()


def prepare_locked() -> None:
    global _standby
    _handed[:] = [p for p in _handed if p.poll() is None]
    if _standby is None or _standby.poll() is not None:
        _standby = subprocess.Popen(STANDBY, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, text=True, start_new_session=True)


def _later(runner: subprocess.Popen) -> None:
    """Start the next standby :data:`NEXT_AFTER_S` from now (reaping ``runner`` if it ended by then)."""
    global _next_at
    _next_at = time.monotonic() + NEXT_AFTER_S

    def start() -> None:
        with _lock:
            prepare_locked()

    timer = threading.Timer(NEXT_AFTER_S, start)
    timer.daemon = True
    timer.start()


def _take_standby() -> subprocess.Popen:
    global _standby
    prepare_locked()  # a job launched before the next standby is due starts a cold runner
    runner, _standby = _standby, None
    return runner


@atexit.register
def shutdown() -> None:
    """Let the waiting standby go (it exits at the end of its input); jobs handed out run on."""
    global _standby
    with _lock:
        if _standby is not None:
            try:
                _standby.stdin.close()
                _standby.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
            _standby = None

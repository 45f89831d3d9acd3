"""Web background jobs (webapp.jobs, store.sweep_jobs, store.job_runs): every job is a stored row run by
the one runner process; its progress, result, cancel, a dead runner and its errors, and a web run
stored exactly as the command line stores it."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from batchlab.core.config import SimConfig
from batchlab.core.identity import run_identity
from batchlab.core.latency import build_latency_model
from batchlab.store import StoreError, job_runs, open_store
from batchlab.store.sweep_jobs import STOPPED, Cancelled, open_plan, run_plan
from batchlab.workloads import WorkloadSpec, build_workload, bundled_traces

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "webapp" / "app.py")
SPEC = WorkloadSpec(num_requests=300)
LONG = WorkloadSpec(num_requests=400_000, rate=50.0)  # tens of seconds: long enough to stop it midway
pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("isolated_app")]


def store():
    from batchlab.webapp import services

    return services.get_store()


def until(job_id: int, states: tuple[str, ...], timeout: float = 120) -> dict:
    """The job's params once its state (webapp.jobs.state_of) is one of ``states``."""
    from batchlab.webapp import jobs

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        params = store().get_sweep(job_id).params
        if jobs.state_of(params) in states:
            return params
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} is {jobs.state_of(params)}, not {states}: {params}")


def runs_plan(*modes: str, spec: WorkloadSpec = SPEC) -> dict:
    return job_runs.runs_plan([(SimConfig(mode=m), spec, False) for m in modes])


# ------------------------------------------------------------ in the runner --
def test_a_runs_job_reports_progress_and_stores_each_run_with_its_identity():
    s = store()
    plan = runs_plan("static_fifo", "dynamic_no_bins")
    job_id = open_plan(s, plan)
    phases = []
    out = run_plan(plan, store=s, sweep_id=job_id, on_event=lambda d, t, what: phases.append(what))
    assert any(p.startswith("Simulating static_fifo") and p.endswith("(run 1 of 2)") for p in phases)
    assert any(p.startswith("Saving dynamic_no_bins to the store…") for p in phases)
    w = build_workload(SPEC)
    want = [run_identity(SimConfig(mode=m), w, build_latency_model(SimConfig(mode=m))) for m in
            ("static_fifo", "dynamic_no_bins")]
    assert [o["hash"] for o in out.outcomes] == want
    params = s.get_sweep(job_id).params
    assert params["status"] == "done" and params["progress"]["hashes"] == want
    assert [o["hash"] for o in params["result"]["outcomes"]] == want
    assert [m["hash"] for m in s.sweep_members(job_id)] == want  # the job's runs are linked to it
    again = run_plan(plan, store=s, sweep_id=job_id)
    assert [o["cached"] for o in again.outcomes] == [True, True]


def test_a_cancelled_job_stops_before_it_simulates():
    s = store()
    plan = runs_plan("static_fifo")
    job_id = open_plan(s, plan)
    s.update_sweep(job_id, status="starting", cancel=True)  # cancelled while its runner started
    with pytest.raises(Cancelled):
        run_plan(plan, store=s, sweep_id=job_id, launched=True)
    assert s.get_sweep(job_id).params["status"] == "cancelled" and s.count_runs() == 0
    out = run_plan(plan, store=s, sweep_id=job_id)  # the command line runs it again: an old flag is cleared
    assert s.get_sweep(job_id).params["status"] == "done" and len(out.outcomes) == 1


@pytest.mark.parametrize("exc, shown", [
    (RuntimeError("internal detail 0xBEEF"), "unexpected RuntimeError; the details are in the server's job log"),
    (StoreError("the disk is full"), "the disk is full"),
])
def test_a_failed_job_records_one_line_and_only_a_users_error_in_its_words(monkeypatch, caplog, exc, shown):
    from batchlab.webapp import jobs

    def broken(*a, **k):
        raise exc

    caplog.set_level(logging.ERROR, logger="batchlab.store.sweep_jobs")
    monkeypatch.setattr(job_runs, "_members", broken)
    s = store()
    plan = runs_plan("multi_bin_fixed")
    job_id = open_plan(s, plan)
    with pytest.raises(type(exc)):
        run_plan(plan, store=s, sweep_id=job_id)
    params = s.get_sweep(job_id).params
    assert params["status"] == "failed" and jobs.error_of(params) == shown
    assert "\n" not in jobs.error_of(params)
    assert params["user_error"] is isinstance(exc, StoreError)
    if not params["user_error"]:
        assert "0xBEEF" in caplog.text  # the details go to the runner's log


def test_an_upload_is_read_back_only_when_unchanged(tmp_path):
    raw = bundled_traces()["BurstGPT_1_first400"].read_bytes()
    ref = job_runs.upload_ref("mine.csv", raw)
    assert "/" not in ref["file"] and job_runs.read_upload(ref) == raw
    with pytest.raises(StoreError, match="not a file name"):
        job_runs.read_upload({**ref, "file": "../store.db"})
    with pytest.raises(StoreError, match="has changed"):
        job_runs.read_upload({**ref, "sha256": "0" * 64})


# ------------------------------------------------------ through the runner --
def test_the_same_plan_joins_the_running_job_and_cancel_ends_it():
    from batchlab.webapp import jobs

    plan = runs_plan("static_fifo", spec=LONG)
    job_id = jobs.launch(plan, again=True)
    runner = until(job_id, ("running",))["runner"]
    assert jobs.launch(plan, again=True) == job_id  # joined: no second runner
    assert store().get_sweep(job_id).params["runner"]["pid"] == runner["pid"]
    until(job_id, ("running",))
    jobs.cancel(job_id)
    params = until(job_id, ("cancelled",), 60)
    assert params["runner"] is None
    for row in store().list_runs():  # no claim left for others to wait on; the reason in one line
        assert row.status == "failed" and STOPPED in store().get_run(row.hash).error.split("\n", 1)[0]


def test_a_job_whose_runner_died_reads_stopped_and_resumes():
    from batchlab.webapp import jobs

    plan = runs_plan("static_fifo", spec=WorkloadSpec(num_requests=100_000, rate=50.0))
    job_id = jobs.launch(plan, again=True)
    pid = until(job_id, ("running",))["runner"]["pid"]
    os.kill(pid, signal.SIGKILL)  # what a crash or a machine's restart does
    params = until(job_id, ("stopped",), 30)
    assert params["status"] == "running"  # as the runner left it: its state says it is gone
    assert jobs.launch(plan, again=True) == job_id
    params = until(job_id, ("done",), 240)
    [outcome] = params["result"]["outcomes"]
    assert store().get_run(outcome["hash"]).status == "done"  # the stale claim was taken over


def test_the_standby_runner_exits_when_the_server_does():
    from batchlab.webapp import jobs

    jobs.prepare(now=True)
    standby = jobs._standby
    assert standby is not None and standby.poll() is None
    jobs.shutdown()
    assert standby.wait(30) == 0


# --------------------------------------------------------------- the pages --
def test_a_web_run_is_stored_exactly_as_the_command_line_stores_it(tmp_path):
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.selectbox(key="sim.mode").set_value("static_fifo")
    at.number_input(key="sim.gpus").set_value(3)
    at.number_input(key="wl.num_requests").set_value(700)
    [b for b in at.button if b.label == "Run simulation"][0].click().run()
    assert not at.exception, at.exception
    web = store().get_run(at.query_params["run"])
    cli_db = f"sqlite:///{tmp_path / 'cli.db'}"
    subprocess.run([sys.executable, "-m", "batchlab", "run", "--mode", "static_fifo", "--gpus", "3",
                    "--num-requests", "700", "--db", cli_db, "--json"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, env=dict(os.environ, BATCHLAB_DB_URL=cli_db))
    with open_store(cli_db) as cli_store:
        [row] = cli_store.list_runs()
        cli = cli_store.get_run(row.hash)
    assert cli.hash == web.hash
    assert cli.config_dict == web.config_dict and cli.workload == web.workload and cli.latency == web.latency
    assert cli.summary == web.summary


def test_a_reload_finds_the_running_job_by_its_link():
    """Another tab (or a reload, or a restarted server) opens ?job=ID: it follows the job to its result."""
    from batchlab.webapp import jobs

    plan = job_runs.runs_plan([(SimConfig(mode="static_fifo", gpus=5), WorkloadSpec(num_requests=20_000), False)])
    job_id = jobs.launch(plan, again=True)
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["job"] = str(job_id)
    at.run()
    assert not at.exception, at.exception
    params = store().get_sweep(job_id).params
    assert at.query_params["run"] == params["result"]["outcomes"][0]["hash"]
    assert "5 GPUs" in at.subheader[0].value and not at.error


def test_a_failed_or_cancelled_job_is_said_on_its_page():
    from batchlab.webapp import jobs

    s = store()
    failed = open_plan(s, runs_plan("static_fifo"))
    s.update_sweep(failed, status="failed", error="RuntimeError: internal detail 0xBEEF", user_error=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["job"] = str(failed)
    at.run()
    text = " ".join(e.value for e in at.error)
    assert "unexpected RuntimeError" in text and "0xBEEF" not in text and "Traceback" not in text
    cancelled = open_plan(s, runs_plan("dynamic_no_bins"))
    s.update_sweep(cancelled, status="cancelled", cancel=True)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["job"] = str(cancelled)
    at.run()
    assert "Cancelled" in " ".join(w.value for w in at.warning)
    assert jobs.state_of(s.get_sweep(cancelled).params) == "cancelled"

"""Background runs (webapp.jobs): they run outside any Streamlit script thread, say "saving"
after the simulation, join when the same work is submitted twice, fail with one line."""
from __future__ import annotations

import logging
import threading
from types import SimpleNamespace

import pytest

from core.config import SimConfig
from store import StoreError, open_store
from webapp import jobs
from workloads import WorkloadSpec

pytestmark = pytest.mark.timeout(60)
SPEC = WorkloadSpec(num_requests=60)


class FakeStore:
    """Records what the job asks of the store; ``gate`` holds the run until it is set."""

    def __init__(self, fail: BaseException | None = None):
        self.fail, self.gate, self.calls, self.texts = fail, threading.Event(), [], []
        self.job: jobs.Job | None = None

    def get_or_run(self, config, workload, grid=None, progress=None):
        from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

        self.calls.append((config.mode, get_script_run_ctx()))
        assert self.gate.wait(30)
        if self.fail is not None:
            raise self.fail
        progress(0.5)
        self.texts.append(self.job.text())
        progress(1.0)
        self.texts.append(self.job.text())
        return SimpleNamespace(status="done", hash=f"h-{config.mode}", created_at=None, error=None), False


def _run(store, modes=("static_fifo",), hold: bool = False) -> jobs.Job:
    """Submit ``modes``; the fake store lets the run go on unless ``hold``."""
    members = [jobs.Member(SimConfig(mode=m), SPEC) for m in modes]
    job = jobs.submit(store, members)
    store.job = job
    if not hold:
        store.gate.set()
    return job


def test_progress_says_saving_once_the_simulation_is_done():
    store = FakeStore()
    job = _run(store, ("static_fifo", "dynamic_no_bins"))
    assert job.done.wait(30) and job.error is None
    assert store.texts[0].startswith("Simulating static_fifo… 50%") and store.texts[0].endswith("(run 1 of 2)")
    assert store.texts[1].startswith("Saving static_fifo to the store…")
    assert store.texts[3].startswith("Saving dynamic_no_bins to the store…") and "(run 2 of 2)" in store.texts[3]
    assert [o.hash for o in job.outcomes] == ["h-static_fifo", "h-dynamic_no_bins"]
    assert len(job.hashes) == 2 and job.hashes[0] != job.hashes[1]  # the real run identities


def test_the_simulation_never_runs_in_a_script_thread():
    """No Streamlit script context in the worker: a page switch (StopException) cannot reach it."""
    store = FakeStore()
    job = _run(store)
    assert job.done.wait(30)
    assert store.calls == [("static_fifo", None)]


def test_the_same_work_joins_the_running_job():
    store = FakeStore()
    first = _run(store, hold=True)
    second = _run(store, hold=True)
    assert second is first and first.running
    store.gate.set()
    assert first.done.wait(30)
    assert len(store.calls) == 1
    third = _run(store)  # finished: a new submission is a new job (the store serves it)
    assert third is not first and third.done.wait(30)


def test_errors_are_one_line_and_the_details_go_to_the_log(caplog):
    caplog.set_level(logging.INFO, logger="batchlab.webapp.jobs")
    job = _run(FakeStore(fail=RuntimeError("internal detail 0xBEEF")), ("multi_bin_fixed",))
    assert job.done.wait(30)
    assert "RuntimeError" in job.error and "0xBEEF" not in job.error and "\n" not in job.error
    assert "0xBEEF" in caplog.text
    job = _run(FakeStore(fail=StoreError("the disk is full")), ("dynamic_no_bins",))
    assert job.done.wait(30) and job.error == "the disk is full"


def test_a_job_stores_its_run_after_the_thread_that_started_it_is_gone(tmp_path):
    """What a page switch does to the script thread: it ends. The run is still stored, never failed."""
    store = open_store(f"sqlite:///{tmp_path}/store.db")
    started: list[jobs.Job] = []

    def script():
        from streamlit.runtime.scriptrunner_utils.exceptions import StopException

        try:
            started.append(jobs.submit(store, [jobs.Member(SimConfig(mode="static_fifo", gpus=3), SPEC)]))
            raise StopException()  # what Streamlit raises in the script thread when the user leaves
        except StopException:
            pass  # the script runner ends the run here

    t = threading.Thread(target=script)
    t.start()
    t.join()
    job = started[0]
    assert job.done.wait(30) and job.error is None
    run = store.get_run(job.outcomes[0].hash)
    assert run.status == "done" and run.hash == job.hashes[0]
    assert store.count_runs(status="failed") == 0
    store.close()

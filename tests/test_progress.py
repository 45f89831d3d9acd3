"""Progress that means something: a capacity search and a plan estimate the runs they have left, a job's
progress reads as done of planned (an estimate said as one), and the Sweeps page draws it from the record."""
from __future__ import annotations

import os
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from batchlab.core.capacity import BisectionSearch, search_capacities
from batchlab.core.config import SimConfig
from batchlab.core.plan import plan
from batchlab.core.plan_options import PlanOptions
from batchlab.core.sweep import Member, MemberResult
from batchlab.store import claims
from batchlab.store.sweep_jobs import capacity_plan, open_plan, plan_key
from batchlab.webapp import jobs
from batchlab.workloads import WorkloadSpec

APP = str(Path(__file__).resolve().parents[1] / "webapp" / "app.py")


def fake_job(member: Member) -> MemberResult:
    """No simulation: every request meets the SLA below 2.5 req/s per GPU, half of them above."""
    per_gpu = member.spec.rate / member.config.gpus
    summary = {"sla_attainment": 1.0 if per_gpu < 2.5 else 0.5, "throughput_rps": member.spec.rate,
               "latency_p99_s": per_gpu}
    return MemberResult(member.key, member.point, "done", summary, run_hash=member.key)


def test_probes_left_follows_the_bracket():
    s = BisectionSearch(0.95, 0.02, 1.0, factor=4.0)
    assert s.probes_left() == 11  # two bracketing probes, then 300 -> 1 % of lo in 9 halvings
    s.observe(1.0, True)
    assert s.probes_left() == 10  # the failing side still to find
    s.observe(4.0, False)
    assert s.probes_left() == 9
    assert s.probes_left(3) == 3 * 5  # 4 parts a round: 300 -> 1 % in 5 rounds
    s.observe(2.5, True)
    assert s.probes_left() == 6  # (4 - 2.5) / 2.5 = 60 % of lo -> 1 % in 6 halvings
    s.fail("x")
    assert s.probes_left() == 0


def test_capacity_search_estimates_its_probes_and_counts_down_to_zero():
    estimates, probes = [], []
    with ThreadPoolExecutor(2) as pool:
        caps = search_capacities([(SimConfig(mode=m), WorkloadSpec(num_requests=100)) for m in
                                  ("static_fifo", "dynamic_no_bins")], 0.95, executor=pool, workers=2,
                                 job=fake_job, start=1.0, on_left=estimates.append,
                                 on_probe=lambda b, p, s: probes.append(len(estimates)))
    total = sum(len(c.probes) for c in caps)
    assert len(probes) == total and estimates[-1] == 0
    assert abs(estimates[0] - total) <= 2  # an estimate, and a close one
    # the estimate is given before each probe is reported, so done + left never runs past the first guess by much
    assert all(i + left <= estimates[0] + 2 for i, left in enumerate(estimates[1:], 1))


def test_plan_estimates_its_runs_and_ends_at_zero():
    estimates, runs = [], []
    with ThreadPoolExecutor(2) as pool:
        answer = plan(SimConfig(), WorkloadSpec(num_requests=500, rate=12.0),
                      PlanOptions(target=0.95, modes=("static_fifo", "multi_bin_dynamic"), max_gpus=16),
                      pool, fake_job, 2, on_run=lambda phase, ok: runs.append(phase),
                      on_left=estimates.append).to_dict()
    assert answer["recommended"]["gpus"] == 5  # 12 req/s needs 2.5 req/s per GPU or less
    assert len(runs) == answer["counts"]["runs"] and len(estimates) >= len(runs)  # the evidence's start adds one
    assert estimates[-1] == 0
    assert 0.5 * len(runs) <= estimates[0] + 1 <= 1.5 * len(runs)
    assert sum(b > a for a, b in zip(estimates, estimates[1:])) <= 3  # it falls, run by run, save a few steps


@pytest.mark.parametrize("progress, fraction, words", [
    ({"done": 5, "total": None, "left": 11, "phase": "capacity probes"}, 5 / 16,
     "capacity probes · 5 of about 16 runs done, about 11 left"),
    ({"done": 3, "total": 12, "phase": "runs", "failed": 1}, 0.25, "runs · 3 of 12 runs done, 1 failed"),
    ({"done": 0, "total": None, "phase": "capacity probes"}, 0.0,
     "capacity probes · 0 runs done; how many it needs is not known yet"),
])
def test_progress_reads_done_of_planned(progress, fraction, words):
    assert jobs.progress_of({"status": "running", "progress": progress}) == (pytest.approx(fraction), words)


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("isolated_app")
def test_sweeps_page_draws_a_running_capacity_search_as_done_of_about_planned():
    from batchlab.webapp import services

    s = services.get_store()
    planned = capacity_plan(SimConfig(), WorkloadSpec(num_requests=1000), ["static_fifo"], 0.95, 0.02)
    job_id = open_plan(s, planned)
    me = os.getpid()  # a live runner: this process
    s.update_sweep(job_id, status="running", runner={"host": socket.gethostname(), "pid": me,
                                                     "proc_start": claims.process_start(me)},
                   progress={"done": 7, "failed": 0, "total": None, "left": 21, "phase": "capacity probes"})
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("app_pages/sweeps.py")
    at.query_params.update({"sweep": plan_key(planned)})
    at.run()
    assert not at.exception, at.exception
    [bar] = at.get("progress")
    assert bar.proto.value == 25  # 7 of 28
    assert bar.proto.text == "running: capacity probes · 7 of about 28 runs done, about 21 left"

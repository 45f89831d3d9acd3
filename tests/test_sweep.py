"""Sweeps: the grid, the runner (failures, interrupts), Dask LocalCluster storage, resuming a killed sweep."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchlab.core import SimConfig
from batchlab.core.settings_text import SettingError
from batchlab.core.sweep import Member, SweepError, expand, parse_vary, run_members
from batchlab.store import open_store
from batchlab.store.sweep_jobs import grid_plan, open_plan, run_plan
from batchlab.workloads import WorkloadSpec

ROOT = Path(__file__).resolve().parents[1]
SMALL = WorkloadSpec(num_requests=1500)


def test_parse_vary_ranges_include_stop_and_lists_convert_types():
    assert parse_vary("rate=0.5:2:0.5") == ("rate", [0.5, 1.0, 1.5, 2.0])
    assert parse_vary("gpus=1:4:2") == ("gpus", [1, 3])
    assert parse_vary("mode=static_fifo,multi_bin_dynamic") == ("mode", ["static_fifo", "multi_bin_dynamic"])
    assert parse_vary("d-sla-tbt=none,0.05") == ("d_sla_tbt", [None, 0.05])
    assert parse_vary("k_bins=2,2,4") == ("k_bins", [2, 4])
    # colons belong to spec strings of text settings, never a range
    assert parse_vary("predictor=noisy:0.5,oracle") == ("predictor", ["noisy:0.5", "oracle"])


@pytest.mark.parametrize("text,message", [
    ("rate", "expected NAME=START:STOP:STEP"),
    ("bogus=1,2", "bogus: unknown setting"),
    ("rate=2:1:0.5", "STOP (1.0) is below START (2.0)"),
    ("rate=0:1:0", "STEP must be > 0"),
    ("gpus=a,b", "'a' is not an integer"),
])
def test_parse_vary_errors_name_the_problem(text, message):
    with pytest.raises(SettingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_vary(text)


def test_expand_is_the_product_times_replications_with_distinct_seeds():
    members = expand(SimConfig(), SMALL, {"rate": [1.0, 2.0], "mode": ["static_fifo", "multi_bin_fixed"]}, 3)
    assert len(members) == 12 and len({m.key for m in members}) == 12
    fixed = [m for m in members if m.point["mode"] == "multi_bin_fixed"]
    assert all(m.config.fill == "full" for m in fixed)  # the mode's own default fill, re-derived
    seeds = sorted({(m.spec.workload_seed, m.config.seed) for m in members})
    assert seeds == [(0, 0), (1, 1), (2, 2)]
    assert {m.spec.rate for m in members} == {1.0, 2.0}
    with pytest.raises(SweepError, match="grid point gpus=0: gpus: must be between 1 and 1000"):
        expand(SimConfig(), SMALL, {"gpus": [1, 0]})


def test_a_failing_member_is_reported_and_the_others_finish():
    ok = Member(SimConfig(mode="static_fifo"), SMALL, {"case": "ok"})
    # 1 MB of KV memory holds no request at all: simulate() raises a ConfigError
    bad = Member(SimConfig(mode="static_fifo", gpu_mem_gb=16.001), SMALL, {"case": "bad"})
    seen = []
    results = run_members([ok, bad, ok.__class__(ok.config.replace(gpus=2), SMALL, {"case": "ok2"})],
                          workers=2, on_result=lambda m, r: seen.append(r.point["case"]))
    assert [r.status for r in results] == ["done", "failed", "done"]
    assert "no request fits on one GPU" in results[1].error and results[1].summary is None
    assert sorted(seen) == ["bad", "ok", "ok2"]
    assert results[0].summary["num_requests"] == 1500


def test_sweep_on_a_dask_local_cluster_stores_every_member_once(tmp_path):
    distributed = pytest.importorskip("distributed")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = open_store(url)
    plan = grid_plan(SimConfig(), SMALL, {"rate": [1.0, 2.0, 3.0], "mode": ["static_fifo", "dynamic_no_bins"]})
    sweep_id = open_plan(store, plan)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc, \
            distributed.Client(lc) as client:
        out = run_plan(plan, client.get_executor(pure=False), 2, store, sweep_id)
        pids = set(client.run(os.getpid).values())
    assert len(out.members) == 6 and not out.failed and out.skipped == 0
    assert os.getpid() not in pids and len(pids) == 2
    runs = store.list_runs()
    assert len(runs) == 6 and len({r.hash for r in runs}) == 6 and all(r.status == "done" for r in runs)
    members = store.sweep_members(sweep_id)
    assert sorted(m["id"] for m in members) == sorted(r.id for r in runs)
    assert {r.run_id for r in out.members} == {r.id for r in runs}
    params = store.get_sweep(sweep_id).params
    assert params["status"] == "done" and params["progress"]["done"] == 6 and params["result"]["runs"] == 6
    # the same plan again: the same sweep, nothing submitted, nothing new stored
    assert open_plan(store, plan) == sweep_id
    again = run_plan(plan, None, 2, store, sweep_id)
    assert again.skipped == 6 and all(r.cached for r in again.members)
    assert len(store.list_runs()) == 6
    store.close()


def test_a_member_the_store_already_held_counts_as_already_stored(tmp_path):
    """A run stored outside the sweep (or by a sweep process killed before it linked the run) is
    served, not simulated again, and counted with the sweep's own stored members."""
    from dataclasses import replace

    from batchlab.workloads import build_workload

    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    plan = grid_plan(SimConfig(mode="static_fifo"), SMALL, {"rate": [1.0, 2.0]})
    held, cached = store.get_or_run(SimConfig(mode="static_fifo"), build_workload(replace(SMALL, rate=1.0)))
    assert cached is False
    out = run_plan(plan, None, 1, store, open_plan(store, plan))
    assert out.skipped == 1 and [r.cached for r in out.members] == [True, False]
    assert out.members[0].run_id == held.id and len(store.list_runs()) == 2
    store.close()


def test_interrupted_sweep_keeps_finished_runs_and_resumes_without_recomputing(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    plan = grid_plan(SimConfig(), SMALL, {"rate": [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]})
    sweep_id = open_plan(store, plan)

    def stop_after_two(done, total, phase):
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_plan(plan, None, 1, store, sweep_id, on_event=stop_after_two)
    assert store.get_sweep(sweep_id).params["status"] == "interrupted"
    first = {m["id"]: store.get_run(m["id"]).finished_at for m in store.sweep_members(sweep_id)
             if m["status"] == "done"}
    assert len(first) >= 2
    out = run_plan(plan, None, 2, store, sweep_id)
    assert out.skipped >= len(first)
    assert {r.run_id for r in out.members if r.cached} >= set(first)
    # what was stored before the interrupt was not computed again (same rows, same finish times)
    assert {i: store.get_run(i).finished_at for i in first} == first
    assert sum(not r.cached for r in out.members) <= 6 - len(first)
    assert len(store.list_runs()) == 6 and store.get_sweep(sweep_id).params["status"] == "done"
    store.close()


def test_killed_sweep_process_resumes_and_takes_over_its_claims(tmp_path):
    """SIGKILL the CLI mid-sweep: finished runs stay, the next run of the command skips them."""
    db = f"sqlite:///{tmp_path / 'store.db'}"
    args = [sys.executable, "-m", "batchlab", "sweep", "--db", db, "--workers", "1", "--num-requests", "40000",
            "--vary", "rate=1:8:1"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    store = open_store(db)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if sum(r.status == "done" for r in store.list_runs()) >= 2:
                break
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    done_before = {r.hash for r in store.list_runs() if r.status == "done"}
    assert 2 <= len(done_before) < 8, "the sweep should have been killed midway"
    from batchlab.cli import cli

    result = CliRunner().invoke(cli, args[3:] + ["--format", "csv"])
    assert result.exit_code == 0, result.output
    assert f"{len(done_before)} already stored" in result.stderr
    runs = store.list_runs()
    assert len(runs) == 8 and all(r.status == "done" for r in runs)
    assert done_before <= {r.hash for r in runs}
    store.close()


def test_sweep_cli_writes_csv_and_json_and_rejects_bad_input(tmp_path):
    from batchlab.cli import cli

    runner = CliRunner()
    base = ["sweep", "--no-store", "--workers", "2", "--num-requests", "800", "--vary", "mode=static_fifo,dynamic_no_bins",
            "--vary", "gpus=1,2"]
    out = tmp_path / "sweep.csv"
    r = runner.invoke(cli, base + ["--format", "csv", "--out", str(out)])
    assert r.exit_code == 0, r.output
    import pandas as pd

    df = pd.read_csv(out)
    assert len(df) == 4 and set(df["mode"]) == {"static_fifo", "dynamic_no_bins"} and set(df["gpus"]) == {1, 2}
    assert (df["status"] == "done").all() and df["sla_attainment"].between(0, 1).all()
    r = runner.invoke(cli, base + ["--format", "json"])
    assert r.exit_code == 0 and '"sla_attainment"' in r.stdout
    r = runner.invoke(cli, ["sweep", "--no-store", "--vary", "gpus=0,1"])
    assert r.exit_code == 1 and "--vary gpus: must be between 1 and 1000, got 0" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(cli, ["sweep", "--no-store", "--cluster", "nowhere"])
    assert r.exit_code != 0 and "--cluster: expected 'local' or a scheduler address" in r.output


def test_sweeps_vary_the_cluster_and_their_tables_show_it():
    """router, replicas, tp and disaggregate vary like any setting; a table adds the cluster columns that differ
    between members without being varied (tp at 4 GPUs changes the replicas; the mode, the router)."""
    from batchlab.cli import cli
    from batchlab.core.sweep import simulate_member
    from batchlab.core.sweep_report import member_frame

    grid = {"replicas": [1, 2], "tp": [1, 2]}
    members = expand(SimConfig(), SMALL, grid)
    assert [(m.config.n_replicas, m.config.tp, m.config.gpus) for m in members] == [(1, 1, 1), (1, 2, 2), (2, 1, 2),
                                                                                      (2, 2, 4)]
    pd_members = expand(SimConfig(tp=2, gpus=2), SMALL, {"disaggregate": ["1:1", "1:3"]})
    assert [(m.config.disaggregate, m.config.n_replicas, m.config.gpus) for m in pd_members] == [("1:1", 2, 4),
                                                                                                  ("1:3", 4, 8)]
    with pytest.raises(SweepError, match=r"grid point tp=3: tp: gpus \(4\) must be a multiple of tp \(3\)"):
        expand(SimConfig(), SMALL, {"tp": [1, 3]})
    with pytest.raises(SweepError, match="grid point router=random: router: batch-level modes run one shared"):
        expand(SimConfig(mode="static_fifo"), SMALL, {"router": ["random"]})
    with pytest.raises(SweepError, match="grid point disaggregate=1:0: disaggregate: must be P:D"):
        expand(SimConfig(), SMALL, {"disaggregate": ["1:0"]})
    runner = CliRunner()
    for vary, shown in (("router=random,least_outstanding", {"router"}), ("tp=1,2", {"tp", "replicas"}),
                        ("replicas=1,2,4", {"replicas", "gpus"}), ("mode=static_fifo,continuous_static",
                                                                  {"mode", "router"})):
        r = runner.invoke(cli, ["sweep", "--no-store", "--workers", "2", "--num-requests", "300", "--vary", vary,
                                "--format", "json"])
        assert r.exit_code == 0, r.output
        rows = json.loads(r.stdout)
        cluster = {c for c in rows[0] if c in ("gpus", "replicas", "tp", "router", "mode")}
        assert cluster == shown, (vary, cluster)
        assert all(row["status"] == "done" and row["load_imbalance"] >= 1 for row in rows)
    frame = member_frame([simulate_member(m) for m in members[2:]])   # replicas 2: routed
    assert list(frame.columns[:3]) == ["replicas", "tp", "gpus"] and "router" not in frame.columns

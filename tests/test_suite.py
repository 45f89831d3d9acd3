"""The stress suite on small sizes (step 3 through the store, steps 1-2 shapes) and the reproduce command."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from batchlab.core.suite import SuitePlan, tables
from batchlab.core.sweep import SweepError
from batchlab.store import open_store
from batchlab.store.sweep_jobs import open_plan, run_plan, suite_plan


def test_step3_on_small_sizes_through_the_store(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    plan = suite_plan(SuitePlan(steps=(3,), max_requests=2000))
    sweep_id = open_plan(store, plan)
    out = run_plan(plan, None, 2, store, sweep_id)
    df = out.tables["step3"]
    assert list(df["k_bins"]) == [1, 2, 4, 8, 16, 32]
    assert (df["status"] == "done").all() and (df["capacity_status"] == "ok").all()
    # capacity is a search at the SLA, below what the same cluster serves when flooded
    assert (df["capacity_rps"] > 0).all() and (df["capacity_rps"] < df["throughput_rps"]).all()
    assert (df["throughput_requests"] == 2000).all()
    assert set(out.step_seconds) == {"3"}
    # every probe and run is a member of the sweep; the stored result carries the table
    members = store.sweep_members(sweep_id)
    assert len(members) == 6 + sum(len(c.probes) for c in out.capacities)
    params = store.get_sweep(sweep_id).params
    assert params["status"] == "done" and len(params["result"]["tables"]["step3"]) == 6
    again = run_plan(plan, None, 2, store, sweep_id)
    assert again.skipped == 6 and again.tables["step3"]["capacity_rps"].tolist() == df["capacity_rps"].tolist()
    store.close()


def test_steps_1_and_2_plans_and_tables():
    plan = SuitePlan(max_requests=500)
    s1, s2 = plan.members(1), plan.members(2)
    assert len(s1) == 6  # 4 modes at 4 GPUs + multi-bin at 1 and 2 GPUs; the cap makes the 4 sizes one
    assert len(SuitePlan(max_requests=5000).members(1)) == 2 * 6  # 1,000 and 5,000 requests
    assert len(SuitePlan().members(1)) == 4 * 6
    assert {m.point["mode"] for m in s1} == {"static_fifo", "dynamic_no_bins", "multi_bin_dynamic", "continuous_dynamic"}
    assert {(m.point["mode"], m.point["gpus"]) for m in s1 if m.point["mode"] == "multi_bin_dynamic"} == \
        {("multi_bin_dynamic", g) for g in (1, 2, 4)}
    assert {m.spec.num_requests for m in s1} == {500}
    assert [m.config.gpus for m in sorted(s2, key=lambda m: m.config.gpus)] == [1, 2, 4, 8, 16, 32, 64, 100]
    assert all(m.spec.rate == pytest.approx(0.5 * m.config.gpus) for m in s2)
    assert SuitePlan().members(2)[0].spec.num_requests == 1_000_000
    from batchlab.core.sweep import MemberResult

    fake = [MemberResult(m.key, m.point, "done", {"throughput_rps": 0.5 * m.config.gpus * (1 if m.config.gpus < 50 else 0.8),
                                                   "num_requests": 500, "sla_attainment": 0.9})
            for m in s2]
    t = tables(fake)["step2"]
    assert t.loc[t["gpus"] == 1, "efficiency"].item() == pytest.approx(1.0)
    assert t.loc[t["gpus"] == 100, "efficiency"].item() == pytest.approx(0.8)
    with pytest.raises(SweepError, match="--step: choose from 1, 2, 3 or all, got 4"):
        SuitePlan(steps=(4,))


def test_suite_cli_json_and_files(tmp_path):
    from batchlab.cli import cli

    r = CliRunner().invoke(cli, ["suite", "--step", "3", "--max-requests", "600", "--no-store", "--workers", "2",
                                 "--format", "json", "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert [row["k_bins"] for row in data["tables"]["step3"]] == [1, 2, 4, 8, 16, 32]
    assert set(data["step_seconds"]) == {"3"}
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"step3.csv", "step3.json", "step3_bins.svg", "step3_bins.png"} <= written
    assert (tmp_path / "out" / "step3_bins.svg").read_text().lstrip().startswith("<svg")
    assert (tmp_path / "out" / "step3_bins.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(pd.read_csv(tmp_path / "out" / "step3.csv")) == 6


def test_reproduce_paper1_cli_matches_the_formulas():
    from batchlab.cli import cli

    r = CliRunner().invoke(cli, ["reproduce", "paper1", "--json", "--workers", "2"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    thr = data["paper1_throughput"]
    assert [row["k"] for row in thr] == [1, 2, 3, 4, 5]
    assert all(abs(row["ratio"] - 1) < 0.03 for row in thr)
    assert all(abs(row["formula_rps"] / row["paper_plateau_rps"] - 1) < 0.015 for row in thr)
    assert all(abs(row["ratio"] - 1) < 0.03 for row in data["paper1_latency"])

"""The Sweeps and Reproduce pages through AppTest: stored results drawn with their data, a capacity search
launched from the form and run by a detached runner, bad input named, downloads offered."""
from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from batchlab.core import SimConfig
from batchlab.core.suite import SuitePlan
from batchlab.store.sweep_jobs import capacity_plan, grid_plan, open_plan, plan_key, run_plan, suite_plan
from batchlab.workloads import WorkloadSpec

APP = str(Path(__file__).resolve().parents[1] / "webapp" / "app.py")
pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("isolated_app")]


def threads():
    """Runs in threads: AppTest makes the app script this process's __main__, which process pools re-import."""
    return ThreadPoolExecutor(2)


def store():
    from batchlab.webapp import services

    return services.get_store()


def errors_text(at: AppTest) -> str:
    """The page's error messages as a reader sees them (Markdown escapes removed)."""
    return " ".join(re.sub(r"\\(.)", r"\1", e.value) for e in at.error)


def page(name: str, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page(f"app_pages/{name}.py")
    at.query_params.update(params)
    at.run()
    assert not at.exception, at.exception
    return at


def charts(at: AppTest) -> dict[str, pd.DataFrame]:
    out = {}
    for c in at.get("vega_lite_chart"):
        spec = json.loads(c.proto.spec)
        frames = [convert_arrow_bytes_to_pandas_df(d.data.data) for d in c.proto.datasets]
        title = spec.get("title")
        title = title.get("text") if isinstance(title, dict) else title
        out[title] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return out


def downloads(at: AppTest) -> list[str]:
    return [e.proto.label for e in at.get("download_button")]


def test_capacity_comparison_page_draws_target_capacities_and_intervals():
    s = store()
    plan = capacity_plan(SimConfig(), WorkloadSpec(num_requests=1500), ["static_fifo", "multi_bin_dynamic"],
                         0.9, 0.05, replications=2)
    sweep_id = open_plan(s, plan)
    out = run_plan(plan, threads(), 2, s, sweep_id)
    at = page("sweeps", sweep=plan_key(plan))
    assert "Traceback" not in errors_text(at)
    ch = charts(at)
    bars = ch["Capacity per configuration"]
    want = {c.mode: c.capacity_rps for c in out.capacities}
    got = bars.drop_duplicates("mode").set_index("mode")["capacity_rps"].to_dict()
    assert got == pytest.approx(want)
    assert bars["ci_low"].notna().all()  # two replications: an interval per mode
    att = ch["SLA attainment vs arrival rate"]
    assert 90.0 in set(att["target"].dropna())  # the target line
    marked = att.dropna(subset=["capacity_rps"]).drop_duplicates("series").set_index("series")["capacity_rps"]
    assert marked.to_dict() == pytest.approx(want)  # each capacity marked on the curve
    assert att["value"].dropna().between(0, 100).all()
    assert "p99 end-to-end latency vs arrival rate" in ch
    labels = downloads(at)
    assert labels.count("CSV") >= 3 and labels.count("SVG") >= 3 and labels.count("PNG") >= 3
    assert f"sweeps?sweep={plan_key(plan)}&spec=" in " ".join(e.value for e in at.caption)


def test_suite_and_grid_pages(tmp_path):
    s = store()
    plan = suite_plan(SuitePlan(steps=(3,), max_requests=1200, step3_k=(1, 2, 4)))
    sid = open_plan(s, plan)
    run_plan(plan, threads(), 2, s, sid)
    at = page("sweeps", sweep=plan_key(plan))
    k = charts(at)["Throughput and capacity vs bins"]
    assert set(k["k_bins"]) == {1, 2, 4} and set(k["metric"]) == {"saturation throughput", "capacity at the SLA"}
    gplan = grid_plan(SimConfig(), WorkloadSpec(num_requests=800), {"rate": [0.5, 1.0], "gpus": [1, 2]})
    gid = open_plan(s, gplan)
    run_plan(gplan, threads(), 2, s, gid)
    at = page("sweeps", sweep=plan_key(gplan))
    att = charts(at)["SLA attainment vs arrival rate"]
    assert set(att["series"]) == {"gpus=1", "gpus=2"} and set(att["rate"]) == {0.5, 1.0}
    table = at.dataframe[0].value
    assert len(table) == 4 and set(table["status"]) == {"done"}


def test_capacity_form_launches_a_detached_runner_and_the_page_follows_it():
    at = page("sweeps")
    at.multiselect(key="cap.modes").set_value(["static_fifo"])
    at.number_input(key="cap.target").set_value(90.0)
    at.number_input(key="cap.tol").set_value(10.0)
    at.text_area(key="cap.settings").set_value("num_requests=800\ngpus=2")
    at.number_input(key="cap.workers").set_value(1)
    [b for b in at.button if b.label == "Find capacity"][0].click().run()
    assert not at.exception, at.exception
    sweep_id = store().find_sweep(at.query_params["sweep"]).id
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and store().get_sweep(sweep_id).params.get("status") != "done":
        time.sleep(0.3)
    params = store().get_sweep(sweep_id).params
    assert params["status"] == "done", params
    assert params["plan"]["config"]["gpus"] == 2 and params["result"]["capacities"][0]["capacity_rps"] > 0
    at = page("sweeps", sweep=at.query_params["sweep"])
    assert "Capacity per configuration" in charts(at)


def test_bad_sweep_input_is_named_on_the_page():
    at = page("sweeps")
    at.text_area(key="grid.vary").set_value("bogus=1,2")
    [b for b in at.button if b.label == "Run sweep"][0].click().run()
    errors = errors_text(at)
    assert "bogus: unknown setting" in errors and "Traceback" not in errors
    at.text_area(key="cap.settings").set_value("gpus=0")
    [b for b in at.button if b.label == "Find capacity"][0].click().run()
    assert "gpus: must be between 1 and 1000" in errors_text(at)
    assert store().list_sweeps() == []


def _job_param(at: AppTest, name: str) -> int:
    raw = at.query_params[name]
    return int(raw) if name == "job" else store().find_sweep(raw).id  # Sweeps and Plan links name a key


def _until_ended(job_id: int, timeout: float = 280) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        params = store().get_sweep(job_id).params
        if params.get("status") not in ("new", "starting", "running"):
            return params
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {params.get('status')}")


def test_reproduce_page_shows_formula_beside_simulation():
    at = page("reproduce")
    [b for b in at.button if b.label == "Reproduce"][0].click().run()
    assert not at.exception, at.exception
    job_id = _job_param(at, "job")
    assert store().get_sweep(job_id).params["plan"] == {"kind": "reproduce", "paper": "paper1"}
    assert _until_ended(job_id)["status"] == "done"
    at = page("reproduce", job=str(job_id))  # a reload, or the link in another tab
    ch = charts(at)
    thr = ch["Eq. 4: throughput vs bins"]
    assert set(thr["source"]) == {"formula", "simulated"} and set(thr["k"]) == {1, 2, 3, 4, 5}
    wide = thr.pivot_table(index="k", columns="source", values="value")
    assert ((wide["simulated"] / wide["formula"] - 1).abs() < 0.03).all()
    assert "Lemma 5.1: latency vs bins" in ch
    assert list(at.dataframe[0].value.columns)[:2] == ["k", "formula_rps"]  # the table keeps its columns' order
    [b for b in at.button if b.label == "Reproduce"][0].click().run()
    assert _job_param(at, "job") == job_id  # a finished reproduction is reused, not run again
    assert store().get_sweep(job_id).params["status"] == "done"


def test_a_sweep_is_cancelled_from_its_page_and_resumed():
    """Cancel on a running job's page: its runner ends it cancelled; Resume runs it again to the end."""
    at = page("sweeps")
    at.text_area(key="grid.vary").set_value("rate=0.5:8:0.5\ngpus=1,2")
    at.text_area(key="grid.settings").set_value("num_requests=20000")
    at.number_input(key="grid.workers").set_value(1)
    [b for b in at.button if b.label == "Run sweep"][0].click().run()
    job_id = _job_param(at, "sweep")
    [b for b in at.button if b.label == "Cancel"][0].click().run()
    assert not at.exception, at.exception
    params = _until_ended(job_id, 60)
    assert params["status"] == "cancelled" and params["cancel"] is True
    done = params["progress"]["done"]
    assert done < 32  # it stopped before the end
    at = page("sweeps", sweep=store().get_sweep(job_id).key)
    assert "cancelled" in " ".join(m.value for m in at.markdown)
    [b for b in at.button if b.label == "Resume"][0].click().run()
    assert _until_ended(job_id)["status"] == "done"
    params = store().get_sweep(job_id).params
    assert params["result"]["runs"] == 32 and params["result"]["failed"] == 0 and not params["cancel"]

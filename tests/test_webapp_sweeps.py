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


def test_model_and_gpu_pickers_set_every_run_of_a_sweep():
    """A model and GPU picked beside the base settings apply as model=/gpu= lines would: the sweep's stored base
    and every run it ran carry them and the memory settings the catalogue derives (usable memory 0.9 x the
    GPU's), and the roofline box switches the latency model."""
    from batchlab.core.hardware import gpu_spec, model_arch

    at = page("sweeps")
    assert set(at.selectbox(key="grid.model").options) >= {"llama-3.1-8b", "qwen2.5-0.5b"}
    assert not any("/" in o or o.endswith(".json") for o in at.selectbox(key="grid.model").options)
    at.text_area(key="grid.vary").set_value("rate=1,2")
    at.text_area(key="grid.settings").set_value("num_requests=200")
    at.number_input(key="grid.workers").set_value(1)
    at.selectbox(key="grid.model").set_value("llama-3.1-8b")
    at.selectbox(key="grid.gpu").set_value("h100")
    at.checkbox(key="grid.roofline").check()
    [b for b in at.button if b.label == "Run sweep"][0].click().run()
    assert not at.exception, at.exception
    assert not errors_text(at)
    job_id = _job_param(at, "sweep")
    arch, gpu = model_arch("llama-3.1-8b"), gpu_spec("h100")
    cfg = store().get_sweep(job_id).params["plan"]["config"]
    assert (cfg["model"], cfg["gpu"], cfg["latency"]) == ("llama-3.1-8b", "h100", "roofline")
    assert cfg["gpu_mem_gb"] == pytest.approx(0.9 * gpu.memory_gb) == pytest.approx(72.0)
    assert cfg["weights_gb"] == pytest.approx(arch.weights_gb())
    assert (cfg["kv_layers"], cfg["kv_heads"], cfg["head_dim"]) == (arch.num_layers, arch.num_kv_heads,
                                                                      arch.head_dim)
    assert cfg["interconnect_gbps"] == gpu.interconnect_gbps
    assert _until_ended(job_id)["status"] == "done"
    members = store().sweep_members(job_id)
    assert len(members) == 2 and {m["status"] for m in members} == {"done"}
    for m in members:
        c = m["config"]
        assert (c["model"], c["gpu"], c["latency"]) == ("llama-3.1-8b", "h100", "roofline")
        assert c["gpu_mem_gb"] == pytest.approx(72.0) and c["weights_gb"] == pytest.approx(arch.weights_gb())


def test_a_capacity_search_on_a_picked_gpu_keeps_the_typed_settings():
    from batchlab.core.hardware import gpu_spec

    at = page("sweeps")
    at.multiselect(key="cap.modes").set_value(["static_fifo"])
    at.text_area(key="cap.settings").set_value("num_requests=300\ngpus=2\ngpu_memory_utilization=0.8")
    at.selectbox(key="cap.gpu").set_value("l40s")
    at.number_input(key="cap.workers").set_value(1)
    [b for b in at.button if b.label == "Find capacity"][0].click().run()
    assert not at.exception, at.exception
    job_id = _job_param(at, "sweep")
    cfg = store().get_sweep(job_id).params["plan"]["config"]
    assert cfg["model"] is None and cfg["gpu"] == "l40s" and cfg["gpus"] == 2
    assert cfg["gpu_mem_gb"] == pytest.approx(0.8 * gpu_spec("l40s").memory_gb)
    assert cfg["weights_gb"] == SimConfig().weights_gb  # no model: the hand-set memory settings
    assert _until_ended(job_id)["status"] == "done"


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "/tmp/x.json", "~/.ssh/config.json"])
def test_a_model_path_typed_in_the_sweep_settings_is_refused(hostile):
    at = page("sweeps")
    at.text_area(key="grid.settings").set_value(f"num_requests=200\nmodel={hostile}")
    [b for b in at.button if b.label == "Run sweep"][0].click().run()
    assert not at.exception, at.exception
    errors = errors_text(at)
    assert "Cannot start the sweep: model: a web page takes a bundled model by name" in errors
    assert "never a path on the server" in errors and "Traceback" not in errors
    at.text_area(key="cap.settings").set_value(f"model={hostile}")
    at.selectbox(key="cap.gpu").set_value("h100")
    [b for b in at.button if b.label == "Find capacity"][0].click().run()
    assert "Cannot start the capacity search: model:" in errors_text(at)
    assert store().list_sweeps() == [] and "sweep" not in at.query_params


def test_a_picked_model_or_gpu_conflicting_with_typed_settings_is_named():
    at = page("sweeps")
    at.selectbox(key="grid.model").set_value("llama-3.1-8b")
    at.text_area(key="grid.settings").set_value("weights_gb=8")  # the catalogue's error, as if typed
    [b for b in at.button if b.label == "Run sweep"][0].click().run()
    assert "weights_gb: is set by model llama-3.1-8b (16.0605); got 8 too: give weights_gb or model, not both" \
        in errors_text(at)
    at.text_area(key="grid.settings").set_value("model=qwen3-8b")
    [b for b in at.button if b.label == "Run sweep"][0].click().run()
    assert "model: is set by the picker (llama-3.1-8b); got qwen3-8b too in the settings: pick model or type it, " \
           "not both" in errors_text(at)
    at.text_area(key="grid.settings").set_value("")
    at.checkbox(key="grid.roofline").check()
    [b for b in at.button if b.label == "Run sweep"][0].click().run()
    assert "latency: roofline needs both model and gpu" in errors_text(at)
    assert store().list_sweeps() == []

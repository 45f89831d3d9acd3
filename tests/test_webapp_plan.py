"""The Plan page through AppTest: a stored plan's sentence, evidence charts with their data and links; a plan
launched from the form and run by a detached runner; bad input named."""
from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from batchlab.core import SimConfig
from batchlab.core.plan_options import PlanOptions
from batchlab.store.sweep_jobs import gpu_plan, open_plan, run_plan
from batchlab.workloads import WorkloadSpec

APP = str(Path(__file__).resolve().parents[1] / "webapp" / "app.py")
pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("isolated_app")]


def store():
    from batchlab.webapp import services

    return services.get_store()


def errors_text(at: AppTest) -> str:
    """The page's error messages as a reader sees them (Markdown escapes removed)."""
    return " ".join(re.sub(r"\\(.)", r"\1", e.value) for e in at.error)


def page(**params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("app_pages/plan.py")
    at.query_params.update(params)
    at.run()
    assert not at.exception, at.exception
    return at


def charts(at: AppTest) -> dict[str, pd.DataFrame]:
    out = {}
    for c in at.get("vega_lite_chart"):
        spec = json.loads(c.proto.spec)
        frames = [convert_arrow_bytes_to_pandas_df(d.data.data) for d in c.proto.datasets]
        title = spec.get("title") or next((layer.get("title") for layer in spec.get("layer", [])
                                           if layer.get("title")), None)
        title = title.get("text") if isinstance(title, dict) else title
        title = " ".join(title) if isinstance(title, list) else title
        out[title] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return out


def stored_plan() -> tuple[int, dict]:
    s = store()
    options = PlanOptions(modes=("static_fifo", "continuous_dynamic"), batch_values=(8,), b_max_values=(64,),
                          max_gpus=4, target=0.95, replications=2, tolerance=0.1)
    plan = gpu_plan(SimConfig(), WorkloadSpec(num_requests=800, rate=3.0), options)
    plan_id = open_plan(s, plan)
    with ThreadPoolExecutor(2) as threads:  # AppTest makes the app this process's __main__: no process pool
        out = run_plan(plan, threads, 2, s, plan_id)
    return plan_id, out.answer


def test_stored_plan_shows_the_sentence_evidence_and_the_recommended_run():
    plan_id, answer = stored_plan()
    assert answer["status"] == "ok"
    key = store().get_sweep(plan_id).key
    at = page(plan=key)
    assert [s.value for s in at.success] == [f"**{answer['sentence']}**"]
    ch = charts(at)
    bars = ch["Capacity per configuration"].dropna(subset=["capacity_rps"])
    want = {c["label"]["configuration"]: c["capacity_rps"] for c in answer["capacities"]}
    assert bars.drop_duplicates("series").set_index("series")["capacity_rps"].to_dict() == pytest.approx(want)
    assert bars["ci_low"].notna().all()  # two seeds: an interval per mode
    assert answer["rate_rps"] in set(ch["Capacity per configuration"]["rate"].dropna())  # the planned rate
    gpus = ch["Missing the SLA vs GPUs (each mode's best, every count the search ran)"]
    assert set(gpus["gpus"].dropna()) == {c["gpus"] for c in answer["cells"]}
    assert list(gpus["allowed"].dropna().unique()) == [pytest.approx(100 * (1 - answer["target"]))]
    best = max(c["attainment"] for c in answer["cells"] if c["gpus"] == answer["gpus"])
    shown = gpus[gpus["gpus"] == answer["gpus"]]
    assert shown["missing"].min() == pytest.approx(max(100 * (1 - best), 0.01))
    assert "SLA attainment vs arrival rate" in ch
    # the recommended run: a link to the Run page with its hash and settings; its command and TOML
    [link] = [e for e in at.get("page_link") if e.proto.label == "Open the recommended run"]
    rec = answer["recommended"]
    qp = parse_qs(urlparse("?" + link.proto.query_string).query) if link.proto.query_string else {}
    assert qp["run"] == [rec["run_hash"]] and qp["gpus"] == [str(rec["gpus"])]
    codes = [c.value for c in at.code]
    assert rec["command"] in codes and rec["toml"].strip() in codes
    labels = [e.proto.label for e in at.get("download_button")]
    assert "Config (TOML)" in labels and labels.count("SVG") >= 3
    table = at.dataframe[0].value
    assert list(table["configuration"]) == [r["configuration"] for r in answer["ranking"]]
    captions = " ".join(c.value for c in at.caption)
    assert f"plan?plan={key}&spec=" in captions and "simulated" in captions
    # the run itself opens on the Run page
    run = page()
    run.switch_page("app_pages/run.py")
    run.query_params.update({"run": rec["run_hash"]})
    run.run()
    assert not run.exception
    # the Sweeps page lists the plan with a link to this page
    from batchlab.webapp import sweeps

    assert f"./plan?plan={key}" in set(sweeps.sweeps_table()["open"])


def fill_plan_form(at: AppTest, requests: int, max_gpus: int) -> AppTest:
    """A small plan: continuous_dynamic, B_max 64, 2 req/s, target 90 %, one worker, no evidence."""
    at.number_input(key="plan.requests").set_value(requests)
    at.number_input(key="plan.rate").set_value(2.0)
    at.number_input(key="plan.target").set_value(90.0)
    at.multiselect(key="plan.modes").set_value(["continuous_dynamic"])
    at.number_input(key="plan.max_gpus").set_value(max_gpus)
    at.text_input(key="plan.bmax").set_value("64")
    at.number_input(key="plan.workers").set_value(1)
    at.checkbox(key="plan.evidence").set_value(False)
    return at


def test_plan_form_launches_a_detached_runner_and_the_page_follows_it():
    at = fill_plan_form(page(), 600, 3)
    [b for b in at.button if b.label == "Plan"][0].click().run()
    assert not at.exception, at.exception
    key = at.query_params["plan"]
    plan_id = store().find_sweep(key).id
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and store().get_sweep(plan_id).params.get("status") != "done":
        time.sleep(0.3)
    params = store().get_sweep(plan_id).params
    assert params["status"] == "done", params
    answer = params["result"]["answer"]
    assert params["plan"]["spec"]["rate"] == 2.0 and params["plan"]["options"]["target"] == 0.9
    assert answer["counts"]["capacity_probes"] == 0 and answer["ranking"]
    at = page(plan=key)
    shown = [s.value for s in at.success] + [w.value for w in at.warning]
    assert f"**{answer['sentence']}**" in shown


def test_a_bundled_trace_is_planned_at_its_compressed_arrivals():
    at = page()
    at.radio(key="plan.source").set_value("bundled").run()
    at.number_input(key="plan.scale").set_value(4.0)
    at.multiselect(key="plan.modes").set_value(["continuous_dynamic"])
    at.text_input(key="plan.bmax").set_value("64")
    at.number_input(key="plan.max_gpus").set_value(2)
    at.checkbox(key="plan.evidence").set_value(False)
    at.number_input(key="plan.workers").set_value(1)
    [b for b in at.button if b.label == "Plan"][0].click().run()
    assert not at.exception, at.exception
    key = at.query_params["plan"]
    plan_id = store().find_sweep(key).id
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and store().get_sweep(plan_id).params.get("status") != "done":
        time.sleep(0.3)
    params = store().get_sweep(plan_id).params
    spec = params["plan"]["spec"]
    assert spec["workload"] == "burstgpt" and spec["rps_scaling"] == 4.0 and spec["rate"] is None
    from batchlab.workloads import build_workload

    answer = params["result"]["answer"]
    assert answer["rate_rps"] == pytest.approx(build_workload(WorkloadSpec.from_dict(spec)).mean_rate)
    assert "--rps-scaling 4" in answer["recommended"]["command"]


def test_an_uploaded_trace_is_kept_for_the_runner(tmp_path):
    from batchlab.webapp.plan import save_upload

    data = (Path(__file__).resolve().parents[1] / "workloads" / "data" / "BurstGPT_1_first400.csv").read_bytes()
    path = save_upload("my trace!.csv", data)
    assert path.read_bytes() == data and path.parent == tmp_path / "home" / "uploads"
    assert path.name.endswith("-my_trace_.csv") and save_upload("other.csv", data).read_bytes() == data


def test_bad_plan_input_is_named_on_the_page():
    at = page()
    at.text_area(key="plan.settings").set_value("gpus=4")
    [b for b in at.button if b.label == "Plan"][0].click().run()
    errors = errors_text(at)
    assert "gpus: the plan chooses it" in errors and "Traceback" not in errors
    at.text_area(key="plan.settings").set_value("")
    at.multiselect(key="plan.modes").set_value([])
    [b for b in at.button if b.label == "Plan"][0].click().run()
    assert "modes: unknown mode(s) (none)" in errors_text(at)
    at.multiselect(key="plan.modes").set_value(["static_fifo"])
    at.text_input(key="plan.k").set_value("x")
    [b for b in at.button if b.label == "Plan"][0].click().run()
    assert "K: 'x' is not a comma-separated list of whole numbers" in errors_text(at)
    at = page(plan="0123456789abcdef")
    assert "There is no plan 0123456789abcdef in this store" in " ".join(w.value for w in at.warning)
    assert store().list_sweeps() == []


def test_a_plan_on_a_picked_model_and_gpu():
    """The Hardware pickers apply model= and gpu= to the plan's base config, as if typed in Other settings: the
    stored plan and its recommended run carry them and the memory settings the catalogue derives."""
    from batchlab.core.hardware import gpu_spec, model_arch

    at = fill_plan_form(page(), 400, 2)
    at.selectbox(key="plan.model").set_value("qwen2.5-0.5b")
    at.selectbox(key="plan.gpu").set_value("l4")
    [b for b in at.button if b.label == "Plan"][0].click().run()
    assert not at.exception, at.exception
    assert not errors_text(at)
    plan_id = store().find_sweep(at.query_params["plan"]).id
    cfg = store().get_sweep(plan_id).params["plan"]["config"]
    arch = model_arch("qwen2.5-0.5b")
    assert (cfg["model"], cfg["gpu"], cfg["latency"]) == ("qwen2.5-0.5b", "l4", "parametric")
    assert cfg["gpu_mem_gb"] == pytest.approx(0.9 * gpu_spec("l4").memory_gb) == pytest.approx(21.6)
    assert cfg["weights_gb"] == pytest.approx(arch.weights_gb()) and cfg["kv_layers"] == arch.num_layers
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and store().get_sweep(plan_id).params.get("status") != "done":
        time.sleep(0.3)
    params = store().get_sweep(plan_id).params
    assert params["status"] == "done", params
    rec = params["result"]["answer"]["recommended"]["config"]
    assert (rec["model"], rec["gpu"]) == ("qwen2.5-0.5b", "l4") and rec["gpu_mem_gb"] == pytest.approx(21.6)


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "/tmp/x.json"])
def test_a_model_path_in_the_plan_settings_is_refused(hostile):
    at = page()
    at.text_area(key="plan.settings").set_value(f"model={hostile}")
    [b for b in at.button if b.label == "Plan"][0].click().run()
    assert not at.exception, at.exception
    errors = errors_text(at)
    assert "Cannot start the plan: model: a web page takes a bundled model by name" in errors
    assert "never a path on the server" in errors and "Traceback" not in errors
    at.selectbox(key="plan.model").set_value("llama-3.1-8b")  # picked and typed: named, nothing read
    [b for b in at.button if b.label == "Plan"][0].click().run()
    assert f"model: is set by the picker (llama-3.1-8b); got {hostile} too in the settings" in errors_text(at)
    assert store().list_sweeps() == [] and "plan" not in at.query_params


def test_a_picked_gpu_and_gpu_types_conflict_as_in_the_core():
    at = page()
    at.selectbox(key="plan.model").set_value("llama-3.1-8b")
    at.selectbox(key="plan.gpu").set_value("h100")
    at.multiselect(key="plan.gpu_types").set_value(["l4", "h100"])
    [b for b in at.button if b.label == "Plan"][0].click().run()
    assert "gpu: the plan sets it from gpu_types; give gpu (h100) or gpu_types, not both" in errors_text(at)
    at.selectbox(key="plan.gpu").set_value("auto")
    at.selectbox(key="plan.model").set_value("auto")
    [b for b in at.button if b.label == "Plan"][0].click().run()
    assert "gpu_types: a plan across GPU types needs model" in errors_text(at)
    assert store().list_sweeps() == []

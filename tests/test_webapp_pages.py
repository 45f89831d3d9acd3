"""Every page of the web app driven through ``streamlit.testing.v1.AppTest``: form submits,
valid and invalid uploads, URLs that reopen results, and charts carrying the expected data."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from batchlab.calibration import bundled_grids
from batchlab.core.config import COMPARE_MODES, SimConfig
from batchlab.workloads import WorkloadSpec, build_workload, bundled_traces

APP = str(Path(__file__).resolve().parents[1] / "webapp" / "app.py")
HASH = re.compile(r"^[0-9a-f]{64}$")
COMPARED = list(COMPARE_MODES)  # the default comparison
RUN_CHARTS = 7  # a run page: latency CDF, violations, running requests, controller, GPU use, KV use, sizes
REPLICA_CHARTS = 4  # a continuous run of several replicas adds: busy time, queue, running and KV use per replica

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("isolated_app")]


def app(page: str | None = None, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update(params)
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def store():
    from batchlab.webapp import services

    return services.get_store()


def charts(at: AppTest) -> dict[str, pd.DataFrame]:
    """Chart title -> its data (all datasets concatenated)."""
    out = {}
    for c in at.get("vega_lite_chart"):
        spec = json.loads(c.proto.spec)
        frames = [convert_arrow_bytes_to_pandas_df(d.data.data) for d in c.proto.datasets]
        title = spec.get("title")
        title = title.get("text") if isinstance(title, dict) else title
        title = " ".join(title) if isinstance(title, list) else title  # a title on several lines
        out[title] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return out


def button(at: AppTest, label: str):
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r} in {[b.label for b in at.button]}"
    return matches[0]


def plain(text: str) -> str:
    """Markdown text as a reader sees it: backslash escapes removed."""
    return re.sub(r"\\(.)", r"\1", str(text))


def texts(elements) -> str:
    return " | ".join(plain(e.value) for e in elements)


def no_traceback(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert "Traceback" not in texts(at.error)


# -------------------------------------------------------------------- Run ---
def test_run_page_defaults_and_submit():
    at = app()
    assert at.title[0].value == "Run a simulation"
    assert at.selectbox(key="sim.mode").value == "continuous_dynamic"
    assert at.number_input(key="sim.gpus").value == 4
    assert at.number_input(key="sim.k_bins").value == 4
    requests = at.number_input(key="wl.num_requests")
    assert requests.value is None and "10,000" in requests.placeholder  # empty = auto, and it says so
    assert at.number_input(key="sim.d_sla_tbt").value == 0.05
    assert not [c for c in at.checkbox if c.key.endswith(".none")], "no box overrides a typed number"
    assert {c.key for c in at.checkbox} <= {"sim.sla_control", "sim.memory_control", "sim.enable_prefix_caching",
                                            "sim.scale_grid_tp", "wl.keep_failed"}
    assert at.radio(key="source").value == "synthetic"
    assert all(w.help for w in at.number_input), "every number has help text"

    button(at, "Run simulation").click().run()
    no_traceback(at)
    assert "Simulated" in texts(at.success)
    h = at.query_params["run"]
    assert HASH.match(h)
    assert store().get_run(h).status == "done"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Throughput"].endswith("req/s") and metrics["SLA attainment"].endswith("%")
    assert "10,000 req" in texts(at.markdown) and "12 req/s" in texts(at.markdown)  # the workload run
    ch = charts(at)
    cdf = ch["End-to-end latency: CDF"].dropna(subset=["run"])
    assert set(cdf["run"]) == {"continuous_dynamic"} and cdf["percent"].between(0, 100).all()
    viol = ch["SLA violations by kind"]
    assert set(viol["kind"]) == {"TTFT", "TBT", "E2E", "Any (SLA missed)"}
    s = store().get_run(h).summary
    any_row = viol[viol["kind"] == "Any (SLA missed)"]["rate_pct"].iloc[0]
    assert any_row == pytest.approx(100 * (1 - s["sla_attainment"]))
    ctl = ch["Controller trace: continuous_dynamic"]
    assert {"b_mem (memory cap)", "b_SLA (SLA cap)", "chosen b = min(b_mem, b_SLA)"} <= set(ctl["series"])
    assert ch["GPU utilisation over time"]["percent"].between(0, 100.0001).all()
    assert ch["KV cache in use over time"]["value"].between(0, 100.0001).all()
    assert ch["Running requests per GPU over time"]["value"].max() <= s["batch_size_max"]
    assert any(name.startswith("Batch size distribution") for name in ch)
    assert len(at.table) == 0  # one bin: no per-bin table


def test_same_settings_are_served_from_the_store():
    first = app()
    button(first, "Run simulation").click().run()
    h = first.query_params["run"]
    second = app()
    button(second, "Run simulation").click().run()
    no_traceback(second)
    assert second.query_params["run"] == h
    assert "Served from the store" in texts(second.success)
    assert store().count_runs() == 1


def test_run_url_reopens_a_stored_run_without_the_form():
    at = app()
    at.number_input(key="sim.gpus").set_value(2)
    button(at, "Run simulation").click().run()
    h = at.query_params["run"]
    assert at.query_params["gpus"] == "2"
    shared = app(run=h)
    no_traceback(shared)
    assert len(shared.get("vega_lite_chart")) == RUN_CHARTS + REPLICA_CHARTS
    assert len(shared.number_input) == 0, "the settings panel is folded and not drawn"
    assert "2 GPUs" in shared.subheader[0].value
    shared.session_state["run.settings"] = True  # open the settings panel
    shared.run()
    assert shared.number_input(key="sim.gpus").value == 2, "the form holds the run's settings"


def test_url_settings_fill_the_form_and_bad_values_warn():
    at = app(mode="static_fifo", gpus="8", d_sla_tbt="none", workload_seed="3", batch_size="oops")
    assert at.selectbox(key="sim.mode").value == "static_fifo"
    assert at.number_input(key="sim.gpus").value == 8
    assert at.number_input(key="sim.d_sla_tbt").value is None  # an empty box: off
    assert at.number_input(key="wl.workload_seed").value == 3
    assert at.number_input(key="sim.seed").value == 0
    assert "batch_size" in texts(at.warning)
    button(at, "Run simulation").click().run()
    no_traceback(at)
    cfg = store().get_run(at.query_params["run"]).config
    assert (cfg.mode, cfg.gpus, cfg.d_sla_tbt) == ("static_fifo", 8, None)


def test_unknown_run_hash_is_a_clear_message():
    at = app(run="f" * 64)
    no_traceback(at)
    assert "not in this store" in texts(at.warning) and "only its hash" in texts(at.warning)
    assert "form holds" not in texts(at.warning), "a hash-only link does not claim to fill the form"
    assert not [b for b in at.button if b.label == "Compute this run"]


def test_invalid_settings_show_the_field_not_a_traceback():
    at = app()
    at.number_input(key="sim.b_min").set_value(500)
    button(at, "Run simulation").click().run()
    no_traceback(at)
    assert "b_min" in texts(at.error)
    assert "run" not in at.query_params
    assert store().count_runs() == 0


def test_upload_a_burstgpt_trace_valid_and_invalid():
    at = app()
    at.radio(key="source").set_value("upload").run()
    assert at.file_uploader(key="trace_upload")
    good = bundled_traces()["BurstGPT_1_first400"].read_bytes()
    at.file_uploader(key="trace_upload").set_value(("mine.csv", good, "text/csv")).run()
    no_traceback(at)
    assert "mine.csv:" in texts(at.caption) and "requests" in texts(at.caption)
    assert at.number_input(key="wl.num_requests").value is None
    assert at.number_input(key="wl.num_requests").placeholder == "auto: all rows"  # no synthetic 10,000
    assert at.number_input(key="wl.rate").placeholder == "auto: trace"
    assert "the trace's own rate" in at.number_input(key="wl.rate").help
    button(at, "Run simulation").click().run()
    no_traceback(at)
    run = store().get_run(at.query_params["run"])
    assert run.workload["kind"] == "burstgpt" and "mine.csv" in run.workload["label"]

    at.session_state["run.settings"] = True  # the settings fold after a run: open them again
    at.run()
    assert "Using **mine.csv**, uploaded earlier" in texts(at.caption), "the upload survives the fold"
    assert "needs the uploaded trace mine.csv" in texts(at.caption)
    bad = b"Timestamp,Model,Request tokens\n1,ChatGPT,10\n"
    at.file_uploader(key="trace_upload").set_value(("bad.csv", bad, "text/csv")).run()
    no_traceback(at)
    assert "Response tokens" in texts(at.error)


def test_upload_an_azure_trace_is_read_in_its_detected_format():
    at = app()
    at.radio(key="source").set_value("upload").run()
    rows = [f"2023-11-16 18:15:{46 + i}.6805900,{100 + i},{20 + i}" for i in range(8)]
    azure = ("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n").encode()
    at.file_uploader(key="trace_upload").set_value(("calls.csv", azure, "text/csv")).run()
    no_traceback(at)
    assert "calls.csv: 8 requests over 7" in texts(at.caption)
    button(at, "Run simulation").click().run()
    no_traceback(at)
    run = store().get_run(at.query_params["run"])
    assert run.workload["kind"] == "azure" and run.workload["label"].startswith("azure trace calls.csv rows 0-7")


def test_upload_source_without_a_file_says_so():
    at = app()
    at.radio(key="source").set_value("upload").run()
    button(at, "Run simulation").click().run()
    no_traceback(at)
    assert "upload a trace file" in texts(at.error)


def test_bundled_trace_source():
    at = app()
    at.radio(key="source").set_value("bundled").run()
    at.selectbox(key="wl.trace").set_value("BurstGPT_3_first400")
    at.number_input(key="wl.rps_scaling").set_value(50.0)
    button(at, "Run simulation").click().run()
    no_traceback(at)
    assert at.query_params["trace"] == "BurstGPT_3_first400"
    run = store().get_run(at.query_params["run"])
    assert "BurstGPT_3_first400" in run.workload["label"] and "compressed 50x" in run.workload["label"]


# ---------------------------------------------------------------- Compare ---
def test_compare_three_modes_from_the_form():
    at = app("compare")
    assert at.multiselect(key="cmp.modes").value == COMPARED
    button(at, "Run comparison").click().run()
    no_traceback(at)
    hashes = at.query_params["compare"].split(",")
    assert len(hashes) == len(COMPARED) and all(HASH.match(h) for h in hashes)
    assert at.query_params["modes"] == ",".join(COMPARED), "the link names its modes, defaults included"
    table = at.table[0].value
    assert [plain(c) for c in table.columns] == COMPARED
    assert table.loc["SLA attainment"].str.endswith("%").all()
    ch = charts(at)
    assert set(ch["End-to-end latency: CDF"]["run"].dropna()) == set(COMPARED)
    assert set(ch["SLA violations by kind"]["run"]) == set(COMPARED)
    rps = ch["Throughput"].drop_duplicates("run").set_index("run")["throughput_rps"]
    for h in hashes:
        r = store().get_run(h)
        assert rps[r.summary["mode"]] == pytest.approx(r.summary["throughput_rps"])
    assert set(ch["Output throughput"]["run"]) == set(COMPARED)
    assert set(ch["GPU utilisation over time"]["run"]) == set(COMPARED)
    for mode in ("static_fifo", "multi_bin_dynamic"):  # batch size over time, per bin, per batch-level run
        assert mode in ch
    assert set(ch["Running requests per GPU over time"]["run"]) == set(COMPARED)  # every engine has it
    assert set(ch["KV cache in use over time"]["run"]) == set(COMPARED)
    assert set(ch["multi_bin_dynamic"]["bin"]) == {0, 1, 2, 3}
    assert "Controller trace: continuous_dynamic" in ch and "Controller trace: multi_bin_dynamic" in ch
    assert "no b_mem / b_SLA controller" in texts(at.caption)  # static_fifo has none


def test_compare_url_and_stored_run_picker():
    w = build_workload(WorkloadSpec(num_requests=800))
    runs = [store().get_or_run(SimConfig(mode=m, gpus=g), w)[0] for m, g in
            [("static_fifo", 2), ("static_fifo", 4), ("multi_bin_fixed", 2)]]
    shared = app("compare", compare=",".join(r.hash for r in runs[:2]))
    no_traceback(shared)
    assert [plain(c) for c in shared.table[0].value.columns] == ["static_fifo · 2 GPUs", "static_fifo · 4 GPUs"]
    assert len(shared.multiselect) == 0, "the set-up is folded and not drawn"
    assert shared.query_params["gpus"] == ["2", "4"], "the address now carries each run's settings"

    at = app("compare")
    assert not [m for m in at.multiselect if m.key == "cmp.picked"], "the form of modes is shown first"
    at.segmented_control(key="cmp.what").set_value("runs").run()
    at.multiselect(key="cmp.picked").set_value([runs[0].hash, runs[2].hash])
    button(at, "Compare selected runs").click().run()
    no_traceback(at)
    assert at.query_params["compare"] == f"{runs[0].hash},{runs[2].hash}"
    assert at.query_params["modes"] == "static_fifo,multi_bin_fixed"
    assert [plain(c) for c in at.table[0].value.columns] == ["static_fifo", "multi_bin_fixed"]


def test_compare_root_url_redirects_and_missing_runs_warn():
    at = app(compare="0123456789abcdef")
    no_traceback(at)
    assert at.title[0].value == "Compare schedulers"
    assert "not in this store" in texts(at.warning)


def test_compare_needs_a_mode():
    at = app("compare")
    at.multiselect(key="cmp.modes").set_value([])
    button(at, "Run comparison").click().run()
    no_traceback(at)
    assert "at least one scheduler mode" in texts(at.error)


# ------------------------------------------------------------ Calibration ---
def _grid_bytes() -> bytes:
    return bundled_grids()["qwen3-4b-sglang"].read_bytes()


def test_calibration_upload_heatmaps_save_and_use_in_a_run():
    at = app("calibration")
    assert "qwen3-4b-sglang" in at.dataframe[0].value["name"].tolist()
    at.file_uploader(key="grid_upload").set_value(("lab-a100.csv", _grid_bytes(), "text/csv")).run()
    no_traceback(at)
    assert "Valid grid: 95 cells" in texts(at.success)
    ch = charts(at)
    prefill, decode = ch["Prefill time (ms)"], ch["Decode step time (ms)"]
    assert len(prefill) > 50 and prefill["ms"].gt(0).all()
    assert set(decode["batch_size"]) == {1, 2, 4, 8, 16, 32, 64}
    button(at, "Save to the store").click().run()
    no_traceback(at)
    assert "grid:lab-a100" in texts(at.success)
    assert [g.name for g in store().list_grids()] == ["lab-a100"]

    run = app()
    assert "grid:lab-a100" in run.selectbox(key="sim.latency").options
    run.selectbox(key="sim.latency").set_value("grid:lab-a100")
    button(run, "Run simulation").click().run()
    no_traceback(run)
    stored = store().get_run(run.query_params["run"])
    assert stored.config.latency == "grid:lab-a100"
    assert run.query_params["latency"] == "grid:lab-a100"
    extrapolated = (stored.summary.get("latency_notes") or {}).get("extrapolated_queries")
    if extrapolated:  # said next to the numbers, not hidden in the details
        assert "extrapolated beyond the calibration grid" in texts(run.warning)


@pytest.mark.parametrize("body, where", [
    (b"batch_size,context_len,prefill_s,decode_step_s\n1,1,0.1,0.01\n1,2,abc,0.01\n", ("line 3", "prefill_s")),
    (b"batch_size,context_len,prefill_s\n1,1,0.1\n", ("line 1", "decode_step_s")),
    (b"batch_size,context_len,prefill_s,decode_step_s\n1,1,0.1,0.01\n0,2,0.1,0.01\n", ("line 3", "batch_size")),
])
def test_calibration_invalid_upload_names_line_and_column(body, where):
    at = app("calibration")
    at.file_uploader(key="grid_upload").set_value(("bad.csv", body, "text/csv")).run()
    no_traceback(at)
    msg = texts(at.error)
    assert all(w in msg for w in where), msg
    assert not [b for b in at.button if b.label == "Save to the store"]


def test_calibration_shows_a_bundled_grid():
    at = app("calibration")
    ch = charts(at)
    assert {"Prefill time (ms)", "Decode step time (ms)"} <= set(ch)


# ---------------------------------------------------------------- History ---
def _default_runs():
    w = build_workload(WorkloadSpec(num_requests=600))
    return [store().get_or_run(SimConfig(mode=m), w)[0] for m in COMPARED]


def test_history_lists_filters_sorts_and_links():
    runs = _default_runs()
    at = app("history")
    no_traceback(at)
    table = at.dataframe[0].value
    assert len(table) == len(COMPARED)
    assert set(table["mode"]) == set(COMPARED)
    assert all(link == f"./?run={r.hash}" for link, r in zip(table["open"], runs[::-1]))
    assert table["SLA %"].between(0, 100).all()
    assert set(table["latency"]) == {"parametric"} and set(table["arrivals"]) == {"12 req/s"}
    assert table["workload"].str.contains("600 req").all()
    assert f"{len(COMPARED)} stored runs match" in texts(at.caption)
    at.selectbox(key="hist.mode").set_value("static_fifo").run()
    assert list(at.dataframe[0].value["mode"]) == ["static_fifo"]
    at.selectbox(key="hist.mode").set_value(None)
    at.selectbox(key="hist.order").set_value("sla_attainment").run()
    values = at.dataframe[0].value["SLA %"].tolist()
    assert values == sorted(values, reverse=True)
    at.text_input(key="hist.search").set_value(runs[1].hash[:10]).run()
    assert list(at.dataframe[0].value["mode"]) == [runs[1].mode]
    assert "1 stored run matches" in texts(at.caption)


def test_history_selection_open_compare_and_delete():
    runs = _default_runs()
    at = app("history")
    at.session_state["hist.table"] = {"selection": {"rows": [0, 1], "columns": []}}
    at.run()
    links = at.get("page_link")
    assert any("Compare 2 runs" == l.proto.label for l in links)
    button(at, "Delete").click().run()
    no_traceback(at)
    assert store().count_runs() == len(runs) - 2
    assert store().get_run(runs[-1].hash) is None and store().get_run(runs[-2].hash) is None  # newest first


def test_history_export_csv_and_json():
    from batchlab.webapp import services

    runs = _default_runs()
    csv = services.export_runs([runs[0].hash], "csv").decode()
    assert csv.splitlines()[0].count(",") > 5 and runs[0].hash in csv
    data = json.loads(services.export_runs(None, "json"))
    items = data if isinstance(data, list) else data.get("runs", [])
    assert len(items) == len(runs)


def test_history_empty_store():
    at = app("history")
    no_traceback(at)
    assert "No stored runs" in texts(at.info)


def test_a_linked_run_missing_from_the_store_can_be_computed_from_the_link():
    first = app()
    first.number_input(key="sim.gpus").set_value(3)
    button(first, "Run simulation").click().run()
    params = dict(first.query_params)
    store().delete_run(params["run"])
    from batchlab.webapp import services
    services.forget_runs()

    at = app(**params)
    assert "not in this store" in texts(at.warning) and "form holds" in texts(at.warning)
    at.session_state["run.settings"] = True  # the form holds the link's settings
    at.run()
    assert at.number_input(key="sim.gpus").value == 3, "the link's settings fill the form"
    button(at, "Compute this run").click().run()
    no_traceback(at)
    assert at.query_params["run"] == params["run"], "same settings, same run"
    assert len(at.get("vega_lite_chart")) == RUN_CHARTS + REPLICA_CHARTS


def test_a_page_that_breaks_shows_a_message_not_a_traceback(monkeypatch, caplog):
    from batchlab.webapp import views

    def broken(*a, **k):
        raise KeyError("summary field gone 0xF00D")

    first = app()
    button(first, "Run simulation").click().run()
    monkeypatch.setattr(views, "show_run", broken)
    at = app(run=first.query_params["run"])
    no_traceback(at)
    msg = texts(at.error)
    assert "could not be drawn" in msg and "KeyError" in msg and "0xF00D" not in msg
    assert "0xF00D" in caplog.text


def test_a_simulation_error_is_shown_by_field():
    at = app()
    at.number_input(key="sim.gpu_mem_gb").set_value(16.001)  # (in the "Memory model" expander)
    button(at, "Run simulation").click().run()
    no_traceback(at)
    assert "gpu_mem_gb" in texts(at.error) and "no request fits" in texts(at.error)


def test_settings_carry_over_from_run_to_compare():
    at = app()
    at.number_input(key="sim.gpus").set_value(6)
    at.number_input(key="wl.num_requests").set_value(1500)
    button(at, "Run simulation").click().run()
    no_traceback(at)
    at.query_params.clear()  # what a page switch through the navigation does
    at.switch_page("app_pages/compare.py").run()
    assert at.multiselect(key="cmp.modes").value == COMPARED, "the Run page does not shrink the compared modes"
    assert at.number_input(key="sim.gpus").value == 6
    assert at.number_input(key="wl.num_requests").value == 1500
    button(at, "Run comparison").click().run()
    no_traceback(at)
    assert at.query_params["gpus"] == "6" and at.query_params["num_requests"] == "1500"
    for h in at.query_params["compare"].split(","):
        assert store().get_run(h).num_requests == 1500


# ------------------------------------------------- typed values, folding, mode help ---
def test_typed_requests_and_rate_take_effect_and_the_header_says_so():
    at = app()
    at.number_input(key="wl.num_requests").set_value(1500)
    at.number_input(key="wl.rate").set_value(5.0)
    button(at, "Run simulation").click().run()
    no_traceback(at)
    run = store().get_run(at.query_params["run"])
    assert run.num_requests == 1500 and run.workload["spec"]["rate"] == 5.0
    assert (at.query_params["num_requests"], at.query_params["rate"]) == ("1500", "5.0")
    header = texts(at.markdown)
    assert "Workload run:" in header and "1,500 req" in header and "at 5 req/s" in header
    assert len(at.number_input) == 0, "the settings fold after a run, so the results come into view"
    at.session_state["run.settings"] = True
    at.run()
    assert at.number_input(key="wl.num_requests").value == 1500, "and they still hold what was typed"
    at.number_input(key="wl.num_requests").set_value(None)  # emptied: auto
    button(at, "Run simulation").click().run()
    assert store().get_run(at.query_params["run"]).num_requests == 10_000


def test_the_priority_classes_box_starts_empty_and_a_typed_mix_reaches_the_run():
    at = app()
    box = at.text_input(key="wl.priority_mix")
    assert box.value == "" and box.placeholder == "all 0"
    box.set_value("1:0.75, 0:0.25")
    at.number_input(key="wl.num_requests").set_value(500)
    button(at, "Run simulation").click().run()
    no_traceback(at)
    run = store().get_run(at.query_params["run"])
    assert run.workload["spec"]["priority_mix"] == "0:0.25,1:0.75"
    assert WorkloadSpec(priority_mix=at.query_params["priority_mix"]).priority_mix == "0:0.25,1:0.75"  # the link


def test_the_mode_picker_explains_every_mode():
    from batchlab.core.config import MODE_HELP, MODES

    at = app()
    panel = [e for e in at.expander if e.label == "What each mode does"]
    assert len(panel) == 1
    helptext = texts(panel[0].markdown)
    assert all(MODE_HELP[m] in helptext for m in MODES)
    assert at.number_input(key="sim.batch_size").label.startswith("Batch size cap B")


def test_a_finished_job_is_shown_when_the_user_comes_back():
    """The job outlives the page: a session that left during the run finds the result on return."""
    from batchlab.store.job_runs import runs_plan
    from batchlab.webapp import jobs

    settings = state_settings(gpus=5)
    plan = runs_plan([(SimConfig(**settings["sim"]), WorkloadSpec(**settings["spec"]), False)])
    job_id = jobs.launch(plan, again=True)
    deadline = time.monotonic() + 120
    while jobs.live(store().get_sweep(job_id).params) and time.monotonic() < deadline:
        time.sleep(0.1)
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["_job.run"] = {"id": job_id, "slots": [None], "members": [settings], "expect": []}
    at.run()
    no_traceback(at)
    outcome = store().get_sweep(job_id).params["result"]["outcomes"][0]
    assert at.query_params["run"] == outcome["hash"] and at.query_params["gpus"] == "5"
    assert "5 GPUs" in at.subheader[0].value and len(at.get("vega_lite_chart")) == RUN_CHARTS + REPLICA_CHARTS


def state_settings(**sim) -> dict:
    from batchlab.webapp import state

    s = state.default_settings()
    s["sim"].update(sim)
    s["spec"]["num_requests"] = 500
    return s


# ---------------------------------------------------------- failed runs ---
def _failed_run(**cfg):
    def boom(*a, **k):
        raise RuntimeError("engine exploded 0xDEAD")

    w = build_workload(WorkloadSpec(num_requests=400))
    with pytest.raises(RuntimeError):
        store().get_or_run(SimConfig(**cfg), w, simulate_fn=boom)
    return store().list_runs(status="failed")[0]


def test_a_failed_run_shows_one_line_and_recomputes_with_its_own_settings():
    row = _failed_run(gpus=3, mode="static_fifo")
    at = app(run=row.hash)
    no_traceback(at)
    msg = texts(at.error)
    assert "This run failed: RuntimeError: engine exploded 0xDEAD" in msg and "server log" in msg
    assert "Traceback" not in msg and "File " not in msg
    assert "form holds" not in texts(at.warning)
    button(at, "Recompute with its own settings").click().run()
    no_traceback(at)
    assert at.query_params["run"] == row.hash
    run = store().get_run(row.hash)
    assert run.status == "done" and (run.config.gpus, run.config.mode) == (3, "static_fifo")
    assert "End-to-end latency: CDF" in charts(at) and not at.error


def test_history_shows_a_failed_row_plainly():
    _failed_run()
    _default_runs()
    at = app("history")
    no_traceback(at)
    table = at.dataframe[0].value
    failed = table[table["status"] == "failed"]
    assert len(failed) == 1
    assert failed[["req/s", "p99 (s)", "SLA %"]].isna().all().all(), "empty cells, not 'None'"
    assert table[table["status"] == "done"]["req/s"].gt(0).all()
    assert "None" not in table.astype(str).drop(columns=["req/s", "p99 (s)", "SLA %"]).to_string()
    assert at.dataframe[0].proto.placeholder == "—", "a missing metric reads as a dash"


# ---------------------------------------------------------- shared links ---
def _fresh_store(tmp_path, monkeypatch, name: str) -> None:
    """Point the app at another, empty store (what opening a link on another machine is)."""
    monkeypatch.setenv("BATCHLAB_DB_URL", f"sqlite:///{tmp_path / name}")
    st.cache_data.clear()
    st.cache_resource.clear()


def test_a_comparison_link_rebuilds_every_run_on_an_empty_and_a_partial_store(tmp_path, monkeypatch):
    at = app("compare")
    at.number_input(key="wl.num_requests").set_value(800)
    button(at, "Run comparison").click().run()
    link = dict(at.query_params)
    hashes = link["compare"].split(",")

    _fresh_store(tmp_path, monkeypatch, "empty.db")
    empty = app("compare", **link)
    no_traceback(empty)
    n = len(COMPARED)
    assert f"{n} of {n} runs of this comparison cannot be shown" in texts(empty.warning)
    assert all(m in texts(empty.warning) for m in COMPARED)
    button(empty, f"Recompute the {n} missing runs").click().run()
    no_traceback(empty)
    assert empty.query_params["compare"].split(",") == hashes, "the same runs, rebuilt"
    assert [plain(c) for c in empty.table[0].value.columns] == COMPARED

    _fresh_store(tmp_path, monkeypatch, "partial.db")
    w = build_workload(WorkloadSpec(num_requests=800))
    store().get_or_run(SimConfig(mode="static_fifo"), w)  # this store holds one of them
    partial = app("compare", **link)
    no_traceback(partial)
    assert f"{n - 1} of {n} runs of this comparison cannot be shown" in texts(partial.warning)
    assert f"1 of {n} runs shown" in partial.subheader[0].value
    button(partial, f"Recompute the {n - 1} missing runs").click().run()
    no_traceback(partial)
    assert partial.query_params["compare"].split(",") == hashes
    assert f"{n} runs compared" in partial.subheader[0].value
    assert "1 served from the store" in texts(partial.success) or store().count_runs() == n


def test_a_link_of_stored_runs_with_different_settings_rebuilds_them(tmp_path, monkeypatch):
    runs = [store().get_or_run(SimConfig(mode="static_fifo"), build_workload(WorkloadSpec(num_requests=500, rate=r)))[0]
            for r in (2.0, 5.0)]
    at = app("compare", compare=",".join(r.hash for r in runs))
    no_traceback(at)
    assert [plain(c) for c in at.table[0].value.columns] == ["static_fifo · rate 2", "static_fifo · rate 5"]
    assert "different workloads" in texts(at.warning) and "rate 2 / rate 5" in texts(at.warning)
    link = dict(at.query_params)
    assert link["rate"] == ["2.0", "5.0"] and link["modes"] == "static_fifo,static_fifo"

    _fresh_store(tmp_path, monkeypatch, "other.db")
    other = app("compare", **link)
    button(other, "Recompute the 2 missing runs").click().run()
    no_traceback(other)
    assert other.query_params["compare"] == link["compare"]


def test_a_run_link_opened_from_history_carries_its_settings():
    w = build_workload(WorkloadSpec(num_requests=300, rate=4.0))
    run = store().get_or_run(SimConfig(gpus=2), w)[0]
    at = app(run=run.hash)
    no_traceback(at)
    assert at.query_params["gpus"] == "2" and at.query_params["rate"] == "4.0"
    assert at.query_params["num_requests"] == "300"


# ------------------------------------------------------- words for empty charts ---
def test_no_deadline_and_no_waiting_are_said_in_words():
    at = app(d_sla_ttft="none", d_sla_tbt="none", d_sla_e2e="none", num_requests="40", rate="0.001")
    button(at, "Run simulation").click().run()
    no_traceback(at)
    cards = {m.label: m.value for m in at.metric}
    assert cards["SLA attainment"] == "no deadline set"
    assert "No SLA deadline is set" in texts(at.info)
    assert "SLA violations by kind" not in charts(at)
    at.segmented_control(key="run_cdf_metric").set_value("queue_delay").run()
    assert "no request waited" in texts(at.info)


def test_nothing_violated_is_said_in_words():
    at = app(d_sla_ttft="1000", d_sla_tbt="10", d_sla_e2e="100000", num_requests="300")
    button(at, "Run simulation").click().run()
    no_traceback(at)
    assert "No request missed an SLA deadline" in texts(at.success)
    cdf = charts(at)["End-to-end latency: CDF"]
    assert 100000.0 in set(cdf["seconds"].dropna()), "the deadline is drawn on the CDF"


def test_a_one_run_comparison_reads_right():
    w = build_workload(WorkloadSpec(num_requests=300))
    run = store().get_or_run(SimConfig(), w)[0]
    at = app("compare", compare=run.hash)
    no_traceback(at)
    assert at.subheader[0].value == "1 run compared"
    bars = charts(at)["Throughput"]
    assert bars["throughput_rps"].dropna().gt(0).all() and len(bars.dropna(subset=["run"])) >= 1


# ------------------------------------------------------------- user text ---
def test_an_uploaded_file_name_never_becomes_markup():
    at = app()
    at.radio(key="source").set_value("upload").run()
    good = bundled_traces()["BurstGPT_1_first400"].read_bytes()
    name = "[Click here](http://evil.example).csv"
    at.file_uploader(key="trace_upload").set_value((name, good, "text/csv")).run()
    no_traceback(at)
    raw = " | ".join(str(c.value) for c in at.caption)
    assert "[Click here](http" not in raw and "\\[Click here\\]\\(http" in raw
    button(at, "Run simulation").click().run()
    no_traceback(at)
    raw = " | ".join(str(m.value) for m in at.markdown)
    assert "Workload run:" in raw and "](http" not in raw


def test_a_link_whose_hash_this_version_does_not_produce_says_so():
    at = app(run="f" * 64, gpus="3", num_requests="300")
    assert "link carries its settings" in texts(at.warning)
    button(at, "Compute this run").click().run()
    no_traceback(at)
    assert "new identities" in texts(at.info)
    h = at.query_params["run"]
    assert h != "f" * 64 and store().get_run(h).config.gpus == 3
    at.session_state["run.settings"] = True  # a new run from the form is not a recompute of the link
    at.run()
    at.number_input(key="sim.gpus").set_value(5)
    button(at, "Run simulation").click().run()
    assert "new identities" not in texts(at.info)


def test_a_stored_run_downloads_its_requests_and_vllms_result_shape():
    import io

    from batchlab.webapp import services

    at = app()
    at.number_input(key="wl.num_requests").set_value(300)
    button(at, "Run simulation").click().run()
    h = at.query_params["run"]
    shown = app(run=h)
    labels = [d.proto.label for d in shown.get("download_button")]
    assert [label for label, _, _ in services.RUN_FILES.values()] == [x for x in labels if x in
                                                                      {v[0] for v in services.RUN_FILES.values()}]
    run = store().get_run(h)
    table = pd.read_csv(io.BytesIO(services.run_file(h, "csv")))
    assert len(table) == run.summary["num_requests"] == 300
    assert table["ttft"].tolist() == pytest.approx(run.requests()["ttft"].tolist())
    assert pd.read_parquet(io.BytesIO(services.run_file(h, "parquet"))).equals(table)
    result = json.loads(services.run_file(h, "vllm-bench"))
    assert result["completed"] == run.summary["completed"] and result["backend"] == "batchlab"
    assert result["p99_ttft_ms"] == pytest.approx(1000 * run.summary["ttft_p99_s"])
    with pytest.raises(ValueError, match="kind: one of csv, parquet, vllm-bench"):
        services.run_file(h, "../../etc/passwd")

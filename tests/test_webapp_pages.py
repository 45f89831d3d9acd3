"""Every page of the web app driven through ``streamlit.testing.v1.AppTest``: form submits,
valid and invalid uploads, URLs that reopen results, and charts carrying the expected data."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from calibration import bundled_grids
from core.config import SimConfig
from workloads import WorkloadSpec, build_workload, bundled_traces

APP = str(Path(__file__).resolve().parents[1] / "webapp" / "app.py")
HASH = re.compile(r"^[0-9a-f]{64}$")
THREE = ["static_fifo", "dynamic_no_bins", "multi_bin_dynamic"]

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A private store, data home and workload cache per test; Streamlit caches cleared."""
    monkeypatch.setenv("BATCHLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BATCHLAB_DB_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("BATCHLAB_CACHE_DIR", str(tmp_path / "cache"))
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


def app(page: str | None = None, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(params)
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def store():
    from webapp import services

    return services.get_store()


def charts(at: AppTest) -> dict[str, pd.DataFrame]:
    """Chart title -> its data (all datasets concatenated)."""
    out = {}
    for c in at.get("vega_lite_chart"):
        spec = json.loads(c.proto.spec)
        frames = [convert_arrow_bytes_to_pandas_df(d.data.data) for d in c.proto.datasets]
        title = spec.get("title")
        title = title.get("text") if isinstance(title, dict) else title
        out[title] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return out


def button(at: AppTest, label: str):
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r} in {[b.label for b in at.button]}"
    return matches[0]


def texts(elements) -> str:
    return " | ".join(str(e.value) for e in elements)


def no_traceback(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert "Traceback" not in texts(at.error)


# -------------------------------------------------------------------- Run ---
def test_run_page_defaults_and_submit():
    at = app()
    assert at.title[0].value == "Run a simulation"
    assert at.selectbox(key="sim.mode").value == "multi_bin_dynamic"
    assert at.number_input(key="sim.gpus").value == 4
    assert at.number_input(key="sim.k_bins").value == 4
    assert at.number_input(key="wl.num_requests").value == 10000
    assert at.checkbox(key="wl.num_requests.none").value is True  # auto = 10,000
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
    ch = charts(at)
    cdf = ch["End-to-end latency: CDF"]
    assert set(cdf["run"]) == {"multi_bin_dynamic"} and cdf["percent"].between(0, 100).all()
    viol = ch["SLA violations by kind"]
    assert set(viol["kind"]) == {"TTFT", "TBT", "E2E", "Any (SLA missed)"}
    s = store().get_run(h).summary
    any_row = viol[viol["kind"] == "Any (SLA missed)"]["rate_pct"].iloc[0]
    assert any_row == pytest.approx(100 * (1 - s["sla_attainment"]))
    assert set(ch["Batch size over time, per bin"]["bin"]) == {0, 1, 2, 3}
    ctl = ch["Controller trace: multi_bin_dynamic"]
    assert {"b_mem (memory cap)", "b_SLA (SLA cap)", "chosen b = min(b_mem, b_SLA)"} <= set(ctl["series"])
    assert ch["GPU utilisation over time"]["percent"].between(0, 100.0001).all()
    assert "Batch size distribution" in ch
    assert len(at.table) == 1  # the per-bin table


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
    assert len(shared.get("vega_lite_chart")) == 6
    assert len(shared.number_input) == 0, "the settings panel is folded and not drawn"
    assert "2 GPUs" in shared.subheader[0].value
    shared.session_state["run.settings"] = True  # open the settings panel
    shared.run()
    assert shared.number_input(key="sim.gpus").value == 2, "the form holds the run's settings"


def test_url_settings_fill_the_form_and_bad_values_warn():
    at = app(mode="static_fifo", gpus="8", d_sla_tbt="none", workload_seed="3", batch_size="oops")
    assert at.selectbox(key="sim.mode").value == "static_fifo"
    assert at.number_input(key="sim.gpus").value == 8
    assert at.checkbox(key="sim.d_sla_tbt.none").value is True
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
    assert "not in the store" in texts(at.warning)
    assert at.number_input, "the form is open so the run can be computed"


def test_invalid_settings_show_the_field_not_a_traceback():
    at = app()
    at.number_input(key="sim.b_min").set_value(500)
    button(at, "Run simulation").click().run()
    no_traceback(at)
    assert "b_min" in texts(at.error)
    assert "run" not in at.query_params
    assert store().count_runs() == 0


def test_unexpected_failure_is_a_message_with_details_in_the_log(monkeypatch, caplog):
    from webapp import services

    def broken(*a, **k):
        raise RuntimeError("internal detail 0xBEEF")

    monkeypatch.setattr(services, "run_modes", broken)
    at = app()
    button(at, "Run simulation").click().run()
    no_traceback(at)
    msg = texts(at.error)
    assert "RuntimeError" in msg and "0xBEEF" not in msg
    assert "0xBEEF" in caplog.text


def test_upload_a_burstgpt_trace_valid_and_invalid():
    at = app()
    at.radio(key="source").set_value("upload").run()
    assert at.file_uploader(key="trace_upload")
    good = bundled_traces()["BurstGPT_1_first400"].read_bytes()
    at.file_uploader(key="trace_upload").set_value(("mine.csv", good, "text/csv")).run()
    no_traceback(at)
    assert "mine.csv:" in texts(at.caption) and "requests" in texts(at.caption)
    button(at, "Run simulation").click().run()
    no_traceback(at)
    run = store().get_run(at.query_params["run"])
    assert run.workload["kind"] == "burstgpt" and "mine.csv" in run.workload["label"]

    bad = b"Timestamp,Model,Request tokens\n1,ChatGPT,10\n"
    at.file_uploader(key="trace_upload").set_value(("bad.csv", bad, "text/csv")).run()
    no_traceback(at)
    assert "Response tokens" in texts(at.error)


def test_upload_source_without_a_file_says_so():
    at = app()
    at.radio(key="source").set_value("upload").run()
    button(at, "Run simulation").click().run()
    no_traceback(at)
    assert "upload a BurstGPT CSV" in texts(at.error)


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
    assert at.multiselect(key="cmp.modes").value == THREE
    button(at, "Run comparison").click().run()
    no_traceback(at)
    hashes = at.query_params["compare"].split(",")
    assert len(hashes) == 3 and all(HASH.match(h) for h in hashes)
    table = at.table[0].value
    assert list(table.columns) == THREE
    assert table.loc["SLA attainment"].str.endswith("%").all()
    ch = charts(at)
    assert set(ch["End-to-end latency: CDF"]["run"]) == set(THREE)
    assert set(ch["SLA violations by kind"]["run"]) == set(THREE)
    rps = ch["Throughput"].drop_duplicates("run").set_index("run")["throughput_rps"]
    for h in hashes:
        r = store().get_run(h)
        assert rps[r.summary["mode"]] == pytest.approx(r.summary["throughput_rps"])
    assert set(ch["Output throughput"]["run"]) == set(THREE)
    assert set(ch["GPU utilisation over time"]["run"]) == set(THREE)
    for mode in THREE:  # batch size over time, per bin, one chart per run
        assert mode in ch
    assert set(ch["multi_bin_dynamic"]["bin"]) == {0, 1, 2, 3}
    assert "Controller trace: dynamic_no_bins" in ch and "Controller trace: multi_bin_dynamic" in ch
    assert "no b_mem / b_SLA controller" in texts(at.caption)  # static_fifo has none


def test_compare_url_and_stored_run_picker():
    w = build_workload(WorkloadSpec(num_requests=800))
    runs = [store().get_or_run(SimConfig(mode=m, gpus=g), w)[0] for m, g in
            [("static_fifo", 2), ("static_fifo", 4), ("multi_bin_fixed", 2)]]
    shared = app("compare", compare=",".join(r.hash for r in runs[:2]))
    no_traceback(shared)
    assert list(shared.table[0].value.columns) == ["static_fifo · 2 GPU · 1 bin", "static_fifo · 4 GPU · 1 bin"]
    assert len(shared.multiselect) == 0, "the set-up is folded and not drawn"

    at = app("compare")
    at.multiselect(key="cmp.picked").set_value([runs[0].hash, runs[2].hash])
    button(at, "Compare selected runs").click().run()
    no_traceback(at)
    assert at.query_params["compare"] == f"{runs[0].hash},{runs[2].hash}"
    assert list(at.table[0].value.columns) == ["static_fifo", "multi_bin_fixed"]


def test_compare_root_url_redirects_and_missing_runs_warn():
    at = app(compare="0123456789abcdef")
    no_traceback(at)
    assert at.title[0].value == "Compare schedulers"
    assert "not in the store" in texts(at.warning)


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
def _three_runs():
    w = build_workload(WorkloadSpec(num_requests=600))
    return [store().get_or_run(SimConfig(mode=m), w)[0] for m in THREE]


def test_history_lists_filters_sorts_and_links():
    runs = _three_runs()
    at = app("history")
    no_traceback(at)
    table = at.dataframe[0].value
    assert len(table) == 3
    assert set(table["mode"]) == set(THREE)
    assert all(link == f"./?run={r.hash}" for link, r in zip(table["open"], runs[::-1]))
    assert table["SLA attainment (%)"].between(0, 100).all()
    at.selectbox(key="hist.mode").set_value("static_fifo").run()
    assert list(at.dataframe[0].value["mode"]) == ["static_fifo"]
    at.selectbox(key="hist.mode").set_value(None)
    at.selectbox(key="hist.order").set_value("sla_attainment").run()
    values = at.dataframe[0].value["SLA attainment (%)"].tolist()
    assert values == sorted(values, reverse=True)
    at.text_input(key="hist.search").set_value(runs[1].hash[:10]).run()
    assert list(at.dataframe[0].value["mode"]) == ["dynamic_no_bins"]


def test_history_selection_open_compare_and_delete():
    runs = _three_runs()
    at = app("history")
    at.session_state["hist.table"] = {"selection": {"rows": [0, 1], "columns": []}}
    at.run()
    links = at.get("page_link")
    assert any("Compare 2 runs" == l.proto.label for l in links)
    button(at, "Delete").click().run()
    no_traceback(at)
    assert store().count_runs() == 1
    assert store().get_run(runs[0].hash) is not None  # newest first: rows 0 and 1 were runs 2 and 1


def test_history_export_csv_and_json():
    from webapp import services

    runs = _three_runs()
    csv = services.export_runs([runs[0].hash], "csv").decode()
    assert csv.splitlines()[0].count(",") > 5 and runs[0].hash in csv
    data = json.loads(services.export_runs(None, "json"))
    items = data if isinstance(data, list) else data.get("runs", [])
    assert len(items) == 3


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
    from webapp import services
    services.forget_runs()

    at = app(**params)
    assert "not in the store" in texts(at.warning)
    assert at.number_input(key="sim.gpus").value == 3, "the link's settings fill the form"
    button(at, "Run simulation").click().run()
    no_traceback(at)
    assert at.query_params["run"] == params["run"], "same settings, same run"
    assert len(at.get("vega_lite_chart")) == 6


def test_a_page_that_breaks_shows_a_message_not_a_traceback(monkeypatch, caplog):
    from webapp import views

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
    at.number_input(key="sim.gpu_mem_gb").set_value(16.05)  # (in the "Memory model" expander)
    button(at, "Run simulation").click().run()
    no_traceback(at)
    assert "gpu_mem_gb" in texts(at.error) and "never fit" in texts(at.error)


def test_settings_carry_over_from_run_to_compare():
    at = app()
    at.number_input(key="sim.gpus").set_value(6)
    at.number_input(key="wl.num_requests").set_value(1500)
    at.checkbox(key="wl.num_requests.none").uncheck()
    button(at, "Run simulation").click().run()
    no_traceback(at)
    at.query_params.clear()  # what a page switch through the navigation does
    at.switch_page("app_pages/compare.py").run()
    assert at.number_input(key="sim.gpus").value == 6
    assert at.number_input(key="wl.num_requests").value == 1500
    button(at, "Run comparison").click().run()
    no_traceback(at)
    assert at.query_params["gpus"] == "6" and at.query_params["num_requests"] == "1500"
    for h in at.query_params["compare"].split(","):
        assert store().get_run(h).num_requests == 1500

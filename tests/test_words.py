"""Words that are true: the pages' hints and forms name the defaults the configuration defines, an upload
that cannot be read is not called missing, the size limit is said, the Reproduce page keeps a paper's result
and shows it readably beside a chart, and the command line prints each stored job's web link and no row twice."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from streamlit.testing.v1 import AppTest

from batchlab.core.config import MODES, SimConfig
from batchlab.core.plan_options import PlanOptions
from batchlab.core.reproduce import PAPER2_STATIC_CAPS
from batchlab.core.suite import SuitePlan, step_titles
from batchlab.store.job_runs import reproduce_plan
from batchlab.store.sweep_jobs import open_plan
from batchlab.webapp import intro
from batchlab.webapp.reproduce import PAPER2_COLUMNS
from batchlab.webapp.state import DEFAULT_COMPARE
from batchlab.workloads import MAX_UPLOAD_BYTES
from batchlab.workloads.spec import SYNTHETIC_RATE, SYNTHETIC_REQUESTS

APP = str(Path(__file__).resolve().parents[1] / "webapp" / "app.py")
web = [pytest.mark.timeout(300), pytest.mark.usefixtures("isolated_app")]


def app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    return " | ".join(re.sub(r"\\(.)", r"\1", str(e.value)) for e in elements)


# ------------------------------------------------------------------ pages --
@pytest.mark.timeout(300)
@pytest.mark.usefixtures("isolated_app")
def test_run_form_holds_what_its_hint_says():
    at = app()
    sim = SimConfig()
    assert intro.run_hint() in texts(at.info)
    assert at.selectbox(key="sim.mode").value == sim.mode and f"`{sim.mode}`" in intro.run_hint()
    assert at.number_input(key="sim.gpus").value == sim.gpus
    assert f"{SYNTHETIC_REQUESTS:,}" in at.number_input(key="wl.num_requests").placeholder
    assert f"{SYNTHETIC_RATE:g}" in at.number_input(key="wl.rate").placeholder


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("isolated_app")
def test_compare_form_preselects_the_modes_its_hint_names():
    at = app("compare")
    hint = intro.compare_hint()
    assert hint in texts(at.info)
    assert at.multiselect(key="cmp.modes").value == list(DEFAULT_COMPARE)
    assert [m for m in MODES if f"`{m}`" in hint] == [m for m in MODES if m in DEFAULT_COMPARE]


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("isolated_app")
def test_plan_form_and_suite_caption_come_from_the_definitions():
    at = app("plan")
    sim, options = SimConfig(), PlanOptions()
    assert at.number_input(key="plan.requests").value == SYNTHETIC_REQUESTS
    assert at.number_input(key="plan.rate").value == SYNTHETIC_RATE
    assert at.number_input(key="plan.ttft").value == sim.d_sla_ttft
    assert at.number_input(key="plan.tbt").value == sim.d_sla_tbt
    assert at.number_input(key="plan.e2e").value == sim.d_sla_e2e
    assert at.number_input(key="plan.target").value == pytest.approx(100 * options.target)
    at.switch_page("app_pages/sweeps.py").run()
    suite = SuitePlan()
    caption = texts(at.caption)
    assert f"GPU scaling {min(suite.step2_gpus)}-{max(suite.step2_gpus)}" in caption
    assert f"K = {min(suite.step3_k)}-{max(suite.step3_k)}" in caption
    assert at.multiselect(key="suite.steps").format_func(2) == f"2 · {step_titles()[2]}"


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("isolated_app")
def test_an_unreadable_upload_is_named_not_called_missing():
    at = app()
    at.radio(key="source").set_value("upload").run()
    assert f"Up to {MAX_UPLOAD_BYTES // 2**20} MB" in texts(at.caption)  # what a red '!' alone would not say
    bad = b"Timestamp,Model,Request tokens\n1,ChatGPT,10\n"
    at.file_uploader(key="trace_upload").set_value(("bad.csv", bad, "text/csv")).run()
    [b for b in at.button if b.label == "Run simulation"][0].click().run()
    assert not at.exception, at.exception
    errors = texts(at.error)
    assert "bad.csv could not be read" in errors and "file first" not in errors
    assert "run" not in at.query_params


PAPER2 = pd.DataFrame([
    {"static": f"static_fifo B={b}", "dynamic": "dynamic_no_bins", "static_throughput_rps": 10.0 + b,
     "dynamic_throughput_rps": 30.0, "throughput_ratio": 30.0 / (10.0 + b), "static_tbt_p99_s": 0.04,
     "dynamic_tbt_p99_s": 0.045, "static_capacity_rps": 5.0 + b / 100, "static_capacity_low": 4.9,
     "static_capacity_high": 5.6, "dynamic_capacity_rps": 6.6, "dynamic_capacity_low": 6.4,
     "dynamic_capacity_high": 6.8, "capacity_ratio": 1.22, "capacity_ratio_low": 1.18, "capacity_ratio_high": 1.26,
     "replications": 3} for b in PAPER2_STATIC_CAPS])


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("isolated_app")
def test_reproduce_keeps_a_papers_result_and_draws_it_beside_a_readable_table():
    from batchlab.webapp import services

    s = services.get_store()
    job_id = open_plan(s, reproduce_plan("paper2"))  # a finished reproduction, as its runner leaves it
    s.update_sweep(job_id, status="done", progress={"done": 40, "failed": 0, "total": None, "left": 0},
                   result={"tables": {"paper2": json.loads(PAPER2.to_json(orient="records"))},
                           "columns": {"paper2": list(PAPER2.columns)}})
    at = app("reproduce")
    at.segmented_control(key="repro.paper").set_value("paper2").run()
    for _visit in range(2):  # the page opened, then again after another page: no link, no new job
        assert not at.exception, at.exception
        [chart] = at.get("vega_lite_chart")
        assert json.loads(chart.proto.spec)["title"] == "Capacity per configuration"
        table = at.dataframe[0].value
        assert list(table.columns) == [c for c, _, _ in PAPER2_COLUMNS]
        assert list(table["capacity_gain"]) == ["+22 % [+18 %, +26 %]"] * len(PAPER2_STATIC_CAPS)
        assert table["static_tbt_p99_ms"].tolist() == pytest.approx([40.0] * len(PAPER2_STATIC_CAPS))
        assert table["dynamic_capacity"].iloc[0] == "6.6 [6.4, 6.8]"
        at.switch_page("app_pages/run.py").run()
        at.switch_page("app_pages/reproduce.py").run()
    assert [r.id for r in s.list_sweeps()] == [job_id]


# ---------------------------------------------------------- command line --
def test_suite_with_a_request_cap_runs_each_size_once():
    from batchlab.cli import cli

    r = CliRunner().invoke(cli, ["suite", "--step", "1", "--max-requests", "150", "--no-store", "--workers", "2",
                                 "--format", "json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["tables"]["step1"]
    keys = [(row["mode"], row["gpus"], row["requests"]) for row in rows]
    assert len(keys) == len(set(keys)) == len(SuitePlan().members(1)) // len(SuitePlan().step1_sizes)
    assert {row["requests"] for row in rows} == {150}


def test_suite_chart_ticks_are_the_measured_counts():
    from batchlab.webapp.sweep_charts import suite_step1

    df = pd.DataFrame({"mode": ["static_fifo"] * 2, "gpus": [4, 4], "requests": [1000, 10_000],
                       "sla_violation_rate": [0.1, 0.2], "latency_p99_s": [1.0, 2.0]})
    x = suite_step1(df, "sla_violation_rate").to_dict()["encoding"]["x"]
    assert x["axis"]["values"] == [1000.0, 10_000.0] and x["scale"]["type"] == "log"
    one = suite_step1(df.iloc[:1], "sla_violation_rate").to_dict()["encoding"]["x"]
    assert one["scale"]["domain"] == [100.0, 10_000.0]  # a single count gets a span, not a pile of labels


def test_sweep_and_capacity_print_their_web_link():
    from batchlab.cli import cli
    from batchlab.store.repo import open_store

    r = CliRunner().invoke(cli, ["sweep", "--vary", "rate=1,2", "--mode", "static_fifo", "--num-requests", "200",
                                 "--workers", "2"])
    assert r.exit_code == 0, r.output
    [row] = open_store(None).list_sweeps()
    assert f"stored as sweep {row.id}: the web app shows it at /sweeps?sweep={row.key}" in r.stderr
    r = CliRunner().invoke(cli, ["capacity", "--mode", "static_fifo", "--num-requests", "200", "--target", "0.9",
                                 "--workers", "2"])
    assert r.exit_code == 0, r.output
    [new] = [s for s in open_store(None).list_sweeps() if s.id != row.id]
    assert f"stored as sweep {new.id}: the web app shows it at /sweeps?sweep={new.key}" in r.stderr

"""The cluster on the web pages (AppTest): the Run page's per-replica charts and load imbalance, the Compare
page's cluster rows, the Plan page's routers, TPs and P:D ratios, the Sweeps page's cluster columns, and
hostile cluster settings named, never a traceback."""
from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_webapp_plan import charts, fill_plan_form

from batchlab.core import SimConfig
from batchlab.core.plan_options import PlanOptions
from batchlab.store.sweep_jobs import gpu_plan, grid_plan, open_plan, plan_key, run_plan
from batchlab.workloads import WorkloadSpec, build_workload

APP = str(Path(__file__).resolve().parents[1] / "webapp" / "app.py")
pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("isolated_app")]
HEATMAPS = ("Requests waiting per replica over time", "Running requests per replica over time",
            "KV cache in use per replica over time")


def store():
    from batchlab.webapp import services

    return services.get_store()


def app(page: str | None = None, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py")
    at.query_params.update(params)
    at.run()
    assert not at.exception, at.exception
    return at


def plain(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", str(text))


def texts(elements) -> str:
    return " | ".join(plain(e.value) for e in elements)


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def no_traceback(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert "Traceback" not in texts(at.error)


# -------------------------------------------------------------------- Run ---
def test_the_run_form_shows_the_cluster_and_a_run_draws_each_replica():
    at = app()
    labels = {w.key: w.label for w in [*at.number_input, *at.selectbox, *at.text_input]}
    assert labels["sim.replicas"] == "Replicas" and labels["sim.tp"] == "Tensor parallelism (GPUs per replica)"
    assert labels["sim.router"] == "Router" and labels["sim.disaggregate"] == "Prefill:decode replicas (P:D)"
    assert at.selectbox(key="sim.router").value == "auto"  # the mode's own router
    assert at.number_input(key="sim.replicas").value is None and "GPUs / TP" in \
        at.number_input(key="sim.replicas").placeholder
    at.number_input(key="sim.replicas").set_value(2)
    at.number_input(key="sim.tp").set_value(2)
    at.selectbox(key="sim.router").set_value("round_robin")
    at.number_input(key="wl.num_requests").set_value(600)
    button(at, "Run simulation").click().run()
    no_traceback(at)
    run = store().get_run(at.query_params["run"])
    s = run.summary
    assert (s["gpus"], s["replicas"], s["tp"], s["router"]) == (4, 2, 2, "round_robin")
    assert (at.query_params["router"], at.query_params["replicas"], at.query_params["tp"]) == ("round_robin", "2", "2")
    assert "4 GPUs = 2 replicas × TP 2 · router round_robin" in at.subheader[0].value
    assert {m.label: m.value for m in at.metric}["Load imbalance"] == f"{s['load_imbalance']:.3g}"
    ch = charts(at)
    busy = ch["Busy time per replica"].dropna(subset=["replica"])
    assert sorted(busy["replica"].astype(int)) == [0, 1]
    assert busy["ratio"].max() == pytest.approx(s["load_imbalance"], rel=1e-6)
    series = run.series()["replicas"]
    for title in HEATMAPS:
        d = ch[title]
        assert set(d["replica"].astype(int)) == {0, 1} and (d["value"] >= 0).all() and (d["t1"] > d["t0"]).all()
    assert ch["KV cache in use per replica over time"]["value"].max() <= 100.0 + 1e-9
    running = ch["Running requests per replica over time"]
    assert running.groupby("replica")["value"].mean().to_numpy() == pytest.approx(
        series.groupby("replica")["running"].mean().to_numpy())
    assert "SLA" not in texts(at.error)


def test_a_shared_queue_and_a_single_replica():
    at = app()
    at.selectbox(key="sim.router").set_value("shared_queue")
    at.number_input(key="wl.num_requests").set_value(500)
    button(at, "Run simulation").click().run()
    no_traceback(at)
    assert "4 GPUs · one shared queue" in at.subheader[0].value
    assert "every replica sees the same queue" in texts(at.caption)
    assert set(HEATMAPS) <= set(charts(at))
    one = app()
    one.number_input(key="sim.gpus").set_value(1)
    one.number_input(key="wl.num_requests").set_value(500)
    button(one, "Run simulation").click().run()
    no_traceback(one)
    assert "Busy time per replica" not in charts(one) and "Load imbalance" not in {m.label for m in one.metric}


def test_hostile_cluster_settings_are_named():
    at = app(router="<script>alert(1)</script>", disaggregate="1:x", tp="-3")
    no_traceback(at)
    warned = texts(at.warning)
    assert "router" in warned and "tp" in warned
    assert "<script>" not in "".join(e.value for e in at.markdown)
    at = app()
    at.text_input(key="sim.disaggregate").set_value("one:two")
    button(at, "Run simulation").click().run()
    no_traceback(at)
    assert "disaggregate" in texts(at.error) and "run" not in at.query_params
    at = app()
    at.selectbox(key="sim.mode").set_value("static_fifo")
    at.selectbox(key="sim.router").set_value("random")
    button(at, "Run simulation").click().run()
    no_traceback(at)
    assert "router" in texts(at.error) and "continuous mode" in texts(at.error)


# ---------------------------------------------------------------- Compare ---
def test_compare_shows_each_runs_cluster():
    w = build_workload(WorkloadSpec(num_requests=600))
    runs = [store().get_or_run(cfg, w)[0] for cfg in (SimConfig(gpus=4, router="random"),
                                                      SimConfig(gpus=4, router="shared_queue"),
                                                      SimConfig(gpus=4, tp=2))]
    at = app("compare", compare=",".join(r.hash for r in runs))
    no_traceback(at)
    table = at.table[0].value
    table.columns = [plain(c) for c in table.columns]
    assert list(table.columns) == ["continuous_dynamic · random · TP 1", "continuous_dynamic · shared queue · TP 1",
                                   "continuous_dynamic · least_outstanding · TP 2"]
    assert list(table.loc["Router"]) == ["random", "one shared queue", "least_outstanding"]
    assert list(table.loc["Replicas"]) == ["4", "4", "2"] and list(table.loc["TP (GPUs per replica)"]) == ["1", "1", "2"]
    assert list(table.loc["GPUs"]) == ["4", "4", "4"]
    assert list(table.index[:4]) == ["GPUs", "Replicas", "TP (GPUs per replica)", "Router"]


def test_a_comparison_gives_batch_level_modes_their_shared_queue():
    at = app("compare")
    at.multiselect(key="cmp.modes").set_value(["static_fifo", "continuous_dynamic"])
    at.selectbox(key="sim.router").set_value("random")
    at.number_input(key="wl.num_requests").set_value(500)
    button(at, "Run comparison").click().run()
    no_traceback(at)
    routers = {store().get_run(h).config.mode: store().get_run(h).config.routing
               for h in at.query_params["compare"].split(",")}
    assert routers == {"static_fifo": "shared_queue", "continuous_dynamic": "random"}


# -------------------------------------------------------------------- Plan ---
def test_a_stored_plan_over_routers_and_tp_shows_them():
    options = PlanOptions(modes=("continuous_dynamic",), b_max_values=(64,), max_gpus=8, target=0.9,
                          routers=("random", "least_outstanding"), tp_values=(1, 2), evidence=False)
    plan = gpu_plan(SimConfig(), WorkloadSpec(num_requests=800, rate=20.0), options)
    with ThreadPoolExecutor(2) as threads:
        answer = run_plan(plan, threads, 2, store(), open_plan(store(), plan)).answer
    at = app("plan", plan=plan_key(plan))
    no_traceback(at)
    rec = answer["recommended"]
    assert [s.value for s in at.success] == [f"**{answer['sentence']}**"]
    assert rec["replicas"] == 1 or rec["router"] in answer["sentence"]
    table = at.dataframe[0].value
    assert {"gpus", "replicas", "tp", "router"} <= set(table.columns)
    assert list(table["router"]) == [r["router"] for r in answer["ranking"]]
    assert (table["gpus"] == table["replicas"] * table["tp"]).all()
    ch = charts(at)
    gpus = ch["Missing the SLA vs GPUs (each mode · router · TP's best, every count the search ran)"]
    assert set(gpus["series"].dropna()) <= {f"continuous_dynamic · {r} · TP {t}" for r in ("random",
                                            "least_outstanding") for t in (1, 2)}


def test_the_plan_form_tries_routers_tp_and_ratios_and_names_bad_ones():
    at = fill_plan_form(app("plan"), 400, 4)
    for key, value, message in (("plan.tp", "0", "tp_values: values must be whole numbers from 1 to 64"),
                                ("plan.pd", "1:x", "pd_ratios: each ratio must be P:D"),
                                ("plan.settings", "router=random", "router: the plan chooses it")):
        at.text_input(key=key).set_value(value) if key != "plan.settings" else at.text_area(key=key).set_value(value)
        button(at, "Plan").click().run()
        no_traceback(at)
        assert message in plain(texts(at.error)), texts(at.error)
        assert "plan" not in at.query_params
        at.text_input(key=key).set_value({"plan.tp": "1", "plan.pd": ""}[key]) if key != "plan.settings" \
            else at.text_area(key=key).set_value("")
    at.multiselect(key="plan.routers").set_value(["shared_queue", "random"])
    at.text_input(key="plan.tp").set_value("1,2")
    at.text_input(key="plan.pd").set_value("none,1:1")
    button(at, "Plan").click().run()
    no_traceback(at)
    row = store().find_sweep(at.query_params["plan"])
    options = row.params["plan"]["options"]
    assert options["routers"] == ["shared_queue", "random"] and options["tp_values"] == [1, 2]
    assert options["pd_ratios"] == [None, "1:1"]
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and store().get_sweep(row.id).params.get("status") != "done":
        time.sleep(0.3)
    answer = store().get_sweep(row.id).params["result"]["answer"]
    pairs = {(c["router"], c["pd_ratio"]) for c in answer["candidates"]}
    assert pairs == {("shared_queue", None), ("random", None), ("random", "1:1")}  # no disaggregated shared queue


# ------------------------------------------------------------------ Sweeps ---
def test_a_sweep_over_the_cluster_shows_its_axes():
    s = store()
    spec = WorkloadSpec(num_requests=500)
    tp = grid_plan(SimConfig(), spec, {"tp": [1, 2]})
    run_plan(tp, ThreadPoolExecutor(2), 2, s, open_plan(s, tp))
    table = app("sweeps", sweep=plan_key(tp)).dataframe[0].value.sort_values("tp")
    assert list(table["tp"]) == [1, 2] and list(table["replicas"]) == [4, 2]  # 4 GPUs either way
    replicas = grid_plan(SimConfig(), spec, {"replicas": [2, 3], "router": ["random", "round_robin"]})
    run_plan(replicas, ThreadPoolExecutor(2), 2, s, open_plan(s, replicas))
    table = app("sweeps", sweep=plan_key(replicas)).dataframe[0].value
    assert sorted(zip(table["replicas"], table["router"])) == [(2, "random"), (2, "round_robin"), (3, "random"),
                                                               (3, "round_robin")]
    assert "gpus" in table.columns and sorted(table["gpus"]) == [2, 2, 3, 3]

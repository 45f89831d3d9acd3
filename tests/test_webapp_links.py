"""Every link rebuilds its result on any store, and never shows another result under the same link.

* a run link names the run's mode (and its other settings), so the default run's link recomputes
  on an empty store; an old bare ``?run=<hash>`` link does too when the hash is the default run's;
* a sweep or plan link names the job by the key of its plan (content, not a store's row number)
  and carries the plan: an empty store runs it again and gets the same runs and the same answer,
  a store whose row 1 is another sweep never shows that sweep under the link, and an old
  row-number link is not opened;
* in Chromium (1400x2000, 900x1200): a sweep link opened on an empty store runs the sweep there.
"""
from __future__ import annotations

import base64
import json
import re
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from test_webapp_pages import button
from test_webapp_sweeps import _until_ended

from batchlab.core import SimConfig
from batchlab.core.plan_options import PlanOptions
from batchlab.core.suite import SuitePlan
from batchlab.core.sweep import SweepError
from batchlab.store.sweep_jobs import (
    capacity_plan,
    gpu_plan,
    grid_plan,
    open_plan,
    plan_from_link,
    plan_key,
    run_plan,
    suite_plan,
)
from batchlab.webapp import state
from batchlab.workloads import WorkloadSpec

APP = str(Path(__file__).resolve().parents[1] / "webapp" / "app.py")
METRICS = ("sla_attainment", "latency_p99_s", "throughput_rps", "ttft_p99_s")


def store():
    from batchlab.webapp import services

    return services.get_store()


def plain(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", str(text))


def texts(elements) -> str:
    return " | ".join(plain(e.value) for e in elements)


def app(page: str | None = None, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    if page:
        at.run()
        at.switch_page(f"app_pages/{page}.py")
    at.query_params.update(params)
    at.run()
    assert not at.exception, at.exception
    assert "Traceback" not in texts(at.error)
    return at


def query(at: AppTest) -> dict:
    return {k: at.query_params[k] for k in at.query_params}


def fresh_store(tmp_path: Path, monkeypatch, name: str) -> None:
    """Point the app at another, empty store and data home (what opening a link on another machine is)."""
    monkeypatch.setenv("BATCHLAB_DB_URL", f"sqlite:///{tmp_path / f'{name}.db'}")
    monkeypatch.setenv("BATCHLAB_HOME", str(tmp_path / f"{name}-home"))
    st.cache_data.clear()
    st.cache_resource.clear()


def members(job_id: int) -> dict[str, tuple]:
    """Each member run of a stored job: hash -> (status, its headline metrics)."""
    return {m["hash"]: (m["status"], tuple((m["summary"] or {}).get(k) for k in METRICS))
            for m in store().sweep_members(job_id)}


def small_grid(rates=(1.0, 3.0)) -> dict:
    return grid_plan(SimConfig(mode="static_fifo", gpus=1), WorkloadSpec(num_requests=300),
                     {"rate": list(rates), "batch_size": [4, 8]})


def small_plan() -> dict:
    options = PlanOptions(modes=("static_fifo",), batch_values=(4, 8), max_gpus=3, target=0.9, evidence=False)
    return gpu_plan(SimConfig(), WorkloadSpec(num_requests=300, rate=2.0), options)


def run_here(plan: dict) -> int:
    job_id = open_plan(store(), plan)
    with ThreadPoolExecutor(2) as threads:  # AppTest makes the app this process's __main__: no process pool
        run_plan(plan, threads, 2, store(), job_id)
    return job_id


# ------------------------------------------------------------------ pure --
def test_a_default_run_link_names_its_mode_and_reads_back_as_the_defaults():
    defaults = state.default_settings()
    link = state.run_params("ab" * 32, defaults)
    assert link == {"run": "ab" * 32, "mode": SimConfig().mode}, "never the hash alone"
    settings, problems = state.settings_from_params(link)
    assert problems == [] and settings == defaults
    other = dict(defaults, sim={**defaults["sim"], "mode": "static_fifo", "gpus": 8})
    assert state.run_params("cd" * 32, other) == {"run": "cd" * 32, "mode": "static_fifo", "gpus": "8"}


@pytest.mark.parametrize("plan", [
    small_grid(), small_plan(),
    capacity_plan(SimConfig(), WorkloadSpec(num_requests=500), ["static_fifo", "continuous_dynamic"], 0.95, 0.05, 2),
    suite_plan(SuitePlan(steps=(3,), max_requests=1200, step3_k=(1, 2))),
], ids=["grid", "plan", "capacity", "suite"])
def test_a_job_link_carries_its_plan_exactly(plan):
    key = plan_key(plan)
    link = state.job_params("plan" if plan["kind"] == "plan" else "sweep", key, plan)
    assert set(link.values()) >= {key} and re.fullmatch(r"[A-Za-z0-9_-]+", link[state.SPEC])
    rebuilt = plan_from_link(state.decode_plan(link[state.SPEC]))
    assert rebuilt == plan and plan_key(rebuilt) == key, "the same plan, so the same job on any store"


def test_a_job_link_names_an_uploaded_trace_by_its_file_name_only():
    path = "/srv/batchlab/uploads/0123abcd-mine.csv"
    plan = grid_plan(SimConfig(), WorkloadSpec(workload="burstgpt", trace=path), {"rate": [1.0]})
    spec = state.job_params("sweep", plan_key(plan), plan)[state.SPEC]
    carried = state.decode_plan(spec)
    assert carried["spec"]["trace"] == "0123abcd-mine.csv" and "/srv" not in json.dumps(carried)
    bundled = grid_plan(SimConfig(), WorkloadSpec(workload="burstgpt", trace="BurstGPT_1_first400"), {"rate": [1.0]})
    assert state.link_plan(bundled) == bundled


def test_bad_job_links_are_refused_with_a_reason():
    def packed(obj, raw: bytes | None = None) -> str:
        data = zlib.compress(raw if raw is not None else json.dumps(obj).encode())
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    good = state.encode_plan(small_grid())
    for text, why in [("not base64 ~~~", "not one batchlab wrote"), (good[: len(good) // 2], "cut short"),
                      (packed([1, 2]), "not a sweep or a plan"), ("A" * 20_000, "longer than"),
                      (packed(None, b" " * (2 << 20)), "inflates past")]:
        with pytest.raises(ValueError, match=why):
            state.decode_plan(text)
    with pytest.raises(SweepError, match="names no sweep or plan"):
        plan_from_link({"kind": "runs", "members": []})
    broken = dict(small_grid(), config={**small_grid()["config"], "gpus": 0})
    with pytest.raises(SweepError, match="gpus"):
        plan_from_link(broken)
    with pytest.raises(SweepError, match="'vary' is missing"):
        plan_from_link({k: v for k, v in small_grid().items() if k != "vary"})
    assert state.job_ref("0123456789ABCDEF") == "0123456789abcdef"
    assert state.job_ref(["7"]) == 7 and state.job_ref("x1") is None and state.job_ref("") is None


# ---------------------------------------------------------------- AppTest --
@pytest.mark.timeout(300)
@pytest.mark.usefixtures("isolated_app")
def test_the_default_run_link_recomputes_on_an_empty_store(tmp_path, monkeypatch):
    first = app()
    button(first, "Run simulation").click().run()
    link = query(first)
    assert set(link) == {"run", "mode"} and link["mode"] == SimConfig().mode
    fresh_store(tmp_path, monkeypatch, "empty")
    at = app(**link)
    assert "not in this store" in texts(at.warning) and "only its hash" not in texts(at.warning)
    button(at, "Compute this run").click().run()
    assert not at.exception, at.exception
    assert query(at) == link, "the same run, rebuilt"
    assert store().get_run(link["run"]).status == "done"
    # an old link to the default run was its hash alone: it is the default run, and recomputes too
    fresh_store(tmp_path, monkeypatch, "bare")
    bare = app(run=link["run"])
    assert "not in this store" in texts(bare.warning)
    button(bare, "Compute this run")
    other = app(run="e" * 64)  # a bare hash that is not the default run's still cannot be rebuilt
    assert "only its hash" in texts(other.warning) and not [b for b in other.button if b.label == "Compute this run"]


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("isolated_app")
def test_a_sweep_link_rebuilds_the_same_sweep_and_never_shows_another(tmp_path, monkeypatch):
    plan = small_grid()
    original = members(run_here(plan))
    at = app("sweeps", sweep=plan_key(plan))
    link = query(at)
    assert link["sweep"] == plan_key(plan) and state.SPEC in link, "the address holds the full link"
    assert "Shareable link" in texts(at.caption)

    fresh_store(tmp_path, monkeypatch, "other")  # its row 1 is another sweep
    other_plan = small_grid(rates=(2.0,))
    assert run_here(other_plan) == 1
    at = app("sweeps", **link)
    assert not at.subheader and not at.dataframe, "another store's sweep is not shown under this link"
    assert "not in this store" in texts(at.warning)
    button(at, "Run this sweep here")
    old = app("sweeps", sweep="1")  # an old row-number link: not opened, this store's row offered
    assert "old link" in texts(old.warning) and not old.subheader and not old.dataframe
    button(old, "Open this store's row 1").click().run()
    assert query(old)["sweep"] == plan_key(other_plan) and "sweep over rate (1)" in texts(old.subheader)

    fresh_store(tmp_path, monkeypatch, "empty")
    at = app("sweeps", **link)
    button(at, "Run this sweep here").click().run()
    assert not at.exception, at.exception
    assert query(at)["sweep"] == link["sweep"], "the same key: the same plan"
    job = store().find_sweep(link["sweep"])
    assert _until_ended(job.id)["status"] == "done"
    assert members(job.id) == original, "the same runs with the same results"
    shown = app("sweeps", **link)
    assert sorted(shown.dataframe[0].value["run"]) == sorted(h[:12] for h in original)


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("isolated_app")
def test_a_plan_link_rebuilds_the_same_answer_on_an_empty_store(tmp_path, monkeypatch):
    plan = small_plan()
    answer = store().get_sweep(run_here(plan)).params["result"]["answer"]
    at = app("plan", plan=plan_key(plan))
    link = query(at)
    assert f"**{answer['sentence']}**" in [s.value for s in [*at.success, *at.warning]]
    assert link["plan"] == plan_key(plan) and state.SPEC in link
    sweeps_page = app("sweeps", sweep=plan_key(plan))  # the Sweeps page sends a plan to the Plan page
    [to_plan] = [e for e in sweeps_page.get("page_link") if "Plan page" in e.proto.label]
    assert f"plan={link['plan']}" in to_plan.proto.query_string

    fresh_store(tmp_path, monkeypatch, "empty")
    at = app("plan", **link)
    assert "not in this store" in texts(at.warning) and not at.success
    button(at, "Run this plan here").click().run()
    assert not at.exception, at.exception
    job = store().find_sweep(link["plan"])
    rebuilt = _until_ended(job.id)["result"]["answer"]
    assert rebuilt["sentence"] == answer["sentence"]
    assert rebuilt["recommended"]["run_hash"] == answer["recommended"]["run_hash"]
    local = ("run_id", "reused")  # a row id in this store, and what this store held already
    assert [{k: v for k, v in r.items() if k not in local} for r in rebuilt["ranking"]] == \
        [{k: v for k, v in r.items() if k not in local} for r in answer["ranking"]]
    shown = app("plan", **link)
    assert f"**{answer['sentence']}**" in [s.value for s in [*shown.success, *shown.warning]]
    old = app("plan", plan=str(job.id))
    assert "old link" in texts(old.warning) and not old.success
    assert "row 1 of this store: capacity plan" in texts(old.caption).lower()


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("isolated_app")
def test_a_link_with_a_key_only_or_a_broken_definition_says_so():
    key = plan_key(small_grid())
    at = app("sweeps", sweep=key)
    assert "names only its key" in texts(at.warning) and not [b for b in at.button if "Run this" in b.label]
    at = app("sweeps", sweep=key, spec="garbage~")
    assert "definition cannot be used" in texts(at.warning) and not [b for b in at.button if "Run this" in b.label]
    plan = small_plan()
    at = app("sweeps", **state.job_params("sweep", plan_key(plan), plan))
    assert "open it on the Plan page" in texts(at.warning)
    at = app("sweeps", sweep="nope")
    assert "names no sweep" in texts(at.warning)


# ---------------------------------------------------------------- browser --
@pytest.mark.timeout(300)
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="/usr/bin/chromium is missing")
def test_browser_a_sweep_link_runs_on_an_empty_store(tmp_path):
    """Chromium, on a server with an empty store: the link offers the sweep, runs it, then shows it (1400x2000);
    the same link opened again shows the stored sweep (900x1200)."""
    from urllib.parse import urlencode

    from playwright.sync_api import sync_playwright
    from test_webapp_browser import CHROMIUM, CHROMIUM_ARGS, NARROW, WIDE, Server

    plan = small_grid()
    key = plan_key(plan)
    url = "/sweeps?" + urlencode(state.job_params("sweep", key, plan))
    (tmp_path / "home").mkdir()
    srv = Server(tmp_path / "home")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=WIDE)
            page.set_default_timeout(120_000)
            page.goto(srv.url + url)
            page.get_by_text("This sweep is not in this store").wait_for()
            page.get_by_role("button", name="Run this sweep here").click()
            page.get_by_text(re.compile(r"finished · 4 runs")).wait_for()
            assert f"sweep={key}" in page.url
            job = srv.store().find_sweep(key)
            assert job is not None and job.params["status"] == "done" and job.runs == 4
            page.set_viewport_size(NARROW)
            page.goto(srv.url + url)
            page.get_by_text(re.compile(r"finished · 4 runs")).wait_for()
            assert page.get_by_text("not in this store").count() == 0
            assert page.get_by_role("link", name="Shareable link").count() == 1
            browser.close()
    finally:
        srv.stop()

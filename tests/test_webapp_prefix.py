"""Prefix caching in the web app: the sharing settings per workload source, Mooncake uploads, and the
prefix-cache chart and figures of a run and a comparison (AppTest, as tests/test_webapp_pages.py)."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from test_webapp_pages import REPLICA_CHARTS, RUN_CHARTS, app, button, no_traceback, store, texts
from test_webapp_pages import charts as charts_of

from batchlab.core.config import SimConfig
from batchlab.webapp import charts, forms, history, views
from batchlab.workloads import WorkloadSpec, build_workload

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("isolated_app")]
SHARED = dict(num_requests=300, rate=3.0, system_prompts=4, system_prompt_tokens=512)


def keys(elements) -> set[str]:
    return {e.key for e in elements}


def mooncake_bytes(rows: int = 40) -> bytes:
    """A Mooncake trace whose requests share their first blocks (the last id names a partly filled block)."""
    lines = [json.dumps({"timestamp": 500 * i, "input_length": 512 * (1 + i % 3) + 7, "output_length": 5 + i % 7,
                         "hash_ids": [1, 2, 3, 4][: 2 + i % 3]}) for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


# ------------------------------------------------------------------ units --
def test_workload_fields_per_source():
    names = lambda source, **kw: {f.name for f in forms.workload_fields(source, **kw)}  # noqa: E731
    sharing = set(forms.SHARING_FIELDS)
    assert sharing == {"system_prompts", "system_prompt_tokens", "system_zipf", "conversation_turns", "think_time"}
    assert sharing <= names("synthetic") and "hash_block" not in names("synthetic")
    assert names("synthetic", sharing=True) == sharing and not sharing & names("synthetic", sharing=False)
    for source in ("bundled", "upload"):
        assert not (sharing | {"hash_block", "priority_mix"}) & names(source)
    assert "hash_block" in names("mooncake") and not sharing & names("mooncake")
    assert {"trace", "prompt_lengths", "workload"}.isdisjoint(names("mooncake")) and "offset" in names("mooncake")
    assert forms.SOURCE_WORKLOADS["mooncake"] == "mooncake"


def occupancy(kv_cached: bool = True) -> pd.DataFrame:
    df = pd.DataFrame({"time_s": [1.0, 2.0], "kv_utilization": [0.5, 0.25], "running": [3.0, 2.0]})
    return df.assign(kv_cached=[0.1, 0.3]) if kv_cached else df


def test_the_prefix_cache_frame_and_chart():
    occ = charts.stack({"continuous_static": occupancy(), "static_fifo": occupancy(False)})
    df = charts.prefix_cache_frame(occ)
    assert set(df["run"]) == {"continuous_static"}            # a run without the cached share is left out
    cached = df[df["series"] == charts.PREFIX_SERIES["kv_cached"]]
    used = df[df["series"] == charts.PREFIX_SERIES["kv_utilization"]]
    assert cached["percent"].tolist() == pytest.approx([10.0, 30.0])
    assert used["percent"].tolist() == pytest.approx([50.0, 25.0])
    assert charts.prefix_cache_frame(charts.stack({"a": occupancy(False)})).empty
    one = charts.prefix_cache(occ).to_dict()
    assert one["mark"]["type"] == "area" and one["title"] == charts.PREFIX_TITLE
    two = charts.prefix_cache(charts.stack({"continuous_static": occupancy(), "continuous_dynamic": occupancy()}))
    spec = two.to_dict()
    assert spec["mark"]["type"] == "line" and spec["encoding"]["color"]["field"] == "run"
    assert spec["encoding"]["strokeDash"]["field"] == "series"


def test_only_a_continuous_run_that_looked_up_prefixes_has_the_chart():
    def view(engine="continuous", rate=0.5, kv_cached=True):
        return {"summary": {"engine": engine, "prefix_hit_rate": rate}, "series": {"occupancy": occupancy(kv_cached)}}
    assert views.has_prefix_cache(view())
    assert not views.has_prefix_cache(view(rate=None))             # no keys, or caching off
    assert not views.has_prefix_cache(view(kv_cached=False))       # stored before prefix caching
    assert not views.has_prefix_cache(view(engine="batch"))
    assert not views.has_prefix_cache({"summary": {"engine": "continuous", "prefix_hit_rate": 0.5}, "series": {}})


# ------------------------------------------------------------------- form --
def test_the_sharing_settings_appear_only_for_their_sources():
    at = app()
    assert {"wl.system_prompts", "wl.system_prompt_tokens", "wl.conversation_turns", "wl.think_time",
            "wl.system_zipf"} <= keys(at.number_input)
    assert "wl.hash_block" not in keys(at.number_input)
    assert "sim.enable_prefix_caching" in keys(at.checkbox)
    assert at.checkbox(key="sim.enable_prefix_caching").label == "Prefix caching on"
    assert at.number_input(key="wl.system_prompts").placeholder == "off"
    at.radio(key="source").set_value("bundled").run()
    assert not {"wl.system_prompts", "wl.conversation_turns", "wl.hash_block"} & keys(at.number_input)
    assert "wl.priority_mix" not in keys(at.text_input)
    at.radio(key="source").set_value("mooncake").run()
    no_traceback(at)
    assert "wl.hash_block" in keys(at.number_input) and at.number_input(key="wl.hash_block").value == 512
    assert not {"wl.system_prompts", "wl.think_time"} & keys(at.number_input)
    assert "wl.trace" not in keys(at.selectbox) and "wl.prompt_lengths" not in keys(at.text_input)
    assert at.file_uploader(key="mooncake_upload")
    button(at, "Run simulation").click().run()
    no_traceback(at)
    assert "upload a Mooncake JSONL trace first" in texts(at.error)


def test_a_link_to_a_mooncake_run_asks_for_its_file():
    at = app(workload="mooncake", trace="mine.jsonl", hash_block="256")
    no_traceback(at)
    assert at.radio(key="source").value == "mooncake" and at.number_input(key="wl.hash_block").value == 256
    at = app(workload="mooncake", trace="/etc/passwd")
    assert "never a path" in texts(at.warning)


# -------------------------------------------------------------- run pages --
def shared_run(at):
    for name, value in SHARED.items():
        at.number_input(key=f"wl.{name}").set_value(value)
    button(at, "Run simulation").click().run()
    no_traceback(at)
    return at


def test_a_run_with_shared_system_prompts_shows_the_prefix_cache():
    at = shared_run(app())
    assert at.query_params["system_prompts"] == "4"
    ch = charts_of(at)
    assert len(at.get("vega_lite_chart")) == RUN_CHARTS + REPLICA_CHARTS + 1
    cache = ch[charts.PREFIX_TITLE]
    assert set(cache["series"]) == set(charts.PREFIX_SERIES.values())
    assert cache["percent"].between(0, 100).all()
    assert cache.loc[cache["series"] == charts.PREFIX_SERIES["kv_cached"], "percent"].max() > 0
    cards = {m.label: m.value for m in at.metric}
    run = store().get_run(at.query_params["run"])
    assert 0 < run.summary["prefix_hit_rate"] < 1
    assert cards["Prefix cache hit rate"] == f"{100 * run.summary['prefix_hit_rate']:.1f} %"
    assert cards["Prefill tokens saved"].replace(",", "").startswith(str(run.summary["prefill_tokens_saved"]))
    assert "Cached, free" in texts(at.caption)
    assert "4 system prompts" in history.workload_text(run.workload)     # the History page's workload column


@pytest.mark.parametrize("config, spec", [
    ({}, {"num_requests": 300, "rate": 3.0}),                                  # no prefix keys
    ({"enable_prefix_caching": False}, SHARED),                                # caching off
    ({"mode": "static_fifo"}, SHARED),                                          # a batch mode
])
def test_a_run_that_looked_nothing_up_has_no_prefix_chart(config, spec):
    run = store().get_or_run(SimConfig(**config), build_workload(WorkloadSpec(**spec)))[0]
    assert run.summary["prefix_hit_rate"] is None and run.summary["prefill_tokens_saved"] == 0
    at = app(run=run.hash)
    no_traceback(at)
    assert charts.PREFIX_TITLE not in charts_of(at)
    if run.summary["engine"] == "continuous":
        assert len(at.get("vega_lite_chart")) == RUN_CHARTS + REPLICA_CHARTS
    assert "Prefix cache hit rate" not in {m.label for m in at.metric}


def test_a_mooncake_upload_runs_and_a_bad_one_is_named():
    at = app()
    at.radio(key="source").set_value("mooncake").run()
    at.file_uploader(key="mooncake_upload").set_value(("trace.jsonl", mooncake_bytes(), "application/jsonl")).run()
    no_traceback(at)
    caption = texts(at.caption)
    assert "trace.jsonl: 40 requests" in caption and "512-token prompt blocks shared" in caption
    button(at, "Run simulation").click().run()
    no_traceback(at)
    run = store().get_run(at.query_params["run"])
    assert run.workload["kind"] == "mooncake" and run.summary["prefix_hit_rate"] > 0
    assert at.query_params["workload"] == "mooncake" and at.query_params["trace"] == "trace.jsonl"
    assert charts.PREFIX_TITLE in charts_of(at)

    at.session_state["run.settings"] = True
    at.run()
    assert "Using **trace.jsonl**, uploaded earlier" in texts(at.caption)
    bad = b'{"timestamp": 0, "input_length": 600, "output_length": 3, "hash_ids": [1]}\n{"timestamp": 1}\n'
    at.file_uploader(key="mooncake_upload").set_value(("bad.jsonl", bad, "application/jsonl")).run()
    no_traceback(at)
    assert "line 2: the field input_length is missing" in texts(at.error)
    button(at, "Run simulation").click().run()
    assert "the uploaded file bad.jsonl could not be read" in texts(at.error)


def test_a_bundled_csv_is_not_a_mooncake_trace():
    at = app()
    at.radio(key="source").set_value("mooncake").run()
    at.file_uploader(key="mooncake_upload").set_value(("t.jsonl", b"Timestamp,Model\n1,x\n", "application/jsonl"))
    at.run()
    no_traceback(at)
    assert "line 1: not a JSON object" in texts(at.error)


def test_a_comparison_draws_the_runs_that_have_a_prefix_cache():
    w = build_workload(WorkloadSpec(**SHARED))
    runs = [store().get_or_run(SimConfig(mode=m), w)[0] for m in ("continuous_dynamic", "continuous_static",
                                                                  "static_fifo")]
    at = app("compare", compare=",".join(r.hash for r in runs))
    no_traceback(at)
    cache = charts_of(at)[charts.PREFIX_TITLE]
    assert set(cache["run"]) == {"continuous_dynamic", "continuous_static"}
    assert "Not drawn" in texts(at.caption) and "static_fifo" in texts(at.caption)
    table = at.table[0].value
    assert "Prefix cache hit rate" in [str(i) for i in table.index]


def test_the_plan_page_takes_a_mooncake_upload(monkeypatch):
    from batchlab.store.sweep_jobs import open_plan
    from batchlab.webapp import jobs

    launched: list[int] = []

    def launch(plan, *args, **kwargs):   # stored, not run
        launched.append(open_plan(store(), plan))
        return launched[-1]

    monkeypatch.setattr(jobs, "launch", launch)
    at = app("plan")
    at.radio(key="plan.source").set_value("mooncake").run()
    button(at, "Plan").click().run()
    assert "upload a Mooncake JSONL trace first" in texts(at.error) and not launched
    at.file_uploader(key="plan.upload.mooncake").set_value(("m.jsonl", mooncake_bytes(), "application/jsonl")).run()
    at.multiselect(key="plan.modes").set_value(["continuous_dynamic"])
    button(at, "Plan").click().run()
    no_traceback(at)
    assert len(launched) == 1
    spec = store().get_sweep(launched[0]).params["plan"]["spec"]
    assert spec["workload"] == "mooncake" and "/uploads/" in spec["trace"]
    assert build_workload(WorkloadSpec.from_dict(spec)).prefix is not None


def test_the_compare_form_runs_modes_on_a_mooncake_upload():
    at = app("compare")
    at.radio(key="source").set_value("mooncake").run()
    at.file_uploader(key="mooncake_upload").set_value(("m.jsonl", mooncake_bytes(), "application/jsonl")).run()
    at.multiselect(key=forms.MODES_KEY).set_value(["continuous_static", "static_fifo"])
    button(at, "Run comparison").click().run()
    no_traceback(at)
    runs = [store().get_run(h) for h in at.query_params["compare"].split(",")]
    assert [r.workload["kind"] for r in runs] == ["mooncake", "mooncake"]
    assert set(charts_of(at)[charts.PREFIX_TITLE]["run"]) == {"continuous_static"}
    hit = at.table[0].value.loc["Prefix cache hit rate"].tolist()
    assert hit[0].endswith("%") and hit[1] == "—"          # the batch mode has no prefix cache

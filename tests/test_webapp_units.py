"""The web app's logic without a browser: query-parameter round trips, form metadata,
chart data shaping and specs, number formatting, error messages and the launcher."""
from __future__ import annotations

import json
import re

import altair as alt
import numpy as np
import pandas as pd
import pytest

from core.config import ConfigError, SimConfig, config_fields
from workloads.spec import SpecError, WorkloadSpec, spec_fields
from webapp import charts, fmt, forms, launch, services, state, views


# ------------------------------------------------------------------ state --
def test_default_settings_give_no_params():
    s = state.default_settings()
    assert state.settings_to_params(s["sim"], s["spec"]) == {}
    assert state.settings_to_params(SimConfig(), WorkloadSpec()) == {}
    assert state.settings_to_params(s["sim"], s["spec"], list(state.DEFAULT_COMPARE)) == {}


def test_settings_round_trip_through_params():
    cfg = SimConfig(mode="static_fifo", gpus=8, d_sla_tbt=None, batch_size=16, fill="full", max_wait=2.5)
    spec = WorkloadSpec(num_requests=2000, rate=4.0, workload_seed=7, predictor="oracle")
    params = state.settings_to_params(cfg, spec)
    assert params["mode"] == "static_fifo" and params["gpus"] == "8" and params["d_sla_tbt"] == "none"
    assert params["workload_seed"] == "7" and "seed" not in params  # the simulation seed stayed 0
    settings, problems = state.settings_from_params(params)
    assert problems == []
    assert SimConfig(**settings["sim"]) == cfg
    assert WorkloadSpec(**settings["spec"]).relevant_dict() == spec.relevant_dict()
    assert settings["source"] == "synthetic"


def test_params_drop_settings_that_do_not_change_the_workload():
    # rate 2.0 is what auto means for a synthetic workload: not worth a parameter
    assert state.settings_to_params(SimConfig(), WorkloadSpec(rate=2.0, arrival="gamma")) == {}


def test_params_name_a_bundled_trace_source():
    spec = WorkloadSpec(workload="burstgpt", trace="BurstGPT_3_first400", rps_scaling=2.0)
    settings, problems = state.settings_from_params(state.settings_to_params(SimConfig(), spec))
    assert problems == [] and settings["source"] == "bundled"
    assert settings["spec"]["trace"] == "BurstGPT_3_first400" and settings["spec"]["rps_scaling"] == 2.0


def test_bad_params_are_reported_and_ignored():
    settings, problems = state.settings_from_params(
        {"gpus": "many", "nonsense": "1", "modes": "static_fifo,warp", "d_sla_ttft": "off"})
    assert settings["sim"]["gpus"] == SimConfig().gpus
    assert settings["sim"]["d_sla_ttft"] is None
    assert settings["modes"] == ["static_fifo"]
    text = " | ".join(problems)
    assert "gpus" in text and "nonsense" in text and "warp" in text


def test_hash_params():
    assert state.run_param({"run": " abc123 "}) == "abc123"
    assert state.run_param({}) is None
    assert state.compare_param({"compare": "a1,b2,,a1 , c3"}) == ["a1", "b2", "c3"]
    assert state.compare_param({"compare": ["x", "d4,e5"]}) == ["d4", "e5"]


def test_settings_from_run_keep_auto_fill_and_workload_spec():
    cfg = SimConfig(mode="multi_bin_fixed", gpus=2)
    spec = WorkloadSpec(num_requests=500)
    s = state.settings_from_run(cfg, {"spec": spec.relevant_dict(), "label": "x"})
    assert s["sim"]["fill"] is None and s["sim"]["gpus"] == 2
    assert s["spec"]["num_requests"] == 500 and s["source"] == "synthetic"
    assert state.settings_from_run(SimConfig(fill="greedy", mode="multi_bin_fixed"), None)["sim"]["fill"] == "greedy"


# ------------------------------------------------------------------ forms --
def test_every_numeric_field_label_has_a_unit():
    dimensionless = ("seed", "workload_seed", "gamma_shape")  # a random seed, a shape parameter
    for f in config_fields() + spec_fields():
        kind = str(f.type)
        if f.name in dimensionless or not kind.startswith(("int", "float")):
            continue
        text, u = forms.label(f), forms.unit(f)
        assert u and (text.endswith(f"({u})") or re.search(rf"\b{re.escape(u)}\b", text, re.I)), (f.name, text)
    by_name = {f.name: f for f in config_fields()}
    assert forms.label(by_name["d_sla_tbt"]) == "TBT deadline (s)"
    assert forms.label(by_name["gpu_mem_gb"]) == "GPU memory (GB)"
    assert forms.label(by_name["gpus"]) == "GPUs"
    assert forms.label(by_name["decode_base"]) == "Decode step t0 (s)"
    assert forms.label(next(f for f in spec_fields() if f.name == "num_requests")) == "Requests"
    assert forms.label(next(f for f in spec_fields() if f.name == "workload_seed")) == "Workload seed"


def test_every_field_has_help_and_a_group():
    for f in config_fields() + spec_fields():
        assert f.metadata.get("help"), f.name
        assert f.metadata.get("group") in ("scheduler", "cluster", "sla", "memory", "latency",
                                           "workload", "arrivals", "lengths"), f.name


def test_workload_fields_follow_the_source():
    names = lambda source: {f.name for f in forms.workload_fields(source)}  # noqa: E731
    assert "prompt_lengths" in names("synthetic") and "trace" not in names("synthetic")
    assert {"trace", "offset", "keep_failed", "rps_scaling"} <= names("bundled")
    assert "trace" not in names("upload") and "offset" in names("upload")
    assert all("workload" not in names(s) for s in ("synthetic", "bundled", "upload"))


def test_state_entries_for_optional_numbers_and_choices():
    by_name = {f.name: f for f in config_fields()}
    assert forms.state_entries(by_name["d_sla_ttft"], None, "k") == {"k": 10.0, "k.none": True}
    assert forms.state_entries(by_name["d_sla_ttft"], 3, "k") == {"k": 3.0, "k.none": False}
    assert forms.state_entries(by_name["max_wait"], None, "k") == {"k": 5.0, "k.none": True}
    assert forms.state_entries(by_name["fill"], None, "k") == {"k": forms.AUTO}
    assert forms.state_entries(by_name["gpus"], 8, "k") == {"k": 8}
    rate = next(f for f in spec_fields() if f.name == "rate")
    assert forms.state_entries(rate, None, "k") == {"k": 2.0, "k.none": True}


def test_build_names_the_bad_field():
    s = state.default_settings()
    with pytest.raises(ConfigError, match="b_min"):
        forms.build({**s["sim"], "b_min": 200}, s["spec"])
    with pytest.raises(SpecError, match="predictor"):
        forms.build(s["sim"], {**s["spec"], "predictor": "crystal-ball"})


# ----------------------------------------------------------------- charts --
def _timeline(n=400, bins=2):
    t = np.linspace(0, 100, n)
    return pd.DataFrame({"time_s": t, "bin": np.arange(n) % bins, "size": (np.arange(n) % bins) + 1.0,
                         "b_mem": 100, "b_sla": 40, "b_cap": 40})


def test_time_buckets_average_per_bin_and_window():
    out = charts.time_buckets(_timeline(), ["size"], ["bin"], buckets=10)
    assert set(out["bin"]) == {0, 1} and len(out) == 20
    assert np.allclose(out.loc[out["bin"] == 0, "size"], 1.0)
    assert np.allclose(out.loc[out["bin"] == 1, "size"], 2.0)
    assert out["time_s"].between(0, 100).all()


def test_controller_frame_has_the_four_series():
    long = charts.controller_frame(_timeline(), bin_=1)
    assert set(long["series"]) == set(charts.CONTROLLER_SERIES.values())
    b_sla = long[long["series"] == charts.CONTROLLER_SERIES["b_sla"]]["value"]
    assert np.allclose(b_sla, 40)


def test_violation_frame_leaves_out_disabled_deadlines():
    s = {"sla_attainment": 0.8, "sla_violation_rate_ttft": 0.15, "sla_violation_rate_tbt": None,
         "sla_violation_rate_e2e": 0.05}
    df = charts.violation_frame({"a": s})
    assert list(df["kind"]) == ["TTFT", "E2E", "Any (SLA missed)"]
    assert np.allclose(df["rate_pct"], [15.0, 5.0, 20.0])


def test_size_distribution_is_a_share_per_run():
    sizes = pd.DataFrame({"run": ["a"] * 3 + ["b"] * 2, "size": [1, 2, 40, 8, 9], "batches": [10, 5, 5, 1, 3]})
    df = charts.size_distribution(sizes)
    assert np.allclose(df.groupby("run")["share_pct"].sum(), 100.0)


def _spec(chart: alt.TopLevelMixin) -> dict:
    return chart.to_dict()


def _axis_titles(spec: dict) -> list[str]:
    """Titles of the measured x/y axes: quantitative or ordinal (nominal axes name things, no unit)."""
    titles = []
    for part in [spec, *spec.get("layer", [])]:
        enc = part.get("encoding", {})
        titles += [enc[a]["title"] for a in ("x", "y") if a in enc and enc[a].get("type") != "nominal"]
    return titles


def test_charts_label_their_axes_with_units():
    cdf = charts.stack({"a": pd.DataFrame({"metric": "e2e", "quantile": [0, 0.5, 1.0], "seconds": [0.0, 1, 2]})})
    summ = {"a": {"sla_attainment": 0.9, "sla_violation_rate_ttft": 0.1, "sla_violation_rate_tbt": 0.0,
                  "sla_violation_rate_e2e": 0.0, "throughput_rps": 1.5, "throughput_tps": 300.0}}
    util = charts.stack({"a": pd.DataFrame({"time_s": [1.0, 2.0], "utilization": [0.5, 1.0]})})
    sizes = charts.stack({"a": pd.DataFrame({"size": [1, 2], "batches": [3, 4]})})
    grid = pd.DataFrame({"batch_size": [1, 1, 2, 2], "context_len": [1, 2, 1, 2],
                         "prefill_s": [0.01, 0.02, 0.03, np.nan], "decode_step_s": [0.1] * 4})
    made = [charts.latency_cdf(cdf), charts.violation_rates(summ), charts.throughput(summ, "throughput_rps"),
            charts.throughput(summ, "throughput_tps"), charts.gpu_utilization(util),
            charts.batch_size_over_time(_timeline()), charts.controller_trace(_timeline()),
            charts.batch_size_histogram(sizes), charts.grid_heatmap(grid, "prefill_s", "Prefill")]
    for chart in made:
        titles = _axis_titles(_spec(chart))
        assert titles and all(re.search(r"\((s|%|req/s|tok/s|requests|tokens|ms)([,\s][^)]*)?\)", t)
                              for t in titles), titles
    assert _spec(made[0])["encoding"]["x"]["scale"]["type"] == "log"


def test_latency_cdf_log_scale_drops_zero_latencies():
    cdf = charts.stack({"a": pd.DataFrame({"metric": "queue_delay", "quantile": [0, 0.5, 1.0],
                                           "seconds": [0.0, 0.0, 3.0]})})
    data = charts.latency_cdf(cdf, "queue_delay").data
    assert list(data["seconds"]) == [3.0]
    assert list(charts.latency_cdf(cdf, "queue_delay", log_x=False).data["seconds"]) == [0.0, 0.0, 3.0]


# ------------------------------------------------------------------ format --
def test_formatting_carries_units():
    assert fmt.seconds(0.0312) == "31.2 ms"
    assert fmt.seconds(4.5678) == "4.57 s"
    assert fmt.seconds(1234.0) == "1,234 s"
    assert fmt.seconds(None) == fmt.DASH
    assert fmt.pct(0.987) == "98.7 %"
    assert fmt.pct(None) == "off"
    assert fmt.number(1234, "req") == "1,234 req"
    assert fmt.number(2.0354, "req/s", 3) == "2.035 req/s"


def test_metrics_table_and_labels():
    base = {"mode": "static_fifo", "gpus": 4, "k_bins": 1, "sla_attainment": 0.5,
            "sla_violation_rate_tbt": None, "latency_p99_s": 12.0}
    v1 = {"hash": "aaaaaaa1", "summary": base}
    v2 = {"hash": "bbbbbbb2", "summary": {**base, "gpus": 8}}
    labels = views.run_labels([v1, v2])
    assert labels == ["static_fifo · 4 GPU · 1 bin", "static_fifo · 8 GPU · 1 bin"]
    assert views.run_labels([v1, {**v1, "hash": "c0ffee99"}])[1].endswith("· c0ffee")
    table = views.metrics_table([v1, v2], labels).set_index("Metric")
    assert table.loc["SLA attainment", labels[0]] == "50.0 %"
    assert table.loc["TBT violations", labels[0]] == "off"
    assert table.loc["Latency p99", labels[1]] == "12.00 s"


# ------------------------------------------------------------ errors, launch --
def test_unexpected_errors_hide_their_details():
    assert services.user_message(ConfigError("gpus", "must be >= 1")) == "gpus: must be >= 1"
    msg = services.user_message(RuntimeError("secret internals at 0xdead"))
    assert "RuntimeError" in msg and "0xdead" not in msg and "log" in msg


def test_launch_runs_streamlit_with_the_store_url(monkeypatch):
    seen = {}

    def fake_call(cmd, env):
        seen["cmd"], seen["env"] = cmd, env
        return 0

    monkeypatch.setattr(launch.subprocess, "call", fake_call)
    assert launch.launch(host="0.0.0.0", port=9999, db_url="sqlite:////tmp/x.db") == 0
    cmd = seen["cmd"]
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("webapp/app.py")
    joined = " ".join(cmd)
    assert "--server.address 0.0.0.0" in joined and "--server.port 9999" in joined
    assert "--browser.gatherUsageStats false" in joined and "--server.headless true" in joined
    assert seen["env"]["BATCHLAB_DB_URL"] == "sqlite:////tmp/x.db"


def test_streamlit_config_turns_telemetry_off():
    import tomllib
    from pathlib import Path

    conf = tomllib.loads((Path(launch.APP).parent / ".streamlit" / "config.toml").read_text())
    assert conf["browser"]["gatherUsageStats"] is False
    assert conf["client"]["showErrorDetails"] == "none"
    json.dumps(conf)

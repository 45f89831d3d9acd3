"""The web app's logic without a browser: query-parameter round trips, form metadata,
chart data shaping and specs, number formatting, error messages and the launcher."""
from __future__ import annotations

import json
import re

import altair as alt
import numpy as np
import pandas as pd
import pytest

from batchlab.core import metric_catalog as catalog
from batchlab.core.config import ConfigError, SimConfig, config_fields
from batchlab.webapp import charts, fmt, forms, labels, launch, services, state, tables
from batchlab.workloads.spec import SpecError, WorkloadSpec, spec_fields


# ------------------------------------------------------------------ state --
def test_default_settings_give_no_params():
    s = state.default_settings()
    assert state.settings_to_params(s["sim"], s["spec"]) == {}
    assert state.settings_to_params(SimConfig(), WorkloadSpec()) == {}
    # a comparison always names its modes, defaults included (a link must rebuild every run)
    assert state.settings_to_params(s["sim"], s["spec"], list(state.DEFAULT_COMPARE)) == {
        "modes": ",".join(state.DEFAULT_COMPARE)}


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
    # rate 12.0 is what auto means for a synthetic workload: not worth a parameter
    assert state.settings_to_params(SimConfig(), WorkloadSpec(rate=12.0, arrival="gamma")) == {}


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
    assert state.compare_param({"compare": ["d4,e5", "x"]}) == ["d4", "e5"]


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
    """An optional number is one box: empty for off / auto / no limit, never a number that is ignored."""
    by_name = {f.name: f for f in config_fields()}
    assert forms.state_entries(by_name["d_sla_ttft"], None, "k") == {"k": None}
    assert forms.state_entries(by_name["d_sla_ttft"], 3, "k") == {"k": 3.0}
    assert forms.state_entries(by_name["max_wait"], None, "k") == {"k": None}
    assert forms.state_entries(by_name["fill"], None, "k") == {"k": forms.AUTO}
    assert forms.state_entries(by_name["gpus"], 8, "k") == {"k": 8}
    rate = next(f for f in spec_fields() if f.name == "rate")
    assert forms.state_entries(rate, None, "k") == {"k": None}
    assert forms.state_entries(rate, 5, "k") == {"k": 5.0}


def test_empty_boxes_say_what_they_mean_per_source():
    assert "10,000" in forms.empty_means("num_requests", "synthetic")
    assert "12 req/s" in forms.empty_means("rate", "synthetic", long=True)
    for source in ("bundled", "upload"):  # no synthetic number shown for a trace
        for long in (False, True):
            assert not re.search(r"\d", forms.empty_means("num_requests", source, long))
            assert not re.search(r"\d", forms.empty_means("rate", source, long))
    assert forms.empty_means("d_sla_tbt") == "off" and forms.empty_means("max_wait") == "no limit"
    assert all(len(forms.empty_means(k[0] if isinstance(k, tuple) else k, k[1] if isinstance(k, tuple) else
                                     "synthetic")) <= 14 for k in forms.EMPTY_MEANS), "fits a narrow box"


def test_mode_help_covers_every_mode_and_only_those():
    from batchlab.core.config import MODE_HELP, MODES

    text = forms.mode_help()
    assert all(f"**{m}**" in text and MODE_HELP[m] in text for m in MODES)
    assert not [m for m in MODE_HELP if m not in MODES and f"**{m}**" in text]
    by_name = {f.name: f for f in config_fields()}
    assert forms.label(by_name["batch_size"]).startswith("Batch size cap B")
    assert "fill = full" in forms.EXTRA_HELP["batch_size"]


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


def test_one_run_bars_keep_a_visible_height():
    """The bar chart's height includes about 110 px of title and axis; what is left is the bars'."""
    for n in (1, 2, 8):
        summaries = {f"run {i}": {"throughput_rps": 1.0 + i, "throughput_tps": 100.0} for i in range(n)}
        height = charts.throughput(summaries).to_dict()["height"]
        assert height - 110 >= 30 * n, (n, height)


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
    assert fmt.sig(2.0354, "req/s") == "2.04 req/s"
    assert fmt.sig(245.6, "tok/s") == "246 tok/s" and fmt.sig(12345.6, "tok/s") == "12,346 tok/s"
    assert fmt.sig(0.012345) == "0.0123" and fmt.sig(0) == "0"
    assert fmt.compact_seconds(95.234) == "95.2 s" and fmt.compact_seconds(0.0004) == "400 µs"
    assert fmt.compact_seconds(36_000) == "10.0 h"


@pytest.mark.parametrize("unit, values", [
    ("req/s", [0.0, 3.3e-4, 0.0102, 0.1, 0.5, 2.0354, 99.95, 4321.0, 98_765.4, 3.2e6, float("inf")]),
    ("tok/s", [0.0, 3.3e-4, 0.0102, 0.1, 0.5, 2.0354, 99.95, 4321.0, 98_765.4, 3.2e6, float("inf")]),
    ("s", [0.0, 1e-7, 3.3e-4, 0.0312, 0.999, 4.5678, 95.23, 4321.0, 98_765.4, 3.2e6, float("inf")]),
    ("share", [0.0, 0.0004, 0.5, 0.9995, 1.0]),
])
def test_card_values_stay_short(unit, values):
    """A card shows at most 11 characters at any realistic magnitude (what keeps it untruncated;
    the browser test checks the rendered cards)."""
    summary = {"sla_violation_rate_ttft": 0.1}
    cards = [m for m in catalog.CARDS if m.unit == unit]
    assert cards, unit
    for m in cards:
        for v in values:
            text = m.format(v, summary, style="card")
            assert len(text) <= 11, (m.key, v, text)
    assert fmt.compact_rate(0.0102) == "36.7 req/h" and fmt.compact_rate(98_765.4, "tok") == "98.8k tok/s"


def test_catalog_is_one_line_per_key_and_knows_what_wins():
    keys = [m.key for m in catalog.METRICS]
    assert len(keys) == len(set(keys))
    assert [m.key for m in catalog.CARDS] == ["throughput_rps", "throughput_tps", "sla_attainment",
                                              "latency_p99_s", "ttft_p99_s", "gpu_utilization"]
    assert catalog.BY_KEY["latency_p99_s"].better == "lower" and catalog.BY_KEY["throughput_rps"].better == "higher"
    with pytest.raises(ValueError, match="unit"):
        catalog.Metric("x", "X", "weird", "A metric.")


def test_attainment_without_any_deadline_says_so():
    off = {"sla_attainment": 1.0, "sla_violation_rate_ttft": None, "sla_violation_rate_tbt": None,
           "sla_violation_rate_e2e": None}
    m = catalog.BY_KEY["sla_attainment"]
    assert m.format(1.0, off) == m.format(1.0, off, style="card") == "no deadline set"
    assert m.format(0.5, {**off, "sla_violation_rate_tbt": 0.5}) == "50.0 %"


def test_best_value_per_metric():
    a = {"throughput_rps": 2.0, "latency_p99_s": 9.0, "sla_attainment": 0.8, "sla_violation_rate_tbt": 0.1,
         "sla_violation_rate_ttft": 0.1, "num_requests": 100}
    b = {"throughput_rps": 3.0, "latency_p99_s": 9.0, "sla_attainment": 0.7, "sla_violation_rate_tbt": 0.1,
         "sla_violation_rate_ttft": 0.2, "num_requests": 100}
    c = {"throughput_rps": 1.0, "latency_p99_s": 12.0, "sla_attainment": 0.8, "sla_violation_rate_tbt": None,
         "sla_violation_rate_ttft": 0.1, "num_requests": 100}
    off = {"sla_attainment": 1.0, "throughput_rps": 9.0}  # every deadline off: attainment takes no part
    best = lambda key: catalog.best_runs(catalog.BY_KEY[key], [a, b, c])  # noqa: E731
    assert best("throughput_rps") == {1}  # higher wins
    assert best("latency_p99_s") == {0, 1}  # lower wins, ties share it
    assert best("sla_attainment") == {0, 2}
    assert catalog.best_runs(catalog.BY_KEY["sla_attainment"], [a, off]) == set()
    assert best("sla_violation_rate_tbt") == set(), "equal where defined: no winner"
    assert best("num_requests") == set(), "a count is not a contest"


def test_metrics_table_marks_the_best_cell_and_says_off():
    base = {"mode": "static_fifo", "gpus": 4, "k_bins": 1, "sla_attainment": 0.5,
            "sla_violation_rate_tbt": None, "sla_violation_rate_ttft": 0.5, "latency_p99_s": 12.0}
    v1 = {"hash": "aaaaaaa1", "summary": base}
    v2 = {"hash": "bbbbbbb2", "summary": {**base, "latency_p99_s": 8.0, "sla_attainment": 0.6}}
    values, best = tables.metrics_table([v1, v2], ["a", "b"])
    assert values.loc["SLA attainment", "a"] == "50.0 %"
    assert values.loc["TBT violations", "a"] == "off"
    assert values.loc["Latency p99", "b"] == "8.00 s"
    assert best.loc["Latency p99"].tolist() == [False, True]
    assert best.loc["SLA attainment"].tolist() == [False, True]
    assert "Throughput" not in values.index, "rows only for metrics some run has"
    html = tables.styled(values, best).to_html()
    assert html.count(tables.BEST_STYLE.split(";")[0]) >= 1


def test_bins_table_says_dash_for_what_a_mode_lacks():
    summary = {"sla_violation_rate_ttft": 0.1, "bins": [
        {"bin": 0, "pred_lo": 1.0, "pred_hi": 20.0, "requests": 1200, "batches": 300, "sla_attainment": 0.9},
        {"bin": 1, "pred_lo": 20.0, "pred_hi": 900.0, "requests": 800, "batches": None, "sla_attainment": 0.8}]}
    table = tables.bins_table(summary).set_index("Bin")
    assert table.loc[0, "Requests"] == "1,200 req" and table.loc[0, "Batches"] == "300 batches"
    assert table.loc[1, "Batches"] == fmt.DASH and table.loc[1, "SLA attainment"] == "80.0 %"


# ------------------------------------------------------------------ labels --
def _view(h, mode="static_fifo", spec=None, **cfg):
    spec = {**WorkloadSpec(num_requests=100).relevant_dict(), **(spec or {})}
    return {"hash": h, "summary": {"mode": mode}, "config": SimConfig(mode=mode, **cfg).to_dict(),
            "workload": {"spec": spec, "label": f"synthetic rate {spec.get('rate')}"}}


def test_run_labels_show_what_differs():
    assert labels.run_labels([_view("a1"), _view("b2", "dynamic_no_bins")]) == ["static_fifo", "dynamic_no_bins"]
    assert labels.run_labels([_view("a1", spec={"rate": 2.0}), _view("b2", spec={"rate": 5.0})]) == [
        "static_fifo · rate 2", "static_fifo · rate 5"]
    assert labels.run_labels([_view("a1", gpus=2), _view("b2", gpus=8)]) == ["static_fifo · 2 GPUs",
                                                                           "static_fifo · 8 GPUs"]
    same = labels.run_labels([_view("a1aaaaaa"), _view("b2bbbbbb")])
    assert same == ["static_fifo · a1aaaa", "static_fifo · b2bbbb"]  # nothing else tells them apart
    # the mode's own default fill is part of the mode, not a difference
    assert labels.run_labels([_view("a1"), _view("b2", "multi_bin_fixed")]) == ["static_fifo", "multi_bin_fixed"]


def test_different_workloads_are_named():
    assert labels.workloads_differ([_view("a1"), _view("b2", "dynamic_no_bins")]) == []
    assert labels.workloads_differ([_view("a1", spec={"rate": 2.0}), _view("b2", spec={"rate": 5.0})]) == [
        "rate 2 / rate 5"]


def test_deadlines_per_latency_metric():
    vs = [_view("a1"), _view("b2", d_sla_e2e=30.0), _view("c3", d_sla_e2e=None)]
    assert labels.deadlines(vs, "e2e") == [30.0, 60.0]
    assert labels.deadlines(vs, "tbt") == [0.05] and labels.deadlines(vs, "queue_delay") == []


def test_latency_cdf_draws_deadlines_as_rules():
    cdf = charts.stack({"a": pd.DataFrame({"metric": "e2e", "quantile": [0, 0.5, 1.0], "seconds": [0.5, 1, 80]})})
    spec = charts.latency_cdf(cdf, "e2e", deadlines=[60.0]).to_dict()
    marks = [(layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"]) for layer in spec["layer"]]
    assert marks == ["line", "rule", "text"]
    rules = charts.deadline_frame([60.0, 0.05])
    assert rules["label"].tolist() == ["deadline 60 s", "deadline 50 ms"]


# ------------------------------------------------------------ escaping --
def test_markdown_escape_keeps_user_text_literal():
    evil = "[Click here](http://evil.example/x).csv"
    out = fmt.md(evil)
    assert "](" not in out and re.sub(r"\\(.)", r"\1", out) == evil
    assert fmt.md(":red[boom] $x$ <b>") == "\\:red\\[boom\\] \\$x\\$ \\<b\\>"


def test_csv_cells_that_look_like_formulas_are_quoted():
    from batchlab.store.export import csv_cell

    assert csv_cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert [csv_cell(v) for v in ("+1", "-2", "@a", "\tx")] == ["'+1", "'-2", "'@a", "'\tx"]
    assert csv_cell(-2.5) == -2.5 and csv_cell("plain") == "plain" and csv_cell(None) == ""
    assert csv_cell(float("nan")) == ""


# --------------------------------------------------------------- comparison links --
def test_comparison_links_round_trip_every_member():
    members = [{"sim": {**SimConfig(mode=m, gpus=g).to_dict(), "fill": None},
                "spec": WorkloadSpec(rate=r).to_dict(), "source": "synthetic"}
               for m, g, r in [("static_fifo", 4, 2.0), ("static_fifo", 8, 5.0), ("dynamic_no_bins", 4, 2.0)]]
    params = state.comparison_params(["h1", "h2", "h3"], members)
    assert params["modes"] == "static_fifo,static_fifo,dynamic_no_bins"
    assert params["gpus"] == ["4", "8", "4"]
    assert params["rate"] == ["2.0", "5.0", "2.0"]  # auto is 12 req/s on a synthetic workload
    back, problems = state.members_from_params(params)
    assert problems == []
    for got, want in zip(back, members):
        assert SimConfig(**got["sim"]) == SimConfig(**want["sim"])
        assert WorkloadSpec(**got["spec"]).relevant_dict() == WorkloadSpec(**want["spec"]).relevant_dict()


def test_comparison_link_problems():
    assert state.members_from_params({"compare": "a,b"}) == (None, [])  # a hash-only link: no settings
    members, problems = state.members_from_params({"compare": "a,b", "modes": "static_fifo"})
    assert members is None and "1 mode(s) for 2 run(s)" in problems[0]
    members, problems = state.members_from_params({"compare": "a,b", "modes": "static_fifo,static_fifo",
                                                   "gpus": ["2", "4", "8"]})
    assert "gpus: 3 values for 2 runs" in problems[0]
    assert [m["sim"]["gpus"] for m in members] == [2, 2]


def test_read_params_keeps_repeated_keys():
    class QP(dict):
        def get_all(self, key):
            return self[key]

    assert state.read_params(QP(run=["h"], gpus=["2", "4"])) == {"run": "h", "gpus": ["2", "4"]}


# ------------------------------------------------------------ errors, launch --
def test_unexpected_errors_hide_their_details():
    assert services.user_message(ConfigError("gpus", "must be >= 1")) == "gpus: must be >= 1"
    msg = services.user_message(RuntimeError("secret internals at 0xdead"))
    assert "RuntimeError" in msg and "0xdead" not in msg and "log" in msg
    from batchlab.core.validity import SimulationError

    reason = "the simulation ran past the clock; the engines represent less than 146 years"
    assert services.user_message(SimulationError(reason)) == reason  # the user's to fix: shown


def test_launch_runs_streamlit_with_the_store_url_and_warms_the_engine_beside_it(monkeypatch):
    seen = {}

    def fake_call(cmd, env):
        seen["cmd"], seen["env"] = cmd, env
        return 0

    def fake_popen(cmd, env, **kwargs):
        seen["warm"], seen["warm_env"] = cmd, env

    monkeypatch.setattr(launch, "serve", fake_call)
    monkeypatch.setattr(launch.subprocess, "Popen", fake_popen)
    assert launch.launch(host="0.0.0.0", port=9999, db_url="sqlite:////tmp/x.db", expose=True, echo=lambda _: None) == 0
    assert "ensure_compiled(" in seen["warm"][-1] and seen["warm_env"]["BATCHLAB_DB_URL"] == "sqlite:////tmp/x.db"
    cmd = seen["cmd"]
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("webapp/app.py")
    joined = " ".join(cmd)
    assert "--server.address 0.0.0.0" in joined and "--server.port 9999" in joined
    assert "--browser.gatherUsageStats false" in joined and "--server.headless true" in joined
    assert "--server.enableXsrfProtection true" in joined
    assert seen["env"]["BATCHLAB_DB_URL"] == "sqlite:////tmp/x.db"


def test_streamlit_config_turns_telemetry_off():
    import tomllib
    from pathlib import Path

    conf = tomllib.loads((Path(launch.APP).parent / ".streamlit" / "config.toml").read_text())
    assert conf["browser"]["gatherUsageStats"] is False
    assert conf["client"]["showErrorDetails"] == "none"
    json.dumps(conf)

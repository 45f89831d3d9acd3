"""One colour per scheduler mode on every chart, legends that cut nothing, and the History table's words.

The chart tests read the Vega-Lite spec (``chart.to_dict()``): the colour a mode's series gets is
its fixed palette colour whatever the order the chart meets the modes in (it used to be the n-th
Tableau colour, so one mode was red in one chart and another mode red in the chart beside it).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from batchlab.core.config import BATCH_MODES, COMPARE_MODES, CONTINUOUS_MODES, MODES
from batchlab.webapp import charts, history, labels, palette, plan
from batchlab.webapp import sweep_charts as sc


# ------------------------------------------------------------------ helpers --
def _walk(spec):
    """Every dict inside a Vega-Lite spec (layers, encodings, scales...)."""
    if isinstance(spec, dict):
        yield spec
        for v in spec.values():
            yield from _walk(v)
    elif isinstance(spec, list):
        for v in spec:
            yield from _walk(v)


def _colour_scales(chart) -> list[dict]:
    """The colour encodings (field, scale, legend) of a chart, every layer's."""
    return [d["color"] for d in _walk(chart.to_dict()) if isinstance(d.get("color"), dict)
            and "field" in d["color"]]


def colours_of(chart) -> dict[str, str]:
    """Value -> colour as the chart's colour scales map them (every scale of every layer must agree)."""
    out: dict[str, str] = {}
    scales = _colour_scales(chart)
    assert scales, "the chart colours by a field"
    for enc in scales:
        scale = enc.get("scale") or {}
        assert "scheme" not in scale, f"colours by order of appearance: {scale}"
        for value, colour in zip(scale["domain"], scale["range"]):
            assert out.setdefault(value, colour) == colour, f"{value} has two colours in one chart"
    return out


def _legends(chart) -> list[dict]:
    return [enc["legend"] for enc in _colour_scales(chart) if enc.get("legend")]


def _cdf(runs: list[str]) -> pd.DataFrame:
    q = np.linspace(0.01, 1, 20)
    return pd.concat([pd.DataFrame({"run": r, "metric": "e2e", "quantile": q, "seconds": (i + 1) * q * 10})
                      for i, r in enumerate(runs)], ignore_index=True)


def _timeline(runs: list[str], column: str) -> pd.DataFrame:
    t = np.arange(10.0)
    return pd.concat([pd.DataFrame({"run": r, "time_s": t, column: 0.5 + 0.0 * t}) for r in runs],
                     ignore_index=True)


def _summaries(runs: list[str]) -> dict[str, dict]:
    return {r: {"throughput_rps": 1.0 + i, "throughput_tps": 100.0 * (i + 1), "sla_attainment": 0.9,
                "sla_violation_rate_ttft": 0.05, "sla_violation_rate_tbt": 0.02, "sla_violation_rate_e2e": 0.1}
            for i, r in enumerate(runs)}


def _sizes(runs: list[str]) -> pd.DataFrame:
    return pd.concat([pd.DataFrame({"run": r, "size": [1, 2, 4, 8], "batches": [5, 3, 2, 1]}) for r in runs],
                     ignore_index=True)


def run_charts(runs: list[str]) -> dict[str, object]:
    """Every chart of the Run and Compare pages that colours by run, for runs labelled ``runs``."""
    s = _summaries(runs)
    return {"cdf": charts.latency_cdf(_cdf(runs), "e2e", deadlines=[60.0]),
            "violations": charts.violation_rates(s),
            "throughput": charts.throughput(s, "throughput_rps"),
            "gpu": charts.gpu_utilization(_timeline(runs, "utilization")),
            "kv": charts.occupancy(_timeline(runs, "kv_utilization"), "kv_utilization"),
            "running": charts.occupancy(_timeline(runs, "running"), "running"),
            "sizes": charts.batch_size_histogram(_sizes(runs))}


def sweep_charts(series: list[str], modes: list[str]) -> dict[str, object]:
    """The Sweeps and Plan charts that colour by series (labels) or by mode."""
    rates = [1.0, 2.0, 4.0]
    probes = pd.DataFrame([{"series": s, "mode": m, "rate": r, "attainment": 1.0 - 0.1 * r * (i + 1),
                            "latency_p99_s": r * (i + 1)}
                           for i, (s, m) in enumerate(zip(series, modes)) for r in rates])
    caps = pd.DataFrame({"series": series, "mode": modes, "capacity_rps": [2.0 + i for i in range(len(series))],
                         "ci_low": np.nan, "ci_high": np.nan})
    cells = pd.DataFrame([{"mode": m, "configuration": s, "gpus": g, "attainment": 0.9 + 0.02 * g}
                          for s, m in zip(series, modes) for g in (1, 2, 3)])
    return {"attainment": sc.metric_vs_rate(probes, "attainment", target=0.9, capacities=caps),
            "p99": sc.metric_vs_rate(probes, "latency_p99_s", capacities=caps),
            "capacity": sc.capacity_bars(caps),
            "plan_capacity": plan.capacity_at_gpus(caps, 3.0),
            "plan_gpus": plan.attainment_vs_gpus(cells, 0.95)}


# ------------------------------------------------------------------ palette --
def test_every_mode_has_its_own_fixed_colour():
    table = palette.colors("mode")
    assert set(table) == set(MODES)
    assert len(set(table.values())) == len(MODES), "two modes share a colour"
    scale = palette.scale("mode").to_dict()
    assert dict(zip(scale["domain"], scale["range"])) == table
    assert palette.key_of("multi_bin_dynamic · rate 5") == "multi_bin_dynamic"
    assert palette.key_of("continuous_dynamic, B_max = 64") == "continuous_dynamic"
    assert palette.key_of("continuous_dynamic_x") is None and palette.key_of("scaling efficiency") is None


@pytest.mark.parametrize("order", [list(COMPARE_MODES), list(reversed(COMPARE_MODES)), list(MODES)],
                         ids=["compare", "reversed", "all"])
def test_run_charts_give_each_mode_its_colour_in_any_order(order):
    for name, chart in run_charts(order).items():
        got = colours_of(chart)
        assert got == {m: palette.color_of(m) for m in order}, name


@pytest.mark.parametrize("order", [list(COMPARE_MODES), list(reversed(COMPARE_MODES))], ids=["compare", "reversed"])
def test_sweep_and_plan_charts_give_each_mode_the_same_colour(order):
    """Plan: the capacity bars and the attainment curve beside them colour by configuration, the GPU
    chart by mode; a mode has one colour in all of them (and in the Compare charts)."""
    configs = [f"{m}, B = {8 * (i + 1)}" for i, m in enumerate(order)]
    for name, chart in sweep_charts(configs, order).items():
        got = colours_of(chart)
        for config, mode in zip(configs, order):
            key = mode if name == "plan_gpus" else config
            assert got[key] == palette.color_of(mode), (name, key)
    modes_only = sweep_charts(order, order)
    for name, chart in modes_only.items():
        assert {m: colours_of(chart)[m] for m in order} == {m: palette.color_of(m) for m in order}, name


def test_the_plan_gpu_chart_uses_the_full_mode_scale_and_lists_only_its_modes():
    chart = sweep_charts(["static_fifo", "continuous_static"], ["static_fifo", "continuous_static"])["plan_gpus"]
    (enc,) = [e for e in _colour_scales(chart) if e["field"] == "mode"]
    assert enc["scale"]["domain"] == list(palette.colors()) and enc["scale"]["range"] == list(
        palette.colors().values())
    assert enc["legend"]["values"] == ["static_fifo", "continuous_static"]


def test_runs_sharing_a_mode_differ_by_shade_and_dash():
    runs = ["static_fifo · rate 2", "static_fifo · rate 5", "continuous_dynamic · rate 2"]
    chart = run_charts(runs)["cdf"]
    got = colours_of(chart)
    assert got[runs[0]] == palette.color_of("static_fifo") != got[runs[1]]
    assert got[runs[2]] == palette.color_of("continuous_dynamic")
    dashes = [d["strokeDash"] for d in _walk(chart.to_dict()) if isinstance(d.get("strokeDash"), dict)
              and "field" in d["strokeDash"]]
    assert dashes and dashes[0]["scale"]["range"][0] != dashes[0]["scale"]["range"][1]
    assert "strokeDash" not in str(run_charts(list(COMPARE_MODES))["cdf"].to_dict()["layer"][0]["encoding"])


def test_series_without_a_mode_still_get_distinct_colours():
    got = colours_of(sc.suite_step2(pd.DataFrame({"gpus": [1, 2], "efficiency": [1.0, 0.9],
                                                  "sla_attainment": [0.99, 0.98]})))
    assert len(set(got.values())) == 2


# ------------------------------------------------------------------ legends --
@pytest.mark.parametrize("runs", [list(COMPARE_MODES), [f"{m} · rate 12 · 4 GPUs" for m in MODES]],
                         ids=["modes", "long labels"])
def test_legends_sit_below_and_cut_no_label(runs):
    everything = {**run_charts(runs), **sweep_charts(runs, [palette.key_of(r) for r in runs])}
    legends = [(name, lg) for name, c in everything.items() for lg in _legends(c)]
    assert legends
    for name, lg in legends:
        assert lg["labelLimit"] == 0 and lg["orient"] == "bottom", name
        lines = [part for v in lg["values"] for part in (v.split(palette.PART) if "labelExpr" in lg else [v])]
        longest = max(len(v) for v in lines)
        assert lg["columns"] * (longest * palette.CHAR_PX + palette.SYMBOL_PX) <= palette.NARROWEST, name
    run_legends = [lg for c in run_charts(runs).values() for lg in _legends(c)]
    assert {lg["columns"] for lg in run_legends} == ({2} if max(map(len, runs)) <= 12 else {1})


def test_a_long_legend_makes_the_chart_taller_not_its_plot_shorter():
    assert sc.height(["static_fifo"]) == sc.HEIGHT, "one series has no legend"
    few = sc.height(list(COMPARE_MODES[:2]))
    many = sc.height([f"{m} · gpus={g}" for m in MODES for g in (4, 8)])
    assert few > sc.HEIGHT and many >= few + 10 * palette.LEGEND_ROW
    assert run_charts(list(MODES))["gpu"].to_dict()["height"] > run_charts(["static_fifo"])["gpu"].to_dict()["height"]


def test_a_value_label_has_room_right_of_the_longest_bar():
    spec = charts.throughput(_summaries(list(COMPARE_MODES)), "throughput_rps").to_dict()
    domain = [d["scale"]["domain"] for d in _walk(spec) if isinstance(d.get("scale"), dict)
              and "domain" in d["scale"] and d.get("field") == "throughput_rps"]
    assert domain and domain[0][1] >= 1.25 * len(COMPARE_MODES)  # the longest bar is len(modes) req/s
    caps = pd.DataFrame({"series": ["static_fifo"], "capacity_rps": [2.0], "ci_low": [1.5], "ci_high": [3.0]})
    spec = plan.capacity_at_gpus(caps, 10.0).to_dict()
    ends = [d["scale"]["domain"][1] for d in _walk(spec) if isinstance(d.get("scale"), dict)
            and "domain" in d["scale"] and d.get("field") == "capacity_rps"]
    assert ends and ends[0] >= 10.0, "the planned rate's rule is inside the axis"


# ------------------------------------------------------------- sweeps: seeds --
def test_sweep_chart_shows_the_spread_across_seeds_and_the_target():
    raw = pd.DataFrame({"series": ["static_fifo"] * 6, "rate": [1.0, 1.0, 1.0, 2.0, 2.0, 2.0],
                        "sla_attainment": [0.99, 0.95, 0.97, 0.8, 0.7, 0.9], "latency_p99_s": [1, 2, 3, 4, 5, 6]})
    agg = sc.over_seeds(raw, ["series", "rate"], ["sla_attainment", "latency_p99_s"])
    assert agg["sla_attainment_min"].tolist() == [0.95, 0.7] and agg["sla_attainment_max"].tolist() == [0.99, 0.9]
    assert agg["seeds"].tolist() == [3, 3] and agg["sla_attainment"].round(4).tolist() == [0.97, 0.8]
    spec = sc.metric_vs_rate(agg, "sla_attainment", target=0.95).to_dict()
    marks = [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"] for layer in spec["layer"]]
    assert marks[0] == "area" and "rule" in marks, marks
    band = spec["layer"][0]["encoding"]
    assert band["y"]["field"] == "low" and band["y2"]["field"] == "high"
    assert spec["height"] >= 260
    one_seed = sc.over_seeds(raw.iloc[[0, 3]], ["series", "rate"], ["sla_attainment"])
    spec = sc.metric_vs_rate(one_seed, "sla_attainment").to_dict()
    assert "area" not in str(spec["layer"][0]["mark"]), "no band for one seed"


# ------------------------------------------------------- batch-level words --
def test_the_histogram_speaks_of_batches_or_iterations_as_the_runs_have():
    title, x, y = charts.histogram_words(list(BATCH_MODES))
    assert "iteration" not in (title + x + y) and y.endswith("batches (%)") is False and "batches" in y
    title, x, y = charts.histogram_words(list(CONTINUOUS_MODES))
    assert "iteration" in x and "Iterations" in y
    title, _, y = charts.histogram_words(["static_fifo", "continuous_dynamic"])
    assert "continuous" in title and "iterations" in y
    chart = charts.batch_size_histogram(_sizes(["static_fifo"])).to_dict()
    assert chart["title"] == "Batch size distribution"
    assert not chart["encoding"]["y"]["title"].endswith("run's)")


def test_a_controller_title_breaks_after_its_colon():
    tl = pd.DataFrame({"time_s": [0.0, 1.0], "bin": [0, 0], "b_cap": [4, 5], "size": [3, 4], "b_mem": [8, 8],
                       "b_sla": [4, 5]})
    spec = charts.controller_trace(tl, title="Controller trace: multi_bin_dynamic · rate 5").to_dict()
    assert spec["title"] == ["Controller trace:", "multi_bin_dynamic · rate 5"]
    assert spec["encoding"]["color"]["legend"]["labelLimit"] == 0


# -------------------------------------------------------------- run labels --
def _view(mode: str, **sim) -> dict:
    return {"summary": {"mode": mode}, "hash": f"{mode}{sorted(sim.items())}".ljust(64, "0"),
            "config": {"mode": mode, **sim}, "workload": {"spec": {"rate": 2.0}}}


def test_a_fourth_differing_setting_is_named_not_hidden():
    a = _view("static_fifo", gpus=2, batch_size=8, seed=0, d_sla_e2e=60.0)
    b = _view("static_fifo", gpus=4, batch_size=16, seed=3, d_sla_e2e=30.0)
    got = labels.run_labels([a, b])
    assert all("more" not in lab for lab in got), got
    assert "E2E ≤ 30 s" in got[1] and "4 GPUs" in got[1]
    c = _view("static_fifo", gpus=8, batch_size=32, seed=5, d_sla_e2e=30.0, d_sla_tbt=0.1)
    assert all(lab.endswith("+2 more") for lab in labels.run_labels([a, c]))


# ------------------------------------------------------------------ History --
def test_history_rounds_rates_and_says_the_deadlines():
    synth = {"spec": {"workload": "synthetic", "rate": 2.121094, "num_requests": 2000, "predictor": "noisy:0.5"}}
    assert history.arrivals_text(synth) == "2.12 req/s"
    assert history.arrivals_text({"spec": {"workload": "synthetic", "rate": 12.0}}) == "12 req/s"
    assert history.arrivals_text({"spec": {"workload": "burstgpt", "rps_scaling": 200.0}}) == "trace ×200"
    assert history.workload_text(synth, "parametric") == "synthetic 2,000 req, 2.12 req/s, noisy:0.5"
    trace = {"spec": {"workload": "burstgpt", "trace": "/x/BurstGPT_3_first400.csv", "num_requests": 399,
                      "offset": 1, "workload_seed": 2}}
    assert history.workload_text(trace, "grid:qwen3-4b-sglang") == (
        "BurstGPT_3_first400 399 req from row 1, trace, noisy:0.5, seed 2, grid:qwen3-4b-sglang")
    assert history.workload_text({"label": "old label"}) == "old label"
    text = history.deadlines_text({"d_sla_ttft": 10.0, "d_sla_tbt": 0.05, "d_sla_e2e": None})
    assert text == "TTFT 10 s TBT 50 ms E2E off"
    assert history.deadlines_text({}) == ""


def test_history_grid_grows_with_its_rows_and_fits_900_px():
    assert history.grid_height(25) - history.grid_height(5) == 20 * history.ROW_HEIGHT
    assert history.ROW_HEIGHT > 64, "Streamlit wraps a cell's text only in rows taller than 4 rem"
    assert history.PAGE_SIZE * history.ROW_HEIGHT < 2000


# ---------------------------------------------------------------- browser --
# each chip of each multiselect: (text, inside its box, text not cut); the box is the chips' own
# container (it hides what overflows it) and the widget
CHIPS_JS = """() => Array.from(document.querySelectorAll('[data-testid=stMultiSelect]')).flatMap(ms => {
    const outer = ms.getBoundingClientRect();
    return Array.from(ms.querySelectorAll('[data-tag]')).map(t => {
        const r = t.getBoundingClientRect();
        const box = t.closest('[data-testid=stMultiSelectTagsContainer]').getBoundingClientRect();
        const text = t.querySelector('span[title]') || t;
        return [text.textContent, r.left >= box.left - 1 && r.right <= box.right + 1 && r.right <= outer.right + 1,
                text.scrollWidth <= text.clientWidth + 1 && !text.textContent.endsWith('…')];
    });
})"""
# (width of each chart's element, right edge of what it drew, right edge of its element)
CHART_BOXES_JS = """() => Array.from(document.querySelectorAll('[data-testid=stVegaLiteChart]')).map(e => {
    const r = e.getBoundingClientRect(), drawn = e.querySelector('canvas, svg');
    return [r.width, drawn ? drawn.getBoundingClientRect().right : r.right, r.right];
})"""


def _chips(page, count: int) -> list:
    """The chips once ``count`` of them are drawn (a busy machine draws the page's multiselects apart)."""
    page.wait_for_function(f"document.querySelectorAll('[data-testid=stMultiSelect] [data-tag]').length >= {count}")
    page.wait_for_timeout(300)
    return page.evaluate(CHIPS_JS)


@pytest.mark.timeout(240)
def test_browser_chips_and_legends_fit_at_both_widths(tmp_path):
    """At 1400x2000 and 900x1200: the default chips of Compare, Plan and Sweeps all show, uncut; every
    chart of a four-mode comparison is at least as wide as the legend columns were sized for."""
    from pathlib import Path

    from test_webapp_browser import CHROMIUM, CHROMIUM_ARGS, NARROW, WIDE, Server

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing")
    from playwright.sync_api import sync_playwright

    server = Server(tmp_path)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=WIDE)
            page.set_default_timeout(120_000)
            for size in (WIDE, NARROW):
                page.set_viewport_size(size)
                page.goto(server.url + "/plan")
                chips = _chips(page, 5)
                # the four modes and the router (least_outstanding)
                assert len(chips) == 5 and all(c[1] and c[2] for c in chips), (size, chips)
                page.goto(server.url + "/sweeps")     # the capacity form's modes and the suite's scenarios
                chips = _chips(page, 6)
                assert len(chips) == 6 and all(c[1] and c[2] for c in chips), (size, chips)
                page.goto(server.url + "/compare")
                page.get_by_role("button", name="Run comparison").wait_for()
                chips = _chips(page, len(COMPARE_MODES))
                assert [c[0] for c in chips] == list(COMPARE_MODES)
                assert all(c[1] and c[2] for c in chips), (size, chips)
                page.get_by_label("Requests", exact=True).fill("400")
                page.get_by_role("button", name="Run comparison").click()
                page.wait_for_function("document.querySelectorAll('[data-testid=stVegaLiteChart] canvas, "
                                       "[data-testid=stVegaLiteChart] svg').length >= 12")
                page.wait_for_timeout(500)
                boxes = page.evaluate(CHART_BOXES_JS)
                # the charts with a legend of runs: CDF, violations, 2 throughputs, GPUs, running, KV (in two
                # columns) and the size histogram (whole width); a legend starts at the plot's left edge,
                # right of a y axis of at most ~70 px
                legends = boxes[:7] + boxes[-1:]
                assert all(w >= palette.NARROWEST + 70 for w, _, _ in legends), (size, boxes)
                assert all(drawn <= right + 1 for _, drawn, right in boxes), (size, boxes)
            browser.close()
    finally:
        server.stop()

"""The metric catalog: it covers every key the engines write, the store's columns are its column view
(and the migrated schema's), and the web tables, the CLI text and the exports read their labels,
order and formats from it."""
from __future__ import annotations

import csv
import io
from datetime import UTC

import pytest
from sqlalchemy import Float, inspect

from batchlab.core import SimConfig, simulate
from batchlab.core import metric_catalog as catalog
from batchlab.core.config import MODES
from batchlab.core.report import bins_text, format_compare_table
from batchlab.core.sweep import MemberResult
from batchlab.core.sweep_report import member_frame
from batchlab.store import open_store
from batchlab.store.export import BASE_COLUMNS
from batchlab.store.format import format_runs_table
from batchlab.store.models import BIN_COLUMNS, METRIC_COLUMNS
from batchlab.webapp import tables
from batchlab.workloads import WorkloadSpec, build_workload


@pytest.fixture(scope="module")
def summaries() -> dict[str, dict]:
    """One small run of every mode (3 bins, tight memory so every engine's memory events can occur)."""
    w = build_workload(WorkloadSpec(num_requests=300, rate=6.0, workload_seed=2))
    return {mode: simulate(SimConfig(mode=mode, gpus=2, k_bins=3), w).summary for mode in MODES}


# ---------------------------------------------------------------- coverage --
def test_every_summary_key_of_every_mode_is_in_the_catalog(summaries):
    known = set(catalog.BY_KEY) | set(catalog.CONTEXT_KEYS)
    for mode, s in summaries.items():
        assert set(s) <= known, (mode, sorted(set(s) - known))
        for b in s["bins"]:
            assert set(b) <= set(catalog.BIN_BY_KEY) | set(catalog.BIN_CONTEXT_KEYS), (mode, sorted(b))


def test_every_catalog_entry_is_written_by_some_mode(summaries):
    """No stale entries: each metric (and per-bin metric) is a key some engine writes."""
    written = set().union(*summaries.values())
    assert set(catalog.BY_KEY) - written == set()
    assert set(catalog.CONTEXT_KEYS) - written == set()
    bin_keys = set().union(*(b for s in summaries.values() for b in s["bins"]))
    assert set(catalog.BIN_BY_KEY) - bin_keys == set()


def test_every_entry_has_a_unit_a_description_and_a_direction():
    for m in (*catalog.METRICS, *catalog.BIN_METRICS):
        assert m.unit in catalog.UNITS and m.description.endswith(".") and m.label and m.short, m.key
        assert m.better in ("higher", "lower", None), m.key
        assert m.views <= catalog.RUN_VIEWS | catalog.BIN_VIEWS, m.key
    assert all(m.views <= catalog.BIN_VIEWS for m in catalog.BIN_METRICS)
    keys = [m.key for m in catalog.METRICS]
    assert len(keys) == len(set(keys)) and not set(keys) & set(catalog.CONTEXT_KEYS)
    # a key reported per run and per bin keeps its label, unit and meaning
    for m in catalog.BIN_METRICS:
        if m.key in catalog.BY_KEY:
            run = catalog.BY_KEY[m.key]
            assert (m.label, m.unit, m.description, m.better) == (run.label, run.unit, run.description, run.better)


def test_only_measures_with_a_winner_take_part_in_best_runs():
    counts = [m for m in catalog.METRICS if m.key in ("num_requests", "num_batches", "iterations", "eta_tokens")]
    assert counts and all(m.better is None for m in counts)
    assert all(m.better == "lower" for m in catalog.METRICS if m.unit == "s")


@pytest.mark.parametrize("bad, match", [
    (dict(unit="parsecs"), "x: unknown unit 'parsecs'"),
    (dict(better="more"), "x: better must be 'higher', 'lower' or None, got 'more'"),
    (dict(views=frozenset({"billboard"})), "x: unknown view\\(s\\) billboard"),
    (dict(description=""), "x: a label and a description are required"),
])
def test_a_bad_entry_is_refused_naming_what_is_wrong(bad, match):
    args = dict(key="x", label="X", unit="s", description="A metric.") | bad
    with pytest.raises(ValueError, match=match):
        catalog.Metric(**args)


def test_bad_style_and_view_are_refused():
    with pytest.raises(ValueError, match="style: one of full, card, bare, got 'huge'"):
        catalog.BY_KEY["latency_p99_s"].format(1.0, style="huge")
    with pytest.raises(ValueError, match="view: unknown 'poster'"):
        catalog.shown_in("poster")


# -------------------------------------------------------------- formatting --
@pytest.mark.parametrize("key, value, full, card, bare", [
    ("latency_p99_s", 0.0312, "31.2 ms", "31.2 ms", "0.0312"),
    ("latency_p99_s", 4.5678, "4.57 s", "4.57 s", "4.57"),
    ("throughput_rps", 2.0354, "2.035 req/s", "2.04 req/s", "2.035"),
    ("throughput_tps", 98_765.4, "98,765 tok/s", "98.8k tok/s", "98,765"),
    ("sla_attainment", 0.987, "98.7 %", "98.7 %", "98.7"),
    ("sla_violation_rate_tbt", None, "off", "off", "-"),
    ("num_requests", 1234, "1,234 req", "1,234 req", "1,234"),
    ("mean_batch_size", 12.345, "12.3 req", "12.3 req", "12.3"),
    ("preemptions", 7, "7", "7", "7"),
    ("preemptions", 7.0, "7", "7", "7"),
    ("kv_peak_tokens", float("inf"), "∞ tokens", "∞ tokens", "∞"),
    ("makespan_s", float("nan"), "—", "—", "-"),
])
def test_values_are_written_by_unit_in_each_style(key, value, full, card, bare):
    summary = {"sla_violation_rate_ttft": 0.1}
    m = catalog.BY_KEY[key]
    assert (m.format(value, summary), m.format(value, summary, "card"), m.format(value, summary, "bare")) == (
        full, card, bare)
    assert catalog.format_value(key, value, summary) == full


def test_attainment_reads_no_deadline_set_in_every_text_style():
    off = {k: None for k in catalog.DEADLINE_RATES}
    m = catalog.BY_KEY["sla_attainment"]
    assert m.format(None, off) == m.format(None, off, "card") == catalog.NO_DEADLINE
    assert m.format(None, off, "bare") == "-" and m.comparable(1.0, off) is None
    assert catalog.format_value("not_a_metric", 2.5) == "2.5"


# ----------------------------------------------------------------- store --
def test_store_columns_are_the_catalog_column_view_and_the_migrated_schema(tmp_path):
    assert METRIC_COLUMNS == catalog.keys("column") and BIN_COLUMNS == catalog.keys("column", catalog.BIN_METRICS)
    store = open_store(f"sqlite:///{tmp_path}/store.db")  # built by the migrations
    try:
        schema = inspect(store.engine)
        for table, want, fixed in (("runs", METRIC_COLUMNS, {"duration_s"}), ("run_bins", BIN_COLUMNS, set())):
            real = {c["name"] for c in schema.get_columns(table) if isinstance(c["type"], Float)}
            assert real - fixed == set(want), table
    finally:
        store.close()


# ------------------------------------------------------------- the views --
def test_web_tables_use_catalog_labels_in_catalog_order(summaries):
    views = [{"hash": mode, "summary": s} for mode, s in summaries.items()]
    values, best = tables.metrics_table(views, list(summaries))
    present = [m for m in catalog.shown_in("table") if any(m.key in s for s in summaries.values())]
    # the cluster's rows first (GPUs, replicas, TP, router; never marked best), then the metrics
    assert list(values.index) == [*tables.CLUSTER_ROWS, *(m.label for m in present)] and best.shape == values.shape
    assert not best.loc[list(tables.CLUSTER_ROWS)].to_numpy().any()
    s = summaries["continuous_dynamic"]
    for m in present:
        assert values.loc[m.label, "continuous_dynamic"] == (m.format(s[m.key], s) if m.key in s else "—")
    bins = tables.bins_table(summaries["multi_bin_dynamic"])
    assert list(bins.columns) == ["Bin", "Predicted output (tokens)",
                                  *(m.label for m in catalog.shown_in("table", catalog.BIN_METRICS))]
    assert len(bins) == 3


def test_cli_compare_and_run_text_use_catalog_labels(summaries):
    rows = [dict(s, source="simulated", run_id=None) for s in summaries.values()]
    lines = format_compare_table(rows).splitlines()
    metrics = catalog.shown_in("compare")
    assert lines[0].split()[1:] == list(summaries)
    for m, line in zip(metrics, lines[1:]):
        assert line.startswith(m.label + "  ")
        want = [m.format(r.get(m.key), r) for r in rows]
        assert line[len(m.label):].split() == " ".join(want).split(), m.key
    assert [line.split()[0] for line in lines[len(metrics) + 1:]] == ["source", "run"]
    head = bins_text(summaries["multi_bin_dynamic"]).splitlines()[0]
    assert head.split("  ")[-1].strip() == catalog.shown_in("text", catalog.BIN_METRICS)[-1].label


def test_runs_list_heads_its_metrics_with_catalog_short_labels():
    from datetime import datetime

    from batchlab.store import RunRow

    row = RunRow(id=1, hash="0" * 64, status="done", stale=False, created_at=datetime.now(UTC),
                 finished_at=None, duration_s=None, mode="static_fifo", gpus=1, k_bins=1, num_requests=10,
                 label="w", error=None, throughput_rps=2.5, latency_p99_s=1.25, sla_attainment=None)
    head, line = format_runs_table([row], width=200).splitlines()
    shorts = [m.short for m in catalog.shown_in("list")]
    assert " ".join(shorts) in " ".join(head.split())
    for m in catalog.shown_in("list"):
        assert m.format(getattr(row, m.key), style="bare") in line.split()


# --------------------------------------------------------------- exports --
def test_exports_follow_catalog_order(summaries, tmp_path):
    members = [MemberResult(key=mode, point={"mode": mode}, status="done", summary=s)
               for mode, s in summaries.items()]
    frame = member_frame(members)
    assert [c for c in frame.columns if c in catalog.BY_KEY] == list(catalog.keys("sweep"))
    store = open_store(f"sqlite:///{tmp_path}/store.db")
    try:
        w = build_workload(WorkloadSpec(num_requests=60, workload_seed=4))
        store.get_or_run(SimConfig(mode="static_fifo"), w)
        store.get_or_run(SimConfig(mode="continuous_dynamic"), w)
        out = io.StringIO()
        assert store.export_runs(None, "csv", out) == 2
    finally:
        store.close()
    header = next(csv.reader(io.StringIO(out.getvalue())))
    metrics = [k for k in catalog.EXPORT_COLUMNS if k not in BASE_COLUMNS]
    assert header[:len(BASE_COLUMNS) + len(metrics) + 1] == [*BASE_COLUMNS, *metrics, "error"]
    assert [c for c in header if c in catalog.BY_KEY] == list(catalog.EXPORT_COLUMNS)
    assert all(c.startswith("config.") for c in header[len(BASE_COLUMNS) + len(metrics) + 1:])


def test_web_result_tables_head_metric_columns_with_catalog_labels():
    """Sweep, capacity, suite and plan tables on the web keep the keys (their CSV) and show the labels."""
    import pandas as pd

    from batchlab.webapp.sweeps import metric_columns

    df = pd.DataFrame({"rate": [1.0], "sla_attainment": [0.9], "latency_p99_s": [2.0], "run": ["abc"]})
    cols = metric_columns(df)
    assert set(cols) == {"sla_attainment", "latency_p99_s"}  # varied values and ids keep their names
    assert cols["latency_p99_s"]["label"] == "Latency p99 (s)"
    assert cols["sla_attainment"]["label"] == "SLA attainment"
    assert cols["sla_attainment"]["help"] == catalog.BY_KEY["sla_attainment"].description

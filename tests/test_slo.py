"""Percentile SLOs: numpy's percentile with rejected requests as +inf, parse errors, run identity, store, CLI."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from batchlab.core import SimConfig, simulate
from batchlab.core.config import ConfigError
from batchlab.core.identity import run_identity
from batchlab.core.latency import build_latency_model
from batchlab.core.slo import evaluate_slos, parse_slos, percentile_with_rejected
from batchlab.core.slo_report import KEYS, assess, with_assessment
from batchlab.store import open_store
from batchlab.workloads import WorkloadSpec, build_workload

FAST = dict(mode="static_fifo", gpus=2)
SPEC = WorkloadSpec(num_requests=300, rate=4.0, workload_seed=3)

values = st.lists(st.floats(0.0, 1e4, allow_nan=False), min_size=1, max_size=60)
percentiles = st.floats(0.1, 100.0)


def _requests(v: np.ndarray, rejected: np.ndarray) -> dict:
    t = np.where(rejected, np.nan, v)
    return {"finish": np.where(rejected, np.nan, 1.0), "ttft": t, "tbt": t, "e2e": t, "queue_delay": t}


# ------------------------------------------------------------ the percentile --
@settings(max_examples=200, deadline=None)
@given(values, percentiles, st.floats(1e-3, 1e4))
def test_verdict_and_margin_are_numpys_percentile_without_rejections(v, q, limit):
    v = np.array(v)
    slos = parse_slos(f"ttft:p{q!r}:{limit!r}s")
    (row,) = evaluate_slos(slos, _requests(v, np.zeros(len(v), bool)))
    expected = float(np.percentile(v, slos[0].percentile))
    assert row["measured_s"] == expected
    assert row["margin_s"] == expected - slos[0].limit_s
    assert row["met"] == (expected <= slos[0].limit_s)


@settings(max_examples=200, deadline=None)
@given(values, st.lists(st.booleans(), min_size=60, max_size=60), percentiles)
def test_rejected_requests_count_as_infinite(v, flags, q):
    """The percentile of all requests with the rejected ones sorted last as +inf: a huge stand-in value in
    numpy's own percentile shows where its interpolation reaches them."""
    v = np.array(v)
    rejected = np.array(flags[:len(v)])
    got = percentile_with_rejected(np.where(rejected, np.nan, v), rejected, q)
    stand_in = np.percentile(np.where(rejected, 1e300, v), q)
    served = v[~rejected]
    expected = math.inf if rejected.all() or stand_in > served.max() else float(stand_in)
    assert got == expected


def test_a_p99_fails_once_more_than_one_percent_is_rejected():
    v = np.linspace(0.1, 0.2, 200)
    for n_rejected, met in ((1, True), (3, False)):
        rejected = np.zeros(200, bool)
        rejected[:n_rejected] = True
        (row,) = evaluate_slos(parse_slos("e2el:p99:1s"), _requests(v, rejected))
        assert row["met"] is met and (row["measured_s"] == math.inf) is not met and row["rejected"] == n_rejected


def test_requests_without_a_gap_are_left_out_of_tpot_and_none_at_all_holds():
    req = {"finish": np.ones(4), "tbt": np.array([np.nan, 0.01, 0.03, np.nan]), "ttft": np.ones(4)}
    (row,) = evaluate_slos(parse_slos("tpot:p50:15ms"), req)
    assert row["measured_s"] == pytest.approx(0.02) and not row["met"]
    req["tbt"][:] = np.nan
    (row,) = evaluate_slos(parse_slos("tpot:p50:15ms"), req)
    assert row["measured_s"] is None and row["met"]


def test_measured_p99_is_the_summarys_on_a_run_without_rejections():
    cfg = SimConfig(**FAST, slo="ttft:p99:1s,e2e:p50:10s")
    res = simulate(cfg, build_workload(SPEC))
    assert res.summary["rejected_requests"] == 0
    ttft, e2e = res.summary["slos"]
    assert ttft["measured_s"] == res.summary["ttft_p99_s"] and e2e["measured_s"] == res.summary["latency_p50_s"]
    assert res.summary["slos_met"] == (ttft["met"] and e2e["met"])


# ------------------------------------------------------------------ parsing --
def test_units_aliases_and_canonical_text():
    assert SimConfig(slo=" TTFT:p99.9:0.5s , tbt:p90:50ms,queue:p50:800us ,e2e:p99:2").slo == \
        "ttft:p99.9:500ms,tpot:p90:50ms,queue:p50:800us,e2el:p99:2s"


@pytest.mark.parametrize("text,named", [
    ("ttft:p99", "'ttft:p99': expected METRIC:pP:LIMIT"),
    ("ttfb:p99:1s", "unknown metric 'ttfb'"),
    ("itl:p99:1s", "itl (every gap between tokens) is not kept"),
    ("ttft:99:1s", "'99' is not a percentile"),
    ("ttft:p0:1s", "'p0' is not a percentile"),
    ("ttft:p101:1s", "'p101' is not a percentile"),
    ("ttft:p99:1h", "'1h' is not a positive duration"),
    ("ttft:p99:0ms", "'0ms' is not a positive duration"),
    ("ttft:p99:1s,ttft:p99:2s", "ttft p99 is given twice"),
])
def test_parse_errors_name_the_bad_part(text, named):
    with pytest.raises(ConfigError) as err:
        SimConfig(slo=text)
    assert str(err.value).startswith("slo: ") and named in str(err.value)


# ------------------------------------------------------------------ identity --
def test_slos_and_classes_leave_the_run_hash_unchanged():
    base = SimConfig(**FAST)
    w = build_workload(SPEC)
    lat = build_latency_model(base)
    judged = base.replace(slo="ttft:p99:500ms", classes="all:priority=0:ttft=1s")
    assert run_identity(judged, w, lat) == run_identity(base, w, lat)
    assert "slo" not in base.relevant_dict() and judged.relevant_dict()["slo"] == "ttft:p99:500ms"


def test_a_stored_run_is_served_and_judged_afresh_when_only_slos_change(tmp_path):
    w = build_workload(SPEC)
    with open_store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        first, hit = store.get_or_run(SimConfig(**FAST, slo="ttft:p99:1000s"), w)
        assert not hit and first.summary["slos"][0]["met"]
        assert not set(KEYS) & set(store.get_run(first.id).summary)   # the judgement is never stored
        again, hit = store.get_or_run(SimConfig(**FAST, slo="ttft:p99:1us"), w)
        assert hit and again.id == first.id
        assert again.summary["slos"][0]["slo"] == "ttft:p99:1us" and not again.summary["slos_met"]
        assert again.summary["slo_attainment"] == 0.0
        plain, hit = store.get_or_run(SimConfig(**FAST), w)
        assert hit and not set(KEYS) & set(plain.summary)


def test_with_assessment_judges_a_sampled_runs_arrays_with_their_priorities():
    req = _requests(np.array([0.1, 5.0, 0.2]), np.zeros(3, bool))
    req["index"] = np.array([0, 3, 4])
    cfg = SimConfig(classes="a:priority=0:ttft=1s;b:priority=1:ttft=1s", d_sla_tbt=None, d_sla_e2e=None)
    out = with_assessment(cfg, {"slos": "stale"}, lambda: req, np.array([0, 0, 0, 1, 1]))
    assert [c["attainment"] for c in out["classes"]] == [1.0, 0.5] and "slos" not in out
    assert assess(SimConfig(), req, None) == {}


# ------------------------------------------------------------------ the CLI --
def test_cli_slo_repeats_and_reports_each_with_its_margin():
    from batchlab.cli import cli

    args = ["run", "--no-store", "--mode", "static_fifo", "--num-requests", "200", "--rate", "3",
            "--slo", "ttft:p99:1000s", "--slo", "e2el:p50:1ms"]
    out = CliRunner().invoke(cli, [*args, "--json"])
    assert out.exit_code == 0, out.output
    s = json.loads(out.output[out.output.index("{"):])
    assert [r["slo"] for r in s["slos"]] == ["ttft:p99:1000s", "e2el:p50:1ms"]
    assert [r["met"] for r in s["slos"]] == [True, False] and s["slos_met"] is False
    assert s["slos"][1]["margin_s"] == pytest.approx(s["latency_p50_s"] - 1e-3)
    text = CliRunner().invoke(cli, args).output
    assert "SLO ttft:p99:1000s" in text and "met: p99" in text and "MISSED: p50" in text
    bad = CliRunner().invoke(cli, ["run", "--no-store", "--slo", "ttft:p99:fast"])
    assert bad.exit_code != 0 and "slo: 'ttft:p99:fast': 'fast' is not a positive duration" in bad.output

"""`batchlab run` / `compare` output options: --format text|json|csv|vllm-bench (--json its alias), --percentiles,
--goodput, --requests-out, --timeline, and `runs export --per-request --format parquet`; store hits read the
per-request arrays from the store, or simulate again when it keeps only a sample (never storing twice)."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import batchlab.cli as batchlab
from batchlab.core import extras
from batchlab.store import open_store
from batchlab.workloads import build_workload

SMALL = ["--num-requests", "200", "--rate", "4", "--mode", "static_fifo"]
CONT = ["--num-requests", "200", "--rate", "4", "--mode", "continuous_dynamic"]


def invoke(*args, code=0):
    res = CliRunner().invoke(batchlab.cli, [str(a) for a in args])
    assert res.exit_code == code, res.output + repr(res.exception)
    return res


def read_requests(path) -> pd.DataFrame:
    return pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(path)


def test_json_with_percentiles_is_numpy_on_the_requests_written(tmp_path):
    out = tmp_path / "req.csv"
    s = json.loads(invoke("run", *SMALL, "--no-store", "--format", "json", "--percentiles", "90,99.9",
                          "--requests-out", out).stdout)
    req = read_requests(out)
    assert len(req) == 200 and s["percentiles"] == [90.0, 99.9]
    served = req[np.isfinite(req["finish"])]
    for stem, col in (("latency", "e2e"), ("ttft", "ttft"), ("tbt", "tbt"), ("queue_delay", "queue_delay")):
        values = served[col].dropna().to_numpy()
        assert s[f"{stem}_p90_s"] == pytest.approx(np.percentile(values, 90)), stem
        assert s[f"{stem}_p99.9_s"] == pytest.approx(np.percentile(values, 99.9)), stem
    alias = json.loads(invoke("run", *SMALL, "--no-store", "--json", "--percentiles", "90,99.9").stdout)
    assert alias == s


def test_csv_is_one_row_of_the_json_summary():
    s = json.loads(invoke("run", *SMALL, "--no-store", "--json").stdout)
    rows = list(csv.DictReader(io.StringIO(invoke("run", *SMALL, "--no-store", "--format", "csv").stdout)))
    assert len(rows) == 1
    assert float(rows[0]["makespan_s"]) == pytest.approx(s["makespan_s"]) and rows[0]["mode"] == "static_fifo"
    nested = [k for k, v in s.items() if isinstance(v, dict)]
    assert nested and all(f"{k}.{inner}" in rows[0] for k in nested for inner in s[k]) and not set(nested) & set(rows[0])
    assert json.loads(rows[0]["bins"]) == s["bins"]     # a list: one cell of JSON


def test_text_lists_the_chosen_percentiles_and_goodput():
    text = invoke("run", *SMALL, "--no-store", "--percentiles", "90,99.9", "--goodput", "ttft:3000").stdout
    assert "percentiles      p90, p99.9" in text
    assert "    TTFT           p90 " in text and "p99.9 " in text
    assert "  goodput          " in text and "meet ttft <= 3,000.0 ms" in text
    assert "percentiles" not in invoke("run", *SMALL, "--no-store").stdout       # the default text is unchanged


def test_vllm_bench_goodput_as_vllm_writes_it(tmp_path):
    out = tmp_path / "req.parquet"
    res = json.loads(invoke("run", *SMALL, "--no-store", "--format", "vllm-bench", "--goodput", "ttft:3000",
                            "tpot:60", "--requests-out", out).stdout)
    req = read_requests(out)
    ok = np.isfinite(req["finish"])
    ttft, e2el, o = req["ttft"][ok], req["e2e"][ok], req["output"][ok]
    tpot = np.where(o > 1, (e2el - ttft) / np.maximum(o - 1, 1), 0.0)
    good = int(((3.0 >= ttft) & (0.06 >= tpot)).sum())
    duration = req["finish"].max() - req["arrival"].min()
    assert res["duration"] == pytest.approx(duration)
    assert res["request_goodput"] == pytest.approx(good / duration) and 0 < good < ok.sum()
    assert res["goodput"] == {"ttft": 3000.0, "tpot": 60.0}
    assert "p99_ttft_ms" in res and "p50_ttft_ms" not in res and res["metric_percentiles"] == "99"   # vLLM's default
    assert "ttfts" not in res and res["backend"] == "batchlab" and res["batchlab_mode"] == "static_fifo"
    detailed = json.loads(invoke("run", *SMALL, "--no-store", "--format", "vllm-bench", "--save-detailed",
                                 "--percentiles", "50,99.9").stdout)
    assert len(detailed["ttfts"]) == 200 and "p99.9_itl_ms" in detailed and "p99_itl_ms" not in detailed


def test_a_store_hit_gives_the_same_output_as_a_fresh_simulation(tmp_path):
    db = f"sqlite:///{tmp_path}/s.db"
    args = ["run", *SMALL, "--format", "vllm-bench", "--percentiles", "50,90", "--goodput", "e2el:20000"]
    fresh = json.loads(invoke(*args, "--no-store").stdout)
    first = json.loads(invoke(*args, "--db", db).stdout)             # simulated here, stored
    hit = json.loads(invoke(*args, "--db", db).stdout)               # the quick hit: arrays from the store
    assert (first["batchlab_source"], hit["batchlab_source"]) == ("simulated", "store")
    for key in ("date", "batchlab_source", "batchlab_run_id"):
        for d in (fresh, first, hit):
            d.pop(key)
    assert fresh == first == hit
    s = json.loads(invoke("run", *SMALL, "--db", db, "--json", "--percentiles", "90").stdout)
    assert s["source"] == "store" and s["latency_p90_s"] == pytest.approx(
        json.loads(invoke("run", *SMALL, "--no-store", "--json", "--percentiles", "90").stdout)["latency_p90_s"])


def test_a_sampled_stored_run_is_simulated_again_not_stored_twice(tmp_path):
    db = f"sqlite:///{tmp_path}/sampled.db"
    cfg, spec, _ = batchlab.build_inputs(None, num_requests=200, rate=4.0, mode="static_fifo")
    with open_store(db, request_cap=50) as store:   # keeps 50 of the 200 requests
        run, _ = store.get_or_run(cfg, build_workload(spec))
        assert run.sampled
    out = tmp_path / "req.csv"
    s = json.loads(invoke("run", *SMALL, "--db", db, "--json", "--percentiles", "90", "--requests-out", out).stdout)
    assert s["source"] == "store" and len(read_requests(out)) == 200
    fresh = json.loads(invoke("run", *SMALL, "--no-store", "--json", "--percentiles", "90").stdout)
    assert s["latency_p90_s"] == fresh["latency_p90_s"]
    with open_store(db) as store:
        assert store.count_runs() == 1


@pytest.mark.parametrize("args,kind", [(CONT, "span of "), (SMALL, "batch")])
def test_a_timeline_from_the_store_is_the_fresh_runs(tmp_path, args, kind):
    """A batch-level run's log comes from the store; a continuous run's span log is not stored: simulated again."""
    db = f"sqlite:///{tmp_path}/t.db"
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    invoke("run", *args, "--no-store", "--timeline", a)
    invoke("run", *args, "--db", db, "--timeline", b)
    res = invoke("run", *args, "--db", db, "--timeline", c)
    assert "served from store" in res.stdout and ("spans to" if kind != "batch" else "batches to") in res.stderr
    events = [json.loads(p.read_text())["traceEvents"] for p in (a, b, c)]
    assert events[0] == events[1] == events[2]
    assert any(e["ph"] == "X" and e["name"].startswith(kind) for e in events[0])


def test_compare_formats_and_percentiles():
    rows = list(csv.DictReader(io.StringIO(invoke("compare", *SMALL, "--modes", "static_fifo,continuous_dynamic",
                                                  "--no-store", "--format", "csv", "--percentiles", "90").stdout)))
    assert [r["mode"] for r in rows] == ["static_fifo", "continuous_dynamic"] and float(rows[0]["ttft_p90_s"]) > 0
    data = json.loads(invoke("compare", *SMALL, "--modes", "static_fifo", "--no-store", "--json",
                             "--percentiles", "99.9").stdout)
    assert isinstance(data, list) and "latency_p99.9_s" in data[0]
    text = invoke("compare", *SMALL, "--modes", "static_fifo", "--no-store", "--percentiles", "80").stdout
    assert "latency (e2e) p80" in text and "TTFT p80" in text


def test_runs_export_per_request_parquet_equals_the_csv(tmp_path):
    db = f"sqlite:///{tmp_path}/e.db"
    invoke("run", *SMALL, "--db", db)
    pq, cv = tmp_path / "r.parquet", tmp_path / "r.csv"
    invoke("runs", "export", "1", "--per-request", "--format", "parquet", "--out", pq, "--db", db)
    invoke("runs", "export", "1", "--requests", "--out", cv, "--db", db)
    a, b = read_requests(pq), read_requests(cv)
    assert len(a) == 200 and list(a.columns) == list(b.columns)
    np.testing.assert_allclose(a["e2e"].to_numpy(), b["e2e"].to_numpy())
    for args, message in ((["--format", "parquet"], "--format parquet is for --per-request"),
                          (["--per-request", "--format", "parquet"], "give --out FILE"),
                          (["--per-request", "--format", "json"], "--per-request exports exactly one RUN")):
        res = invoke("runs", "export", "1", *args, "--db", db, code=2)
        assert message in res.output


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    real = extras.find_spec
    monkeypatch.setattr(extras, "find_spec", lambda name: None if name == "pyarrow" else real(name))
    res = invoke("run", *SMALL, "--no-store", "--requests-out", tmp_path / "r.parquet", code=1)
    assert "--requests-out: writing Parquet needs batchlab[parquet]" in res.output
    assert "pip install 'batchlab[parquet]'" in res.output


@pytest.mark.parametrize("args,message", [
    (["--percentiles", "100"], "--percentiles: 100 is not strictly between 0 and 100"),
    (["--percentiles", "50,x"], "--percentiles: 'x' is not a number"),
    (["--goodput", "ttft:1", "itl:5"], "--goodput: unknown metric 'itl'"),
    (["--goodput", "ttft=5"], "--goodput: 'ttft=5' is not KEY:VALUE"),
    (["tpot:5"], "unexpected extra argument (tpot:5)"),
    (["--save-detailed"], "--save-detailed goes with --format vllm-bench"),
    (["--json", "--format", "vllm-bench"], "--json asks for json but --format asks for vllm-bench"),
    (["--format", "yaml"], "'--format'"),
    (["--requests-out", "r.txt"], "--requests-out: 'r.txt' must end in .csv, .parquet or .pq"),
])
def test_bad_output_options_are_usage_errors_naming_the_flag(args, message):
    res = invoke("run", "--no-store", *args, code=2)
    assert message in res.output and res.output.count("\n") == 1, res.output


def test_compare_refuses_bad_percentiles_and_vllm_bench():
    assert "--percentiles: 0 is not" in invoke("compare", "--percentiles", "0", code=2).output
    assert "'--format'" in invoke("compare", "--format", "vllm-bench", code=2).output


def test_a_vllm_bench_result_replayed_gives_back_its_requests_in_vllms_shape(tmp_path):
    """The issue's bar: a `vllm bench serve --save-detailed` result file, replayed, is the same requests
    (count, lengths, send times); what batchlab prints in vLLM's shape reads in a script written for
    vLLM's own files."""
    from test_bench_serve import vllm_consumer
    from test_trace_formats import vllm_result

    source = json.loads(vllm_result(start=7_000.125))
    path = tmp_path / "result.json"
    path.write_bytes(vllm_result(start=7_000.125))
    r = invoke("run", "--no-store", "--trace", path, "--mode", "continuous_static", "--format", "vllm-bench",
               "--save-detailed")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    ok = [i for i, e in enumerate(source["errors"]) if not e and source["output_lens"][i] > 0]  # failed: dropped
    assert out["num_prompts"] == out["completed"] == len(ok) and out["failed"] == 0
    assert out["input_lens"] == [source["input_lens"][i] for i in ok]
    assert out["output_lens"] == [source["output_lens"][i] for i in ok]
    sent = np.array([source["start_times"][i] for i in ok])
    assert np.allclose(np.array(out["start_times"]) - out["start_times"][0], sent - sent[0], rtol=0, atol=1e-9)
    (tmp_path / "batchlab.json").write_text(r.stdout)
    row = vllm_consumer(tmp_path / "batchlab.json")
    assert row["requests"] == pytest.approx(len(ok))
    assert row["tokens_per_request"] == pytest.approx(np.mean(out["output_lens"]))
    assert row["ttft_check"] == pytest.approx(row["mean_ttft_ms"])

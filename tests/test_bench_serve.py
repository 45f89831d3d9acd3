"""Results in vllm bench serve's shape (core.bench_serve): fields and units against closed forms, goodput as
vLLM counts it, percentiles as numpy's, ITL weighted by gap count, and a consumer written for vLLM's files."""
from __future__ import annotations

import json
import re
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchlab.core import SimConfig, simulate
from batchlab.core import bench_serve as bs
from batchlab.workloads.workload import Workload

# one GPU, batches of one, requests 100 s apart: TTFT = 20 ms + 1 ms x prompt, then (o - 1) steps of 10 ms
CLOSED = dict(mode="static_fifo", batch_size=1, gpus=1, latency="parametric", prefill_base=0.02,
              prefill_per_token=1e-3, decode_base=0.01, decode_per_seq=0.0, decode_per_ctx_token=0.0,
              gpu_mem_gb=80.0, d_sla_ttft=None, d_sla_tbt=None, d_sla_e2e=None)
PROMPT = np.array([10, 20, 30, 40])
OUTPUT = np.array([1, 2, 5, 11])
ARRIVAL = np.array([0.0, 100.0, 200.0, 300.0])
TTFT = 0.02 + 1e-3 * PROMPT            # 30, 40, 50, 60 ms
E2E = TTFT + 0.01 * (OUTPUT - 1)       # 30, 50, 90, 160 ms


@pytest.fixture(scope="module")
def closed_run():
    w = Workload(ARRIVAL, PROMPT, OUTPUT, OUTPUT, identity={"test": "bench-serve closed form"})
    return simulate(SimConfig(**CLOSED), w)


def test_every_field_and_unit_matches_the_closed_form(closed_run):
    res = bs.bench_serve_result(closed_run.requests, {"backend": "batchlab"}, pcts=(50, 99, 99.9))
    duration = 300 + E2E[-1]
    assert res["duration"] == pytest.approx(duration) == closed_run.summary["makespan_s"]
    assert (res["completed"], res["failed"]) == (4, 0)
    assert (res["total_input_tokens"], res["total_output_tokens"]) == (100, 19)
    assert res["request_throughput"] == pytest.approx(4 / duration)
    assert res["output_throughput"] == pytest.approx(19 / duration)
    assert res["total_token_throughput"] == pytest.approx(119 / duration)
    assert res["request_goodput"] is None                      # as vLLM: None without --goodput
    ms = 1000.0
    for name, values in (("ttft", TTFT * ms), ("e2el", E2E * ms), ("tpot", np.full(3, 10.0)),
                         ("itl", np.full(15, 10.0))):          # 1 + 4 + 10 gaps of 10 ms
        assert res[f"mean_{name}_ms"] == pytest.approx(values.mean()), name
        assert res[f"median_{name}_ms"] == pytest.approx(np.median(values)), name
        assert res[f"std_{name}_ms"] == pytest.approx(values.std(), abs=1e-9), name
        for p, word in ((50, "50"), (99, "99"), (99.9, "99.9")):
            assert res[f"p{word}_{name}_ms"] == pytest.approx(np.percentile(values, p)), (name, word)
    assert res["metric_percentiles"] == "50,99,99.9" and res["percentile_metrics"] == "ttft,tpot,itl,e2el"
    assert res["max_concurrent_requests"] == 1                   # 100 s apart, each done within a second
    assert res["max_output_tokens_per_s"] == 11.0                # the 11-token request's 160 ms


def test_goodput_counts_requests_meeting_every_limit_over_the_duration(closed_run):
    req, duration = closed_run.requests, 300 + E2E[-1]
    # ttft 30/40/50/60 ms, e2el 30/50/90/160 ms: the first three meet both
    assert bs.good_requests(req, {"ttft": 55, "e2el": 100}) == 3
    assert bs.good_requests(req, {"e2el": 40}) == 1
    # TPOT is 10 ms for every request of > 1 token; a one-token request counts as TPOT 0 (vLLM's rule)
    assert bs.good_requests(req, {"tpot": 9}) == 1 and bs.good_requests(req, {"tpot": 10.5}) == 4
    res = bs.bench_serve_result(req, {}, goodput={"ttft": 55, "e2el": 100})
    assert res["request_goodput"] == pytest.approx(3 / duration)
    assert bs.goodput_summary(req, {"ttft": 55}) == {"request_goodput": pytest.approx(3 / duration),
                                                     "good_requests": 3, "goodput_limits_ms": {"ttft": 55}}


def hand_requests():
    """Three served requests and one rejected (NaN times), with hand-computable ITLs and buckets."""
    return {"arrival": np.array([0.0, 1.2, 3.1, 3.5]), "prompt": np.array([5, 6, 7, 8]),
            "output": np.array([3, 6, 1, 4]),
            "first_token": np.array([0.5, 1.3, 3.15, np.nan]), "finish": np.array([2.5, 1.8, 3.15, np.nan])}


def test_itl_counts_each_gap_tpot_each_request():
    """Request 0: 2 gaps of 1 s; request 1: 5 gaps of 0.1 s. TPOT averages the requests (0.55 s), ITL the
    gaps ((2 x 1 + 5 x 0.1) / 7 s): an unweighted ITL would equal the TPOT."""
    stats = bs.metric_stats(hand_requests(), (50, 90))
    gaps = np.array([1000.0] * 2 + [100.0] * 5)
    assert stats["tpot"]["mean"] == pytest.approx(550.0)
    assert stats["itl"]["mean"] == pytest.approx(gaps.mean())
    assert stats["itl"]["std"] == pytest.approx(gaps.std())
    assert stats["itl"]["median"] == pytest.approx(100.0)
    assert stats["itl"]["percentiles"] == [(50, pytest.approx(100.0)), (90, pytest.approx(np.percentile(gaps, 90)))]


def test_peaks_of_concurrency_and_tokens_in_one_second_buckets_as_vllm():
    """Buckets from t = 0: request 0 is in flight in seconds 0-2, request 1 in second 1, request 2 in
    second 3 (the rejected one nowhere): at most 2 at once. Tokens: request 0 at 0.5, 1.5, 2.5 s;
    request 1 six from 1.3 to 1.8 s; request 2 one at 3.15 s: 7 in second 1."""
    req = hand_requests()
    assert bs.good_requests(req, {"ttft": 500}) == 3              # request 0's TTFT is exactly 0.5 s: met
    assert bs.good_requests(req, {"ttft": 499.999}) == 2
    assert bs.max_concurrent_requests(req) == 2
    assert bs.max_output_tokens_per_s(req) == 7.0
    res = bs.bench_serve_result(req, {}, detailed=True)
    assert (res["completed"], res["failed"], res["total_input_tokens"], res["total_output_tokens"]) == (3, 1, 18, 10)
    assert res["output_lens"] == [3, 6, 1, 0] and res["input_lens"] == [5, 6, 7, 8]
    assert res["ttfts"] == pytest.approx([0.5, 0.1, 0.05, 0.0]) and res["errors"][:3] == ["", "", ""]
    assert res["itls"][0] == pytest.approx([1.0, 1.0]) and len(res["itls"][1]) == 5 and res["itls"][2:] == [[], []]
    assert res["start_times"] == [0.0, 1.2, 3.1, 3.5] and res["errors"][3].startswith("rejected")


@given(st.lists(st.tuples(st.floats(0, 10, allow_nan=False), st.integers(0, 6)), min_size=1, max_size=30),
       st.lists(st.floats(0.01, 99.99), min_size=1, max_size=5))
def test_weighted_percentiles_are_numpys_on_the_repeated_values(pairs, pcts):
    values = np.array([v for v, _ in pairs])
    weights = np.array([w for _, w in pairs])
    if weights.sum() == 0:
        weights[0] = 1
    expected = np.percentile(np.repeat(values, weights), pcts)
    assert bs.weighted_percentiles(values, weights, pcts) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_summary_percentiles_are_numpys_on_the_served_requests(closed_run):
    rng = np.random.default_rng(5)
    n = 500
    arrival = np.sort(rng.uniform(0, 50, n))
    first = arrival + rng.exponential(0.3, n)
    finish = first + rng.exponential(2.0, n)
    finish[7] = first[7] = np.nan                                  # a rejected request
    tbt = np.where(rng.random(n) < 0.2, np.nan, rng.exponential(0.03, n))
    req = {"arrival": arrival, "first_token": first, "finish": finish, "e2e": finish - arrival,
           "ttft": first - arrival, "tbt": tbt, "tbt_max": tbt * 2, "queue_delay": first - arrival - 0.01}
    pcts = (10, 90, 99.9)
    got = bs.summary_percentiles(req, pcts)
    ok = np.isfinite(finish)
    for stem, name in bs.SUMMARY_ARRAYS.items():
        values = req[name][ok]
        values = values[~np.isnan(values)]
        for p, q in zip(pcts, np.percentile(values, pcts)):
            assert got[bs.summary_key(stem, p)] == pytest.approx(q), (stem, p)
    # the stored summary's own percentiles are these functions' too
    stored = bs.summary_percentiles(closed_run.requests, (50, 95, 99))
    for key in ("latency_p50_s", "latency_p95_s", "latency_p99_s", "ttft_p99_s", "tbt_p99_s", "queue_delay_p99_s"):
        assert stored[key] == pytest.approx(closed_run.summary[key]), key


@pytest.mark.parametrize("text,expected", [("50,90,99.9", (50.0, 90.0, 99.9)), (" 99 ", (99.0,)), ("0.5", (0.5,))])
def test_percentiles_parse(text, expected):
    assert bs.parse_percentiles(text) == expected


@pytest.mark.parametrize("text,message", [("0", "0 is not strictly between 0 and 100"), ("100", "100 is not"),
                                          ("-5", "-5 is not"), ("abc", "'abc' is not a number"),
                                          ("50,", "'' is not a number"), ("90,90", "90 is given twice"),
                                          ("nan", "nan is not strictly")])
def test_bad_percentiles_are_refused_naming_the_flag(text, message):
    with pytest.raises(bs.OptionError, match=re.escape(f"--percentiles: {message}")):
        bs.parse_percentiles(text)


def test_goodput_parses_as_vllm_and_refuses_bad_pairs():
    assert bs.parse_goodput(["ttft:500", "tpot:50"]) == {"ttft": 500.0, "tpot": 50.0}
    assert bs.parse_goodput(["ttft:500 e2el:2000"]) == {"ttft": 500.0, "e2el": 2000.0}
    for bad, message in ((["itl:5"], "unknown metric 'itl'"), (["ttft"], "'ttft' is not KEY:VALUE"),
                         (["ttft:x"], "'ttft:x' is not KEY:VALUE"), (["ttft:-1"], "ttft:-1 must be"),
                         (["ttft:1", "ttft:2"], "ttft is given twice"), ([], "give at least one")):
        with pytest.raises(bs.OptionError, match=re.escape(f"--goodput: {message}")):
            bs.parse_goodput(bad)


def test_percentile_words_are_vllms():
    assert [bs.percentile_word(p) for p in (99.0, 50, 99.9, 99.99)] == ["99", "50", "99.9", "99.99"]


# --------------------------------------------- a consumer of vLLM's files --
def vllm_consumer(path: Path) -> dict:
    """What a script written for `vllm bench serve --save-result` files does: read the metrics vLLM's own
    PyTorch-benchmark export reads (save_to_pytorch_benchmark_format) plus throughput, and derive a few."""
    data = json.loads(path.read_text())
    row = {k: float(data[k]) for k in ("median_ttft_ms", "mean_ttft_ms", "std_ttft_ms", "p99_ttft_ms",
                                         "mean_tpot_ms", "median_tpot_ms", "std_tpot_ms", "p99_tpot_ms",
                                         "median_itl_ms", "mean_itl_ms", "std_itl_ms", "p99_itl_ms")}
    row["tokens_per_request"] = data["total_output_tokens"] / data["completed"]
    row["requests"] = data["request_throughput"] * data["duration"]
    row["goodput_share"] = (data["request_goodput"] or 0.0) / data["request_throughput"]
    row["decode_ms"] = row["mean_tpot_ms"] * (row["tokens_per_request"] - 1)
    if "ttfts" in data:
        row["ttft_check"] = 1000 * float(np.mean([t for t, o in zip(data["ttfts"], data["output_lens"]) if o]))
    return row


def test_a_script_written_for_vllms_result_files_reads_batchlabs(closed_run, tmp_path):
    res = bs.bench_serve_result(closed_run.requests, bs.run_metadata({"spec": {"rate": 0.01, "arrival": "poisson"}},
                                                                    4, "llama-3.1-8b", None, ARRIVAL),
                                goodput={"ttft": 55, "e2el": 100}, detailed=True)
    path = tmp_path / "vllm-result.json"
    path.write_text(json.dumps(res))
    row = vllm_consumer(path)
    assert row["requests"] == pytest.approx(4) and row["tokens_per_request"] == pytest.approx(19 / 4)
    assert row["goodput_share"] == pytest.approx(3 / 4)
    assert row["p99_ttft_ms"] == pytest.approx(np.percentile(TTFT * 1000, 99))
    assert row["ttft_check"] == pytest.approx(row["mean_ttft_ms"])
    data = json.loads(path.read_text())
    assert (data["backend"], data["model_id"], data["num_prompts"], data["request_rate"], data["burstiness"]) == \
        ("batchlab", "llama-3.1-8b", 4, 0.01, 1.0)
    assert re.fullmatch(r"\d{8}-\d{6}", data["date"])       # vLLM's %Y%m%d-%H%M%S


def vllm_serve_source() -> str | None:
    spec = find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "benchmarks" / "serve.py"
    return path.read_text() if path.is_file() else None


def test_every_field_name_is_one_vllm_writes(closed_run):
    """Read (not imported) from the installed vLLM's benchmarks/serve.py: every key batchlab writes, apart
    from its own batchlab_* and the three options it records, is a key of vLLM's result."""
    source = vllm_serve_source()
    if source is None:
        pytest.skip("vLLM is not installed")
    keys = set(re.findall(r'"(\w+)": (?:metrics\.|benchmark_duration|actual_output_lens|\[output)', source))
    keys |= set(re.findall(r'result_json\["(\w+)"\]', source))
    assert {"duration", "completed", "request_goodput", "max_concurrent_requests", "ttfts", "itls"} <= keys
    res = bs.bench_serve_result(closed_run.requests, bs.run_metadata({}, 4, None, None, ARRIVAL),
                                pcts=(99, 99.9), detailed=True)
    stat = re.compile(r"(mean|median|std|p[\d.]+)_(ttft|tpot|itl|e2el)_ms")
    assert 'result[f"p{p_word}_{metric_attribute_name}_ms"]' in source
    assert "str(int(p)) if int(p) == p else str(p)" in source      # how vLLM writes a percentile's word
    own = {"percentile_metrics", "metric_percentiles", "goodput"}
    assert {k for k in res if not stat.fullmatch(k) and k not in own} <= keys


def test_in_a_continuous_mode_tpot_is_the_requests_mean_gap():
    """Continuous batching: a request's TPOT is its mean gap (tbt), so vllm-bench's TPOT statistics are the
    summary's TBT ones; e2el and ttft are the summary's e2e and TTFT."""
    from batchlab.workloads import build_workload
    from batchlab.workloads.spec import WorkloadSpec

    r = simulate(SimConfig(mode="continuous_dynamic", gpus=2), build_workload(WorkloadSpec(num_requests=600)))
    res = bs.bench_serve_result(r.requests, {}, pcts=(99,))
    s = r.summary
    assert res["mean_tpot_ms"] == pytest.approx(1000 * s["tbt_mean_s"])
    assert res["p99_tpot_ms"] == pytest.approx(1000 * s["tbt_p99_s"])
    assert res["p99_ttft_ms"] == pytest.approx(1000 * s["ttft_p99_s"])
    assert res["mean_e2el_ms"] == pytest.approx(1000 * s["latency_mean_s"])
    assert res["request_throughput"] == pytest.approx(s["throughput_rps"])
    assert res["output_throughput"] == pytest.approx(s["throughput_tps"])
    # ITL's mean is every gap's: the requests' decode spans over their gaps
    ok = np.isfinite(r.requests["finish"]) & (r.requests["output"] > 1)
    spans = (r.requests["finish"] - r.requests["first_token"])[ok]
    assert res["mean_itl_ms"] == pytest.approx(1000 * spans.sum() / (r.requests["output"][ok] - 1).sum())

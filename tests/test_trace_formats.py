"""Trace formats in: Azure, Splitwise/Vidur, vllm bench results, mapped CSVs; detection; windows and arrivals."""
from __future__ import annotations

import json

import numpy as np
import pytest

from batchlab.workloads import SpecError, WorkloadError, WorkloadSpec, build_workload, bundled_traces, load_trace_bytes
from batchlab.workloads.trace_csv import parse_columns
from batchlab.workloads.trace_formats import FORMATS, detect_format, load_trace

# five requests: the third failed (output 0); sent at these seconds after the first
T = [0.0, 0.25, 1.5, 1.75, 4.0]
PROMPT = [100, 7, 30, 4000, 1]
OUTPUT = [20, 300, 0, 5, 9]


def azure(times=("2023-11-16 18:15:46.6805900", "2023-11-16 18:15:46.9305900", "2023-11-16 18:15:48.1805900",
                 "2023-11-16 18:15:48.4305900", "2023-11-16 18:15:50.6805900")) -> bytes:
    rows = [f"{t},{p},{o}" for t, p, o in zip(times, PROMPT, OUTPUT)]
    return ("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n").encode()


def splitwise(arrival: bool = True) -> bytes:
    head = "arrived_at,num_prefill_tokens,num_decode_tokens" if arrival else "num_prefill_tokens,num_decode_tokens"
    rows = [(f"{t + 10}," if arrival else "") + f"{p},{o}" for t, p, o in zip(T, PROMPT, OUTPUT)]
    return (head + "\n" + "\n".join(rows) + "\n").encode()


def vllm_result(start: float = 5012.25, sent: bool = True) -> bytes:
    """A result as ``vllm bench serve --save-result --save-detailed`` writes it (vLLM 0.33's field names)."""
    n = len(T)
    doc = {"date": "20261206-120000", "endpoint_type": "vllm", "backend": "vllm", "model_id": "m",
           "num_prompts": n, "request_rate": "inf", "duration": 5.5, "completed": n - 1, "failed": 1,
           "total_input_tokens": sum(PROMPT), "total_output_tokens": sum(OUTPUT),
           "input_lens": PROMPT, "output_lens": OUTPUT, "ttfts": [0.1, 0.1, 0.0, 0.2, 0.1],
           "itls": [[0.01]] * n, "latencies": [1.0, 2.0, 0.0, 1.0, 1.0],
           "start_times": [start + t for t in T], "queue_times": [0.0] * n, "generated_texts": ["x"] * n,
           "errors": ["", "", "Bad Request", "", ""]}
    if not sent:
        del doc["start_times"]
    return json.dumps(doc).encode()


def mapped() -> bytes:
    rows = [f"{o},{int(t * 1000)},{p},{k}" for t, p, o, k in zip(T, PROMPT, OUTPUT, [2, 0, 1, -3, 0])]
    return ("out_tok,ts_ms,in_tok,prio\n" + "\n".join(rows) + "\n").encode()


def plain() -> bytes:
    rows = [f"{t},{p},{o}" for t, p, o in zip(T, PROMPT, OUTPUT)]
    return ("arrival,prompt,output\n" + "\n".join(rows) + "\n").encode()


def mooncake() -> bytes:
    return "".join(json.dumps({"timestamp": t * 1000, "input_length": p, "output_length": o, "hash_ids": []}) + "\n"
                   for t, p, o in zip(T, PROMPT, OUTPUT)).encode()


def burstgpt() -> bytes:
    rows = [f"{t},ChatGPT,{p},{o},{p + o},Conversation log" for t, p, o in zip(T, PROMPT, OUTPUT)]
    return ("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n" + "\n".join(rows) + "\n").encode()


MAPPING = "arrival=ts_ms:ms,prompt=in_tok,output=out_tok,priority=prio"
FILES = {"azure": azure, "splitwise": splitwise, "vllm-bench": vllm_result, "csv": plain, "mooncake": mooncake,
         "burstgpt": burstgpt}


@pytest.mark.parametrize("fmt", sorted(FILES))
def test_every_format_reads_the_same_requests(fmt):
    data = load_trace(fmt, FILES[fmt](), keep_failed=True)
    assert np.allclose(data.arrival, T, rtol=0, atol=1e-9)
    assert data.prompt.tolist() == PROMPT and data.output.tolist() == OUTPUT
    assert (data.failed, data.failed_dropped, data.timed) == (1, 0, True)
    dropped = load_trace(fmt, FILES[fmt]())
    assert dropped.prompt.tolist() == [100, 7, 4000, 1] and dropped.failed_dropped == 1


def test_azure_keeps_the_seven_fractional_digits_and_numeric_timestamps():
    stamps = ("2023-11-16 18:15:46.6805900", "2023-11-16 18:15:46.6805901", "2023-11-17 18:15:46.6805900",
              "2023-11-17 18:15:46.6805900", "2023-11-17 18:15:47.0000000")
    data = load_trace("azure", azure(stamps), keep_failed=True)
    assert data.arrival[1] == pytest.approx(1e-7, abs=1e-12) and data.arrival[2] == 86_400.0
    numeric = load_trace("azure", azure(tuple(str(t + 100) for t in T)), keep_failed=True)
    assert numeric.arrival.tolist() == T


def test_mapped_columns_with_a_unit_and_priorities():
    data = load_trace("csv", mapped(), columns=MAPPING, keep_failed=True)
    assert data.arrival.tolist() == T and data.prompt.tolist() == PROMPT
    assert data.priority.tolist() == [2, 0, 1, -3, 0] and data.layout == f"csv ({MAPPING})"
    assert parse_columns(" output = o , prompt=p,arrival=t:s").text() == "arrival=t,prompt=p,output=o"


def test_rows_out_of_time_order_are_sorted_stably():
    content = b"arrived_at,num_prefill_tokens,num_decode_tokens\n5,1,1\n2,2,2\n5,3,3\n0.5,4,4\n"
    data = load_trace("splitwise", content)
    assert data.resorted and data.arrival.tolist() == [0.0, 1.5, 4.5, 4.5] and data.prompt.tolist() == [4, 2, 1, 3]
    win = load_trace("splitwise", content, offset=2, num_requests=2)   # the window counts time-ordered rows
    assert win.prompt.tolist() == [1, 3]


def test_vllm_bench_failures_are_the_requests_with_an_error():
    doc = json.loads(vllm_result())
    doc["output_lens"][0] = 0   # a success that produced nothing also counts as failed
    doc["errors"][4] = "timeout"
    data = load_trace("vllm-bench", json.dumps(doc).encode(), keep_failed=True)
    assert data.output.tolist() == [0, 300, 0, 5, 0] and data.failed == 3


def test_the_vllm_result_gives_its_request_count_lengths_and_send_times():
    doc = json.loads(vllm_result(start=81_234.5))
    w = load_trace_bytes(vllm_result(start=81_234.5), "result.json", keep_failed=True, predictor="oracle")
    assert len(w) == doc["num_prompts"] == len(doc["input_lens"])
    assert w.prompt.tolist() == doc["input_lens"] and w.output.tolist() == doc["output_lens"]
    sent = np.array(doc["start_times"])
    assert np.allclose(w.arrival, sent - sent.min(), rtol=0, atol=1e-9)
    assert w.identity["kind"] == "vllm-bench" and w.identity["label"].startswith("vllm-bench trace result.json")


# ------------------------------------------------------------------ detection
@pytest.mark.parametrize("fmt", sorted(FILES))
def test_detection_reads_the_content(fmt, tmp_path):
    assert detect_format(FILES[fmt]()) == fmt
    path = tmp_path / "trace.txt"      # the name says nothing
    path.write_bytes(FILES[fmt]())
    assert detect_format(path) == fmt


def test_detection_of_the_other_layouts():
    assert detect_format(splitwise(arrival=False)) == "splitwise"
    assert detect_format(json.dumps(json.loads(vllm_result()), indent=2).encode()) == "vllm-bench"
    assert detect_format(b"\n\n" + azure()) == "azure"
    with_bom = "\ufeff".encode() + azure()   # as a spreadsheet saves a CSV
    assert detect_format(with_bom) == "azure" and load_trace("azure", with_bom).prompt.tolist() == [100, 7, 4000, 1]
    for path in bundled_traces().values():
        assert detect_format(path) == "burstgpt"


@pytest.mark.parametrize("content", [b"time,in,out\n1,2,3\n", b'{"a": 1}\n', b"", b"  \n"])
def test_a_file_that_fits_no_format_is_an_error_listing_them(content):
    with pytest.raises(WorkloadError) as info:
        detect_format(content)
    msg = str(info.value)
    assert msg.startswith("trace: cannot tell the trace's format") and "\n" not in msg
    assert all(name in msg for name in FORMATS) and "trace_columns" in msg


# ------------------------------------------------------------------ bad rows
@pytest.mark.parametrize("fmt, found", [("azure", "vllm-bench"), ("vllm-bench", "splitwise"), ("splitwise", "azure"),
                                        ("csv", "mooncake")])
def test_a_file_in_another_format_is_named(fmt, found):
    with pytest.raises(WorkloadError, match=f"^trace: the file is a {found} trace, not {fmt} .*workload {found} or"):
        load_trace(fmt, FILES[found]())


@pytest.mark.parametrize("fmt, content, columns, expect", [
    ("azure", azure()[:-1] + b"\nyesterday,3,4\n", None, "line 7, column TIMESTAMP: 'yesterday' is not a date-time"),
    ("azure", azure().replace(b",7,", b",7.5,"), None, "line 3, column ContextTokens: '7.5' is not a whole"),
    ("splitwise", splitwise().replace(b",300", b",-300"), None, "line 3, column num_decode_tokens: '-300' is negative"),
    ("splitwise", splitwise().replace(b"11.5,", b"soon,"), None, "line 4, column arrived_at: 'soon' is not a number"),
    ("csv", mapped().replace(b",-3\n", b",x\n"), MAPPING, "line 5, column prio: 'x' is not a number"),
    ("csv", mapped(), "arrival=ts,prompt=in_tok,output=out_tok", "ts: column not found"),
    ("csv", plain()[:-1] + b",9\n", None, "line 6 has 4 fields, but the header has 3"),
    ("vllm-bench", vllm_result().replace(b"[100, 7,", b"[100, -7,"), None, "field input_lens, request 1: -7"),
    ("vllm-bench", vllm_result().replace(b'"errors": ["", ""', b'"errors": ["", 3'), None,
     "field errors, request 1: 3 is not a string"),
    ("vllm-bench", b'{"input_lens": [1, 2], "output_lens": [1]}', None, "output_lens has 1 entries but input_lens has 2"),
    ("vllm-bench", b'{"input_lens": [1]}', None, "output_lens: field not found"),
    ("vllm-bench", b'{"input_lens": [1], "output_lens": [1], "start_times": [NaN]}', None, "NaN is not a finite"),
])
def test_a_bad_row_is_a_one_line_error_naming_it(fmt, content, columns, expect):
    with pytest.raises(WorkloadError) as info:
        load_trace(fmt, content, columns=columns)
    assert expect in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("text, expect", [
    ("arrival=ts:min,prompt=a,output=b", "unknown time unit 'min'"),
    ("prompt=a", "output is not mapped"),
    ("size=x,prompt=a,output=b", "unknown role 'size'"),
    ("prompt=a,prompt=b,output=c", "prompt is mapped twice"),
    ("prompt", "'prompt' is not role=column"),
])
def test_a_bad_mapping_names_the_part(text, expect):
    with pytest.raises(SpecError) as info:
        WorkloadSpec(workload="csv", trace="t.csv", trace_columns=text)
    assert str(info.value).startswith("trace_columns: ") and expect in str(info.value)


def test_trace_columns_apply_to_csv_only():
    with pytest.raises(SpecError, match="^trace_columns: applies to workload csv"):
        WorkloadSpec(workload="azure", trace="t.csv", trace_columns="prompt=a,output=b")
    # an old spec keeps its identity: the new setting is not in it
    assert "trace_columns" not in WorkloadSpec(workload="burstgpt").relevant_dict()
    assert "trace_columns" not in WorkloadSpec().relevant_dict()


# ------------------------------------------------- windows, rates, re-drawn arrivals
def build(fmt: str, content: bytes, tmp_path, **options):
    path = tmp_path / "trace.data"
    path.write_bytes(content)
    columns = {"trace_columns": MAPPING} if fmt == "csv" and content == mapped() else {}
    return build_workload(WorkloadSpec(workload=fmt, trace=str(path), predictor="oracle", **columns, **options))


@pytest.mark.parametrize("fmt, content", [(f, FILES[f]()) for f in sorted(FILES)] + [("csv", mapped())])
def test_window_rate_and_redrawn_arrivals_for_every_format(fmt, content, tmp_path):
    win = build(fmt, content, tmp_path, offset=1, num_requests=3)   # rows 1..3, the failed row 2 dropped
    assert win.prompt.tolist() == [7, 4000] and win.arrival.tolist() == pytest.approx([0.0, 1.5])
    assert win.identity["window_rows"] == 3 and win.identity["failed_dropped"] == 1
    fast = build(fmt, content, tmp_path, rate=8.0)
    assert fast.mean_rate == pytest.approx(8.0) and fast.prompt.tolist() == [100, 7, 4000, 1]
    drawn = build(fmt, content, tmp_path, arrival="poisson", rate=2.0, keep_failed=True)
    assert drawn.output.tolist() == OUTPUT and drawn.arrival[0] == 0 and len(drawn) == 5
    assert not np.allclose(drawn.arrival, T)


@pytest.mark.parametrize("fmt", ["azure", "splitwise", "vllm-bench", "csv"])
def test_a_detected_trace_has_the_identity_of_its_format(fmt, tmp_path):
    content = FILES[fmt]()
    named, detected = build(fmt, content, tmp_path), build("trace", content, tmp_path)
    assert detected.identity == named.identity
    assert named.identity["label"].startswith(f"{fmt} trace trace.data rows 0-4")


@pytest.mark.parametrize("fmt, content", [("splitwise", splitwise(arrival=False)),
                                          ("vllm-bench", vllm_result(sent=False)),
                                          ("csv", mapped())])
def test_a_trace_without_arrival_times_needs_redrawn_arrivals(fmt, content, tmp_path):
    columns = {"trace_columns": "prompt=in_tok,output=out_tok"} if fmt == "csv" else {}
    path = tmp_path / "lengths.data"
    path.write_bytes(content)
    spec = WorkloadSpec(workload=fmt, trace=str(path), **columns)
    with pytest.raises(SpecError, match="^arrival: .*no arrival times to replay; set arrival=poisson"):
        build_workload(spec)
    with pytest.raises(SpecError, match="^rate: .*no arrival times .*set the rate"):
        build_workload(spec.replace(arrival="gamma"))
    w = build_workload(spec.replace(arrival="poisson", rate=3.0))
    assert w.prompt.tolist() == [100, 7, 4000, 1] and w.arrival[-1] > 0


# ------------------------------------------------------------------ uploads
def test_an_upload_is_read_in_its_detected_format():
    # the web's general upload source asks for burstgpt: the content decides
    for asked in ("burstgpt", "trace"):
        w = load_trace_bytes(azure(), "calls.csv", workload=asked, keep_failed=True)
        assert w.identity["kind"] == "azure" and w.prompt.tolist() == PROMPT
    same = load_trace_bytes(burstgpt(), "b.csv", spec=WorkloadSpec(workload="burstgpt"))
    assert same.identity["kind"] == "burstgpt" and not same.identity["label"].startswith("burstgpt trace")
    with pytest.raises(WorkloadError, match="^trace: line 1: not a JSON object"):   # the Mooncake uploader's
        load_trace_bytes(azure(), "calls.jsonl", workload="mooncake")
    mapped_up = load_trace_bytes(mapped(), "m.csv", workload="csv", trace_columns=MAPPING, keep_failed=True)
    assert mapped_up.priority.tolist() == [2, 0, 1, -3, 0]


def test_an_oversized_upload_is_refused(monkeypatch):
    import batchlab.workloads.build as build_module

    monkeypatch.setattr(build_module, "MAX_UPLOAD_BYTES", 64)
    with pytest.raises(WorkloadError, match="larger than"):
        load_trace_bytes(azure(), "big.csv")


def test_only_burstgpt_and_a_detected_trace_may_name_a_bundled_excerpt():
    detected = build_workload(WorkloadSpec(workload="trace", trace="BurstGPT_1_first400"))
    assert detected.identity == build_workload(WorkloadSpec(workload="burstgpt")).identity
    with pytest.raises(WorkloadError, match="^trace: workload azure needs the path of a trace file"):
        build_workload(WorkloadSpec(workload="azure"))
    with pytest.raises(WorkloadError, match="^trace: no such file"):
        build_workload(WorkloadSpec(workload="splitwise", trace="/nonexistent/requests.csv"))


@pytest.mark.parametrize("unit,scale", [("s", 1.0), ("ms", 1e3), ("us", 1e6), ("ns", 1e9)])
def test_each_time_unit_of_a_mapping_reads_seconds(unit, scale):
    content = ("t,p,o\n" + "".join(f"{(10 + t) * scale:.3f},{p},{o}\n" for t, p, o in
                                   zip([0.0, 0.5, 2.25], [3, 4, 5], [6, 7, 8]))).encode()
    data = load_trace("csv", content, columns=f"arrival=t:{unit},prompt=p,output=o")
    assert data.arrival.tolist() == pytest.approx([0.0, 0.5, 2.25], abs=1e-12)

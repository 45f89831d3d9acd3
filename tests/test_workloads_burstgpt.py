"""BurstGPT loader and trace workloads: layouts, windows, failed rows, time scaling, bad files."""
from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import batchlab.workloads.burstgpt as bg
from batchlab.workloads import (
    SpecError,
    WorkloadError,
    WorkloadSpec,
    build_workload,
    bundled_traces,
    load_burstgpt,
    load_trace_bytes,
)

SHA = {"BurstGPT_1_first400": "7865fda5dac50938a84dfccb06c405e2f5202969ecfbd671c8399de00f4335f0",
       "BurstGPT_3_first400": "5465fc4c38b0815b8f75d126a120c229ae93632d62e3adf1792f5e8401a73559"}
HEADER6 = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"


def csv(*rows: str, header: str = HEADER6) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def trace(**kw):
    return build_workload(WorkloadSpec(workload="burstgpt", **kw))


def test_bundled_excerpts_are_the_pinned_files():
    traces = bundled_traces()
    assert set(traces) == set(SHA)
    for name, path in traces.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA[name]
    assert (next(iter(traces.values())).parent / "README.md").read_text().count("CC-BY-4.0") >= 1


@pytest.mark.parametrize("name, layout, failed, span, prompt_mean, output_mean", [
    ("BurstGPT_1_first400", "6-column", 17, 37_269.0, 520.5, 276.5),
    ("BurstGPT_3_first400", "8-column", 1, 41_453.0, 617.4, 170.9),
])
def test_both_layouts_load_with_documented_counts(name, layout, failed, span, prompt_mean, output_mean):
    data = load_burstgpt(bundled_traces()[name])
    assert (data.layout, data.total_rows, data.window_rows) == (layout, 400, 400)
    assert (data.failed, data.failed_dropped, len(data.arrival)) == (failed, failed, 400 - failed)
    assert data.output.min() >= 1 and not data.resorted
    kept = load_burstgpt(bundled_traces()[name], keep_failed=True)
    assert len(kept.arrival) == 400 and int((kept.output == 0).sum()) == failed
    assert kept.arrival[0] == 0.0 and kept.arrival[-1] == pytest.approx(span)
    # the shared data README's statistics are over all 400 rows
    assert kept.prompt.mean() == pytest.approx(prompt_mean, abs=0.05)
    assert kept.output.mean() == pytest.approx(output_mean, abs=0.05)


def test_failed_rows_of_burstgpt_1_have_no_prompt_either():
    kept = load_burstgpt(bundled_traces()["BurstGPT_1_first400"], keep_failed=True)
    assert np.all(kept.prompt[kept.output == 0] == 0)


def test_trace_workload_replays_real_timestamps():
    w = trace()
    raw = load_burstgpt(bundled_traces()["BurstGPT_1_first400"])
    assert np.array_equal(w.arrival, raw.arrival) and np.array_equal(w.output, raw.output)
    assert len(w) == 383 and w.duration == 37_269.0
    ident = w.identity
    assert ident["trace_sha256"] == SHA["BurstGPT_1_first400"] and ident["failed_dropped"] == 17
    assert ident["spec"]["real_timestamps"] is True
    assert "BurstGPT_1_first400" in ident["label"] and "17 failed dropped" in ident["label"]
    assert w.describe()["failed_dropped"] == 17


def test_keep_failed_is_flagged():
    w = trace(trace="BurstGPT_3_first400", keep_failed=True)
    assert len(w) == 400 and int((w.output == 0).sum()) == 1 and w.predicted.min() >= 1
    assert w.identity["failed_kept"] == 1 and "1 failed kept" in w.describe()["label"]
    assert w.key != trace(trace="BurstGPT_3_first400").key


def test_window_offset_and_count():
    path = bundled_traces()["BurstGPT_1_first400"]
    full = load_burstgpt(path, keep_failed=True)
    win = load_burstgpt(path, offset=100, num_requests=50, keep_failed=True)
    assert (win.offset, win.window_rows, len(win.arrival)) == (100, 50, 50)
    expect = full.arrival[100:150] - full.arrival[100]
    assert np.array_equal(win.arrival, expect) and np.array_equal(win.prompt, full.prompt[100:150])
    dropped = load_burstgpt(path, offset=100, num_requests=50)
    assert len(dropped.arrival) == 50 - int((full.output[100:150] == 0).sum())
    w = trace(offset=390, predictor="oracle")
    assert w.identity["window_rows"] == 10 and "rows 390-399" in w.identity["label"]


def test_window_beyond_the_end_is_an_error():
    with pytest.raises(WorkloadError, match=r"^offset: .*400 data rows"):
        trace(offset=400)
    with pytest.raises(WorkloadError, match=r"^num_requests: .*at most 100"):
        trace(offset=300, num_requests=101)


def test_rps_scaling_halves_the_span():
    real = trace()
    fast = trace(rps_scaling=2.0)
    assert fast.duration == pytest.approx(real.duration / 2)
    assert fast.mean_rate == pytest.approx(2 * real.mean_rate)
    assert np.array_equal(fast.prompt, real.prompt)
    assert fast.identity["spec"]["real_timestamps"] is False


@pytest.mark.parametrize("rate", [0.5, 3.0, 120.0])
def test_target_rate_rescales_time(rate):
    real = trace(trace="BurstGPT_3_first400")
    w = trace(trace="BurstGPT_3_first400", rate=rate)
    assert w.mean_rate == pytest.approx(rate, rel=1e-9)
    assert np.allclose(w.arrival / w.duration, real.arrival / real.duration)  # same shape


@pytest.mark.parametrize("arrival", ["poisson", "gamma"])
def test_redrawn_arrivals_keep_the_trace_lengths(arrival):
    real = trace()
    w = trace(arrival=arrival, rate=4.0)
    assert np.array_equal(w.prompt, real.prompt) and np.array_equal(w.output, real.output)
    assert not np.array_equal(w.arrival, real.arrival) and w.arrival[0] == 0
    default_rate = trace(arrival=arrival)
    assert default_rate.mean_rate == pytest.approx(real.mean_rate, rel=0.3)  # the window's own rate


def test_rate_on_a_zero_span_window_is_an_error():
    with pytest.raises(SpecError, match="^rate: "):
        load_trace_bytes(csv("5,ChatGPT,10,5,15,x", "5,ChatGPT,10,6,16,x"), rate=1.0)


def test_upload_matches_the_file():
    path = bundled_traces()["BurstGPT_3_first400"]
    up = load_trace_bytes(path.read_bytes(), "BurstGPT_3_first400.csv", offset=10, num_requests=200)
    ref = trace(trace=str(path), offset=10, num_requests=200)
    for name in ("arrival", "prompt", "output", "predicted"):
        assert np.array_equal(getattr(up, name), getattr(ref, name))
    assert up.identity["trace_sha256"] == SHA["BurstGPT_3_first400"]
    assert up.identity["spec"]["trace"] == "BurstGPT_3_first400.csv"


def test_sources_path_bytes_and_file_object_agree():
    path = bundled_traces()["BurstGPT_1_first400"]
    results = [load_burstgpt(path), load_burstgpt(str(path)), load_burstgpt(path.read_bytes()),
               load_burstgpt(io.BytesIO(path.read_bytes()))]
    for other in results[1:]:
        assert np.array_equal(results[0].arrival, other.arrival)
        assert np.array_equal(results[0].prompt, other.prompt)


def test_edited_file_is_not_served_stale(tmp_path):
    f = tmp_path / "t.csv"
    f.write_bytes(csv("0,ChatGPT,10,5,15,x", "3,ChatGPT,20,7,27,x"))
    first = trace(trace=str(f), predictor="oracle")
    f.write_bytes(csv("0,ChatGPT,10,5,15,x", "3,ChatGPT,20,9,29,x"))
    second = trace(trace=str(f), predictor="oracle")
    assert first.output.tolist() == [5, 7] and second.output.tolist() == [5, 9]
    assert first.identity["trace_sha256"] != second.identity["trace_sha256"]


def test_columns_found_by_name_in_any_order_and_spelling():
    data = load_burstgpt(csv("9,3,0.0", "0,4,2.0", header="response TOKENS , Request  tokens,timestamp"))
    assert data.prompt.tolist() == [3] and data.output.tolist() == [9] and data.failed == 1


def test_unsorted_rows_are_stably_sorted():
    data = load_burstgpt(csv("10,A,1,1,2,x", "4,A,2,2,4,x", "10,A,3,3,6,x", "4,A,4,4,8,x"))
    assert data.resorted and data.arrival.tolist() == [0, 0, 6, 6]
    assert data.prompt.tolist() == [2, 4, 1, 3]  # equal timestamps keep file order


def test_blank_lines_are_skipped():
    data = load_burstgpt(b"Timestamp,Request tokens,Response tokens\n1,2,3\n\n4,5,6\n\n")
    assert data.prompt.tolist() == [2, 5] and data.total_rows == 2


def test_missing_column_is_named_with_the_columns_found():
    with pytest.raises(WorkloadError) as info:
        load_burstgpt(csv("1,ChatGPT,5,6,x", header="Timestamp,Model,Request tokens,Total tokens,Log Type"))
    msg = str(info.value)
    assert msg.startswith("Response tokens: column not found")
    assert "found: Timestamp, Model, Request tokens, Total tokens, Log Type" in msg


@pytest.mark.parametrize("rows, message", [
    (["1,A,5,6,11,x", "2,A,5,,5,x"], "line 3, column Response tokens: the value is empty"),
    (["1,A,5,6,11,x", "2,A,5,NaN,5,x"], "line 3, column Response tokens: 'NaN' is not a number"),
    (["1,A,5,6,11,x", "2,A,5,6,11,x", "abc,A,5,6,11,x"], "line 4, column Timestamp: 'abc' is not a number"),
    (["0,A,5,6,11,x", "nan,A,5,6,11,x"], "line 3, column Timestamp: 'nan' is not a number"),
    (["inf,A,5,6,11,x"], "line 2, column Timestamp: 'inf' is not finite"),
    (["1,A,5.5,6,11,x"], "line 2, column Request tokens: '5.5' is not a whole number of tokens"),
    (["1,A,5,-6,11,x"], "line 2, column Response tokens: '-6' is negative"),
    (["1,A,5,inf,11,x"], "line 2, column Response tokens: 'inf' is above 1,000,000,000 tokens"),
    (["0,A,5,6,11,x", "", "1,A,10000000000000000000,6,11,x"],
     "line 4, column Request tokens: '10000000000000000000' is above 1,000,000,000 tokens"),
    (["0,A,5,1e19,11,x"], "line 2, column Response tokens: '1e19' is above 1,000,000,000 tokens"),
    (["0,A,5,6,11,x", "1,A,5,NA,11,x"], "line 3, column Response tokens: 'NA' is not a number"),
    (["0,A,5,6,11,x", "1,A,5,  ,11,x"], "line 3, column Response tokens: the value is empty"),
    (["0,A,5,1000000001,11,x"], "line 2, column Response tokens: '1000000001' is above 1,000,000,000 tokens"),
    (["0,A,5,6,11,x", "1e308,A,5,6,11,x"],
     "line 3, column Timestamp: '1e308' is 1e+308 s after the earliest timestamp (line 2); the engines "
     "represent less than 4.61e+09 s (146 years)"),
    (["1e308,A,5,6,11,x", "-1e308,A,5,6,11,x"], "line 2, column Timestamp: '1e308' is inf s after the earliest "
                                                 "timestamp (line 3)"),
    (["5,A,5,6,11,x", "4611686024,A,5,6,11,x"], "line 3, column Timestamp: '4611686024' is 4.61e+09 s after"),
])
def test_bad_values_name_line_and_column(rows, message):
    """A literal nan is named as such (not "empty"); a count too large for int64 is quoted as written
    (never as a wrapped -9223372036854775808); a span the engines cannot hold names the latest row."""
    for load in (load_burstgpt, load_trace_bytes):   # a path's loader, and the web upload's
        with pytest.raises(WorkloadError) as info:
            load(csv(*rows))
        assert str(info.value).startswith(f"trace: {message}")
        assert "\n" not in str(info.value)


def test_a_span_just_inside_the_clock_loads():
    data = load_burstgpt(csv("5,A,5,6,11,x", "4611686013,A,5,6,11,x"))
    assert data.arrival.tolist() == [0.0, 4611686008.0]


@pytest.mark.parametrize("header, columns", [
    (HEADER6 + ",Timestamp", "columns 1 and 7: both are the Timestamp"),
    ("Timestamp,Request tokens,Response tokens,response  TOKENS", "columns 3 and 4: both are the Response tokens"),
    ("Request tokens,Timestamp,request tokens,Response tokens", "columns 1 and 3: both are the Request tokens"),
])
def test_a_repeated_column_names_both_positions(header, columns):
    extra = header.count(",") - HEADER6.count(",")
    row = "1,A,5,6,11,x" + ",7" * extra if header.startswith(HEADER6) else "1,5,6,7"
    with pytest.raises(WorkloadError, match=rf"^trace: line 1, {columns} column \(a column may appear once\)$"):
        load_burstgpt(csv(row, header=header))


@pytest.mark.parametrize("rows, line, fields", [
    (["0,A,5,6,11,x", "1,A,5,6,11,x,extra,more"], 3, 8),
    (["0,A,5,6,11,x,extra"], 2, 7),                                   # the first data row (pandas' implicit index)
    (["0,A,5,6,11,x,extra", "1,A,5,6,11,x,extra"], 2, 7),             # every row
    (["0,A,5,6,11,x,"], 2, 7),                                        # a trailing comma is a field too
    (["0,A,5,6,11,x", "", "", "1,A,5,6,11,x,"], 5, 7),                # blank lines are counted
])
def test_a_row_longer_than_the_header_is_an_error_naming_its_line(rows, line, fields):
    for load in (load_burstgpt, load_trace_bytes):
        with pytest.raises(WorkloadError, match=rf"^trace: line {line} has {fields} fields, but the header has 6$"):
            load(csv(*rows))


def test_a_shorter_row_is_missing_values():
    with pytest.raises(WorkloadError, match=r"^trace: line 3, column Response tokens: the value is empty$"):
        load_burstgpt(csv("0,A,5,6,11,x", "1,A,5"))


def test_errors_quote_at_most_a_short_excerpt():
    long_value = "9" * 30 + "x" * 5000
    with pytest.raises(WorkloadError) as info:
        load_burstgpt(csv(f"{long_value},A,5,6,11,x"))
    msg = str(info.value)
    assert msg.startswith("trace: line 2, column Timestamp: '" + "9" * 30) and len(msg) < 120
    assert msg.count("x") <= bg.MAX_EXCERPT
    wide = ",".join(f"col{i}_" + "y" * 500 for i in range(300))
    with pytest.raises(WorkloadError) as info:
        load_burstgpt(csv("1", header=wide))
    assert len(str(info.value)) < 700 and "(290 more)" in str(info.value)


@pytest.mark.parametrize("data, fragment", [
    (b"", "empty"),
    (b"\n\n", "empty"),
    (csv(), "no data rows"),
    (csv("1,A,0,0,0,x", "2,A,0,0,0,x"), "failed request"),
])
def test_unusable_files_are_clear_errors(data, fragment):
    with pytest.raises(WorkloadError, match=r"^trace: ") as info:
        load_burstgpt(data)
    assert fragment in str(info.value)


def test_upload_size_limit(monkeypatch):
    monkeypatch.setattr(bg, "MAX_UPLOAD_BYTES", 100)
    with pytest.raises(WorkloadError, match=r"^trace: upload is larger than"):
        load_burstgpt(io.BytesIO(csv(*["1,A,5,6,11,x"] * 20)))
    monkeypatch.setattr("batchlab.workloads.build.MAX_UPLOAD_BYTES", 100)
    with pytest.raises(WorkloadError, match=r"^trace: upload is larger than"):
        load_trace_bytes(csv(*["1,A,5,6,11,x"] * 20))


def test_unknown_trace_name_lists_bundled():
    with pytest.raises(WorkloadError, match=r"^trace: no such file.*BurstGPT_1_first400"):
        trace(trace="BurstGPT_9_first400")


rows = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 5000), st.integers(0, 3000)),
                min_size=1, max_size=40)


@settings(max_examples=50, deadline=None)
@given(rows=rows, eight=st.booleans(), keep_failed=st.booleans())
def test_loader_matches_a_direct_computation(rows, eight, keep_failed):
    if eight:
        header = "Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,Log Type"
        lines = [f"{t}.0,,3,GPT-4,{p},{o},{p + o},API log" for t, p, o in rows]
    else:
        lines = [f"{t},ChatGPT,{p},{o},{p + o},Conversation log" for t, p, o in rows]
    arr = np.array(rows, dtype=np.int64)
    order = np.argsort(arr[:, 0], kind="stable")
    arr = arr[order]
    if not keep_failed:
        arr = arr[arr[:, 2] != 0]
    if len(arr) == 0:
        with pytest.raises(WorkloadError, match="failed request"):
            load_burstgpt(csv(*lines, header=header if eight else HEADER6), keep_failed=keep_failed)
        return
    data = load_burstgpt(csv(*lines, header=header if eight else HEADER6), keep_failed=keep_failed)
    assert np.array_equal(data.arrival, arr[:, 0] - arr[0, 0])
    assert np.array_equal(data.prompt, arr[:, 1]) and np.array_equal(data.output, arr[:, 2])
    assert data.failed == sum(1 for r in rows if r[2] == 0)

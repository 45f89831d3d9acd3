"""Workload export: every format reads back to the workload it was written from (``batchlab workload export``)."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from batchlab.cli import cli
from batchlab.workloads import PrefixKeys, Workload, WorkloadError, WorkloadSpec, build_workload
from batchlab.workloads.export import EXPORT_FORMATS, azure_timestamps, export_workload
from batchlab.workloads.trace_formats import detect_format, load_trace

# how far a read-back arrival may be from the written one (azure: 100 ns date-times)
RESOLUTION = {"azure": 1e-7, "mooncake": 1e-9}
PRIORITIES = ("burstgpt", "csv")   # the formats with a priority column


@st.composite
def workloads(draw, fmt: str) -> Workload:
    n = draw(st.integers(1, 25))
    gaps = draw(st.lists(st.floats(0, 5e4, allow_nan=False), min_size=n, max_size=n))
    arrival = np.cumsum(gaps) - gaps[0] + draw(st.floats(0, 1e5))
    prompt = np.array(draw(st.lists(st.integers(1, 200_000), min_size=n, max_size=n)))
    output = np.array(draw(st.lists(st.integers(0, 50_000), min_size=n, max_size=n)))
    priority = (np.array(draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n)))
                if draw(st.booleans()) else None)
    prefix = None
    if fmt == "mooncake" and draw(st.booleans()):
        block = draw(st.sampled_from([16, 512, 4096]))
        counts = [draw(st.integers(0, min(40, (p + o) // block))) for p, o in zip(prompt, output)]
        offsets = np.concatenate([[0], np.cumsum(counts)])
        keys = np.array(draw(st.lists(st.integers(-2**63, 2**63 - 1), min_size=int(offsets[-1]),
                                      max_size=int(offsets[-1]))), dtype=np.int64)
        prefix = PrefixKeys(block, offsets, keys)
    return Workload(arrival, prompt, output, np.maximum(output, 1), priority=priority, prefix=prefix)


def written(w: Workload, fmt: str) -> bytes:
    fh = io.StringIO()
    export_workload(w, fmt, fh)
    return fh.getvalue().encode()


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
@settings(max_examples=40, derandomize=True)
@given(data=st.data())
def test_an_export_reads_back_to_the_same_requests(fmt, data):
    w = data.draw(workloads(fmt))
    content = written(w, fmt)
    assert detect_format(content) == fmt
    block = w.prefix.block if w.prefix is not None else 512
    back = load_trace(fmt, content, keep_failed=True, hash_block=block)
    assert np.allclose(back.arrival, w.arrival - w.arrival[0], rtol=0, atol=RESOLUTION.get(fmt, 0.0))
    assert back.prompt.tolist() == w.prompt.tolist() and back.output.tolist() == w.output.tolist()
    if fmt in PRIORITIES and w.priority is not None:
        assert back.priority.tolist() == w.priority.tolist()
    if w.prefix is not None:   # the ids of the prompt's whole blocks
        counts = w.prefix.counts()
        for i in range(len(w)):
            whole = min(int(w.prompt[i]) // block, int(counts[i]))
            start = w.prefix.offsets[i]
            assert back.prefix.keys[back.prefix.offsets[i]:back.prefix.offsets[i + 1]].tolist() == \
                w.prefix.keys[start:start + whole].tolist()


def test_azure_date_times_have_seven_fractional_digits():
    assert azure_timestamps(np.array([0.0, 1.23456789, 86_400.5])) == [
        "2024-01-01 00:00:00.0000000", "2024-01-01 00:00:01.2345679", "2024-01-02 00:00:00.5000000"]


def test_a_zero_token_prompt_cannot_be_a_mooncake_row():
    w = Workload(np.array([0.0, 1.0]), np.array([5, 0]), np.array([1, 1]), np.array([1, 1]))
    with pytest.raises(WorkloadError, match="request 1 has a 0-token prompt"):
        written(w, "mooncake")


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_the_export_command_writes_a_trace_that_builds_the_same_workload(fmt, tmp_path):
    out = tmp_path / f"export.{fmt}"
    flags = ["--num-requests", "40", "--rate", "5", "--priority-mix", "0:0.5,1:0.5", "--workload-seed", "3"]
    res = CliRunner().invoke(cli, ["workload", "export", "--to", fmt, "--out", str(out), *flags])
    assert res.exit_code == 0, res.output
    assert f"wrote 40 requests to {out} as {fmt}" in res.output
    original = build_workload(WorkloadSpec(num_requests=40, rate=5.0, priority_mix="0:0.5,1:0.5", workload_seed=3))
    back = build_workload(WorkloadSpec(workload="trace", trace=str(out), keep_failed=True))
    assert back.identity["kind"] == fmt
    assert np.allclose(back.arrival, original.arrival - original.arrival[0], rtol=0, atol=RESOLUTION.get(fmt, 0.0))
    assert np.array_equal(back.prompt, original.prompt) and np.array_equal(back.output, original.output)
    if fmt in PRIORITIES:
        assert np.array_equal(back.priority, original.priority)


def test_the_export_command_exports_a_trace_window_to_stdout(tmp_path):
    res = CliRunner().invoke(cli, ["workload", "export", "--to", "vllm-bench", "--out", "-",
                                   "--trace", "BurstGPT_1_first400", "--offset", "10", "--num-requests", "20"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    window = build_workload(WorkloadSpec(workload="burstgpt", offset=10, num_requests=20))
    assert doc["input_lens"] == window.prompt.tolist() and doc["num_prompts"] == len(window)


@pytest.mark.parametrize("args, expect", [
    (["--to", "parquet", "--out", "x"], "Invalid value for '--to'"),
    (["--to", "csv", "--out", "x", "--trace", "t.csv", "--trace-columns", "prompt=a"], "trace_columns: output is not mapped"),
    (["--to", "mooncake", "--out", "x", "--trace", "BurstGPT_1_first400", "--keep-failed"], "0-token prompt"),
])
def test_export_errors_are_one_line(args, expect, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["workload", "export", *args])
    assert res.exit_code != 0 and expect in res.output and "Traceback" not in res.output
    assert not (tmp_path / "x").exists()

"""Prefix keys: PrefixKeys and the Workload's checks, Mooncake traces, and synthetic sharing
(system prompts, multi-turn conversations)."""
from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import batchlab.workloads.burstgpt as bg
from batchlab.workloads import SpecError, WorkloadError, WorkloadSpec, build_workload, load_trace_bytes
from batchlab.workloads.mooncake import load_mooncake
from batchlab.workloads.synthetic import (
    KEY_BLOCK,
    KEY_STRIDE,
    PROMPT_MAX,
    draw_conversations,
    streams,
)
from batchlab.workloads.workload import PrefixKeys, Workload

NEW_FIELDS = {"hash_block", "system_prompts", "system_prompt_tokens", "system_zipf", "conversation_turns",
              "think_time"}


def arrays(n=3, prompt=40, output=8):
    return dict(arrival=np.arange(n, dtype=float), prompt=np.full(n, prompt), output=np.full(n, output),
                predicted=np.ones(n, dtype=np.int64))


# ------------------------------------------------------------------ PrefixKeys --
def test_prefix_keys_are_read_only_contiguous_int64_copies():
    offsets, keys = np.array([0, 2, 3], dtype=np.int32), [7, 8, 9]
    p = PrefixKeys(16, offsets, keys)
    assert p.offsets.dtype == p.keys.dtype == np.int64 and p.keys.flags.c_contiguous
    with pytest.raises(ValueError):
        p.keys[0] = 1
    offsets[1] = 0          # the caller's array is not the workload's
    assert p.offsets.tolist() == [0, 2, 3] and p.counts().tolist() == [2, 1]


@pytest.mark.parametrize("block, offsets, keys, fragment", [
    (0, [0, 1], [5], "block must be a whole number of tokens >= 1, got 0"),
    (True, [0, 1], [5], "block must be"),
    (2.5, [0, 1], [5], "block must be"),
    (16, [1, 1], [5], "offsets must start at 0, got [1]"),
    (16, [], [], "offsets must start at 0, got none"),
    (16, [0, 2, 1], [5, 6], "entry 2 (1) is below entry 1 (2)"),
    (16, [0, 1], [5, 6], "the last offset (1) must equal the number of keys (2)"),
    (16, [0, 1], [5.0], "keys must hold integers, got float64"),
    (16, [[0, 1]], [5], "offsets must be one-dimensional"),
    (16, [0, 1], [2**64 - 1], "beyond int64"),
])
def test_bad_prefix_keys_are_refused_naming_what_is_wrong(block, offsets, keys, fragment):
    with pytest.raises(WorkloadError) as info:
        PrefixKeys(block, offsets, keys)
    assert str(info.value).startswith("prefix: ") and fragment in str(info.value)


def test_the_workload_checks_the_keys_fit_its_requests():
    with pytest.raises(WorkloadError, match=r"^prefix: offsets has 3 entries, the workload has 3 requests"):
        Workload(**arrays(), prefix=PrefixKeys(16, [0, 1, 2], [1, 2]))
    # 40 + 8 tokens fill 3 whole blocks of 16: 3 keys fit, 4 do not
    Workload(**arrays(), prefix=PrefixKeys(16, [0, 3, 3, 3], [1, 2, 3]))
    with pytest.raises(WorkloadError, match=r"^prefix: request 1 has 4 keys, but its 48 tokens fill only 3 "
                                            r"whole blocks of 16 \(keys name whole blocks\)$"):
        Workload(**arrays(), prefix=PrefixKeys(16, [0, 0, 4, 4], [1, 2, 3, 4]))
    # 40 + 7 tokens: the third block is only partly filled, so a third key names no whole block
    short = dict(arrays(), output=np.full(3, 7))
    Workload(**short, prefix=PrefixKeys(16, [0, 2, 2, 2], [1, 2]))
    with pytest.raises(WorkloadError, match=r"^prefix: request 0 has 3 keys, but its 47 tokens fill only 2 "):
        Workload(**short, prefix=PrefixKeys(16, [0, 3, 3, 3], [1, 2, 3]))
    with pytest.raises(WorkloadError, match="prefix must be PrefixKeys or None"):
        Workload(**arrays(), prefix=([0, 1], [5]))


def test_the_content_hash_covers_the_prefix_only_when_given():
    plain, none = Workload(**arrays()), Workload(**arrays(), prefix=None)
    assert plain.content_sha256() == none.content_sha256() and plain.key == none.key
    a = Workload(**arrays(), prefix=PrefixKeys(16, [0, 1, 1, 1], [5]))
    b = Workload(**arrays(), prefix=PrefixKeys(16, [0, 1, 1, 1], [6]))
    c = Workload(**arrays(), prefix=PrefixKeys(16, [0, 0, 1, 1], [5]))
    d = Workload(**arrays(), prefix=PrefixKeys(8, [0, 1, 1, 1], [5]))
    assert len({plain.key, a.key, b.key, c.key, d.key}) == 5
    assert "prefix_block" not in plain.describe() and "shared_block_fraction" not in plain.describe()


def test_describe_gives_the_block_and_the_shared_fraction():
    # chains: r0 (1,2), r1 (1,2), r2 (1,9) -> positions 0 of all three shared, position 1 of r0 and r1
    w = Workload(**arrays(), prefix=PrefixKeys(16, [0, 2, 4, 6], [1, 2, 1, 2, 1, 9]))
    assert w.describe()["prefix_block"] == 16
    assert w.describe()["shared_block_fraction"] == pytest.approx(5 / 6)
    # the same key after different chains is not shared
    assert PrefixKeys(16, [0, 2, 4], [1, 2, 3, 2]).shared_fraction() == 0.0
    assert PrefixKeys(16, [0, 0, 0], []).shared_fraction() == 0.0


def naive_shared_fraction(offsets, keys) -> float:
    chains = [tuple(keys[offsets[i]:offsets[i] + j + 1]) for i in range(len(offsets) - 1)
              for j in range(offsets[i + 1] - offsets[i])]
    holders = {c: chains.count(c) for c in set(chains)}
    return sum(holders[c] > 1 for c in chains) / len(chains) if chains else 0.0


@settings(max_examples=60)
@given(st.lists(st.lists(st.integers(-2, 2), max_size=5), min_size=1, max_size=8))
def test_the_shared_fraction_matches_a_direct_count(rows):
    offsets = np.cumsum([0] + [len(r) for r in rows])
    keys = [k for r in rows for k in r]
    p = PrefixKeys(16, offsets, keys)
    assert p.shared_fraction() == pytest.approx(naive_shared_fraction(offsets.tolist(), keys))
    order = np.arange(len(rows))[::-1]
    taken = p.take(order)
    assert [taken.keys[taken.offsets[i]:taken.offsets[i + 1]].tolist() for i in range(len(rows))] == rows[::-1]


# -------------------------------------------------------------------- Mooncake --
def jsonl(*rows, extra: str = "") -> bytes:
    return ("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n" + extra).encode()


def row(t, inp, out, ids=(), **more):
    return {"timestamp": t, "input_length": inp, "output_length": out, "hash_ids": list(ids), **more}


ROWS = [row(1000, 1024, 10, [1, 2]), row(1500.5, 600, 0, [1, 3]), row(2500, 513, 7, [1, 4], note="x"),
        row(4000, 100, 3, [9])]


def test_a_mooncake_trace_round_trips(tmp_path):
    path = tmp_path / "mooncake_trace.jsonl"
    path.write_bytes(jsonl(*ROWS))
    data = load_mooncake(path)
    assert data.arrival.tolist() == [0.0, 1.5, 3.0]      # ms -> s from the first kept row; failed row dropped
    assert data.prompt.tolist() == [1024, 513, 100] and data.output.tolist() == [10, 7, 3]
    assert (data.failed, data.failed_dropped, data.total_rows, data.layout) == (1, 1, 4, "mooncake")
    # only whole prompt blocks keep their ids: 1024 -> 2, 513 -> 1 (the id of the 1-token block dropped),
    # 100 -> none
    assert data.prefix.block == 512 and data.prefix.offsets.tolist() == [0, 2, 3, 3]
    assert data.prefix.keys.tolist() == [1, 2, 1]
    kept = load_mooncake(path.read_bytes(), keep_failed=True)
    assert kept.arrival.tolist() == [0.0, 0.5005, 1.5, 3.0] and kept.output.tolist() == [10, 0, 7, 3]
    assert kept.prefix.keys.tolist() == [1, 2, 1, 1] and kept.failed_kept == 1
    assert kept.prefix.offsets.tolist() == [0, 2, 3, 4, 4]
    again = load_mooncake(io.BytesIO(path.read_bytes()), keep_failed=True)
    assert np.array_equal(again.prefix.offsets, kept.prefix.offsets)


def test_a_mooncake_window_and_unsorted_rows():
    data = jsonl(row(3000, 10, 1, [3]), row(1000, 10, 1, [1]), "", row(2000, 10, 1, [2]), row(2000, 20, 2, [4]))
    full = load_mooncake(data, block=10)
    assert full.resorted and full.arrival.tolist() == [0.0, 1.0, 1.0, 2.0]
    assert full.prefix.keys.tolist() == [1, 2, 4, 3] and full.prompt.tolist() == [10, 10, 20, 10]
    assert load_mooncake(data).prefix.keys.tolist() == []     # 10 tokens fill no block of 512
    win = load_mooncake(data, offset=1, num_requests=2, block=10)
    assert win.prefix.keys.tolist() == [2, 4] and win.arrival.tolist() == [0.0, 0.0] and win.window_rows == 2
    small = load_mooncake(jsonl(row(0, 4, 1, [1, 2, 3, 4])), block=1)
    assert small.prefix.block == 1 and small.prefix.keys.tolist() == [1, 2, 3, 4]



def test_a_mooncake_partial_last_id_is_accepted_but_dropped():
    data = load_mooncake(jsonl(row(0, 1025, 1, [7, 8, 9]), row(1, 1024, 1, [7, 8]), row(2, 1023, 1, [7, 8]),
                               row(3, 511, 1, [7])))
    assert data.prefix.counts().tolist() == [2, 2, 1, 0]
    assert data.prefix.keys.tolist() == [7, 8, 7, 8, 7]
    with pytest.raises(WorkloadError, match="3 ids, but input_length 1023 fills at most 2 blocks"):
        load_mooncake(jsonl(row(0, 1023, 1, [7, 8, 9])))


@settings(max_examples=40)
@given(st.lists(st.tuples(st.integers(1, 200), st.integers(0, 50), st.integers(0, 1)), min_size=1, max_size=12),
       st.integers(1, 64))
def test_mooncake_keys_never_exceed_whole_prompt_blocks(rows, block):
    """Each row carries as many ids as its prompt touches (the last maybe partly filled), or one fewer."""
    lines = [row(i, p, out, range(max(-(-p // block) - fewer, 0))) for i, (p, out, fewer) in enumerate(rows)]
    w = load_trace_bytes(jsonl(*lines), "t.jsonl", keep_failed=True, hash_block=block)
    counts = w.prefix.counts()
    assert np.array_equal(counts, [min(max(-(-p // block) - fewer, 0), p // block) for p, _, fewer in rows])
    assert np.all(counts <= (w.prompt + w.output) // block) and np.all(counts <= w.prompt // block)


@pytest.mark.parametrize("data, fragment", [
    (jsonl(row(0, 5, 1), '{"timestamp": 1, "input_length": 5, "output_length": 1}'),
     "line 2: the field hash_ids is missing"),
    (jsonl({"input_length": 5, "output_length": 1, "hash_ids": []}), "line 1: the field timestamp is missing"),
    (jsonl(row(0, 5, 1), "{not json"), "line 2: not a JSON object ('{not json'"),
    (jsonl("[1, 2]"), "line 1: expected a JSON object"),
    (jsonl(row(0, 5, 1, [])).replace(b"[]", b'"12"'), "line 1, field hash_ids: '12' is not a list of integers"),
    (jsonl(row(0, 5, 1, [1, True])), "line 1, field hash_ids: True is not an integer"),
    (jsonl(row(0, 5, 1, [1.5])), "line 1, field hash_ids: 1.5 is not an integer"),
    (jsonl(row(0, 5, 1, [2**63])), "is not an integer (64-bit)"),
    (jsonl(row(0, 513, 1, [1, 2, 3])), "line 1, field hash_ids: 3 ids, but input_length 513 fills at most 2 "
                                       "blocks of 512 tokens"),
    (jsonl(row(0, 0, 1)), "line 1, field input_length: 0 is not a whole number of tokens between 1"),
    (jsonl(row(0, 5, -1)), "field output_length: -1 is not a whole number"),
    (jsonl(row(0, 5.5, 1)), "field input_length: 5.5 is not"),
    (jsonl(row(0, "5", 1)), "field input_length: '5' is not"),
    (jsonl(row(0, 10**10, 1)), "between 1 and 1,000,000,000"),
    (jsonl(row(0, 5, 1)).replace(b'"timestamp": 0', b'"timestamp": NaN'), "line 1: not a JSON object"),
    (jsonl(row("soon", 5, 1)), "field timestamp: 'soon' is not a finite number of milliseconds"),
    (jsonl(row(0, 5, 1), row(1e19, 5, 1)), "line 2, field timestamp: "),
    (b"", "holds no requests"),
    (b"\n \n", "holds no requests"),
    (jsonl(row(0, 5, 0), row(1, 5, 0)), "every row of the window 0..1 is a failed request"),
])
def test_bad_mooncake_input_is_named_by_line_and_field(data, fragment):
    with pytest.raises(WorkloadError) as info:
        load_mooncake(data)
    assert str(info.value).startswith("trace: ") and fragment in str(info.value), str(info.value)
    assert len(str(info.value)) < 300


def test_a_long_bad_value_is_quoted_short():
    with pytest.raises(WorkloadError) as info:
        load_mooncake(jsonl(row(0, 5, 1, ["x" * 5000])))
    assert len(str(info.value)) < 200


def test_a_mooncake_window_past_the_end_and_a_huge_upload(monkeypatch):
    with pytest.raises(WorkloadError, match=r"^offset: the window starts at row 2 but the trace has only 2 data rows"):
        load_mooncake(jsonl(row(0, 5, 1), row(1, 5, 1)), offset=2)
    with pytest.raises(WorkloadError, match=r"^num_requests: .*use at most 1"):
        load_mooncake(jsonl(row(0, 5, 1), row(1, 5, 1)), offset=1, num_requests=2)
    monkeypatch.setattr(bg, "MAX_UPLOAD_BYTES", 100)
    big = jsonl(*[row(i, 5, 1, [1]) for i in range(10)])
    with pytest.raises(WorkloadError, match=r"^trace: upload is larger than"):
        load_mooncake(io.BytesIO(big))
    monkeypatch.setattr("batchlab.workloads.build.MAX_UPLOAD_BYTES", 100)
    with pytest.raises(WorkloadError, match=r"^trace: upload is larger than"):
        load_trace_bytes(big, "big.jsonl")


@pytest.fixture
def mooncake_file(tmp_path):
    rows = [row(1000 * i, 512 * (1 + i % 3), 1 + i, [1, 2, 3][: 1 + i % 3]) for i in range(12)]
    path = tmp_path / "trace.jsonl"
    path.write_bytes(jsonl(*rows))
    return path


def test_a_mooncake_spec_builds_a_workload_with_prefix_keys(mooncake_file):
    w = build_workload(WorkloadSpec(workload="mooncake", trace=str(mooncake_file)))
    assert len(w) == 12 and w.arrival.tolist() == [float(i) for i in range(12)]
    assert w.prefix.block == 512 and w.prefix.counts().tolist() == [1 + i % 3 for i in range(12)]
    assert w.identity["kind"] == "mooncake" and w.identity["spec"]["hash_block"] == 512
    assert w.describe()["shared_block_fraction"] == 1.0 and w.identity["spec"]["real_timestamps"] is True
    up = load_trace_bytes(mooncake_file.read_bytes(), "trace.jsonl")
    assert np.array_equal(up.prefix.keys, w.prefix.keys) and np.array_equal(up.arrival, w.arrival)
    by_spec = load_trace_bytes(mooncake_file.read_bytes(), "upload.txt", spec=WorkloadSpec(workload="mooncake"))
    assert np.array_equal(by_spec.prefix.offsets, w.prefix.offsets)
    smaller = build_workload(WorkloadSpec(workload="mooncake", trace=str(mooncake_file), hash_block=256))
    assert smaller.prefix.block == 256 and smaller.key != w.key
    with pytest.raises(WorkloadError, match="^trace: line 2, field hash_ids: 2 ids, but input_length 1024 fills "
                                            "at most 1 block of 1024 tokens"):
        build_workload(WorkloadSpec(workload="mooncake", trace=str(mooncake_file), hash_block=1024))


def test_a_mooncake_trace_takes_the_arrival_settings_of_a_trace(mooncake_file):
    spec = WorkloadSpec(workload="mooncake", trace=str(mooncake_file))
    real = build_workload(spec)
    fast = build_workload(spec.replace(rps_scaling=2.0))
    assert fast.duration == pytest.approx(real.duration / 2)
    assert build_workload(spec.replace(rate=3.0)).mean_rate == pytest.approx(3.0)
    drawn = build_workload(spec.replace(arrival="poisson", rate=5.0))
    assert not np.array_equal(drawn.arrival, real.arrival) and np.array_equal(drawn.prompt, real.prompt)
    assert np.array_equal(drawn.prefix.keys, real.prefix.keys)
    with pytest.raises(SpecError, match="^real_timestamps: true conflicts with rate=3"):
        spec.replace(rate=3.0, real_timestamps=True)


def test_a_mooncake_spec_needs_a_path():
    with pytest.raises(WorkloadError, match=r"^trace: workload mooncake needs the path of a Mooncake JSONL "
                                            r"trace, or an upload; 'BurstGPT_1_first400' is a bundled"):
        build_workload(WorkloadSpec(workload="mooncake"))
    with pytest.raises(WorkloadError, match=r"^trace: no such Mooncake trace file: '/nonexistent.jsonl'"):
        build_workload(WorkloadSpec(workload="mooncake", trace="/nonexistent.jsonl"))


def test_a_csv_upload_is_still_read_as_burstgpt():
    w = load_trace_bytes(b"Timestamp,Request tokens,Response tokens\n0,5,2\n1,6,3\n", "t.csv")
    assert w.identity["kind"] == "burstgpt" and w.prefix is None


# ---------------------------------------------------------------- spec fields --
@pytest.mark.parametrize("changes, field, fragment", [
    ({"hash_block": 16}, "hash_block", "applies to mooncake traces only"),
    ({"workload": "burstgpt", "hash_block": 16}, "hash_block", "not to workload burstgpt"),
    ({"workload": "burstgpt", "system_prompts": 4}, "system_prompts", "applies to synthetic workloads"),
    ({"workload": "mooncake", "conversation_turns": 3}, "conversation_turns", "not to a mooncake trace"),
    ({"workload": "mooncake", "think_time": 3.0}, "think_time", "applies to synthetic"),
    ({"workload": "mooncake", "system_zipf": 2.0}, "system_zipf", "applies to synthetic"),
    ({"workload": "burstgpt", "system_prompt_tokens": 7}, "system_prompt_tokens", "applies to synthetic"),
    ({"system_prompts": 0}, "system_prompts", "between 1 and 1e+06"),
    ({"system_prompt_tokens": PROMPT_MAX + 1}, "system_prompt_tokens", "between 1 and 16384 tokens"),
    ({"system_zipf": -0.5}, "system_zipf", "between 0 and 10"),
    ({"conversation_turns": 1001}, "conversation_turns", "between 1 and 1000"),
    ({"think_time": -1.0}, "think_time", "between 0 and 1e+06"),
    ({"workload": "mooncake", "hash_block": 0}, "hash_block", "between 1 and 1e+06"),
    ({"workload": "mooncake", "priority_mix": "0:1"}, "priority_mix", "applies to synthetic"),
])
def test_settings_of_the_other_kind_of_workload_are_refused(changes, field, fragment):
    with pytest.raises(SpecError) as info:
        WorkloadSpec(**changes)
    assert info.value.field == field and str(info.value).startswith(f"{field}: ") and fragment in str(info.value)


def test_new_settings_leave_existing_identities_alone():
    for spec in (WorkloadSpec(), WorkloadSpec(workload="burstgpt"), WorkloadSpec(arrival="poisson")):
        assert not NEW_FIELDS & set(spec.relevant_dict())
    assert "hash_block" in WorkloadSpec(workload="mooncake", trace="x.jsonl").relevant_dict()
    # a dependent setting without its switch changes nothing
    assert WorkloadSpec(system_prompt_tokens=64, system_zipf=2.0, think_time=5.0).relevant_dict() == \
        WorkloadSpec().relevant_dict()
    on = WorkloadSpec(system_prompts=3, conversation_turns=2).relevant_dict()
    assert NEW_FIELDS - set(on) == {"hash_block"}
    assert "system_zipf" not in WorkloadSpec(system_prompts=1).relevant_dict()
    assert "think_time" not in WorkloadSpec(conversation_turns=1).relevant_dict()


def test_defaults_build_the_same_arrays_as_the_new_settings_turned_off():
    base = build_workload(WorkloadSpec(num_requests=1500, workload_seed=3))
    off = build_workload(WorkloadSpec(num_requests=1500, workload_seed=3, system_prompts=None,
                                      conversation_turns=None, system_prompt_tokens=99, think_time=1.0))
    assert base.prefix is None and off.prefix is None and base.key == off.key
    for name in ("arrival", "prompt", "output", "predicted"):
        assert np.array_equal(getattr(base, name), getattr(off, name))
    assert "prefix" not in base.describe() and "shared_block_fraction" not in base.describe()


def test_new_streams_come_after_the_old_ones():
    five = np.random.default_rng(21).spawn(5)
    now = streams(21)
    assert list(now)[:5] == ["arrival", "prompt", "output", "predictor", "priority"]
    for old, new in zip(five, list(now.values())[:5]):
        assert old.integers(2**62) == new.integers(2**62)


# -------------------------------------------------------------- system prompts --
def system_of(w: Workload) -> np.ndarray:
    """Each request's system prompt (0-based), read from its first key."""
    return w.prefix.keys[w.prefix.offsets[:-1]] // KEY_STRIDE - 1


def test_requests_with_the_same_system_prompt_share_its_blocks():
    plain = build_workload(WorkloadSpec(num_requests=600, workload_seed=5))
    w = build_workload(WorkloadSpec(num_requests=600, workload_seed=5, system_prompts=6, system_prompt_tokens=100))
    full = 100 // KEY_BLOCK
    assert w.prefix.block == KEY_BLOCK and np.all(w.prefix.counts() == full)
    assert np.array_equal(w.prompt, np.minimum(plain.prompt + 100, PROMPT_MAX))
    assert np.array_equal(w.arrival, plain.arrival) and np.array_equal(w.output, plain.output)
    keys = w.prefix.keys.reshape(len(w), full)
    system = system_of(w)
    for k in np.unique(system):
        assert (keys[system == k] == keys[system == k][0]).all()
    assert len({tuple(r) for r in keys}) == len(np.unique(system)) > 1
    assert w.describe()["shared_block_fraction"] > 0.9


def test_a_long_system_prompt_is_clipped_with_the_prompt():
    w = build_workload(WorkloadSpec(num_requests=50, system_prompts=2, system_prompt_tokens=PROMPT_MAX))
    assert np.all(w.prompt == PROMPT_MAX) and np.all(w.prefix.counts() == PROMPT_MAX // KEY_BLOCK)


def test_system_prompt_popularity_follows_zipf():
    skewed = np.bincount(system_of(build_workload(WorkloadSpec(num_requests=5000, system_prompts=4))), minlength=4)
    assert skewed[0] > skewed[1] > skewed[3]
    assert skewed[0] / 5000 == pytest.approx(1 / (1 + 1 / 2 + 1 / 3 + 1 / 4), abs=0.03)
    flat = np.bincount(system_of(build_workload(WorkloadSpec(num_requests=5000, system_prompts=4,
                                                             system_zipf=0.0))), minlength=4)
    assert np.all(np.abs(flat / 5000 - 0.25) < 0.03)


# --------------------------------------------------------------- conversations --
def conversations_of(w: Workload, head_blocks: int = 0) -> np.ndarray:
    """Each request's conversation, read from its first key past the system prompt; -1 for a request
    without one (keys name whole blocks only, so fewer than head_blocks + 1 blocks of tokens have none)."""
    has = w.prefix.counts() > head_blocks
    if not has.any():
        return np.full(len(w), -1)
    first = w.prefix.keys[np.minimum(w.prefix.offsets[:-1] + head_blocks, len(w.prefix.keys) - 1)]
    conv = np.where(has, -first // KEY_STRIDE - 1, -1)
    assert np.all((w.prompt + w.output)[~has] < (head_blocks + 1) * KEY_BLOCK)
    return conv


def check_turns(w: Workload, head_blocks: int = 0, message: int | None = None) -> int:
    """Turn t+1 holds turn t's stream, and its keys start with t's; returns the turns checked."""
    conv, checked = conversations_of(w, head_blocks), 0
    assert np.all(np.diff(w.arrival) >= 0)
    for c in np.unique(conv[conv >= 0]):
        # in arrival order, so in turn order (a turn has more tokens than the one before, so the turns
        # without a conversation key are a conversation's first ones)
        idx = np.flatnonzero(conv == c)
        for a, b in zip(idx[:-1], idx[1:]):
            grown = w.prompt[b] - (w.prompt[a] + w.output[a])
            assert grown >= 1 and (message is None or grown == message)
            full = (w.prompt[a] + w.output[a]) // KEY_BLOCK
            ka = w.prefix.keys[w.prefix.offsets[a]:w.prefix.offsets[a + 1]]
            kb = w.prefix.keys[w.prefix.offsets[b]:w.prefix.offsets[b + 1]]
            assert np.array_equal(ka[:full], kb[:full])
            checked += 1
    return checked


def test_each_turn_extends_the_previous_one():
    w = build_workload(WorkloadSpec(num_requests=400, conversation_turns=4, think_time=5.0,
                                    prompt_lengths="fixed:50", output_lengths="fixed:20"))
    assert len(w) == 400 and check_turns(w, message=50) == 300
    assert np.all(w.prefix.counts() == (w.prompt + w.output) // KEY_BLOCK)
    assert sorted(set(w.prompt.tolist())) == [50, 120, 190, 260]   # turn t: 50 + 70 t
    assert w.describe()["shared_block_fraction"] > 0.5


def test_conversations_with_system_prompts():
    w = build_workload(WorkloadSpec(num_requests=300, conversation_turns=3, system_prompts=2,
                                    system_prompt_tokens=40, prompt_lengths="uniform:1:300"))
    head = 40 // KEY_BLOCK
    assert check_turns(w, head_blocks=head) > 150
    system = system_of(w)
    conv = conversations_of(w, head)
    for c in np.unique(conv[conv >= 0]):
        assert len(set(system[conv == c].tolist())) == 1        # one system prompt per conversation
    assert np.all(w.prompt >= 41)                               # every prompt starts with the system prompt


def test_a_conversation_ends_before_its_prompt_would_exceed_the_limit():
    w = build_workload(WorkloadSpec(num_requests=100, conversation_turns=5, prompt_lengths="fixed:5000",
                                    output_lengths="fixed:4000"))
    assert len(w) == 100 and w.prompt.max() == 14_000 <= PROMPT_MAX    # turn 3 would hold 23,000
    assert np.bincount(np.unique(conversations_of(w), return_counts=True)[1]).tolist() == [0, 0, 50]


def test_think_time_zero_puts_every_turn_at_its_conversation_start():
    w = build_workload(WorkloadSpec(num_requests=60, conversation_turns=3, think_time=0.0, arrival="poisson"))
    conv = conversations_of(w)
    for c in np.unique(conv[conv >= 0]):
        assert len(set(w.arrival[conv == c].tolist())) == 1
    assert check_turns(w) == 40


def test_the_last_conversation_is_cut_short_to_make_num_requests():
    talk = draw_conversations(7, 3, 1.0, lambda k: np.arange(k, dtype=float) * 100,
                              lambda k: np.full(k, 10), lambda k: np.full(k, 5), np.random.default_rng(0))
    assert len(talk.arrival) == 7 and talk.turn.tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert talk.conversation.tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert talk.prompt.tolist() == [10, 25, 40, 10, 25, 40, 10]


@settings(max_examples=25)
@given(n=st.integers(1, 300), turns=st.integers(1, 12), think=st.sampled_from([0.0, 0.5, 40.0]),
       seed=st.integers(0, 2**32), system=st.sampled_from([None, 1, 3]),
       prompts=st.sampled_from(["fixed:3000", "uniform:1:40", "burstgpt"]))
def test_conversation_workloads_keep_their_invariants(n, turns, think, seed, system, prompts):
    w = build_workload(WorkloadSpec(num_requests=n, conversation_turns=turns, think_time=think,
                                    workload_seed=seed, system_prompts=system, system_prompt_tokens=33,
                                    prompt_lengths=prompts))
    assert len(w) == n and np.all(np.diff(w.arrival) >= 0) and w.prompt.max() <= PROMPT_MAX
    assert np.array_equal(w.prefix.counts(), (w.prompt + w.output) // KEY_BLOCK)
    head = 33 // KEY_BLOCK if system else 0
    conv = conversations_of(w, head)
    turns_seen = np.unique(conv[conv >= 0], return_counts=True)[1]
    assert turns_seen.max(initial=0) <= turns
    check_turns(w, head_blocks=head)
    again = build_workload(WorkloadSpec(num_requests=n, conversation_turns=turns, think_time=think,
                                        workload_seed=seed, system_prompts=system, system_prompt_tokens=33,
                                        prompt_lengths=prompts))
    assert np.array_equal(again.prefix.keys, w.prefix.keys) and math.isclose(again.duration, w.duration)

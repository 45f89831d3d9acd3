"""Latency-grid schema: parsing, validation errors, legacy conversion, bundled grid."""
from __future__ import annotations

import hashlib
import io
import math
from collections import Counter

import pytest

from batchlab.calibration import GridError, bundled_grids, load_bundled, nonmonotone_cells, parse_grid
from batchlab.calibration.schema import MAX_GRID_BYTES

BUNDLED_SHA = "fce29792e4bf45e91722297cc423c5a5b9c16c845e331b246e6bb546f960b580"
HEADER = "batch_size,context_len,prefill_s,decode_step_s"
GOOD_ROWS = ["1,8,0.010,0.0050", "1,16,0.012,0.0051", "2,8,0.015,0.0052", "2,16,0.020,0.0053"]


def csv(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def good(*extra: str) -> bytes:
    return csv(HEADER, *GOOD_ROWS, *extra)


# ---------------------------------------------------------------- valid files

def test_parses_metadata_table_and_hash():
    data = csv("# model: tiny", "# device: cpu", "# free text without a key", HEADER, *GOOD_ROWS)
    g = parse_grid(data, name="t")
    assert g.name == "t"
    assert g.meta == {"model": "tiny", "device": "cpu"}
    assert g.sha256 == hashlib.sha256(data).hexdigest()
    assert list(g.table.columns) == HEADER.split(",")
    assert g.table["batch_size"].tolist() == [1, 1, 2, 2]
    assert g.table["prefill_s"].tolist() == [0.010, 0.012, 0.015, 0.020]
    assert g.warnings == []


def test_rows_are_sorted_and_oom_cells_are_nan():
    data = csv(HEADER + ",peak_mem_gib", "2,16,0.02,0.0053,1.5", "1,16,0.012,0.0051,", "2,8,0.015,0.0052,1.0",
               "1,8,0.010,0.0050,", "2,32,,,")
    g = parse_grid(data)
    t = g.table
    assert list(zip(t["batch_size"], t["context_len"])) == [(1, 8), (1, 16), (2, 8), (2, 16), (2, 32)]
    assert math.isnan(t["prefill_s"].iloc[-1]) and math.isnan(t["decode_step_s"].iloc[-1])
    assert t["peak_mem_gib"].isna().sum() == 3
    assert len(g.measured("prefill_s")) == 4


def test_round_trip_is_exact_and_idempotent():
    data = csv("# model: m", "# notes: a, b", HEADER, "1,8,0.1,0.30000000000000004", "1,16,1e-05,0.2",
               "2,8,0.15,0.25", "2,16,0.3,0.35")
    g = parse_grid(data)
    out = g.to_csv_bytes()
    g2 = parse_grid(out)
    assert g2.table.equals(g.table) and g2.meta == g.meta
    assert g2.to_csv_bytes() == out


def test_accepts_path_str_path_text_and_file_object(tmp_path):
    p = tmp_path / "my_grid.csv"
    p.write_bytes(good())
    assert parse_grid(p).name == "my_grid"
    assert parse_grid(str(p)).name == "my_grid"
    assert parse_grid(good().decode()).sha256 == hashlib.sha256(good()).hexdigest()
    assert parse_grid(io.BytesIO(good()), name="up").name == "up"
    assert parse_grid(csv("# name: from-meta", HEADER, *GOOD_ROWS)).name == "from-meta"


def test_single_measured_cell_row_is_warned_not_rejected():
    g = parse_grid(good("4,8,0.03,0.006", "4,16,,"))
    assert any("batch_size 4 has only 1 measured cell" in w for w in g.warnings)


def test_nonmonotone_cells_are_listed():
    g = parse_grid(csv(HEADER, "1,8,0.010,0.0050", "1,16,0.009,0.0051", "2,8,0.015,0.0049", "2,16,0.020,0.0053"))
    cells = nonmonotone_cells(g.table)
    assert {(c["column"], c["axis"]) for c in cells} == {("prefill_s", "context_len"), ("decode_step_s", "batch_size")}
    text = " ".join(g.warnings)
    assert "prefill_s decreases as context_len grows" in text and "batch_size 1, context_len 8->16" in text
    assert "decode_step_s decreases as batch_size grows" in text and "context_len 8, batch_size 1->2" in text


# ---------------------------------------------------------------- errors

BAD = [
    # (file lines, line, column, words in the message)
    ([("batch_size,context_len,prefill_s"), "1,8,0.1"], 1, "decode_step_s", "missing required column"),
    ([HEADER + ",gpu", "1,8,0.1,0.2,x"], 1, "gpu", "unknown column"),
    ([HEADER + ",prefill_s", "1,8,0.1,0.2,0.3"], 1, "prefill_s", "twice"),
    ([HEADER, "1,8,0.1,0.2", "1,16,abc,0.2"], 3, "prefill_s", "not a number"),
    ([HEADER, "1,8,0.1,0.2", "1,16,0.1,0"], 3, "decode_step_s", "out of range: '0' (allowed: from 1e-09 to 3,600 s"),
    ([HEADER, "1,8,0.1,-0.2"], 2, "decode_step_s", "out of range: '-0.2'"),
    ([HEADER, "0,8,0.1,0.2"], 2, "batch_size", "out of range: '0' (allowed: a whole number from 1 to 1,000,000"),
    # every column has an upper bound: absurd values are refused, never simulated
    ([HEADER, "1,8,0.1,0.2", "1,16,1e308,0.2"], 3, "prefill_s", "out of range: '1e308'"),
    ([HEADER, "1,8,0.1,3600.5"], 2, "decode_step_s", "out of range: '3600.5' (allowed: from 1e-09 to 3,600 seconds)"),
    ([HEADER, "1,8,0.1,1e-12"], 2, "decode_step_s", "out of range: '1e-12'"),
    ([HEADER, "1e19,8,0.1,0.2"], 2, "batch_size", "out of range: '1e19'"),
    ([HEADER, "1000001,8,0.1,0.2"], 2, "batch_size", "to 1,000,000 requests"),
    ([HEADER, "1,1e300,0.1,0.2"], 2, "context_len", "out of range: '1e300' (allowed: a whole number from 1 to "
                                                     "100,000,000 tokens)"),
    ([HEADER + ",peak_mem_gib", "1,8,0.1,0.2,1e13"], 2, "peak_mem_gib", "(allowed: > 0 and <= 1,000,000,000,000 GiB)"),
    ([HEADER + ",kv_cache_gib", "1,8,0.1,0.2,0"], 2, "kv_cache_gib", "out of range: '0'"),
    ([HEADER, "1,8.5,0.1,0.2"], 2, "context_len", "whole number"),
    ([HEADER, "1,8,inf,0.2"], 2, "prefill_s", "finite"),
    ([HEADER, "1,8,0.1,nan"], 2, "decode_step_s", "finite"),
    ([HEADER, ",8,0.1,0.2"], 2, "batch_size", "empty value"),
    ([HEADER, *GOOD_ROWS, "1,16,0.5,0.5"], 6, "context_len", "duplicate cell batch_size=1, context_len=16"),
    (["# model: x", "", "# device: y", HEADER, "1,8,0.1,0.2", "2,8,0.1,x"], 6, "decode_step_s", "not a number"),
]


@pytest.mark.parametrize("lines,line,column,words", BAD)
def test_errors_name_line_and_column(lines, line, column, words):
    with pytest.raises(GridError) as info:
        parse_grid(csv(*lines))
    err = info.value
    assert (err.line, err.column) == (line, column)
    assert f"line {line}" in str(err) and f"column {column!r}" in str(err)
    assert words in str(err)


def test_wrong_field_count_names_line():
    with pytest.raises(GridError, match=r"line 3: expected 4 comma-separated fields.*found 3") as info:
        parse_grid(csv(HEADER, "1,8,0.1,0.2", "1,16,0.1"))
    assert info.value.line == 3


@pytest.mark.parametrize("data", [b"", b"  \n\n", b"# model: x\n# device: y\n"])
def test_empty_file(data):
    with pytest.raises(GridError, match="empty file"):
        parse_grid(data)


def test_header_without_rows():
    with pytest.raises(GridError, match="line 1: no data rows"):
        parse_grid(csv(HEADER))


def test_too_few_points():
    with pytest.raises(GridError, match="too few measured points") as info:
        parse_grid(csv(HEADER, "1,8,0.1,0.2", "1,16,0.1,0.2", "2,8,0.1,0.2", "2,16,,0.2"))
    assert info.value.column == "prefill_s" and "batch_size 2: 1" in str(info.value)
    with pytest.raises(GridError, match="too few measured points"):
        parse_grid(csv(HEADER, "1,8,0.1,0.2", "1,16,0.1,0.2", "1,32,0.1,0.2"))


def test_too_large(tmp_path):
    big = good() + b"#" * (MAX_GRID_BYTES + 1)
    with pytest.raises(GridError, match="file too large.*5 MiB"):
        parse_grid(big)
    p = tmp_path / "big.csv"
    p.write_bytes(big)
    with pytest.raises(GridError, match="file too large"):
        parse_grid(p)


def test_not_utf8():
    with pytest.raises(GridError, match="line 3: not UTF-8"):
        parse_grid(csv(HEADER, "1,8,0.1,0.2") + b"1,16,\xff,0.2\n")


def test_values_at_the_bounds_are_accepted():
    g = parse_grid(csv(HEADER + ",peak_mem_gib", "1,1,1e-09,3600,1e12", "1,100000000,3600,1e-09,",
                       "1000000,1,0.5,0.5,", "1000000,100000000,0.5,0.5,"))
    assert g.table["batch_size"].tolist() == [1, 1, 1000000, 1000000]
    assert g.table["context_len"].max() == 100_000_000 and g.table["prefill_s"].max() == 3600


# ---------------------------------------------------------------- legacy format

LEGACY_HEADER = "batch_size,max_seq_len,mean_latency_sec,std_latency_sec,num_trials"
LEGACY = csv(LEGACY_HEADER, "1,128,0.96,0.01,5", "1,256,2.112,0.02,5", "4,128,1.44,0.05,3", "4,256,3.072,0.04,5",
             "8,256,,,")


def test_legacy_format_is_converted_with_the_writers_split():
    # Computed by hand. The writer generated max_seq_len - max(32, max_seq_len // 4) tokens after a
    # ~45-token prompt: max_seq_len 128 -> G = 96, context 45 + 48 = 93; 256 -> G = 192, context 45 + 96 = 141.
    g = parse_grid(LEGACY, name="old")
    t = g.table
    assert list(t.columns) == HEADER.split(",")
    assert t["batch_size"].tolist() == [1, 1, 4, 4, 8]
    assert t["context_len"].tolist() == [93, 141, 93, 141, 141]
    assert t["decode_step_s"].tolist()[:4] == pytest.approx([0.96 / 96, 2.112 / 192, 1.44 / 96, 3.072 / 192])
    assert t["decode_step_s"].tolist()[:4] == pytest.approx([0.010, 0.011, 0.015, 0.016])  # not T / max_seq_len
    assert t["prefill_s"].tolist()[:4] == t["decode_step_s"].tolist()[:4]
    assert math.isnan(t["decode_step_s"].iloc[4])
    # prefill + (G - 1) decode steps reproduces the measured generate() call
    assert t["prefill_s"][1] + 191 * t["decode_step_s"][1] == pytest.approx(2.112)
    assert g.meta["derived_from"] == "legacy" and g.meta["legacy_split"] == "writer"
    assert "max_seq_len - max(32, max_seq_len // 4)" in g.meta["conversion"]
    assert g.meta["legacy_sha256"] == hashlib.sha256(LEGACY).hexdigest()
    assert g.meta["legacy_min_trials"] == "3"
    assert any("legacy" in w for w in g.warnings)
    again = parse_grid(g.to_csv_bytes())
    assert again.meta["derived_from"] == "legacy" and again.table.equals(t)
    # a converted grid is identified by its converted content, so the same file read another way differs
    assert g.sha256 == again.sha256 == hashlib.sha256(g.to_csv_bytes()).hexdigest()


@pytest.mark.parametrize("split, contexts, steps", [
    # total:64 -> P = 64, G = max_seq_len - 64: 128 -> G 64, context 96; 256 -> G 192, context 160
    ("total:64", [96, 160], [0.96 / 64, 2.112 / 192]),
    # generated:10 -> P = 10, G = max_seq_len: 128 -> context 74; 256 -> context 138
    ("generated:10", [74, 138], [0.96 / 128, 2.112 / 256]),
    ("writer", [93, 141], [0.96 / 96, 2.112 / 192]),
])
def test_legacy_split_option_for_other_writers(split, contexts, steps):
    g = parse_grid(LEGACY, legacy_split=split)
    row = g.table[g.table["batch_size"] == 1]
    assert row["context_len"].tolist() == contexts
    assert row["decode_step_s"].tolist() == pytest.approx(steps)
    assert g.meta["legacy_split"] == split
    writer = parse_grid(LEGACY)
    assert (g.sha256 == writer.sha256) == (split == "writer")


@pytest.mark.parametrize("split, words", [
    ("bogus", "is not one of 'writer', 'total:P', 'generated:P'"),
    ("total:x", "is not one of"),
    ("total:0", "the prompt must be 1 to 100,000,000 tokens"),
])
def test_bad_legacy_split(split, words):
    with pytest.raises(GridError, match=words):
        parse_grid(LEGACY, legacy_split=split)


def test_legacy_split_on_a_current_file_is_a_warning():
    assert parse_grid(good(), legacy_split="total:64").warnings == [
        "legacy split 'total:64' ignored: the file is in the current grid format"]
    assert parse_grid(good(), legacy_split="writer").warnings == []


LEGACY_BAD = [
    # (rows, split, line, column, words)
    (["1,32,0.5,,", "1,64,0.5,,"], "writer", 2, "max_seq_len", "max_seq_len 32 leaves no generated tokens"),
    (["1,100,0.5,,", "1,64,0.5,,"], "total:100", 2, "max_seq_len", "leaves no generated tokens"),
    # 130 and 131 both generate 98 // 2 = 49 and 99 // 2 = 49 -> context 94: one cell measured twice
    (["1,130,0.5,,", "1,131,0.5,,"], "writer", 3, "max_seq_len",
     "max_seq_len 131 is the same cell as max_seq_len 130 at line 2 (batch_size 1, context_len 94"),
    # 4000 s / 1 generated token is a decode step beyond an hour
    (["1,33,4000,,", "1,64,0.5,,"], "writer", 2, "mean_latency_sec", "gives a decode step of 4000 s"),
    (["1,64,1e308,,"], "writer", 2, "mean_latency_sec", "out of range: '1e308'"),
    (["1e19,64,0.5,,"], "writer", 2, "batch_size", "out of range: '1e19'"),
    (["1,1e300,0.5,,"], "writer", 2, "max_seq_len", "out of range: '1e300'"),
    (["1,128,0.5,-1,"], "writer", 2, "std_latency_sec", "out of range: '-1'"),
]


@pytest.mark.parametrize("rows, split, line, column, words", LEGACY_BAD)
def test_legacy_errors_name_line_and_column(rows, split, line, column, words):
    with pytest.raises(GridError) as info:
        parse_grid(csv(LEGACY_HEADER, *rows), legacy_split=split)
    assert (info.value.line, info.value.column) == (line, column)
    assert words in str(info.value)


def test_legacy_unknown_column():
    with pytest.raises(GridError, match="column 'context_len': unknown column"):
        parse_grid(csv("batch_size,max_seq_len,mean_latency_sec,context_len", "1,128,1.0,3"))


# ---------------------------------------------------------------- bundled grid

def test_bundled_grid_loads_with_known_facts():
    from batchlab.calibration.compose import FEATURED

    assert set(bundled_grids()) == {"qwen3-4b-sglang", *FEATURED}
    path = bundled_grids()["qwen3-4b-sglang"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == BUNDLED_SHA
    g = load_bundled("qwen3-4b-sglang")
    assert g.name == "qwen3-4b-sglang" and g.sha256 == BUNDLED_SHA
    t = g.table
    assert len(t) == 95 and t["prefill_s"].notna().all() and t["decode_step_s"].notna().all()
    assert t.groupby("batch_size").size().to_dict() == {1: 15, 2: 15, 4: 15, 8: 14, 16: 13, 32: 12, 64: 11}
    assert (t["batch_size"] * t["context_len"]).max() == 65536
    assert g.meta["model"] == "Qwen/Qwen3-4B" and g.meta["dtype"] == "bf16"
    assert g.meta["device"].startswith("probably A100-SXM4-80GB")
    assert g.meta["source_commit"] == "afcae2dfcb201158efde971f1d2841547dda1746"


def test_bundled_grid_warns_about_the_known_nonmonotone_cells():
    g = load_bundled("qwen3-4b-sglang")
    cells = nonmonotone_cells(g.table)
    counts = Counter((c["column"], c["axis"]) for c in cells)
    assert counts == {("prefill_s", "context_len"): 20, ("prefill_s", "batch_size"): 14,
                      ("decode_step_s", "context_len"): 7, ("decode_step_s", "batch_size"): 7}
    decode_batch = [c for c in cells if c["column"] == "decode_step_s" and c["axis"] == "batch_size"]
    assert {c["batch_size"] for c in decode_batch} == {(1, 2)}
    assert sorted(c["context_len"][0] for c in decode_batch) == [1, 2, 4, 8, 16, 2048, 4096]
    assert len(g.warnings) == 4 and all(w.startswith("non-monotone") for w in g.warnings)
    assert "batch_size 1, context_len 1->2 (-83.73%)" in g.warnings[0]  # the cold-start cell


def test_bundled_grid_round_trips_to_its_own_bytes():
    g = load_bundled("qwen3-4b-sglang")
    out = g.to_csv_bytes()
    body = b"".join(line for line in io.BytesIO(out) if not line.startswith(b"#"))
    assert body == bundled_grids()["qwen3-4b-sglang"].read_bytes()
    assert parse_grid(out).meta == g.meta
    with pytest.raises(KeyError, match="qwen3-4b-sglang"):
        load_bundled("nope")

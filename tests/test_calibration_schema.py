"""Latency-grid schema: parsing, validation errors, legacy conversion, bundled grid."""
from __future__ import annotations

import hashlib
import io
import math
from collections import Counter

import pytest

from calibration import GridError, bundled_grids, load_bundled, nonmonotone_cells, parse_grid
from calibration.schema import MAX_GRID_BYTES

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
    ([HEADER, "1,8,0.1,0.2", "1,16,0.1,0"], 3, "decode_step_s", "must be > 0"),
    ([HEADER, "1,8,0.1,-0.2"], 2, "decode_step_s", "must be > 0"),
    ([HEADER, "0,8,0.1,0.2"], 2, "batch_size", "must be >= 1"),
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


# ---------------------------------------------------------------- legacy format

LEGACY = csv("batch_size,max_seq_len,mean_latency_sec,std_latency_sec,num_trials",
             "1,128,1.28,0.01,5", "1,256,2.816,0.02,5", "4,128,1.92,0.05,3", "4,256,4.096,0.04,5", "8,256,,,")


def test_legacy_format_is_converted_and_marked():
    g = parse_grid(LEGACY, name="old")
    t = g.table
    assert list(t.columns) == HEADER.split(",")
    assert t["context_len"].tolist() == [128, 256, 128, 256, 256]
    assert t["decode_step_s"].tolist()[:4] == pytest.approx([0.01, 0.011, 0.015, 0.016])
    assert t["prefill_s"].tolist()[:4] == t["decode_step_s"].tolist()[:4]
    assert math.isnan(t["decode_step_s"].iloc[4])
    # prefill + (L - 1) decode steps reproduces the measured whole-generation time
    assert t["prefill_s"][1] + 255 * t["decode_step_s"][1] == pytest.approx(2.816)
    assert g.meta["derived_from"] == "legacy" and "mean_latency_sec / max_seq_len" in g.meta["conversion"]
    assert g.meta["legacy_min_trials"] == "3"
    assert any("legacy" in w for w in g.warnings)
    again = parse_grid(g.to_csv_bytes())
    assert again.meta["derived_from"] == "legacy" and again.table.equals(t)


def test_legacy_errors_name_line_and_column():
    with pytest.raises(GridError) as info:
        parse_grid(csv("batch_size,max_seq_len,mean_latency_sec,std_latency_sec", "1,128,1.0,0.1", "2,128,1.0,-1"))
    assert (info.value.line, info.value.column) == (3, "std_latency_sec")
    with pytest.raises(GridError, match="column 'context_len': unknown column"):
        parse_grid(csv("batch_size,max_seq_len,mean_latency_sec,context_len", "1,128,1.0,3"))


# ---------------------------------------------------------------- bundled grid

def test_bundled_grid_loads_with_known_facts():
    assert set(bundled_grids()) == {"qwen3-4b-sglang"}
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

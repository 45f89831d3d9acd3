"""Grid names and grid:REF resolution (calibration.resolve): paths, bundled and stored grids."""
from __future__ import annotations

import hashlib

import pytest

from batchlab.calibration import GridError, check_grid_name, load_bundled, named, parse_grid, resolve_grid, upload_name
from batchlab.calibration.resolve import is_grid_path

GRID = b"batch_size,context_len,prefill_s,decode_step_s\n1,8,0.1,0.01\n1,16,0.2,0.02\n2,8,0.3,0.03\n2,16,0.4,0.04\n"


@pytest.mark.parametrize("ref, is_path", [
    ("lab.csv", True), ("LAB.CSV", True), ("runs/lab", True), ("~/g.csv", True), ("/tmp/x", True),
    ("lab-a100", False), ("qwen3-4b-sglang", False), ("tiny-cpu-float32", False), ("v1.2", False),
])
def test_paths_are_told_from_names(ref, is_path):
    assert is_grid_path(ref) is is_path


@pytest.mark.parametrize("name", ["lab-a100", "tiny-cpu-float32", "Qwen2.5-1.5B_cuda+bf16", "a" * 100])
def test_good_names(name):
    assert check_grid_name(f"  {name} ") == name


@pytest.mark.parametrize("name, words", [
    ("qwen3-4b-sglang", "taken by a bundled grid"),
    ("", "not allowed"),
    ("my grid", "not allowed"),
    ("a/b", "not allowed"),
    ("grid:x", "not allowed"),
    ("lab.csv", "not allowed"),
    ("-lab", "not allowed"),
    ("a" * 101, "not allowed"),
])
def test_bad_names(name, words):
    with pytest.raises(GridError, match=words):
        check_grid_name(name)


def test_named_sets_the_metadata_and_upload_name_prefers_it():
    g = parse_grid(b"# name: from-meta\n" + GRID)
    assert upload_name(g, "file-stem.csv") == "from-meta"
    assert upload_name(parse_grid(GRID), "dir/file-stem.csv") == "file-stem"
    renamed = named(g, "other")
    assert (renamed.name, renamed.meta["name"], renamed.sha256) == ("other", "other", g.sha256)
    assert parse_grid(renamed.to_csv_bytes()).name == "other"
    with pytest.raises(GridError, match="bundled"):
        named(g, "qwen3-4b-sglang")


class Stored:
    """A fake store lookup that records the names asked for."""

    def __init__(self, grids: dict):
        self.grids, self.asked = grids, []

    def __call__(self, name):
        self.asked.append(name)
        return self.grids.get(name)


def test_resolution_order_path_bundled_stored(tmp_path):
    mine = parse_grid(GRID, name="mine")
    stored = Stored({"mine": mine, "qwen3-4b-sglang": mine})
    assert resolve_grid("parametric", stored) is None
    assert resolve_grid("grid:mine", stored) is mine
    bundled = resolve_grid("grid:qwen3-4b-sglang", stored)
    assert bundled.sha256 == load_bundled("qwen3-4b-sglang").sha256  # a bundled name is never a stored grid
    path = tmp_path / "g.csv"
    path.write_bytes(GRID)
    from_file = resolve_grid(f"grid:{path}", stored)
    assert from_file.name == str(path) and from_file.sha256 == hashlib.sha256(GRID).hexdigest()
    assert stored.asked == ["mine"]  # the store is asked only for a name that is neither a path nor bundled


@pytest.mark.parametrize("latency, stored, words", [
    ("grid:", None, "names no grid"),
    ("grid:nope", None, "no calibration grid named 'nope'"),
    ("grid:nope", Stored({}), "not in the results store"),
    ("grid:missing.csv", None, "grid file missing.csv: no such file"),
])
def test_resolution_errors(latency, stored, words):
    with pytest.raises(GridError, match=words):
        resolve_grid(latency, stored)


def test_a_bad_file_is_named_with_its_line_and_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(GRID + b"4,8,1e308,0.1\n")
    with pytest.raises(GridError, match=r"bad\.csv: line 6, column 'prefill_s': out of range"):
        resolve_grid(f"grid:{path}")

"""The calibration commands end to end: measure a grid on the CPU, upload it, simulate with it
(checked by structure: the run used that grid and its times are the grid's), grid references
(bundled, stored, CSV path), names, value ranges, legacy splits and a missing torch."""
from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from batchlab.calibration.schema import parse_grid
from batchlab.cli import cli
from batchlab.core.latency_grid import GridLatency

HEADER = "batch_size,context_len,prefill_s,decode_step_s"
ROWS = ["1,64,0.010,0.0050", "1,512,0.030,0.0060", "4,64,0.020,0.0070", "4,512,0.080,0.0090"]


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def one_line_error(res, *words: str) -> None:
    assert res.exit_code != 0, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    for w in words:
        assert w in lines[0], lines[0]


def write(path, *lines: str):
    path.write_text("\n".join(lines) + "\n")
    return path


def stored_grids() -> list[str]:
    return [g["name"] for g in json.loads(invoke("grids", "list", "--json").stdout) if g["where"] == "stored"]


def test_grids_list_and_show_include_the_bundled_grids():
    from batchlab.calibration.compose import FEATURED

    listed = json.loads(invoke("grids", "list", "--json").stdout)
    assert [(g["name"], g["where"], g["rows"]) for g in listed] == sorted(
        [("qwen3-4b-sglang", "bundled", 95)] + [(name, "bundled", 276) for name in FEATURED])
    sglang = next(g for g in listed if g["name"] == "qwen3-4b-sglang")
    assert sglang["model"] == "Qwen/Qwen3-4B" and sglang["uploaded_at"] is None
    assert next(g for g in listed if g["name"] == "llama-3.1-70b@h100/tp4")["device"] == "NVIDIA H100 80GB HBM3"
    shown = invoke("grids", "show", "qwen3-4b-sglang").stdout
    assert "bundled with batchlab; 95 rows" in shown and "decode_step_s" in shown
    assert json.loads(invoke("grids", "show", "qwen3-4b-sglang", "--json").stdout)["sha256"] == sglang["sha256"]
    one_line_error(CliRunner().invoke(cli, ["grids", "delete", "qwen3-4b-sglang", "--yes"]),
                   "'qwen3-4b-sglang' is a bundled grid")
    one_line_error(CliRunner().invoke(cli, ["grids", "show", "nope"]), "no grid named 'nope'", "bundled: llama-3.1-70b@h100/tp4")


# ------------------------------------------------------------- measure + run --
def test_calibrate_upload_and_simulate_with_the_grid(tmp_path, monkeypatch):
    pytest.importorskip("torch", reason="the calibration tool needs torch")
    pytest.importorskip("transformers", reason="the calibration tool needs transformers")
    from batchlab.store import open_store

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "grid.csv"
    res = invoke("calibrate", "--model", "tiny", "--batch-sizes", "1,2", "--context-lens", "8,16", "--repeats", "2",
                 "--warmup", "1", "--decode-steps", "2", "--name", "tiny-test", "--out", str(out), "--upload")
    assert res.exit_code == 0, res.output
    grid = parse_grid(out)
    assert grid.name == "tiny-test" and grid.meta["name"] == "tiny-test"  # the file carries its name
    assert len(grid.table) == 4 and grid.table["decode_step_s"].notna().all()
    assert "stored as grid 'tiny-test'" in res.output

    again = invoke("grids", "upload", str(out))  # no --name: the file's own name, not the stem 'grid'
    assert "already stored as grid 'tiny-test'" in again.output
    assert stored_grids() == ["tiny-test"]

    args = ["run", "--latency", "grid:tiny-test", "--num-requests", "300", "--mode", "multi_bin_dynamic", "--json"]
    first = json.loads(invoke(*args).output)
    assert first["completed"] == 300 and first["source"] == "simulated"
    notes = first["latency_notes"]
    assert notes["grid"] == "tiny-test" and notes["grid_sha256"] == grid.sha256  # the uploaded grid
    assert notes["measured_batch_range"] == [1, 2] and notes["measured_context_range"] == [8, 16]
    assert notes["max_context_queried"] > 16 and notes["extrapolated_queries"] > 0  # flagged, not hidden

    # Every batch's times are the grid's at that batch's size and contexts, and TBT is decode / steps.
    run = open_store().get_run(first["run_id"])
    b, req = run.batches(), run.requests()
    lat = GridLatency(grid)
    for size, p, o, pre, dec in zip(b["size"], b["max_prompt"], b["steps"], b["prefill"], b["decode"]):
        size, p, o = int(size), int(p), int(o)
        assert pre == lat.prefill_time(size, p)
        assert dec == lat.decode_time(size, p, o)
        assert dec == pytest.approx(sum(lat.decode_step_time(size, p + s) for s in range(o)), rel=1e-9)
    rows = req["batch"]
    tbt = np.where(b["steps"][rows] > 0, b["decode"][rows] / np.maximum(b["steps"][rows], 1), 0.0)
    assert np.array_equal(req["tbt"], tbt)
    assert first["tbt_mean_s"] == pytest.approx(float(tbt.mean()), rel=1e-12)
    assert lat.run_notes()["extrapolated_by_kind"]["decode"] > 0  # the replay hits the same extrapolation

    second = json.loads(invoke(*args).output)
    assert second["source"] == "store" and second["config_hash"] == first["config_hash"]


def test_unknown_grid_is_a_clear_error():
    res = CliRunner().invoke(cli, ["run", "--latency", "grid:nope", "--num-requests", "50"])
    one_line_error(res, "no calibration grid named 'nope'", "qwen3-4b-sglang", "grid:PATH.csv")


def test_bundled_grid_runs_without_upload():
    s = json.loads(invoke("run", "--latency", "grid:qwen3-4b-sglang", "--num-requests", "200", "--b-max", "64",
                          "--json").output)
    assert s["latency_notes"]["grid"] == "qwen3-4b-sglang" and s["completed"] == 200


# ------------------------------------------------------------- grid:PATH ------
def test_grid_path_with_and_without_the_store_and_its_content_is_its_identity(tmp_path):
    path = write(tmp_path / "lab.csv", HEADER, *ROWS)
    ref = f"grid:{path}"
    stored = json.loads(invoke("run", "--latency", ref, "--num-requests", "200", "--json").output)
    notes = stored["latency_notes"]
    assert notes["grid"] == str(path) and notes["grid_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert stored["completed"] == 200 and stored["run_id"] is not None
    bare = json.loads(invoke("run", "--latency", ref, "--num-requests", "200", "--no-store", "--json").output)
    assert bare["run_id"] is None and bare["config_hash"] == stored["config_hash"]
    assert json.loads(invoke("run", "--latency", ref, "--num-requests", "200", "--json").output)["source"] == "store"

    write(path, HEADER, *ROWS[:-1], "4,512,0.080,0.0190")  # same path, other content: a new run
    changed = json.loads(invoke("run", "--latency", ref, "--num-requests", "200", "--json").output)
    assert changed["source"] == "simulated" and changed["config_hash"] != stored["config_hash"]
    assert changed["latency_notes"]["grid_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()

    rows = json.loads(invoke("compare", "--modes", "static_fifo,dynamic_no_bins", "--latency", ref,
                             "--num-requests", "200", "--no-store", "--json").output)
    assert [r["latency_notes"]["grid"] for r in rows] == [str(path)] * 2


def test_no_store_reads_a_stored_grid_and_stores_no_run(tmp_path):
    path = write(tmp_path / "whatever.csv", "# name: lab-a100", HEADER, *ROWS)
    assert "stored grid 'lab-a100'" in invoke("grids", "upload", str(path)).output
    s = json.loads(invoke("run", "--latency", "grid:lab-a100", "--num-requests", "100", "--no-store", "--json").output)
    assert s["latency_notes"]["grid"] == "lab-a100" and s["run_id"] is None and s["source"] == "simulated"
    assert json.loads(invoke("runs", "list", "--json").output) == []


def test_no_store_with_an_unknown_grid_creates_no_store(batchlab_store_home):
    one_line_error(CliRunner().invoke(cli, ["run", "--latency", "grid:nope", "--no-store"]), "grid named 'nope'")
    assert not (batchlab_store_home / "batchlab.db").exists()


def test_grid_path_errors_are_one_line(tmp_path):
    one_line_error(CliRunner().invoke(cli, ["run", "--latency", f"grid:{tmp_path / 'absent.csv'}"]),
                   "absent.csv: no such file")
    bad = write(tmp_path / "bad.csv", HEADER, *ROWS[:3], "4,512,1e308,0.0090")
    one_line_error(CliRunner().invoke(cli, ["run", "--latency", f"grid:{bad}", "--num-requests", "50"]),
                   "bad.csv", "line 5, column 'prefill_s': out of range: '1e308'")
    one_line_error(CliRunner().invoke(cli, ["compare", "--latency", f"grid:{bad}", "--no-store"]),
                   "line 5, column 'prefill_s'")


# ------------------------------------------------------------- upload ---------
@pytest.mark.parametrize("row, where", [
    ("1e19,64,0.01,0.005", "line 6, column 'batch_size': out of range: '1e19'"),
    ("4,1e300,0.01,0.005", "line 6, column 'context_len': out of range: '1e300'"),
    ("4,1024,0.01,1e308", "line 6, column 'decode_step_s': out of range: '1e308'"),
    ("4,1024,7200,0.005", "line 6, column 'prefill_s': out of range: '7200'"),
])
def test_upload_rejects_values_out_of_range(tmp_path, row, where):
    path = write(tmp_path / "g.csv", HEADER, *ROWS, row)
    one_line_error(CliRunner().invoke(cli, ["grids", "upload", str(path)]), where)
    assert stored_grids() == []


def test_upload_names(tmp_path):
    path = write(tmp_path / "grid.csv", "# name: tiny-cpu-float32", HEADER, *ROWS)
    assert "stored grid 'tiny-cpu-float32'" in invoke("grids", "upload", str(path)).output
    one_line_error(CliRunner().invoke(cli, ["grids", "upload", str(path), "--name", "qwen3-4b-sglang"]),
                   "'qwen3-4b-sglang' is taken by a bundled grid")
    one_line_error(CliRunner().invoke(cli, ["grids", "upload", str(path), "--name", "a/b"]), "'a/b' is not allowed")
    spaced = write(tmp_path / "my grid.csv", HEADER, *ROWS[:3], "4,512,0.080,0.0091")
    one_line_error(CliRunner().invoke(cli, ["grids", "upload", str(spaced)]), "'my grid' is not allowed",
                   "(pass --name)")
    assert stored_grids() == ["tiny-cpu-float32"]
    shown = invoke("grids", "show", "tiny-cpu-float32", "--csv").output
    assert shown.startswith("# name: tiny-cpu-float32\n")


def test_calibrate_refuses_a_bundled_name_before_measuring(tmp_path):
    out = tmp_path / "g.csv"
    one_line_error(CliRunner().invoke(cli, ["calibrate", "--model", "tiny", "--name", "qwen3-4b-sglang",
                                            "--out", str(out)]), "taken by a bundled grid")
    assert not out.exists()


LEGACY = ("batch_size,max_seq_len,mean_latency_sec", "1,128,0.96", "1,256,2.112", "4,128,1.44", "4,256,3.072")


@pytest.mark.parametrize("split, contexts, first_step", [
    (None, [93, 141], 0.96 / 96),            # the writer: G = 128 - 32 = 96, context 45 + 48
    ("total:64", [96, 160], 0.96 / 64),      # G = 128 - 64, context 64 + 32
    ("generated:10", [74, 138], 0.96 / 128),  # G = 128, context 10 + 64
])
def test_upload_legacy_file_with_a_split(tmp_path, split, contexts, first_step):
    from batchlab.store import open_store

    path = write(tmp_path / "old.csv", *LEGACY)
    res = invoke("grids", "upload", str(path), "--name", "old", *(["--legacy-split", split] if split else []))
    assert "stored grid 'old'" in res.output
    grid = open_store().get_grid("old")
    assert grid.meta["legacy_split"] == (split or "writer")
    row = grid.table[grid.table["batch_size"] == 1]
    assert row["context_len"].tolist() == contexts
    assert row["decode_step_s"].iloc[0] == pytest.approx(first_step)


def test_upload_bad_legacy_split(tmp_path):
    path = write(tmp_path / "old.csv", *LEGACY)
    one_line_error(CliRunner().invoke(cli, ["grids", "upload", str(path), "--legacy-split", "half"]),
                   "legacy split 'half' is not one of")


# ------------------------------------------------------------- no torch -------
def test_calibrate_without_torch_is_one_line_with_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    res = CliRunner().invoke(cli, ["calibrate", "--model", "tiny", "--out", str(tmp_path / "g.csv")])
    one_line_error(res, "needs torch", "pip install -e '.[calibrate]'")
    assert not (tmp_path / "g.csv").exists()


# ------------------------------------------------------- checked before torch --
@pytest.mark.parametrize("args,words", [
    (["--device", "tpu"], ["device must be cpu, cuda or cuda:N, got 'tpu'"]),
    (["--device", "cuda:x"], ["got 'cuda:x'"]),
    (["--device", ""], ["got ''"]),
    (["--out", "{tmp}/missing/g.csv"], ["--out: folder", "does not exist"]),
    (["--out", "{tmp}"], ["--out:", "is a folder, not a file"]),
    (["--threads", "0"], ["threads must be a whole number from 1 to 1,024, got 0"]),
    (["--threads", "99999999999"], ["threads must be", "got 99999999999"]),
    (["--decode-steps", "1000000000"], ["decode_steps must be a whole number from 1 to 4,096"]),
    (["--repeats", "0"], ["repeats must be"]),
    (["--warmup", "-1"], ["warmup must be"]),
    (["--dtype", "int8"], ["dtype must be one of"]),
    (["--batch-sizes", "0,1"], ["batch_sizes must be whole numbers >= 1"]),
    (["--model", "gpt-17"], ["model 'gpt-17' is neither a local directory"]),
    (["--model", "{tmp}"], ["has no config.json"]),
    (["--upload", "--db", "sqlite:///{tmp}/missing/store.db"], ["directory", "does not exist"]),
])
def test_calibrate_checks_every_argument_before_importing_torch(monkeypatch, tmp_path, args, words):
    """A typo costs no model load and no measuring: each error comes before torch is imported
    (importing it fails here, so a check made after it would say "needs torch" instead)."""
    monkeypatch.setitem(sys.modules, "torch", None)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    res = CliRunner().invoke(cli, ["calibrate", "--model", "tiny", "--out", str(tmp_path / "g.csv"), *args])
    one_line_error(res, *words)
    assert not (tmp_path / "g.csv").exists() and not (tmp_path / "missing").exists()

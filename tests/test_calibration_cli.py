"""End to end: measure a grid on the CPU with the tiny model, upload it, simulate with it."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from batchlab import cli
from calibration.schema import parse_grid

pytest.importorskip("torch", reason="the calibration tool needs torch")
pytest.importorskip("transformers", reason="the calibration tool needs transformers")


def test_calibrate_upload_and_simulate_with_the_grid(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "grid.csv"
    runner = CliRunner()
    res = runner.invoke(cli, ["calibrate", "--model", "tiny", "--batch-sizes", "1,2", "--context-lens", "8,16",
                              "--repeats", "2", "--warmup", "1", "--decode-steps", "2", "--name", "tiny-test",
                              "--out", str(out), "--upload"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    grid = parse_grid(out.read_bytes())
    assert len(grid.table) == 4 and grid.table["decode_step_s"].gt(0).all()
    assert "stored as grid 'tiny-test'" in res.output

    again = runner.invoke(cli, ["grids", "upload", str(out), "--name", "tiny-test"])
    assert "already stored" in again.output  # same file twice: not duplicated
    listed = json.loads(runner.invoke(cli, ["grids", "list", "--json"]).output)
    assert [g["name"] for g in listed] == ["tiny-test"]

    args = ["run", "--latency", "grid:tiny-test", "--num-requests", "300", "--json"]
    first = json.loads(runner.invoke(cli, args, catch_exceptions=False).output)
    assert first["completed"] == 300 and first["source"] == "simulated"
    assert first["latency_notes"]["grid"] == "tiny-test"
    assert first["latency_notes"]["extrapolated_queries"] > 0  # contexts beyond 16 tokens are flagged
    # a tiny model steps in well under a millisecond: nothing like the parametric default's 30 ms
    assert first["tbt_mean_s"] < 0.01
    second = json.loads(runner.invoke(cli, args, catch_exceptions=False).output)
    assert second["source"] == "store" and second["config_hash"] == first["config_hash"]


def test_unknown_grid_is_a_clear_error():
    res = CliRunner().invoke(cli, ["run", "--latency", "grid:nope", "--num-requests", "50"])
    assert res.exit_code != 0 and "nope" in res.output and "Traceback" not in res.output


def test_bundled_grid_runs_without_upload():
    res = CliRunner().invoke(cli, ["run", "--latency", "grid:qwen3-4b-sglang", "--num-requests", "200",
                                   "--b-max", "64", "--json"], catch_exceptions=False)
    s = json.loads(res.output)
    assert s["latency_notes"]["grid"] == "qwen3-4b-sglang" and s["completed"] == 200

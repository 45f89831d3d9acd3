"""The store through the command line: run/compare say where results came from; runs and grids groups."""
from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

import batchlab
from store import open_store

SMALL = ["--num-requests", "150", "--seed", "3"]


@pytest.fixture
def cli(tmp_path):
    db = f"sqlite:///{tmp_path}/cli.db"

    def invoke(*args, ok=True, input=None):
        result = CliRunner().invoke(batchlab.cli, [str(a) for a in args], input=input)
        if ok:
            assert result.exit_code == 0, result.output + repr(result.exception)
        return result

    invoke.db = db
    return invoke


def test_run_is_stored_then_served_from_the_store(cli):
    first = cli("run", *SMALL, "--db", cli.db)
    assert "simulated and stored (run 1)" in first.output
    second = cli("run", *SMALL, "--db", cli.db)
    assert "served from store (run 1)" in second.output
    # the figures printed are the same either way
    assert first.output.split("\n", 1)[1] == second.output.split("\n", 1)[1]
    data = json.loads(cli("run", *SMALL, "--db", cli.db, "--json").output)
    assert data["source"] == "store" and data["run_id"] == 1
    fresh = json.loads(cli("run", *SMALL, "--gpus", 2, "--db", cli.db, "--json").output)
    assert fresh["source"] == "simulated" and fresh["run_id"] == 2
    with open_store(cli.db) as store:
        assert store.count_runs() == 2


def test_no_store_neither_reads_nor_writes(cli):
    out = cli("run", *SMALL, "--db", cli.db, "--no-store")
    assert "not stored" in out.output
    data = json.loads(cli("run", *SMALL, "--db", cli.db, "--no-store", "--json").output)
    assert data["source"] == "simulated" and data["run_id"] is None
    with open_store(cli.db) as store:
        assert store.count_runs() == 0


def test_default_store_comes_from_the_environment(cli, batchlab_store_home):
    cli("run", *SMALL)
    assert (batchlab_store_home / "batchlab.db").is_file()
    assert "served from store" in cli("run", *SMALL).output


def test_compare_goes_through_the_store(cli):
    cli("run", *SMALL, "--mode", "static_fifo", "--db", cli.db)
    out = cli("compare", *SMALL, "--db", cli.db).output
    assert "1 served from store, 2 simulated and stored" in out
    rows = json.loads(cli("compare", *SMALL, "--db", cli.db, "--json").output)
    assert [r["source"] for r in rows] == ["store"] * 3
    assert len({r["run_id"] for r in rows}) == 3


def test_runs_list_show_export_delete(cli, tmp_path):
    for gpus in (1, 2, 3):
        cli("run", *SMALL, "--gpus", gpus, "--mode", "static_fifo", "--db", cli.db)
    listing = cli("runs", "list", "--db", cli.db, "--sort", "gpus", "--asc").output
    lines = listing.splitlines()
    assert lines[0].split()[:3] == ["id", "hash", "state"] and len(lines) == 4
    assert [int(line.split()[0]) for line in lines[1:]] == [1, 2, 3]
    limited = cli("runs", "list", "--db", cli.db, "--limit", 1).output
    assert "1 of 3 runs shown" in limited
    rows = json.loads(cli("runs", "list", "--db", cli.db, "--json").output)
    assert [r["id"] for r in rows] == [3, 2, 1] and rows[0]["state"] == "done"

    with open_store(cli.db) as store:
        run = store.get_run(2)
    shown = cli("runs", "show", run.hash[:8], "--db", cli.db).output
    assert f"run 2  {run.hash}" in shown and "SLA attainment" in shown and "state            done" in shown
    record = json.loads(cli("runs", "show", "2", "--db", cli.db, "--json").output)
    assert record["summary"]["latency_p99_s"] == run.summary["latency_p99_s"]

    out = tmp_path / "runs.csv"
    cli("runs", "export", "--db", cli.db, "--format", "csv", "--out", out)
    assert [r["gpus"] for r in csv.DictReader(out.open())] == ["1", "2", "3"]
    js = json.loads(cli("runs", "export", "1", "3", "--db", cli.db, "--format", "json").output)
    assert [r["id"] for r in js] == [1, 3]
    req = tmp_path / "requests.csv"
    cli("runs", "export", "1", "--requests", "--db", cli.db, "--out", req)
    assert len(list(csv.DictReader(req.open()))) == 150

    declined = cli("runs", "delete", "1", "--db", cli.db, ok=False, input="n\n")
    assert declined.exit_code != 0
    cli("runs", "delete", "1", run.hash[:6], "--db", cli.db, "--yes")
    with open_store(cli.db) as store:
        assert [r.id for r in store.list_runs()] == [3]
    missing = cli("runs", "show", "77", "--db", cli.db, ok=False)
    assert missing.exit_code == 1 and "no run '77'" in missing.output


def test_failed_runs_show_and_can_be_cleaned_up(cli):
    from core import SimConfig
    from workloads import WorkloadSpec, build_workload

    with open_store(cli.db) as store:
        with pytest.raises(ValueError):
            store.get_or_run(SimConfig(), build_workload(WorkloadSpec(num_requests=30)),
                             simulate_fn=lambda *a, **k: (_ for _ in ()).throw(ValueError("bad input")))
    listing = cli("runs", "list", "--db", cli.db).output
    assert "failed" in listing and "FAILED: ValueError: bad input" in listing
    assert "ValueError: bad input" in cli("runs", "show", "1", "--db", cli.db).output
    cli("runs", "delete", "--failed", "--yes", "--db", cli.db)
    assert "no runs in the store" in cli("runs", "list", "--db", cli.db).output


GRID = """# model: tiny-llama
# device: test-gpu
# dtype: bf16
batch_size,context_len,prefill_s,decode_step_s
1,128,0.010,0.020
1,256,0.015,0.021
2,128,0.012,0.022
2,256,0.020,0.024
"""


def test_grids_upload_list_show_delete(cli, tmp_path):
    pytest.importorskip("calibration.schema")
    path = tmp_path / "tiny.csv"
    path.write_text(GRID)
    assert "stored grid 'tiny'" in cli("grids", "upload", path, "--db", cli.db).output
    assert "already stored as grid 'tiny'" in cli("grids", "upload", path, "--name", "x", "--db", cli.db).output
    listing = cli("grids", "list", "--db", cli.db).output
    assert "tiny-llama" in listing and "test-gpu" in listing and listing.count("\n") == 2
    shown = cli("grids", "show", "tiny", "--db", cli.db).output
    assert "decode_step_s" in shown and "device    test-gpu" in shown
    assert cli("grids", "show", "tiny", "--csv", "--db", cli.db).output.startswith("# model: tiny-llama")
    bad = tmp_path / "bad.csv"
    bad.write_text("batch_size,context_len\n1,2\n")
    err = cli("grids", "upload", bad, "--db", cli.db, ok=False)
    assert err.exit_code == 1 and "Error:" in err.output and "Traceback" not in err.output
    cli("grids", "delete", "tiny", "--yes", "--db", cli.db)
    assert "no calibration grids" in cli("grids", "list", "--db", cli.db).output
    assert cli("grids", "show", "tiny", "--db", cli.db, ok=False).exit_code == 1


@pytest.mark.parametrize("args", [("runs", "list"), ("run", *SMALL)])
def test_a_bad_store_is_a_one_line_error(cli, tmp_path, args):
    path = tmp_path / "notes.db"
    path.write_text("my notes, not a database\n")
    result = cli(*args, "--db", f"sqlite:///{path}", ok=False)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert str(path) in result.output and "Traceback" not in result.output
    assert path.read_text() == "my notes, not a database\n"


def test_bench_store_runs_at_a_small_size(cli):
    out = json.loads(cli("bench-store", "--requests", 3000, "--runs", 40, "--repeats", 1, "--json").output)
    assert out["list"]["runs"] == 40 and out["save"]["default"]["save_s"] > 0
    assert set(out["save"]) == {"default", "overload"}

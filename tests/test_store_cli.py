"""The store through the command line: run/compare say where results came from; runs and grids groups."""
from __future__ import annotations

import csv
import json
from datetime import UTC

import pytest
from click.testing import CliRunner

import batchlab.cli as batchlab
from batchlab.store import open_store

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
    assert "1 served from store, 3 simulated and stored" in out  # static_fifo was stored; 4 modes compared
    rows = json.loads(cli("compare", *SMALL, "--db", cli.db, "--json").output)
    assert [r["source"] for r in rows] == ["store"] * 4
    assert len({r["run_id"] for r in rows}) == 4


def test_runs_list_show_export_delete(cli, tmp_path):
    for gpus in (1, 2, 3):
        cli("run", *SMALL, "--gpus", gpus, "--mode", "static_fifo", "--db", cli.db)
    listing = cli("runs", "list", "--db", cli.db, "--sort", "gpus", "--asc").output
    lines = listing.splitlines()
    assert lines[0].split()[:3] == ["id", "mode", "gpus"] and len(lines) == 4
    assert [int(line.split()[0]) for line in lines[1:]] == [1, 2, 3]
    limited = cli("runs", "list", "--db", cli.db, "--limit", 1).output
    assert "1 of 3 runs shown" in limited
    rows = json.loads(cli("runs", "list", "--db", cli.db, "--json").output)
    assert [r["id"] for r in rows] == [3, 2, 1] and rows[0]["state"] == "done"
    assert "state            done" in cli("runs", "show", "3", "--db", cli.db).output

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
    from batchlab.core import SimConfig
    from batchlab.workloads import WorkloadSpec, build_workload

    with open_store(cli.db) as store:
        with pytest.raises(ValueError):
            store.get_or_run(SimConfig(), build_workload(WorkloadSpec(num_requests=30)),
                             simulate_fn=lambda *a, **k: (_ for _ in ()).throw(ValueError("bad input")))
    listing = CliRunner(env={"COLUMNS": "200"}).invoke(batchlab.cli, ["runs", "list", "--db", cli.db]).output
    assert "FAILED: ValueError: bad input" in listing
    assert "ValueError: bad input" in cli("runs", "show", "1", "--db", cli.db).output
    cli("runs", "delete", "--failed", "--yes", "--db", cli.db)
    assert "no runs in the store" in cli("runs", "list", "--db", cli.db).output


def test_runs_list_and_show_tell_runs_apart_within_the_terminal(cli):
    cli("run", *SMALL, "--mode", "static_fifo", "--batch-size", 16, "--rate", 3, "--d-sla-tbt", "none", "--db", cli.db)
    cli("run", *SMALL, "--d-sla-e2e", 0.5, "--batch-size", 16, "--db", cli.db)  # batch size: irrelevant here
    cli("run", "--workload", "burstgpt", "--rps-scaling", 3, "--db", cli.db)
    for width in (120, 160):
        listing = CliRunner(env={"COLUMNS": str(width)}).invoke(batchlab.cli, ["runs", "list", "--db", cli.db]).output
        lines = listing.splitlines()
        assert lines[0].split() == ["id", "mode", "gpus", "bins", "arrivals", "deadlines", "latency", "req/s", "SLA",
                                    "%", "p99", "s", "workload"]
        assert max(map(len, lines)) <= width
    by_id = {int(line.split()[0]): line for line in lines[1:]}
    assert by_id[1].split()[1:7] == ["static_fifo", "4", "1", "gamma", "3/s", "10s/off/60s"]
    assert by_id[2].split()[1:7] == ["continuous_dynamic", "4", "1", "gamma", "12/s", "10s/50ms/500ms"]
    assert by_id[3].split()[4:7] == ["trace", "x3", "10s/50ms/60s"] and "BurstGPT_1" in by_id[3]
    assert all(line.split()[7] == "parametric" for line in lines[1:])
    narrow = CliRunner(env={"COLUMNS": "120"}).invoke(batchlab.cli, ["runs", "list", "--db", cli.db]).output
    assert narrow.splitlines()[-1].endswith("…")  # the synthetic label is cut to fit, not wrapped

    rows = {r["id"]: r for r in json.loads(cli("runs", "list", "--json", "--db", cli.db).output)}
    assert (rows[1]["arrival"], rows[1]["arrival_rate"], rows[1]["d_sla_tbt"]) == ("gamma", 3.0, None)
    assert rows[3]["arrival_rate"] is None and rows[3]["rps_scaling"] == 3.0 and rows[3]["latency"] == "parametric"
    assert rows[2]["label"].startswith("synthetic 150 req") and rows[2]["sla_attainment"] is not None  # all there

    fifo = cli("runs", "show", "1", "--db", cli.db).output
    assert "scheduler        static_fifo on 4 GPU(s), 1 bin(s)" in fifo and "arrivals         gamma 3/s" in fifo
    assert "SLA deadlines    TTFT 10 s, TBT off, E2E 60 s" in fifo and "latency model    parametric" in fifo
    assert "other settings   batch_size 16, seed 3" in fifo
    dyn = cli("runs", "show", "2", "--db", cli.db).output
    assert "E2E 500 ms" in dyn and "other settings   seed 3\n" in dyn  # batch_size does not matter to this mode
    assert "other settings" not in cli("runs", "show", "3", "--db", cli.db).output
    assert json.loads(cli("runs", "show", "1", "--json", "--db", cli.db).output)["config"]["batch_size"] == 16


def test_runs_table_states_and_long_cells_fit_the_width():
    from datetime import datetime

    from batchlab.store import RunRow
    from batchlab.store.format import format_runs_table

    def row(i, status, stale=False, error=None, config=None, spec=None, **metrics):
        sources = (json.dumps(config or {}), json.dumps({"spec": spec or {}}))
        return RunRow(id=i, hash=f"{i:064x}", status=status, stale=stale, created_at=datetime.now(UTC),
                      finished_at=None, duration_s=None, mode="multi_bin_fixed", gpus=64, k_bins=16,
                      num_requests=10, label="L" * 300, error=error, _sources=sources, **metrics)

    rows = [row(1, "running", spec={"arrival": "poisson", "rate": 1234.5}, config={"latency": "grid:" + "x" * 60}),
            row(2, "running", stale=True, config={"d_sla_tbt": 0.05}),
            row(3, "failed", error="ValueError: " + "y" * 300),
            row(4, "done", throughput_rps=12.3456, latency_p99_s=1.5, sla_attainment=0.5, spec={"arrival": "trace"})]
    assert rows[0].arrival_rate == 1234.5 and rows[1].d_sla_tbt == 0.05 and rows[2].latency is None
    text = format_runs_table(rows, 40, width=140)
    lines = text.splitlines()
    assert all(len(line) <= 140 for line in lines) and lines[-1] == "(4 of 40 runs shown; use --limit/--offset)"
    assert "RUNNING: LLL" in lines[1] and "grid:xxxxxxxxxxxxxxxx…" in lines[1] and "poisson 1234.5/s" in lines[1]
    assert "STALE: LLL" in lines[2] and "off/50ms/off" in lines[2] and "FAILED: ValueError: yyy" in lines[3]
    assert lines[4].split()[7:10] == ["12.35", "50.0", "1.50"] and lines[4].endswith("…")


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
    pytest.importorskip("batchlab.calibration.schema")
    path = tmp_path / "tiny.csv"
    path.write_text(GRID)
    assert "stored grid 'tiny'" in cli("grids", "upload", path, "--db", cli.db).output
    assert "already stored as grid 'tiny'" in cli("grids", "upload", path, "--name", "x", "--db", cli.db).output
    from batchlab.calibration import bundled_grids

    listing = cli("grids", "list", "--db", cli.db).output.splitlines()
    bundled = len(bundled_grids())
    assert len(listing) == 2 + bundled and [line.split()[1] for line in listing[1:-1]] == ["bundled"] * bundled
    assert "qwen3-4b-sglang" in "".join(listing[1:-1])
    last = listing[-1]
    assert last.split()[:2] == ["tiny", "stored"] and "tiny-llama" in last and "test-gpu" in last
    shown = cli("grids", "show", "tiny", "--db", cli.db).output
    assert "decode_step_s" in shown and "device    test-gpu" in shown
    assert cli("grids", "show", "tiny", "--csv", "--db", cli.db).output.startswith("# model: tiny-llama")
    bad = tmp_path / "bad.csv"
    bad.write_text("batch_size,context_len\n1,2\n")
    err = cli("grids", "upload", bad, "--db", cli.db, ok=False)
    assert err.exit_code == 1 and "Error:" in err.output and "Traceback" not in err.output
    cli("grids", "delete", "tiny", "--yes", "--db", cli.db)
    assert [line.split()[0] for line in cli("grids", "list", "--db", cli.db).output.splitlines()[1:]] == \
        sorted(bundled_grids())
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


def test_an_overlong_search_gets_the_same_one_line_answer_on_sqlite_and_postgresql(store_url):
    """SQLite refuses a LIKE pattern over 50,000 bytes ('LIKE or GLOB pattern too complex') while
    PostgreSQL looked for 100,000 characters and echoed them back: both now refuse a search longer
    than any label with the same line, and take one at the limit."""
    from batchlab.store.keys import MAX_SEARCH_CHARS

    runner = CliRunner()
    assert runner.invoke(batchlab.cli, ["run", *SMALL, "--db", store_url]).exit_code == 0
    for text in ("a" * 100_000, "é" * (MAX_SEARCH_CHARS + 1)):
        res = runner.invoke(batchlab.cli, ["runs", "list", "--db", store_url, "--search", text])
        assert res.exit_code == 1 and res.stderr.count("\n") == 1 and "Traceback" not in res.output
        assert res.stderr.startswith(f"Error: search: at most {MAX_SEARCH_CHARS:,} characters, got {len(text):,}")
        assert len(res.stderr) < 200
    at_limit = "é" * MAX_SEARCH_CHARS
    res = runner.invoke(batchlab.cli, ["runs", "list", "--db", store_url, "--search", at_limit, "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout) == []
    res = runner.invoke(batchlab.cli, ["runs", "list", "--db", store_url, "--search", at_limit])
    assert res.exit_code == 0 and "no runs match search" in res.stdout and len(res.stdout) < 300
    listed = runner.invoke(batchlab.cli, ["runs", "list", "--db", store_url, "--search", "synthetic", "--json"])
    assert len(json.loads(listed.stdout)) == 1

"""Read-only stores: every read is served, every write is refused in one line, the file is never touched.

Two ways in: ``?mode=ro`` in the URL (SQLite enforces it, even for root), and a store
that simply cannot be written. The second is made real: as an ordinary user the
store's directory and file lose their write permission; as root (whom permissions do
not stop) the directory is bind-mounted read-only in a private mount namespace.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

import batchlab.cli as batchlab
from batchlab.core import SimConfig
from batchlab.store import StoreError, open_store
from batchlab.store.db import VERSION_TABLE, make_engine
from batchlab.store.migrate import upgrade
from batchlab.workloads import WorkloadSpec, build_workload

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--num-requests", "120", "--seed", "5"]
GRID = """# model: tiny-llama
# device: test-gpu
batch_size,context_len,prefill_s,decode_step_s
1,128,0.010,0.020
1,256,0.015,0.021
2,128,0.012,0.022
2,256,0.020,0.024
"""


def cli(*args) -> CliRunner.Result:
    return CliRunner().invoke(batchlab.cli, [str(a) for a in args])


def make_store(path: Path) -> str:
    """A closed store at ``path`` with one run (the CLI's ``run SMALL``) and one grid ('tiny')."""
    url = f"sqlite:///{path}"
    assert cli("run", *SMALL, "--db", url).exit_code == 0
    grid = path.parent / "tiny.csv"
    grid.write_text(GRID)
    assert cli("grids", "upload", grid, "--db", url).exit_code == 0
    grid.unlink()
    assert not Path(f"{path}-wal").exists()  # closed cleanly: everything is in the main file
    return url


def never(*_a, **_k):
    pytest.fail("a read-only store must not simulate a run it cannot store")


# ----------------------------------------------------------------- mode=ro --
def test_mode_ro_serves_reads_and_refuses_writes(tmp_path):
    path = tmp_path / "store.db"
    url = make_store(path)
    before = path.read_bytes()
    w = build_workload(WorkloadSpec(num_requests=120))  # what `run --num-requests 120 --seed 5` builds
    with open_store(url + "?mode=ro") as store:
        assert store.read_only and store.read_only_reason == "opened with mode=ro"
        [row] = store.list_runs()
        run = store.get_run(row.id)
        assert run.status == "done" and len(run.requests()["e2e"]) == 120 and set(run.series())
        served, hit = store.get_or_run(SimConfig(seed=5), w, simulate_fn=never)
        assert hit and served.id == run.id
        assert store.get_grid("tiny") is not None and [g.name for g in store.list_grids()] == ["tiny"]
        writes = [lambda: store.get_or_run(SimConfig(gpus=2), w, simulate_fn=never),
                  lambda: store.save_result(run_result(w)), lambda: store.delete_run(run.id),
                  lambda: store.delete_grid("tiny"), lambda: store.save_grid(store.get_grid("tiny"), name="copy"),
                  lambda: store.create_sweep("s")]
        for write in writes:
            with pytest.raises(StoreError, match=r"is read-only \(opened with mode=ro\): cannot "):
                write()
        assert store.count_runs() == 1 and len(store.list_grids()) == 1
    assert path.read_bytes() == before


def run_result(w):
    from batchlab.core import simulate

    return simulate(SimConfig(gpus=3), w)


def test_mode_ro_never_migrates_an_old_store(tmp_path):
    path = tmp_path / "old.db"
    engine = make_engine(make_url(f"sqlite:///{path}"))
    upgrade(engine, "old store", target="0001")
    engine.dispose()
    with pytest.raises(StoreError, match=r"read-only \(opened with mode=ro\).*revision 0001.*write access"):
        open_store(f"sqlite:///{path}?mode=ro")
    con = sqlite3.connect(path)
    assert con.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone() == ("0001",)
    con.close()
    with pytest.raises(StoreError, match="no such file"):
        open_store(f"sqlite:///{tmp_path}/missing.db?mode=ro")


# ------------------------------------------------- a store that cannot be written --
def read_only_runner(directory: Path):
    """``run(argv)`` running a command while ``directory`` cannot be written, or skip."""
    if os.geteuid() != 0:
        def run(argv):
            paths = [p for p in directory.rglob("*")] + [directory]
            modes = {p: p.stat().st_mode for p in paths}
            for p in paths:
                p.chmod(0o555 if p.is_dir() else 0o444)
            try:
                return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
            finally:
                for p, mode in modes.items():
                    p.chmod(mode)
        return run
    if shutil.which("unshare") is None:
        pytest.skip("running as root, whom permissions do not stop, and there is no unshare to mount "
                    "the store read-only")
    mount = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    probe = subprocess.run(["unshare", "-m", "sh", "-c", mount, str(directory), "sh", "-c", '! touch "$0/probe"',
                            str(directory)], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("running as root, whom permissions do not stop, and no private mount namespace is "
                    f"allowed here to mount the store read-only ({probe.stderr.strip()[:200]})")

    def run(argv):
        return subprocess.run(["unshare", "-m", "sh", "-c", mount, str(directory), *argv], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
    return run


# Runs in the read-only child: each CLI command with CliRunner, the results as JSON.
CHILD = textwrap.dedent("""
    import json, sys
    from click.testing import CliRunner
    import batchlab.cli as batchlab
    from batchlab.store import open_store
    commands = json.loads(sys.argv[1])
    out = []
    for args in commands:
        r = CliRunner().invoke(batchlab.cli, args)
        out.append({"args": args, "exit": r.exit_code, "output": r.output})
    with open_store(sys.argv[2]) as store:
        out.append({"reason": store.read_only_reason})
    print(json.dumps(out))
""")


def test_a_store_that_cannot_be_written_serves_reads_and_refuses_writes(tmp_path):
    ro = tmp_path / "ro"
    (ro / "store").mkdir(parents=True)
    (ro / "wal").mkdir()
    path = ro / "store" / "batchlab.db"
    url = make_store(path)
    # a store left with changes in its write-ahead log (a writer died): copied while a connection holds them
    wal_path = ro / "wal" / "batchlab.db"
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_autocheckpoint = 0")
    con.execute("UPDATE runs SET label = 'changed'")
    con.commit()
    for suffix in ("", "-wal"):
        shutil.copyfile(f"{path}{suffix}", f"{wal_path}{suffix}")
    con.execute("UPDATE runs SET label = (SELECT json_extract(workload, '$.label'))")
    con.commit()
    con.close()
    assert not Path(f"{path}-wal").exists()
    before = {p: p.read_bytes() for p in ro.rglob("*") if p.is_file()}
    grid = tmp_path / "grid.csv"
    grid.write_text(GRID)

    db = ["--db", url]
    reads = {"list": ["runs", "list"], "list json": ["runs", "list", "--json"], "show": ["runs", "show", "1"],
             "show json": ["runs", "show", "1", "--json"], "export": ["runs", "export"],
             "export requests": ["runs", "export", "1", "--requests"], "grids": ["grids", "list"],
             "grid": ["grids", "show", "tiny"], "hit": ["run", *SMALL]}
    writes = {"miss": ["run", *SMALL, "--gpus", "2"], "delete": ["runs", "delete", "1", "--yes"],
              "delete failed": ["runs", "delete", "--failed", "--yes"],
              "grid delete": ["grids", "delete", "tiny", "--yes"],
              "grid upload": ["grids", "upload", str(grid)]}
    commands = [args + db for args in [*reads.values(), *writes.values()]]
    commands.append(["runs", "list", "--db", f"sqlite:///{wal_path}"])
    run = read_only_runner(ro)
    proc = run([sys.executable, "-c", CHILD, json.dumps(commands), url])
    assert proc.returncode == 0, proc.stderr
    *results, reason = json.loads(proc.stdout)
    assert reason["reason"] in ("on a read-only file system", "the file is not writable")
    got = dict(zip([*reads, *writes, "wal"], results))

    for name in reads:
        assert got[name]["exit"] == 0, got[name]
    out = {name: got[name]["output"] for name in reads}
    assert out["list"].splitlines()[1].split()[:2] == ["1", SimConfig().mode]
    assert json.loads(out["list json"])[0]["state"] == "done"
    assert "SLA attainment" in out["show"] and json.loads(out["show json"])["summary"]["num_requests"] == 120
    assert out["export"].count("\n") == 2  # header + the one run
    assert out["export requests"].count("\n") == 121
    assert "tiny-llama" in out["grids"] and "decode_step_s" in out["grid"]
    assert "served from store (run 1)" in out["hit"]

    for name in writes:
        r = got[name]
        assert r["exit"] == 1 and r["output"].startswith("Error: ") and r["output"].count("\n") == 1, r
        assert f"is read-only ({reason['reason']}): cannot" in r["output"], r
    wal = got["wal"]
    assert wal["exit"] == 1 and wal["output"].count("\n") == 1, wal
    assert "read-only" in wal["output"] and f"{wal_path}-wal" in wal["output"], wal

    assert {p: p.read_bytes() for p in ro.rglob("*") if p.is_file()} == before

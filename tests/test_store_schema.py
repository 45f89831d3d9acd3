"""Opening stores: locations, SQLite settings, migrations from older schemas, files that are not stores."""
from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import MetaData, insert, text
from sqlalchemy.engine import make_url

from batchlab.core import SimConfig, simulate
from batchlab.store import StoreError, data_home, open_store
from batchlab.store.codec import pack_frame
from batchlab.store.db import VERSION_TABLE, make_engine, write_connection
from batchlab.store.migrate import MIGRATIONS_DIR, alembic_config, current_revision, upgrade
from batchlab.store.migrations import HEAD
from batchlab.store.models import metadata
from batchlab.store.payload import CODEC, encode
from batchlab.workloads import WorkloadSpec, build_workload


# --------------------------------------------------------------- locations --
def test_default_store_lives_in_batchlab_home(batchlab_store_home):
    with open_store() as store:
        assert store.backend == "sqlite"
        assert (batchlab_store_home / "batchlab.db").is_file()
        assert str(batchlab_store_home / "batchlab.db") in store.url


def test_data_home_follows_xdg_when_batchlab_home_is_unset(monkeypatch, tmp_path):
    monkeypatch.delenv("BATCHLAB_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data_home() == tmp_path / "xdg" / "batchlab"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_home() == tmp_path / "home" / ".local" / "share" / "batchlab"


def test_url_precedence(monkeypatch, tmp_path, batchlab_store_home):
    monkeypatch.setenv("BATCHLAB_DB_URL", f"sqlite:///{tmp_path}/from-env.db")
    with open_store():
        pass
    assert (tmp_path / "from-env.db").exists() and not (batchlab_store_home / "batchlab.db").exists()
    with open_store(f"sqlite:///{tmp_path}/explicit.db"):
        pass
    assert (tmp_path / "explicit.db").exists()


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/s.db") as store, store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 5000


def test_an_in_memory_store_works():
    with open_store("sqlite://") as store:
        run, hit = store.get_or_run(SimConfig(), build_workload(WorkloadSpec(num_requests=50)))
        assert not hit and store.get_run(run.id).status == "done"


# -------------------------------------------------------- not-a-store files --
def _untouched(path: Path, before: bytes):
    assert path.read_bytes() == before
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-shm").exists()


@pytest.mark.parametrize("content", [b"name,value\na,1\n", b"SQLite format 3\x00" + bytes(range(256)) * 20,
                                     b"SQLite format"])
def test_a_non_database_or_corrupt_file_is_reported_and_left_untouched(tmp_path, content):
    path = tmp_path / "batchlab.db"
    path.write_bytes(content)
    with pytest.raises(StoreError) as info:
        open_store(f"sqlite:///{path}")
    assert str(path) in str(info.value) and "left untouched" in str(info.value)
    assert "\n" not in str(info.value)
    _untouched(path, content)


def _damage_page_of(path: Path, index: str) -> None:
    """Overwrite the header of ``index``'s root page: a b-tree page the open-time probe never reads."""
    con = sqlite3.connect(path)
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    [root] = con.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (index,)).fetchone()
    con.close()
    assert root > 1 and not Path(f"{path}-wal").exists()  # every change is in the main file
    with open(path, "r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(b"\xff" * 12)  # no valid page type, cell count or content offset


def test_a_store_damaged_where_the_open_probe_does_not_look_is_never_written_to(tmp_path):
    """The damage is in run_bins' primary-key index: opening, listing and claiming a new run never read
    it, so without the check ``run`` would write its claim and then fail storing the bins."""
    import subprocess
    import sys

    path = tmp_path / "store.db"
    url = f"sqlite:///{path}"
    w = build_workload(WorkloadSpec(num_requests=80, workload_seed=4))
    with open_store(url) as store:
        for gpus in (1, 2):
            store.get_or_run(SimConfig(gpus=gpus), w)
    _damage_page_of(path, "sqlite_autoindex_run_bins_1")
    before = path.read_bytes()

    cli = subprocess.run([sys.executable, "-m", "batchlab", "run", "--db", url, "--num-requests", "80",
                          "--gpus", "3"], cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                         timeout=300)
    assert cli.returncode == 1 and "Traceback" not in cli.stderr
    [line] = cli.stderr.strip().splitlines()
    assert line.startswith(f"Error: the store at {path} is damaged (") and "nothing was written" in line
    assert ".recover" in line and "--db" in line
    assert path.read_bytes() == before
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0

    with open_store(url) as store:
        assert len(store.list_runs()) == 2  # reads are not checked, and work where the damage is not
        for write in (lambda: store.get_or_run(SimConfig(gpus=3), w, simulate_fn=lambda *a, **k: pytest.fail()),
                      lambda: store.create_sweep("s"), lambda: store.delete_run(store.list_runs()[0].id)):
            with pytest.raises(StoreError, match=f"^the store at {path} is damaged"):
                write()
    assert path.read_bytes() == before


def test_another_programs_sqlite_database_is_not_taken_over(tmp_path):
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    con.commit()
    con.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="another program.*invoices"):
        open_store(f"sqlite:///{path}")
    _untouched(path, before)


def test_a_directory_or_missing_parent_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        open_store(f"sqlite:///{tmp_path}")
    with pytest.raises(StoreError, match="does not exist"):
        open_store(f"sqlite:///{tmp_path}/missing/dir/store.db")


def test_an_unreachable_server_is_a_clear_error():
    with pytest.raises(StoreError, match="cannot open the store at postgresql.*127.0.0.1"):
        open_store("postgresql://nobody:secret@127.0.0.1:1/db")
    with pytest.raises(StoreError) as info:
        open_store("postgresql://nobody:secret@127.0.0.1:1/db")
    assert "secret" not in str(info.value)
    with pytest.raises(StoreError, match="not a database URL"):
        open_store("definitely not a url")


# ---------------------------------------------------------------- migrations --
def test_head_names_the_newest_migration_script():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_current_head() == HEAD
    assert [r.revision for r in script.walk_revisions()][-1] == "0001"  # a history from the first schema
    assert (MIGRATIONS_DIR / "env.py").is_file()


def test_the_migrations_build_exactly_the_models(store_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with open_store(store_url) as store, store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "version_table": VERSION_TABLE})
        assert compare_metadata(ctx, metadata) == []
        assert current_revision(conn) == HEAD


def _write_run_as_release_0001(engine, result, workload):
    """Insert a finished run with the 0001 schema, column by column, as that release stored it."""
    md = MetaData()
    with engine.connect() as conn:
        md.reflect(conn)
    assert "label" not in md.tables["runs"].c  # really the old schema
    summary = dict(result.summary)
    bins = summary.pop("bins")
    now = datetime.now(UTC)
    blob, facts = encode(result.requests, result.batches, result.bin_edges, result.run_hash)
    metrics = {c.name: summary[c.name] for c in md.tables["runs"].c if c.name in summary and c.name != "mode"
               and c.name not in ("gpus", "k_bins", "num_requests")}
    with write_connection(engine) as conn:
        run_id = conn.execute(insert(md.tables["runs"]).values(
            hash=result.run_hash, status="done", created_at=now, started_at=now, finished_at=now, duration_s=0.1,
            claim="0" * 32, host="old-host", pid=1, config=json.dumps(result.config.to_dict()),
            workload=json.dumps(workload.identity), latency=json.dumps(result.meta["latency"]),
            code_version="batchlab 0.0.1, sim 1", mode=result.config.mode, gpus=result.config.gpus,
            k_bins=result.config.bins, num_requests=len(workload), summary=json.dumps(summary), **metrics,
        )).inserted_primary_key[0]
        conn.execute(insert(md.tables["run_bins"]), [
            {"run_id": run_id, "bin": b["bin"], "requests": b["requests"], "batches": b["batches"],
             "latency_p99_s": b.get("latency_p99_s"), "data": json.dumps(b)} for b in bins])
        conn.execute(insert(md.tables["run_series"]), [
            {"run_id": run_id, "name": k, "rows": len(f), "data": pack_frame(f)} for k, f in result.series().items()])
        conn.execute(insert(md.tables["run_data"]).values(
            run_id=run_id, codec=CODEC, num_requests=facts["num_requests"], stored_requests=facts["stored_requests"],
            sampled=facts["sampled"], nbytes=len(blob), payload=blob))
    return run_id


def test_a_store_created_by_schema_0001_is_upgraded(store_url):
    w = build_workload(WorkloadSpec(num_requests=120, workload_seed=11))
    result = simulate(SimConfig(mode="multi_bin_dynamic", gpus=3), w)  # release 0001 had batch-level runs
    engine = make_engine(make_url(store_url))
    assert upgrade(engine, "old store", target="0001") == "0001"
    run_id = _write_run_as_release_0001(engine, result, w)
    engine.dispose()

    with open_store(store_url) as store:  # opening upgrades it
        with store.engine.connect() as conn:
            assert current_revision(conn) == HEAD
        run = store.get_run(result.run_hash)
        assert run.id == run_id and run.status == "done"
        assert run.label == w.identity["label"]  # 0002 backfilled the new column from the old data
        assert store.list_runs(search="seed 11")[0].id == run_id
        assert run.summary == result.summary and run.config == SimConfig(mode="multi_bin_dynamic", gpus=3)
        assert np.array_equal(run.requests()["e2e"], result.requests["e2e"])
        again, hit = store.get_or_run(SimConfig(mode="multi_bin_dynamic", gpus=3), w, simulate_fn=lambda *a, **k: pytest.fail("recomputed"))
        assert hit and again.id == run_id
        new, hit = store.get_or_run(SimConfig(gpus=2), w)  # and the upgraded store takes new runs
        assert not hit and new.label == run.label


def _write_sweeps_as_release_0002(engine) -> dict[str, int]:
    """Three runs and four sweeps as 0002 stored them, with what its races left: two sweeps of one
    plan key, and two members of one sweep at the same position."""
    md = MetaData()
    with engine.connect() as conn:
        md.reflect(conn)
    runs, sweeps, links = md.tables["runs"], md.tables["sweeps"], md.tables["sweep_runs"]
    assert "key" not in sweeps.c  # really the old schema
    now = datetime.now(UTC)
    ids = {}
    with write_connection(engine) as conn:
        for i in range(3):
            ids[f"run{i}"] = conn.execute(insert(runs).values(
                hash=f"{i:064x}", status="failed", created_at=now, started_at=now, claim="0" * 32, config="{}",
                workload="{}", latency="{}", code_version="batchlab 0.0.2, sim 1", mode="static_fifo", gpus=1,
                k_bins=1, num_requests=10)).inserted_primary_key[0]
        for name, params in (("older", {"key": "k1", "status": "done"}), ("newer", {"key": "k1", "status": "new"}),
                             ("other", {"key": "k2"}), ("keyless", {"gpus": [1, 2]})):
            ids[name] = conn.execute(insert(sweeps).values(name=name, params=json.dumps(params), created_at=now)
                                     ).inserted_primary_key[0]
        conn.execute(insert(links), [{"sweep_id": ids["older"], "run_id": ids[r], "position": p}
                                     for r, p in (("run1", 0), ("run0", 0), ("run2", 1))])
    return ids


def test_a_store_of_schema_0002_with_racing_sweeps_is_upgraded(store_url):
    from alembic import command

    engine = make_engine(make_url(store_url))
    assert upgrade(engine, "old store", target="0002") == "0002"
    ids = _write_sweeps_as_release_0002(engine)
    engine.dispose()
    with open_store(store_url) as store:
        # the newest sweep of a key keeps it (it was the one a rerun resumed); the older keeps the rest
        assert store.find_sweep("k1").id == ids["newer"] and store.find_sweep("k2").id == ids["other"]
        assert store.open_sweep("k1", "again") == ids["newer"]
        older = store.get_sweep(ids["older"])
        assert older.params == {"key": "k1", "status": "done"} and older.runs == 3
        # members that shared a position are renumbered in the order they were listed in
        assert [r.id for r in store.sweep_runs(ids["older"])] == [ids["run0"], ids["run1"], ids["run2"]]
        assert store.get_sweep(ids["keyless"]).params == {"gpus": [1, 2]}
        new = store.open_sweep("k3", "after the upgrade", {"plan": 3})
        assert len(store.list_sweeps()) == 5
    engine = make_engine(make_url(store_url))
    with write_connection(engine) as conn:  # and back: 0002 finds a sweep by params["key"]
        command.downgrade(alembic_config(conn), "0002")
    with engine.connect() as conn:
        params = dict(conn.execute(text("SELECT id, params FROM sweeps")).all())
    engine.dispose()
    assert json.loads(params[new]) == {"plan": 3, "key": "k3"}
    assert json.loads(params[ids["older"]]) == {"key": "k1", "status": "done"}


def test_a_store_from_a_newer_batchlab_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path}/new.db"
    open_store(url).close()
    con = sqlite3.connect(tmp_path / "new.db")
    con.execute(f"UPDATE {VERSION_TABLE} SET version_num = '0099'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="revision 0099.*newer batchlab"):
        open_store(url)


def test_opening_is_idempotent_and_concurrent_opens_migrate_once(tmp_path):
    import threading

    url = f"sqlite:///{tmp_path}/race.db"
    errors = []

    def opener():
        try:
            open_store(url).close()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    con = sqlite3.connect(tmp_path / "race.db")
    assert con.execute(f"SELECT count(*), max(version_num) FROM {VERSION_TABLE}").fetchone() == (1, HEAD)
    con.close()
    assert os.path.getsize(tmp_path / "race.db") > 0


IMPORTS = """
import sys
from batchlab.store import open_store
from batchlab.store.format import format_runs_table
with open_store(sys.argv[1]) as store:
    rows = store.list_runs()
    run = store.get_run(rows[0].id) if rows else None
    format_runs_table(rows, store.count_runs())
# the metric catalog the store's columns come from; the missing-extra messages (a postgresql:// URL)
light = ("batchlab.core", "batchlab.core.metric_catalog", "batchlab.core.units", "batchlab.core.extras")
print(" ".join(m for m in ("alembic", "pandas", "sqlalchemy.orm", "streamlit", "batchlab.calibration")
               if m in sys.modules),
      *(m for m in sys.modules if m.split(".")[:2] == ["batchlab", "core"] and m not in light))
"""


def modules_loaded_reading(url: str) -> list[str]:
    """The heavy packages a fresh interpreter has loaded after opening ``url`` and reading its runs."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", IMPORTS, url], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_reading_an_up_to_date_store_imports_neither_alembic_nor_pandas(tmp_path):
    """Start-up cost: a current store is recognised without Alembic, and reading runs needs neither
    pandas nor the SQLAlchemy ORM nor the simulator (only its metric catalog)."""
    url = f"sqlite:///{tmp_path}/s.db"
    with open_store(url) as store:
        store.get_or_run(SimConfig(), build_workload(WorkloadSpec(num_requests=60, workload_seed=1)))
    assert modules_loaded_reading(url) == []

    old = f"sqlite:///{tmp_path}/old.db"
    engine = make_engine(make_url(old))
    upgrade(engine, "old store", target="0001")
    engine.dispose()
    assert "alembic" in modules_loaded_reading(old)  # an old store is still migrated at open
    with open_store(old) as store, store.engine.connect() as conn:
        assert current_revision(conn) == HEAD

"""The CLI's fast store hit: a done run's summary read with sqlite3 alone equals the store's."""
from __future__ import annotations

import subprocess
import sys

from batchlab.core import SimConfig
from batchlab.store import open_store
from batchlab.store.quick import done_summary, sqlite_file
from batchlab.workloads import WorkloadSpec, build_workload


def test_the_fast_read_equals_the_stores_and_declines_what_it_cannot_read(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    w = build_workload(WorkloadSpec(num_requests=300))
    with open_store(url) as store:
        run, _ = store.get_or_run(SimConfig(mode="multi_bin_dynamic"), w)
        full = store.get_run(run.id)
    assert done_summary(url, run.hash) == (run.id, full.summary)  # per-bin rows included
    assert len(full.summary["bins"]) == 4
    assert done_summary(url, "0" * 64) is None                      # not stored
    assert done_summary(f"sqlite:///{tmp_path}/none.db", run.hash) is None
    assert sqlite_file("postgresql://u@h/db") is None and sqlite_file(url + "?mode=ro") is None
    import sqlite3
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute("UPDATE runs SET status = 'running'")
    assert done_summary(url, run.hash) is None                      # only done runs
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute("UPDATE batchlab_schema_version SET version_num = '0001'")
    assert done_summary(url, run.hash) is None                      # an older schema: the full store


def test_a_store_hit_on_the_command_line_does_not_load_the_database_library(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCHLAB_HOME", str(tmp_path))
    code = ("import sys; sys.argv = ['batchlab', 'run', '--num-requests', '200']; import batchlab.cli as batchlab\n"
            "try:\n    batchlab.main()\nexcept SystemExit:\n    pass\n"
            "print('SQLALCHEMY' if 'sqlalchemy' in sys.modules else 'LIGHT')")
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "simulated and stored" in first and first.strip().endswith("SQLALCHEMY")
    assert "served from store" in again and again.strip().endswith("LIGHT")

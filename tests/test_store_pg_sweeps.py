"""Four sweep processes at once on one PostgreSQL store: every member stored once, no member reported
failed, one sweep per plan identity, each sweep's members linked once at distinct positions."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from batchlab.store import open_store
from batchlab.store.models import Run, SweepRun

ROOT = Path(__file__).resolve().parents[1]

# The real CLI (``python -m batchlab sweep``), started once everything it imports is loaded, so the
# four processes leave the starting line together when the test creates the go file.
AT_ONCE = textwrap.dedent("""
    import os, sys, time
    import batchlab.cli, batchlab.core.sweep, batchlab.store.repo, batchlab.store.sweep_jobs
    go = sys.argv[1]
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.002)
    batchlab.cli.cli(sys.argv[2:], prog_name="batchlab")
""")
# two plans, two processes each; the plans share the runs at rates 7..12
GRIDS = {"low": "rate=1:12:1", "high": "rate=7:18:1"}
SWEEP_LINE = re.compile(r"^sweep (\d+): 12 runs, (\d+) already stored, (\d+) failed$", re.M)


def start_sweeps(url: str, go: Path) -> list[tuple[str, subprocess.Popen]]:
    procs = []
    for grid in ("low", "high", "low", "high"):
        args = ["sweep", "--db", url, "--workers", "1", "--num-requests", "300", "--vary", GRIDS[grid],
                "--format", "csv"]
        procs.append((grid, subprocess.Popen([sys.executable, "-c", AT_ONCE, str(go), *args], cwd=ROOT,
                                             env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True)))
    return procs


def test_four_sweep_processes_at_once_store_every_member_once(pg_url, tmp_path):
    open_store(pg_url).close()  # the schema exists before the race (concurrent migration is tested elsewhere)
    go = tmp_path / "go"
    procs = start_sweeps(pg_url, go)
    try:
        for _, p in procs:
            assert p.stdout.readline().strip() == "ready", p.communicate()[1]
        go.touch()
        sweep_of: dict[str, set[int]] = {"low": set(), "high": set()}
        for grid, p in procs:
            out, err = p.communicate(timeout=400)
            lines = SWEEP_LINE.findall(err)
            assert p.returncode == 0 and len(lines) == 1, err[-3000:]
            sweep_id, _skipped, failed = map(int, lines[0])
            assert failed == 0
            sweep_of[grid].add(sweep_id)
            assert out.count("\n") == 13 and ",failed," not in out  # header + 12 members, none failed
    finally:
        for _, p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(30)

    assert all(len(ids) == 1 for ids in sweep_of.values()), sweep_of  # one sweep per plan identity
    with open_store(pg_url) as store:
        assert sorted(s.id for s in store.list_sweeps()) == sorted(ids.pop() for ids in sweep_of.values())
        with store.engine.connect() as conn:
            runs = conn.execute(select(Run.c.hash, Run.c.status)).all()
            links = conn.execute(select(SweepRun.c.sweep_id, SweepRun.c.run_id, SweepRun.c.position)).all()
        assert len(runs) == 18 and len({h for h, _ in runs}) == 18 and {s for _, s in runs} == {"done"}
        rates = {}
        for sweep in store.list_sweeps():
            assert sweep.runs == 12 and sweep.params["status"] == "done"
            assert sweep.params["result"]["failed"] == 0 and sweep.params["result"]["runs"] == 12
            members = store.sweep_members(sweep.id)
            assert all(m["status"] == "done" for m in members)
            rates[sweep.id] = sorted(m["spec"]["rate"] for m in members)
        assert sorted(rates.values()) == [[float(r) for r in range(1, 13)], [float(r) for r in range(7, 19)]]
        per_sweep = Counter(s for s, _, _ in links)
        assert sorted(per_sweep.values()) == [12, 12]
        for sweep_id in per_sweep:  # members at distinct positions 0..11, in the order they were added
            assert sorted(p for s, _, p in links if s == sweep_id) == list(range(12))

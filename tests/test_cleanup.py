"""Nothing left running: the worker processes of a sweep, a capacity search, a Dask LocalCluster or a
benchmark end when the process that started them is killed with kill -9."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from batchlab.store import open_store
from batchlab.store.claims import pid_alive, process_start
from batchlab.store.models import Run

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_S = 5.0  # generous: they go within a fraction of a second; a benchmark's measurement would take 10 s


def descendants(root: int) -> dict[int, int | None]:
    """Every process below ``root`` (pid -> start time), from the parent links in /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        children.setdefault(int(stat[stat.rfind(b")") + 2:].split()[1]), []).append(int(entry.name))
    found: dict[int, int | None] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = process_start(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def wait_for(condition, what: str, proc: subprocess.Popen, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert proc.poll() is None, f"the command ended before {what}: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.1)
    return found


def kill_owner_and_wait(proc: subprocess.Popen, workers: dict[int, int | None]) -> list[str]:
    """kill -9 the owner; the processes of ``workers`` still alive after the deadline."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        alive = [pid for pid, start in workers.items() if pid_alive(pid, start)]
        if not alive:
            return []
        time.sleep(0.1)
    return [f"{pid}: {cmdline(pid)[:200]}" for pid in alive]


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "batchlab", *args], cwd=ROOT, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def end_session(proc: subprocess.Popen) -> None:
    """Whatever the test left (only on failure): the whole process group of the command."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait(30)
    proc.stderr.close()


# each member runs for seconds, so the owner is killed while both workers simulate
LONG = ["--num-requests", "300000", "--workers", "2"]
COMMANDS = {
    "sweep": ["sweep", *LONG, "--vary", "rate=1:6:1"],
    "capacity": ["capacity", *LONG, "--mode", "static_fifo,dynamic_no_bins"],
    "plan": ["plan", *LONG, "--modes", "static_fifo,dynamic_no_bins", "--max-gpus", "8"],
    "sweep on a Dask LocalCluster": ["sweep", *LONG, "--cluster", "local", "--vary", "rate=1:6:1"],
}


@pytest.mark.parametrize("what", list(COMMANDS))
def test_workers_end_when_their_owner_is_killed(what, tmp_path):
    db = f"sqlite:///{tmp_path / 'store.db'}"
    open_store(db).close()
    proc = start([*COMMANDS[what], "--db", db])
    store = open_store(db)
    try:
        def two_busy_workers() -> set[int] | None:  # the pids of the workers simulating a member right now
            with store.engine.connect() as conn:
                pids = set(conn.execute(select(Run.c.pid).where(Run.c.status == "running")).scalars())
            return pids if len(pids) == 2 else None

        claimants = wait_for(two_busy_workers, "two busy workers", proc)
        workers = descendants(proc.pid)
        assert claimants <= set(workers)  # the claims were made by the command's own processes
        assert not kill_owner_and_wait(proc, workers)
    finally:
        store.close()
        end_session(proc)


def test_a_benchmark_measurement_ends_with_the_benchmark():
    # about 10 s of simulation on a 2-core machine; killed a second in
    proc = start(["bench", "--requests", "600000", "--modes", "multi_bin_dynamic", "--scenarios", "light",
                  "--repeats", "1"])
    try:
        wait_for(lambda: any("spawn_main" in cmdline(p) for p in descendants(proc.pid)), "the measurement", proc)
        time.sleep(1.0)  # well inside the measurement
        workers = descendants(proc.pid)
        assert not kill_owner_and_wait(proc, workers)
    finally:
        end_session(proc)


ENDS_WITH = """
import os, sys, time
if sys.argv[2] == "poll":
    del os.pidfd_open  # as on a system without pidfds
from batchlab.core.lifetime import end_with
end_with(int(sys.argv[1]))
print("watching", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("how", ["pidfd", "poll"])
def test_a_process_ends_when_the_owner_it_watches_ends(how):
    from batchlab.core.lifetime import EXIT_CODE

    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    child = subprocess.Popen([sys.executable, "-c", ENDS_WITH, str(owner.pid), how], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "watching"
        assert child.poll() is None  # the owner lives: so does the watcher
        owner.kill()
        owner.wait(30)
        assert child.wait(DEADLINE_S) == EXIT_CODE
        # an owner already gone when the watch starts: the process ends at once
        late = subprocess.run([sys.executable, "-c", ENDS_WITH, str(owner.pid), how], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert late.returncode == EXIT_CODE and late.stdout == ""
    finally:
        for p in (owner, child):
            if p.poll() is None:
                p.kill()
                p.wait(30)
        child.stdout.close()

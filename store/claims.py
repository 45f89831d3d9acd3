"""Who is computing a run, and when a ``running`` claim is stale.

A claim records the host name, the pid and (on Linux) the process start time
(``/proc/<pid>/stat`` field 22), so a recycled pid is not mistaken for the
claimant. A ``running`` row is stale when

* its host is this host and that process no longer exists (or is a zombie, or
  is a different process with the same pid), or
* it started more than ``stale_after`` seconds ago (default :data:`STALE_AFTER_S`,
  one hour; ``BATCHLAB_STALE_AFTER_S`` overrides it): the only test possible for a
  claim made on another host, and a bound on how long anyone waits for a claim.

A stale claim is shown as ``stale`` and is taken over by the next ``get_or_run``.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime

STALE_AFTER_S = 3600.0


def stale_after_default() -> float:
    raw = os.environ.get("BATCHLAB_STALE_AFTER_S", "").strip()
    try:
        return float(raw) if raw else STALE_AFTER_S
    except ValueError:
        return STALE_AFTER_S


def process_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()  # the command name may contain spaces
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _state(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return stat[stat.rfind(b")") + 2:].split()[0]
    except (OSError, IndexError):
        return None


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    proc_start: int | None


_owner: Owner | None = None


def this_process() -> Owner:
    global _owner
    if _owner is None or _owner.pid != os.getpid():
        _owner = Owner(socket.gethostname(), os.getpid(), process_start(os.getpid()))
    return _owner


def pid_alive(pid: int, proc_start: int | None) -> bool:
    """Whether the process that made a claim on this host still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return False
    if _state(pid) in (b"Z", b"X"):
        return False
    if proc_start is not None:
        now = process_start(pid)
        if now is not None and now != proc_start:
            return False
    return True


def is_stale(status: str, host: str | None, pid: int | None, proc_start: int | None,
             started_at: datetime, now: datetime, stale_after: float) -> bool:
    if status != "running":
        return False
    if (now - started_at).total_seconds() > stale_after:
        return True
    me = this_process()
    if host == me.host and pid is not None:
        return not pid_alive(pid, proc_start)
    return False

"""Sweeps: a grid of (SimConfig, WorkloadSpec) points run on a ``concurrent.futures.Executor``.

* :func:`parse_vary` reads ``rate=0.5:8:0.5`` (an inclusive range) or
  ``mode=static_fifo,multi_bin_dynamic`` (a list); any SimConfig or WorkloadSpec
  field can vary.
* :func:`expand` builds the grid: the product of the varied values (the first
  ``vary`` entry outermost), times ``replications`` seeds (replication ``r``
  adds ``r`` to the workload seed and to the scheduler seed).
* :func:`run_members` runs a job per member on an executor (a local process
  pool by default, or ``distributed.Client(...).get_executor()``) and calls
  ``on_result(member, result)`` in the calling thread as each one finishes.

A job is a picklable callable ``job(member) -> MemberResult``. The default,
:func:`simulate_member`, builds the workload, simulates and returns the summary
(no per-request arrays cross process boundaries). The results store supplies
a job that stores each run where it is computed (``store.sweep_jobs``); core
never imports the store. A member that raises is returned as a ``failed``
result with its error, and the others go on.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass, field

from batchlab.workloads.fields import plain
from batchlab.workloads.spec import SpecError, WorkloadSpec

from .config import ConfigError, SimConfig
from .settings_text import (
    is_sim,
    parse_lines,
    parse_values,
    setting_field,
    setting_text,
    split_assignment,
    split_settings,
)

MAX_MEMBERS = 100_000


class SweepError(ValueError):
    """A sweep that cannot be built (an invalid grid point, too many members); the message says which.
    Settings text that cannot be read is a :class:`core.settings_text.SettingError`."""


# ------------------------------------------------------------------ members --
def member_key(config: dict, spec: dict) -> str:
    """Stable key of a sweep point: the settings that can change its result (config and workload)."""
    blob = json.dumps({"config": config, "spec": spec}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Member:
    """One point of a sweep: the run's config and workload spec, and the values that label it."""

    config: SimConfig
    spec: WorkloadSpec
    point: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return member_key(self.config.relevant_dict(), self.spec.relevant_dict())


@dataclass
class MemberResult:
    """What a job returns: plain data, cheap to send between processes.

    ``status`` is ``done`` or ``failed``; ``summary`` is the run's summary (without
    per-bin rows) when done; ``run_id`` is set when a store kept the run; ``cached``
    when the store served it without simulating; ``seconds`` is the job's wall time and
    ``sim_seconds`` the simulation's own (the original one for a run served from a store).
    """

    key: str
    point: dict
    status: str
    summary: dict | None = None
    run_hash: str | None = None
    run_id: int | None = None
    cached: bool = False
    error: str | None = None
    seconds: float = 0.0
    sim_seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "done"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def light_summary(summary: dict) -> dict:
    """A run summary without the per-bin rows (what sweep tables and charts need)."""
    return {k: v for k, v in summary.items() if k != "bins"}


def error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def simulate_member(member: Member) -> MemberResult:
    """The default job: build the workload, simulate, return the summary (nothing is stored)."""
    from batchlab.workloads.build import build_workload

    from .simulation import simulate

    t0 = time.perf_counter()
    try:
        result = simulate(member.config, build_workload(member.spec))
    except Exception as exc:  # noqa: BLE001 - a failing member is reported, the sweep goes on
        return MemberResult(member.key, member.point, "failed", error=error_text(exc),
                            seconds=time.perf_counter() - t0)
    return MemberResult(member.key, member.point, "done", light_summary(result.summary), result.run_hash,
                        seconds=time.perf_counter() - t0, sim_seconds=result.meta.get("wall_s"))


# ------------------------------------------------------------------ the grid --
def parse_vary(text: str) -> tuple[str, list]:
    """``NAME=START:STOP:STEP`` (inclusive) or ``NAME=V1,V2,...`` -> (field name, values)
    (:func:`core.settings_text.parse_values`; a SettingError names what is wrong)."""
    name, rhs = split_assignment(text, "NAME=START:STOP:STEP or NAME=V1,V2,...")
    return name, parse_values(name, rhs)


def parse_settings(lines: Iterable[str]) -> tuple[SimConfig, WorkloadSpec]:
    """Base settings from ``NAME=VALUE`` lines (blank lines and ``#`` comments skipped)."""
    sim, spec = split_settings(parse_lines(lines))
    return SimConfig(**sim), WorkloadSpec(**spec)


def expand(base_config: SimConfig, base_spec: WorkloadSpec, vary: dict[str, list] | None = None,
           replications: int = 1) -> list[Member]:
    """The grid's members: every combination of the varied values, times ``replications`` seeds.

    Every point is validated here, so an invalid combination is reported (naming the point)
    before anything runs.
    """
    vary = dict(vary or {})
    if replications < 1:
        raise SweepError(f"replications: must be >= 1, got {replications}")
    for name in vary:
        setting_field(name)
    names = list(vary)
    total = math.prod(len(v) for v in vary.values()) * replications if vary else replications
    if total > MAX_MEMBERS:
        raise SweepError(f"the grid has {total:,} members (at most {MAX_MEMBERS:,})")
    sim_base = base_config.to_dict()
    if base_config.fill == SimConfig(mode=base_config.mode).fill:
        sim_base["fill"] = None  # the mode's own default fill, re-derived when the mode varies
    spec_base = base_spec.to_dict()
    members: list[Member] = []
    for combo in itertools.product(*(vary[n] for n in names)):
        point = dict(zip(names, combo))
        for rep in range(replications):
            sim, spec = dict(sim_base), dict(spec_base)
            for name, value in point.items():
                (sim if is_sim(name) else spec)[name] = value
            if replications > 1:
                spec["workload_seed"] = int(spec["workload_seed"]) + rep
                sim["seed"] = int(sim["seed"]) + rep
            label = dict(point, replication=rep) if replications > 1 else dict(point)
            try:
                members.append(Member(SimConfig(**sim), WorkloadSpec(**spec), label))
            except (ConfigError, SpecError) as exc:
                where = ", ".join(f"{k}={plain(setting_text(v))}" for k, v in point.items()) or "the base settings"
                raise SweepError(f"grid point {where}: {exc}") from None
    return members


# ------------------------------------------------------------------ running --
def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def _start_worker(owner: int, env: dict[str, str]) -> None:
    """A pool worker's set-up: end with ``owner`` (:mod:`core.lifetime`), then add ``env`` to its environment."""
    from .lifetime import end_with

    end_with(owner)
    os.environ.update(env)


def process_pool(workers: int | None = None, worker_env: dict[str, str] | None = None) -> Executor:
    """A local process pool (forkserver on Linux: safe to start from threads, e.g. the web app) whose
    workers end when this process does, even killed with kill -9 (:mod:`core.lifetime`);
    ``worker_env`` is added to each worker's environment when it starts."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=workers or default_workers(), mp_context=mp.get_context(method),
                               initializer=_start_worker, initargs=(os.getpid(), dict(worker_env or {})))


@contextmanager
def pool_for(executor: Executor | None, workers: int, worker_env: dict[str, str] | None = None) -> Iterator[Executor]:
    """``executor``, or (if None) a local pool of ``workers`` processes that is shut down on exit:
    at once with its queued jobs cancelled on an error or Ctrl-C, after its jobs otherwise."""
    if executor is not None:
        yield executor
        return
    pool = process_pool(workers, worker_env)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def run_members(members: Iterable[Member], job: Callable[[Member], MemberResult] = simulate_member,
                executor: Executor | None = None, on_result: Callable[[Member, MemberResult], None] | None = None,
                workers: int | None = None, max_in_flight: int | None = None) -> list[MemberResult]:
    """Run ``job`` on every member; results in the members' order.

    ``executor`` None: a local process pool of ``workers`` processes, shut down at the end.
    At most ``max_in_flight`` jobs (default: 4 per worker) are submitted at once, so an
    interrupted sweep leaves little queued. On KeyboardInterrupt the queued jobs are
    cancelled and the interrupt propagates; results already delivered to ``on_result``
    are kept (a store-side job has stored them). A job that raises, or a worker that
    dies, gives a ``failed`` result.
    """
    members = list(members)
    if not members:
        return []
    limit = max_in_flight or 4 * (workers or default_workers())
    results: list[MemberResult | None] = [None] * len(members)
    pending: dict[Future, int] = {}
    queue = iter(range(len(members)))
    with pool_for(executor, min(workers or default_workers(), len(members))) as pool:
        def fill() -> None:
            while len(pending) < limit:
                i = next(queue, None)
                if i is None:
                    return
                pending[pool.submit(job, members[i])] = i

        try:
            fill()
            while pending:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for fut in done:
                    i = pending.pop(fut)
                    results[i] = _outcome(fut, members[i])
                    if on_result is not None:
                        on_result(members[i], results[i])
                fill()
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    return [r for r in results if r is not None]


def _outcome(fut: Future, member: Member) -> MemberResult:
    try:
        out = fut.result()
    except Exception as exc:  # noqa: BLE001 - a dead worker or an unpicklable result fails one member
        return MemberResult(member.key, member.point, "failed", error=error_text(exc))
    if not isinstance(out, MemberResult):
        return MemberResult(member.key, member.point, "failed",
                            error=f"the job returned {type(out).__name__}, not a MemberResult")
    return out

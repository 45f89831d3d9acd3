"""Running sweeps, capacity searches and the stress suite through the results store.

A *plan* is a JSON-able dict, kept in the sweep's params:

* ``{"kind": "grid", "config", "spec", "vary": {name: [values]}, "replications"}``
* ``{"kind": "capacity", "config", "spec", "modes", "target", "tolerance", "replications", "start"}``
* ``{"kind": "suite", "suite": SuitePlan.to_dict()}``
* ``{"kind": "plan", "config", "spec", "options": PlanOptions.to_dict()}`` (a capacity plan, core.plan)
* ``{"kind": "runs", "members": [{"config", "spec", "upload"}], "upload"}`` (a run or a comparison)
* ``{"kind": "reproduce", "paper"}`` (a paper's tables, core.reproduce)

:func:`open_plan` finds the sweep holding the same plan (its ``key``) or creates
it; :func:`run_plan` runs it on an executor. Where results are stored: each
worker stores its own run (:class:`StoreJob`) through ``Store.get_or_run``, so
the one-row-per-hash claim protocol holds across processes and machines, only
a small summary travels back, and a run is in the store the moment it finishes.
Re-running a plan skips members already stored ``done`` for that sweep (grid and
suite runs are not even submitted; capacity probes are served from the store);
failed members are retried. An interrupt or a crash loses no finished run.
A failing member is stored ``failed`` with its error, linked to the sweep, and
the others go on. Dask workers need the store's URL to be reachable from them
(a SQLite path for a LocalCluster; a database server for remote workers). No
task carries a password (:class:`StoreJob`): a remote worker gets the store's
password from ``BATCHLAB_DB_URL`` in its own environment.

``python -m store.sweep_jobs --sweep ID [--db URL] [--cluster ...]`` runs a
stored plan. ``--standby`` starts the same runner warm (modules imported, the
engine compiled) and waits for one line on its stdin naming the job: how the web
app runs every background job (:mod:`webapp.jobs`). A stored job is cancelled by
setting ``cancel`` in its params (the runner sees it when it reports progress)
or by SIGTERM to its runner; it then ends ``cancelled``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from batchlab.core.capacity import CapacityResult, search_capacities
from batchlab.core.config import MODES, ConfigError, SimConfig
from batchlab.core.identity import SIM_VERSION
from batchlab.core.plan import check_plan_inputs
from batchlab.core.plan import plan as plan_capacity
from batchlab.core.plan_options import PlanOptions
from batchlab.core.suite import SuitePlan, tables
from batchlab.core.sweep import (
    Member,
    MemberResult,
    SweepError,
    error_text,
    expand,
    light_summary,
    member_key,
    run_members,
    simulate_member,
)
from batchlab.core.validity import SimulationError
from batchlab.workloads import WorkloadError
from batchlab.workloads.spec import WorkloadSpec

from . import claims, job_runs
from .errors import StoreError

log = logging.getLogger(__name__)
KINDS = ("grid", "capacity", "suite", "plan", "runs", "reproduce")
PROGRESS_EVERY_S = 0.5
UPLOADS = "uploads"  # the data home's folder of uploaded traces, each named by its content


def _user_errors() -> tuple:
    from batchlab.calibration import GridError

    return (ConfigError, WorkloadError, GridError, StoreError, SweepError, SimulationError)


STOPPED = "the job computing it was cancelled or its runner was stopped"


class Cancelled(KeyboardInterrupt):
    """The job was cancelled (its ``cancel`` flag) or its runner got SIGTERM: it stops like an interrupt,
    and a run it was simulating is left failed with this reason."""

Event = Callable[[int, int | None, str], None]  # (done, total or None, what)


# ---------------------------------------------------------------- the job --
_stores: dict[str, object] = {}
STORE_ENV = "BATCHLAB_DB_URL"


def _store(url: str):
    """One open store per URL and process (workers keep theirs between jobs)."""
    from .repo import open_store

    if url not in _stores:
        _stores[url] = open_store(url)
    return _stores[url]


def public_url(url) -> str:
    """A store URL without its password (nor a ``password`` query option): what a task may carry."""
    from sqlalchemy.engine import URL

    from .db import resolve_url

    u = resolve_url(str(url))[0] if isinstance(url, str) else url
    bare = URL.create(u.drivername, u.username, None, u.host, u.port, u.database, u.query)
    return bare.difference_update_query(["password"]).render_as_string(hide_password=False)


@dataclass(frozen=True)
class StoreJob:
    """A sweep job that simulates and stores a member where it runs (``Store.get_or_run``).

    A pickled StoreJob (a task sent to a worker process or a Dask cluster) carries the store's
    URL without its password: ``url`` is :func:`public_url`, ``secret`` says whether the real one
    has a password. The worker finds the real URL itself (:meth:`store_url`): the job's own copy
    when it runs in the process that made it (never pickled), else ``BATCHLAB_DB_URL`` in the
    worker's environment when it names the same store.
    """

    url: str
    sweep_id: int | None = None
    secret: bool = False
    real_url: str | None = field(default=None, repr=False, compare=False)  # left out when pickled

    @classmethod
    def for_store(cls, store, sweep_id: int | None = None) -> StoreJob:
        real = worker_url(store)
        public = public_url(store.engine.url)
        return cls(public, sweep_id, secret=real != public, real_url=real)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "real_url": None}

    def store_url(self) -> str:
        """The URL to open here (class doc); StoreError when this worker has no matching store."""
        if self.real_url is not None:
            return self.real_url
        configured = os.environ.get(STORE_ENV)
        if configured:
            try:
                if public_url(configured) == self.url:
                    return configured
            except StoreError:
                pass
        if not self.secret:
            return self.url
        raise StoreError(f"this worker has no store configured for {self.url}: set {STORE_ENV} to that URL, "
                         "with its password, in the worker's environment")

    def __call__(self, member: Member) -> MemberResult:
        from batchlab.core.identity import run_identity
        from batchlab.core.latency import build_latency_model
        from batchlab.workloads.build import build_workload

        t0 = time.perf_counter()
        run_hash = None
        try:
            store = _store(self.store_url())
            workload = build_workload(member.spec)
            grid = None
            if member.config.latency.startswith("grid:"):
                grid = store.get_grid(member.config.latency.split(":", 1)[1])
            run_hash = run_identity(member.config, workload, build_latency_model(member.config, grid))
            run, cached = store.get_or_run(member.config, workload, grid=grid, sweep_id=self.sweep_id)
        except Exception as exc:  # noqa: BLE001 - recorded, and the sweep goes on
            self._link_failed(run_hash)
            return MemberResult(member.key, member.point, "failed", run_hash=run_hash, error=error_text(exc),
                                seconds=time.perf_counter() - t0)
        if run.status != "done" or run.summary is None:
            return MemberResult(member.key, member.point, "failed", run_hash=run.hash, run_id=run.id,
                                error=run.error or f"run is {run.status}", seconds=time.perf_counter() - t0)
        return MemberResult(member.key, member.point, "done", light_summary(run.summary), run.hash, run.id, cached,
                            seconds=time.perf_counter() - t0, sim_seconds=run.duration_s)

    def _link_failed(self, run_hash: str | None) -> None:
        if run_hash is None or self.sweep_id is None:
            return
        try:
            store = _store(self.store_url())
            run_id = store.resolve_run(run_hash)
            if run_id is not None:
                store.add_sweep_run(self.sweep_id, run_id)
        except Exception:  # noqa: BLE001 - the failure itself is already reported
            log.warning("could not link failed run %s to sweep %s", run_hash[:12], self.sweep_id, exc_info=True)


def worker_url(store) -> str:
    """The store's URL with its password, for the environment of processes this machine starts
    (a sweep runner, a local pool's workers); never for a task (:class:`StoreJob`)."""
    url = store.engine.url
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise StoreError("an in-memory store cannot be shared with sweep workers; use a file or a server")
    return url.render_as_string(hide_password=False)


def worker_env(store) -> dict[str, str]:
    """What the worker processes this machine starts need to open ``store`` (see ``open_executor``)."""
    return {STORE_ENV: worker_url(store)}


# ---------------------------------------------------------------- plans --
def plan_key(plan: dict) -> str:
    blob = json.dumps({"plan": plan, "sim_version": SIM_VERSION}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def grid_plan(config: SimConfig, spec: WorkloadSpec, vary: dict[str, list], replications: int = 1) -> dict:
    expand(config, spec, vary, replications)  # validates every point now
    return {"kind": "grid", "config": config.to_dict(), "spec": spec.to_dict(), "vary": dict(vary),
            "replications": int(replications)}


def capacity_plan(config: SimConfig, spec: WorkloadSpec, modes: list[str], target: float, tolerance: float,
                  replications: int = 1, start: float | None = None) -> dict:
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise SweepError(f"--mode: unknown mode(s) {', '.join(bad) or '(none)'}; choose from {', '.join(MODES)}")
    from batchlab.core.capacity import check_capacity_inputs

    for m in modes:
        check_capacity_inputs(config.replace(mode=m), spec, target, tolerance, replications)
    return {"kind": "capacity", "config": config.to_dict(), "spec": spec.to_dict(), "modes": list(modes),
            "target": float(target), "tolerance": float(tolerance), "replications": int(replications),
            "start": start}


def suite_plan(plan: SuitePlan) -> dict:
    return {"kind": "suite", "suite": plan.to_dict()}


def gpu_plan(config: SimConfig, spec: WorkloadSpec, options: PlanOptions) -> dict:
    """A capacity plan (core.plan), validated now."""
    check_plan_inputs(config, spec, options)
    return {"kind": "plan", "config": config.to_dict(), "spec": spec.to_dict(), "options": options.to_dict()}


LINKED = ("grid", "capacity", "suite", "plan")  # the kinds a Sweeps or Plan page's link names


def plan_from_link(plan: object) -> dict:
    """The plan a shared link carries, rebuilt through its kind's builder: every value is checked as when
    the plan was made, and a setting this version added takes its default. SweepError says why it cannot
    be (an unknown kind or setting, a value out of range)."""
    kind = plan.get("kind") if isinstance(plan, dict) else None
    if kind not in LINKED:
        raise SweepError(f"the link's definition names no sweep or plan (kind {kind!r})")
    try:
        if kind == "suite":
            return suite_plan(SuitePlan.from_dict(dict(plan["suite"])))
        cfg, spec = SimConfig.from_dict(dict(plan["config"])), WorkloadSpec.from_dict(dict(plan["spec"]))
        if kind == "grid":
            vary = {str(name): list(values) for name, values in dict(plan["vary"]).items()}
            return grid_plan(cfg, spec, vary, int(plan["replications"]))
        if kind == "capacity":
            return capacity_plan(cfg, spec, [str(m) for m in plan["modes"]], float(plan["target"]),
                                 float(plan["tolerance"]), int(plan["replications"]),
                                 None if plan.get("start") is None else float(plan["start"]))
        return gpu_plan(cfg, spec, PlanOptions.from_dict(dict(plan["options"])))
    except SweepError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        why = f"{exc.args[0]!r} is missing" if isinstance(exc, KeyError) else str(exc)
        raise SweepError(f"the link's {kind} does not fit this version of batchlab: {why}") from None


def plan_title(plan: dict) -> str:
    kind = plan.get("kind")
    if kind == "grid":
        vary = ", ".join(f"{k} ({len(v)})" for k, v in plan["vary"].items()) or "no settings"
        return f"sweep over {vary}" + (f" x {plan['replications']} seeds" if plan["replications"] > 1 else "")
    if kind == "capacity":
        return f"capacity at {100 * plan['target']:g} % of {', '.join(plan['modes'])}"
    if kind == "suite":
        return "stress suite, step " + ",".join(map(str, plan["suite"]["steps"]))
    if kind == "plan":
        o = plan["options"]
        return f"plan for {100 * o['target']:g} % with up to {o['max_gpus']} GPUs: {', '.join(o['modes'])}"
    if kind == "runs":
        return job_runs.runs_title(plan)
    if kind == "reproduce":
        return f"reproduction of {plan['paper']}"
    return str(kind)


def _config(plan: dict) -> tuple[SimConfig, WorkloadSpec]:
    try:
        return SimConfig.from_dict(plan["config"]), WorkloadSpec.from_dict(plan["spec"])
    except (ConfigError, TypeError, KeyError) as exc:
        raise SweepError(f"the stored plan does not fit this version: {exc}") from None


def open_plan(store, plan: dict, name: str | None = None) -> int:
    """The id of the sweep holding ``plan`` (its key), created if there is none (one per plan, even
    when several processes open it at once)."""
    if plan.get("kind") not in KINDS:
        raise SweepError(f"plan: unknown kind {plan.get('kind')!r}")
    return store.open_sweep(plan_key(plan), (name or plan_title(plan))[:200], {"plan": plan, "status": "new"})


# ---------------------------------------------------------------- running --
@dataclass
class PlanOutcome:
    """What a plan produced: member results, capacity results, suite tables, per-step seconds, and
    a capacity plan's answer (``PlanResult.to_dict()``), a runs job's outcomes."""

    kind: str
    members: list[MemberResult] = field(default_factory=list)
    capacities: list[CapacityResult] = field(default_factory=list)
    tables: dict = field(default_factory=dict)
    step_seconds: dict = field(default_factory=dict)
    skipped: int = 0
    answer: dict | None = None
    outcomes: list[dict] = field(default_factory=list)

    @property
    def failed(self) -> list[MemberResult]:
        return [m for m in self.members if not m.ok]


class _Reporter:
    """Progress to the caller (every event) and to the sweep's params (at most twice a second);
    raises :class:`Cancelled` when a save finds the job's ``cancel`` flag set."""

    def __init__(self, store, sweep_id: int | None, on_event: Event | None):
        self.store, self.sweep_id, self.on_event = store, sweep_id, on_event
        self.done = self.failed = 0
        self.total: int | None = 0
        self.phase = ""
        self.extra: dict = {}  # a runs job's fraction done and run hashes
        self.left: int | None = None  # about how many runs are left, where the total is not known beforehand
        self._last = 0.0

    def event(self, ok: bool | None = None, force: bool = False) -> None:
        if ok is not None:
            self.done += 1
            self.failed += 0 if ok else 1
        if force or time.monotonic() - self._last >= PROGRESS_EVERY_S:
            self.save()
        if self.on_event is not None:
            self.on_event(self.done, self.total, self.phase)

    def save(self, check: bool = True) -> None:
        """Write the progress into the sweep's params."""
        self._last = time.monotonic()
        if self.store is not None and self.sweep_id is not None:
            params = self.store.update_sweep(self.sweep_id, progress={
                "done": self.done, "failed": self.failed, "total": self.total, "phase": self.phase, "left": self.left,
                **self.extra})
            if check and params.get("cancel"):
                raise Cancelled(STOPPED)

    def estimate(self, left: int) -> None:
        """About how many runs are left (a search's estimate, :func:`core.capacity.search_capacities`);
        saved with the next event (the first one at once)."""
        first, self.left = self.left is None, int(left)
        if first:
            self.save()

    def fraction(self, frac: float, phase: str, hashes: list) -> None:
        """A runs job's progress: the fraction done, what it does, the hashes of its runs."""
        self.phase, self.extra = phase, {"fraction": frac, "hashes": list(hashes)}
        self.event()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run_plan(plan: dict, executor=None, workers: int | None = None, store=None, sweep_id: int | None = None,
             on_event: Event | None = None, launched: bool = False) -> PlanOutcome:
    """Run ``plan`` (through ``store`` and linked to ``sweep_id`` when given; plain simulations otherwise).

    The sweep's params record ``status`` (running, done, interrupted, cancelled, failed), ``progress``,
    the runner's host and pid while it runs, and the ``result`` at the end. ``launched``: a web
    launch started this run, so a ``cancel`` set since then stands (otherwise an old one is cleared).
    """
    if (store is None) != (sweep_id is None):
        raise ValueError("run_plan: give both store and sweep_id, or neither")
    job = StoreJob.for_store(store, sweep_id) if store is not None else simulate_member
    stored: dict[str, dict] = {}
    if store is not None:
        stored = _stored_members(store, sweep_id)
        me = claims.this_process()
        store.update_sweep(sweep_id, status="running", started_at=_now(), finished_at=None, error=None,
                           runner={"host": me.host, "pid": me.pid, "proc_start": me.proc_start},
                           **({} if launched else {"cancel": False}))
    rep = _Reporter(store, sweep_id, on_event)
    out = PlanOutcome(plan["kind"])
    try:
        if store is not None:
            rep.save()  # a job cancelled before it started stops here
        if plan["kind"] == "grid":
            cfg, spec = _config(plan)
            members = expand(cfg, spec, plan["vary"], plan["replications"])
            _run_step(out, rep, members, stored, job, executor, workers, "runs")
        elif plan["kind"] == "capacity":
            _run_capacity(out, rep, plan, job, executor, workers)
        elif plan["kind"] == "suite":
            _run_suite(out, rep, SuitePlan.from_dict(plan["suite"]), stored, job, executor, workers)
        elif plan["kind"] == "plan":
            _run_gpu_plan(out, rep, plan, job, executor, workers)
        elif plan["kind"] == "runs":
            if store is None:
                raise SweepError("a runs job stores its runs: it needs a store")
            out.outcomes = job_runs.run_runs(plan, store, sweep_id, rep.fraction)
        elif plan["kind"] == "reproduce":
            rep.phase, rep.total = "simulating the paper's tables", None
            rep.event(force=True)

            def ran(phase: str, ok: bool) -> None:
                rep.phase = phase
                rep.event(ok)

            out.tables = job_runs.run_reproduce(plan, executor, workers, ran, rep.estimate)
        else:
            raise SweepError(f"plan: unknown kind {plan['kind']!r}")
    except BaseException as exc:
        if store is not None:
            _record_end(store, sweep_id, rep, exc)
        raise
    if store is not None:
        rep.save()
        store.update_sweep(sweep_id, status="done", finished_at=_now(), runner=None, result=result_record(out))
    return out


def _record_end(store, sweep_id: int, rep: _Reporter, exc: BaseException) -> None:
    """The job's end state after ``exc``: cancelled (its flag is set), interrupted or failed; a
    failure records its one-line error and whether a user can act on it (``user_error``)."""
    try:
        rep.save(check=False)
        cancel = bool(store.get_sweep(sweep_id).params.get("cancel"))
    except Exception:  # noqa: BLE001 - the store itself may be what failed; say what we can
        log.warning("could not save the progress of job %s", sweep_id, exc_info=True)
        cancel = False
    if isinstance(exc, KeyboardInterrupt):
        status = "cancelled" if cancel else "interrupted"
        store.update_sweep(sweep_id, status=status, finished_at=_now(), error=None, runner=None)
        return
    user = isinstance(exc, _user_errors())
    if not user:
        log.error("job %s failed", sweep_id, exc_info=exc)
    store.update_sweep(sweep_id, status="failed", finished_at=_now(), error=error_text(exc), user_error=user,
                       runner=None)


def result_record(out: PlanOutcome) -> dict:
    """The JSON kept in the sweep's params at the end (capacities, suite tables with their column
    order, step times, counts, a runs job's outcomes)."""
    return {"capacities": [c.to_dict() for c in out.capacities],
            "tables": {k: json.loads(v.to_json(orient="records")) for k, v in out.tables.items()},
            "columns": {k: [str(c) for c in v.columns] for k, v in out.tables.items()},
            "step_seconds": out.step_seconds, "skipped": out.skipped,
            "failed": len(out.failed), "runs": len(out.members), "answer": out.answer, "outcomes": out.outcomes}


def _stored_members(store, sweep_id: int) -> dict[str, dict]:
    """The sweep's ``done`` member runs (``Store.sweep_members`` rows) by member key."""
    out = {}
    for m in store.sweep_members(sweep_id):
        if m["status"] != "done" or m["spec"] is None:
            continue
        try:
            out[member_key(SimConfig.from_dict(m["config"]).relevant_dict(), m["spec"])] = m
        except (ConfigError, TypeError):
            continue
    return out


def _run_step(out: PlanOutcome, rep: _Reporter, members: list[Member], stored: dict[str, dict], job, executor,
              workers, phase: str) -> list[MemberResult]:
    """Run the members not stored yet; results of all of them (stored ones first), appended to ``out``."""
    todo = [m for m in members if m.key not in stored]
    kept = []
    for m in members:
        row = stored.get(m.key)
        if row is not None:
            kept.append(MemberResult(m.key, m.point, "done", row["summary"], row["hash"], row["id"], True,
                                     sim_seconds=row["duration_s"]))
    rep.phase = phase
    rep.total = (rep.total or 0) + len(todo)
    rep.event(force=True)
    results = kept + run_members(todo, job, executor, lambda m, r: rep.event(r.ok), workers)
    # members served without simulating: the sweep's own, and runs the store held but had not linked
    # to it yet (a process killed between storing a run and linking it)
    out.skipped += sum(r.cached for r in results)
    out.members += results
    return results


def _run_capacity(out: PlanOutcome, rep: _Reporter, plan: dict, job, executor, workers) -> None:
    cfg, spec = _config(plan)
    bases = [(cfg.replace(mode=m), spec) for m in plan["modes"]]
    rep.phase, rep.total = "capacity probes", None
    rep.event(force=True)
    out.capacities = search_capacities(bases, plan["target"], plan["tolerance"], plan["replications"], executor,
                                       job, workers, start=plan.get("start"),
                                       on_probe=lambda b, p, s: rep.event(p.error is None), on_left=rep.estimate)


def _run_gpu_plan(out: PlanOutcome, rep: _Reporter, plan: dict, job, executor, workers) -> None:
    cfg, spec = _config(plan)
    try:
        options = PlanOptions.from_dict(plan["options"])
    except (TypeError, KeyError, ValueError) as exc:
        raise SweepError(f"the stored plan does not fit this version: {exc}") from None
    rep.total = None

    def on_run(phase: str, ok: bool) -> None:
        rep.phase = phase
        rep.event(ok)

    out.answer = plan_capacity(cfg, spec, options, executor, job, workers, on_run, rep.estimate).to_dict()


def _run_suite(out: PlanOutcome, rep: _Reporter, plan: SuitePlan, stored: dict[str, dict], job, executor,
               workers) -> None:
    for step in plan.steps:
        t0 = time.perf_counter()
        _run_step(out, rep, plan.members(step), stored, job, executor, workers, f"step {step}")
        if step == 3:
            bases, labels = plan.capacity_bases()
            rep.phase = "step 3 capacity"
            out.capacities = search_capacities(bases, plan.capacity_target, plan.capacity_tolerance, 1, executor,
                                               job, workers, labels=labels,
                                               on_probe=lambda b, p, s: rep.event(p.error is None),
                                               on_left=rep.estimate)
        out.step_seconds[str(step)] = time.perf_counter() - t0
    out.tables = tables(out.members, out.capacities)


# ---------------------------------------------------------------- entry point --
ENV_PREFIX = "BATCHLAB_"
NO_EXECUTOR = ("runs",)  # kinds that run in the runner itself


def _store_url(db: str | None) -> str:
    from .db import resolve_url

    return resolve_url(db)[0].render_as_string(hide_password=False)


def _warm() -> None:
    """What every job needs, loaded before its order comes: the simulator, the engine, and the store
    this process's environment names (most orders name it too)."""
    import batchlab.core.simulation  # noqa: F401 (imported for what it loads)
    import batchlab.workloads.build  # noqa: F401
    from batchlab.core.continuous_engine import ensure_compiled, warm_up

    ensure_compiled()  # waits for a compile another process (the app's launch) has under way
    warm_up()          # loads it
    try:
        _store(_store_url(None)).get_sweep(1)
    except StoreError:
        pass  # the order names the store to use; opening that one reports the problem


def read_order(stream) -> dict | None:
    """A standby runner's order: one JSON line ``{"sweep": ID, "env": {...}, "cluster", "workers"}``
    (None at end of input: whoever started it is gone). ``env`` replaces every ``BATCHLAB_*``
    variable, so one warm runner serves any store and data home."""
    line = stream.readline()
    if not line.strip():
        return None
    order = json.loads(line)
    if not isinstance(order, dict) or not isinstance(order.get("sweep"), int):
        raise SweepError("standby: the order names no job")
    env = {str(k): str(v) for k, v in (order.get("env") or {}).items() if str(k).startswith(ENV_PREFIX)}
    for k in [k for k in os.environ if k.startswith(ENV_PREFIX) and k not in env]:
        del os.environ[k]
    os.environ.update(env)
    return order


def log_to(sweep_id: int) -> None:
    """Send this process's output to the job's log (``BATCHLAB_HOME/sweep-logs/sweep-ID.log``)."""
    from .paths import data_home

    logs = data_home() / "sweep-logs"
    logs.mkdir(parents=True, exist_ok=True)
    fd = os.open(logs / f"sweep-{sweep_id}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _terminated(signum, frame) -> None:
    raise Cancelled(STOPPED)  # the job ends cancelled when its flag says so, else interrupted


def run_job(sweep_id: int, db: str | None = None, cluster: str | None = None, workers: int | None = None) -> None:
    """Run the stored job ``sweep_id`` (a web launch: a ``cancel`` set since then stands)."""
    from batchlab.core.executors import open_executor

    store = _store(_store_url(db))
    row = store.get_sweep(sweep_id)
    if row is None:
        raise StoreError(f"no job {sweep_id} in {store.url}")
    plan = row.params.get("plan") or {}
    if plan.get("kind") in NO_EXECUTOR:
        run_plan(plan, None, None, store, row.id, launched=True)
        return
    with open_executor(cluster, workers, worker_env(store)) as (executor, n):
        run_plan(plan, executor, n, store, row.id, launched=True)


def main(argv: list[str] | None = None) -> int:
    """Run a stored job: ``python -m store.sweep_jobs --sweep ID [--db URL] [--cluster C] [--workers N]``,
    or ``--standby``: warm up, then run the job named on stdin (:func:`read_order`)."""
    ap = argparse.ArgumentParser(prog="python -m store.sweep_jobs", description=main.__doc__)
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--sweep", type=int)
    which.add_argument("--standby", action="store_true")
    ap.add_argument("--db", default=None)
    ap.add_argument("--cluster", default=None)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _terminated)
    try:
        sweep_id, cluster, workers = args.sweep, args.cluster, args.workers
        if args.standby:
            _warm()
            order = read_order(sys.stdin)
            if order is None:
                return 0
            sys.stdin.close()
            sweep_id, cluster, workers = order["sweep"], order.get("cluster"), order.get("workers")
            log_to(sweep_id)
        run_job(sweep_id, args.db, cluster, workers)
    except (SweepError, StoreError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def runner_alive(params: dict) -> bool:
    """Whether the process running this sweep (on this host) is still there."""
    runner = params.get("runner") or {}
    if params.get("status") not in ("starting", "running") or not runner:
        return False
    if runner.get("host") != socket.gethostname():
        return True  # cannot tell from here
    return claims.pid_alive(int(runner["pid"]), runner.get("proc_start"))


if __name__ == "__main__":
    sys.exit(main())

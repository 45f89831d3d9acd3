"""The repository API: :func:`open_store` and :class:`Store`.

Cache semantics (:meth:`Store.get_or_run`): a run's identity is its hash
(:func:`core.run_identity`: relevant config + workload identity + latency model
identity + simulator version). The ``runs`` table holds at most one row per
hash (a unique constraint), so there can never be two ``done`` copies:

1. a ``done`` row is returned as it is (a cache hit, nothing simulated);
2. otherwise the caller claims the hash: it inserts a ``running`` row (the
   unique constraint lets exactly one of several racing callers win), or takes
   over a ``failed`` or stale row with a compare-and-set on its claim token;
3. a caller that finds a live claim of another thread or process waits for it
   (polling, up to the staleness timeout) and then returns its result, so a run
   asked for by many at once is computed once;
4. the claimant simulates, then writes status, metrics, bins, series and arrays
   in ONE transaction, conditional on the row not being ``done`` yet; a
   simulation error marks the row ``failed`` with the error text.

A process killed mid-run therefore leaves a ``running`` row (shown as stale
once its process is gone, see :mod:`store.claims`) and never a half-written
``done`` run; the next ``get_or_run`` takes the claim over.

A SQLite store is checked whole (``PRAGMA quick_check``) before the first write
of each :class:`Store`: a damaged one is refused with :class:`StoreError` and
never written to (see :mod:`store.db`); reads are not checked.

A read-only store (see :mod:`store.db`) serves every read, including a
``get_or_run`` of a stored run; anything that would write raises
:class:`StoreError` saying the store is read-only. A run deleted while a
:class:`StoredRun` of it is in use raises :class:`RunDeletedError` when its
arrays or series are loaded, never empty data.

Keys are validated the same way on every backend: run and sweep ids are
``1..MAX_ID`` (an id beyond that names no run), ``limit``/``offset`` are
``0..MAX_ROWS`` (:mod:`store.keys`).

All methods are safe to call from several threads; each opens its own
connection from the engine's pool.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import Engine, Text, delete, func, insert, or_, select, type_coerce, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from . import claims, payload
from .codec import pack_frame, unpack_frame
from .db import (
    check_integrity,
    check_sqlite_file,
    display_url,
    make_engine,
    read_only_reason,
    read_only_requested,
    resolve_url,
    sqlite_path,
    write_connection,
)
from .errors import RunDeletedError, StoreError, describe_db_error
from .grids import GridsMixin
from .keys import MAX_ID, check_count, check_search, could_be_hash_prefix, valid_id
from .migrate import require_current, stored_revision, upgrade
from .migrations import HEAD
from .models import BIN_COLUMNS, METRIC_COLUMNS, Run, RunBin, RunData, RunSeries, finite_or_none, utcnow
from .records import RUN_ROW_COLUMNS, RunRow, StoredRun
from .sweeps import SweepsMixin

if TYPE_CHECKING:
    from batchlab.core.config import SimConfig
    from batchlab.core.result import RunResult
    from batchlab.workloads.workload import Workload

log = logging.getLogger(__name__)

ORDERABLE = frozenset(RUN_ROW_COLUMNS) - {"error", "stale"}
_ERROR_AT = RUN_ROW_COLUMNS.index("error")
_CLAIM_COLUMNS = (Run.c.host, Run.c.pid, Run.c.proc_start, Run.c.started_at)
# RunRow columns, claim columns, then config and workload as raw JSON text (RunRow parses it when asked)
_ROW_SELECT = (*(Run.c[c] for c in RUN_ROW_COLUMNS), *_CLAIM_COLUMNS, type_coerce(Run.c.config, Text),
               type_coerce(Run.c.workload, Text))
STATUSES = ("running", "done", "failed", "stale")
MAX_ERROR_CHARS = 20_000


def code_version() -> str:
    """The batchlab package version and the simulator's result version."""
    import importlib.metadata

    from batchlab.core.identity import SIM_VERSION

    try:
        version = importlib.metadata.version("batchlab")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"batchlab {version}, sim {SIM_VERSION}"


def open_store(url: str | None = None, *, request_cap: int = payload.REQUEST_CAP,
               stale_after_s: float | None = None) -> Store:
    """Open (creating or upgrading as needed) the store at ``url`` > ``BATCHLAB_DB_URL`` > default.

    Raises :class:`StoreError` for a non-database or corrupt file (left untouched),
    an unreachable server, or a schema written by a newer batchlab. A SQLite file
    that cannot be written (or ``?mode=ro``) is opened read-only when it needs no
    migration (:attr:`Store.read_only`).
    """
    parsed, is_default = resolve_url(url)
    path = sqlite_path(parsed)
    where = str(path) if path else display_url(parsed)
    read_only, immutable = None, False
    if path is not None:
        if is_default:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the data directory {path.parent}: {exc.strerror}") from None
        elif not path.parent.is_dir():
            raise StoreError(f"cannot open the store at {path}: directory {path.parent} does not exist")
        read_only = read_only_reason(path, read_only_requested(parsed))
        if read_only and not path.exists():
            raise StoreError(f"cannot open the store at {path} read-only: there is no such file")
        if not path.exists() and not os.access(path.parent, os.W_OK | os.X_OK):
            raise StoreError(f"cannot create the store at {path}: directory {path.parent} is not writable")
        immutable = check_sqlite_file(path, read_only)
    engine = make_engine(parsed, read_only=read_only is not None, immutable=immutable)
    checked = False
    try:
        if read_only:
            require_current(engine, where, read_only)
        else:
            if path is not None and stored_revision(engine) != HEAD:  # a migration writes
                check_integrity(engine, path)
                checked = True
            upgrade(engine, where)
    except StoreError:
        engine.dispose()
        raise
    except (SQLAlchemyError, OSError) as exc:
        engine.dispose()
        raise StoreError(f"cannot open the store at {where}: "
                         f"{describe_db_error(exc).removeprefix('database error: ')}") from None
    return Store(engine, parsed, request_cap=request_cap, stale_after_s=stale_after_s, read_only=read_only,
                 intact=checked)


class Store(SweepsMixin, GridsMixin):
    """Runs, their metrics, series and arrays; sweeps (:mod:`store.sweeps`); calibration grids
    (:mod:`store.grids`). See the module doc."""

    def __init__(self, engine: Engine, url: URL, *, request_cap: int = payload.REQUEST_CAP,
                 stale_after_s: float | None = None, read_only: str | None = None, intact: bool = False):
        self.engine = engine
        self.url = display_url(url)
        self._file = sqlite_path(url)
        self._intact = intact or self._file is None  # a server (or memory) keeps its own integrity
        self._intact_lock = threading.Lock()
        self.backend = engine.dialect.name
        self.request_cap = int(request_cap)
        self.stale_after_s = claims.stale_after_default() if stale_after_s is None else float(stale_after_s)
        self.read_only_reason = read_only

    @property
    def read_only(self) -> bool:
        """Whether this store can only be read (``read_only_reason`` says why)."""
        return self.read_only_reason is not None

    def require_writable(self, what: str) -> None:
        """Raise StoreError ("... is read-only ...: cannot <what>") unless the store can be written."""
        if self.read_only_reason is not None:
            raise StoreError(f"the store at {self.url} is read-only ({self.read_only_reason}): cannot {what}")

    def _writing(self, what: str):
        """A write transaction (:func:`store.db.write_connection`) on a writable, intact store."""
        self.require_writable(what)
        if not self._intact:
            with self._intact_lock:  # the first write of this store checks the whole file, once
                if not self._intact:
                    check_integrity(self.engine, self._file)
                    self._intact = True
        return write_connection(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    # ------------------------------------------------------------ runs: write
    def get_or_run(self, config: SimConfig, workload: Workload, grid=None,
                   progress: Callable[[float], None] | None = None, simulate_fn: Callable | None = None, *,
                   sweep_id: int | None = None, wait: bool = True) -> tuple[StoredRun, bool]:
        """The stored run for (config, workload), simulating and storing it if needed.

        Returns ``(run, served_from_store)``. ``grid``: for ``latency = grid:NAME``
        without a grid, NAME is looked up in the store's grids, else core falls back
        to its bundled grids. ``simulate_fn`` replaces :func:`core.simulate` (same
        signature). ``wait=False`` raises StoreError instead of waiting for another
        live claim of the same run. ``sweep_id`` links the run to a sweep.
        """
        from batchlab.core.identity import run_identity
        from batchlab.core.latency import build_latency_model
        from batchlab.core.simulation import simulate

        if sweep_id is not None:
            self.require_sweep(sweep_id)
        if grid is None and config.latency.startswith("grid:"):
            grid = self.get_grid(config.latency.split(":", 1)[1])
        latency = build_latency_model(config, grid)
        run_hash = run_identity(config, workload, latency)
        claim = self._acquire(run_hash, config, workload, latency.identity, wait)
        if isinstance(claim, StoredRun):
            if sweep_id is not None:
                self.add_sweep_run(sweep_id, claim.id)
            return _judged(claim, config, workload), True
        run_id, token = claim
        started = time.perf_counter()
        try:
            result = (simulate_fn or simulate)(config, workload, grid=grid, progress=progress)
            if result.run_hash != run_hash:
                raise StoreError(f"the simulation returned run {result.run_hash[:12]} for claim {run_hash[:12]} "
                                 "(run identity is not deterministic)")
            return _judged(self._store_done(result, workload.identity, sweep_id), config, workload), False
        except BaseException as exc:
            # a live process must not leave a 'running' claim behind (others would wait for it);
            # a no-op if the run got stored after all
            self._mark_failed(run_id, token, exc, time.perf_counter() - started)
            raise

    def save_result(self, result: RunResult, workload: Workload | None = None, *,
                    sweep_id: int | None = None) -> StoredRun:
        """Store a finished result (one transaction); an identical ``done`` run is kept and returned."""
        self.require_writable(f"store run {result.run_hash[:12]}")
        if sweep_id is not None:
            self.require_sweep(sweep_id)
        identity = workload.identity if workload is not None else result.meta.get("workload", {})
        return self._store_done(result, identity, sweep_id)

    def _claim_values(self, token: str) -> dict:
        me = claims.this_process()
        return {"status": "running", "claim": token, "host": me.host, "pid": me.pid, "proc_start": me.proc_start,
                "started_at": utcnow(), "finished_at": None, "error": None, "duration_s": None}

    @staticmethod
    def _run_values(config, workload, latency_identity: dict) -> dict:
        """What a claim row records about the run (built only when a claim is written)."""
        return {"config": config.to_dict(), "workload": workload.identity, "latency": latency_identity,
                "code_version": code_version(), "label": workload.identity.get("label"), "mode": config.mode,
                "gpus": config.gpus, "k_bins": config.bins, "num_requests": len(workload)}

    def _acquire(self, run_hash: str, config, workload, latency_identity: dict, wait: bool):
        """A done StoredRun, or (run_id, claim token) once this caller holds the claim."""
        unstored = f"store the new run {run_hash[:12]} (simulate it without the store instead)"
        delay = 0.02
        while True:
            with self.engine.connect() as conn:
                row = conn.execute(select(Run.c.id, Run.c.status, Run.c.claim, Run.c.host, Run.c.pid, Run.c.proc_start,
                                          Run.c.started_at).where(Run.c.hash == run_hash)).first()
            token = uuid.uuid4().hex
            if row is None:
                try:
                    with self._writing(unstored) as conn:
                        values = {"hash": run_hash, "created_at": utcnow(),
                                  **self._run_values(config, workload, latency_identity), **self._claim_values(token)}
                        run_id = conn.execute(insert(Run).values(**values)).inserted_primary_key[0]
                    return run_id, token
                except IntegrityError:
                    continue  # another caller claimed it first
            if row.status == "done":
                run = self.get_run(row.id)
                if run is not None:
                    return run
                continue
            if row.status == "running" and not self._stale(row):
                if not wait:
                    raise StoreError(f"run {row.id} ({run_hash[:12]}) is being computed by pid {row.pid} on "
                                     f"{row.host}")
                time.sleep(delay)
                delay = min(delay * 1.5, 0.5)
                continue
            with self._writing(unstored) as conn:  # failed or stale: take it over
                taken = conn.execute(update(Run).where(Run.c.id == row.id, Run.c.status == row.status,
                                                       Run.c.claim == row.claim)
                                     .values(**self._run_values(config, workload, latency_identity),
                                             **self._claim_values(token))).rowcount
            if taken == 1:
                if row.status == "running":
                    log.warning("took over stale run %s (pid %s on %s)", row.id, row.pid, row.host)
                return row.id, token

    def _mark_failed(self, run_id: int, token: str, exc: BaseException, elapsed: float) -> None:
        import traceback

        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        if not isinstance(exc, (KeyboardInterrupt, StoreError)):
            text += "\n\n" + "".join(traceback.format_exception(exc))
        try:
            with write_connection(self.engine) as conn:
                conn.execute(update(Run).where(Run.c.id == run_id, Run.c.claim == token, Run.c.status == "running")
                             .values(status="failed", error=text[:MAX_ERROR_CHARS], finished_at=utcnow(),
                                     duration_s=elapsed))
        except Exception:  # the original error matters more; the claim goes stale when we exit
            log.exception("could not mark run %s failed", run_id)

    def _store_done(self, result: RunResult, workload_identity: dict, sweep_id: int | None) -> StoredRun:
        run_hash = result.run_hash
        from batchlab.core.slo_report import strip

        summary = strip(result.summary)   # the judgement (SLOs, classes) is not the run's: never stored
        bins = summary.pop("bins", [])
        cfg = result.config
        now = utcnow()
        wall = result.meta.get("wall_s")
        values: dict[str, Any] = {
            "status": "done", "finished_at": now, "error": None,
            "duration_s": float(wall) if wall is not None else None, "config": cfg.to_dict(),
            "workload": workload_identity, "latency": result.meta.get("latency", {}),
            "code_version": code_version(), "label": workload_identity.get("label"), "mode": cfg.mode,
            "gpus": cfg.gpus, "k_bins": cfg.bins, "num_requests": int(summary.get("num_requests", 0)),
            "summary": summary, **{m: finite_or_none(summary.get(m)) for m in METRIC_COLUMNS},
        }
        # the CPU work happens before the write transaction opens
        blob, facts = payload.encode(result.requests, result.batches, result.bin_edges, run_hash, self.request_cap)
        series = [{"name": name, "rows": len(frame), "data": pack_frame(frame)}
                  for name, frame in result.series().items()]
        bin_rows = [{"bin": int(b["bin"]), "requests": int(b["requests"]), "batches": int(b["batches"] or 0),
                     "data": b, **{c: finite_or_none(b.get(c)) for c in BIN_COLUMNS}} for b in bins]
        data_row = {"codec": payload.CODEC, "num_requests": facts["num_requests"],
                    "stored_requests": facts["stored_requests"], "sampled": facts["sampled"],
                    "nbytes": len(blob), "payload": blob}
        for attempt in range(5):
            try:
                with self._writing(f"store run {run_hash[:12]}") as conn:
                    row = conn.execute(select(Run.c.id, Run.c.status).where(Run.c.hash == run_hash)).first()
                    if row is not None and row.status == "done":
                        run_id = row.id  # someone else finished first: theirs is kept
                    else:
                        if row is not None:
                            changed = conn.execute(update(Run).where(Run.c.id == row.id, Run.c.status != "done")
                                                   .values(**values)).rowcount
                            if changed != 1:
                                raise _Retry  # finished by someone else since our SELECT (PostgreSQL)
                            run_id = row.id
                        else:
                            me = claims.this_process()
                            started = now - timedelta(seconds=float(wall or 0.0))
                            run_id = conn.execute(insert(Run).values(
                                hash=run_hash, created_at=now, started_at=started, claim=uuid.uuid4().hex,
                                host=me.host, pid=me.pid, proc_start=me.proc_start, **values)).inserted_primary_key[0]
                        if bin_rows:
                            conn.execute(insert(RunBin), [dict(r, run_id=run_id) for r in bin_rows])
                        if series:
                            conn.execute(insert(RunSeries), [dict(r, run_id=run_id) for r in series])
                        conn.execute(insert(RunData).values(run_id=run_id, **data_row))
                break
            except (IntegrityError, _Retry):  # a concurrent insert or finish: look again
                if attempt == 4:
                    raise StoreError(f"could not store run {run_hash[:12]}: it kept changing concurrently") from None
        if sweep_id is not None:  # membership is not part of the run: the run is safe even if this fails
            self.add_sweep_run(sweep_id, run_id)
        run = self.get_run(run_id)
        if run is None:
            raise StoreError(f"run {run_hash[:12]} was deleted while it was being stored")
        return run

    # ------------------------------------------------------------- runs: read
    def _stale(self, row) -> bool:
        return claims.is_stale(row.status, row.host, row.pid, row.proc_start, row.started_at, utcnow(),
                               self.stale_after_s)

    def resolve_run(self, key: int | str) -> int | None:
        """The id of the run ``key`` names: an id, a full hash or a hash prefix (>= 4 characters).

        An id outside ``1..MAX_ID`` names no run (on every backend); a digit string is tried
        as an id first, then as a hash prefix."""
        if isinstance(key, int) and not isinstance(key, bool):
            return self._existing_id(key) if valid_id(key) else None
        text_key = str(key).strip().lower()
        if text_key.isascii() and text_key.isdigit():
            as_id = int(text_key) if len(text_key) <= len(str(MAX_ID)) else None  # no int() of huge strings
            found = self._existing_id(as_id) if valid_id(as_id) else None
            if found is not None or len(text_key) < 4:
                return found
        if len(text_key) < 4:
            raise StoreError(f"run {key!r}: give a run id or at least 4 characters of its hash")
        if not could_be_hash_prefix(text_key):
            return None  # not a hash prefix: no run has it
        with self.engine.connect() as conn:
            ids = conn.execute(select(Run.c.id).where(Run.c.hash.startswith(text_key, autoescape=True))
                               .limit(2)).scalars().all()
        if len(ids) > 1:
            raise StoreError(f"run {text_key!r}: the hash prefix matches several runs; give more characters")
        return ids[0] if ids else None

    def _existing_id(self, run_id: int) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(select(Run.c.id).where(Run.c.id == run_id)).scalar()

    def get_run(self, key: int | str) -> StoredRun | None:
        """The run with this id, hash or hash prefix (None if there is none).

        The row, its per-bin metrics and its data facts are read together: a run deleted
        meanwhile reads as None, never as a ``done`` run without its bins or data."""
        run_id = self.resolve_run(key)
        if run_id is None:
            return None
        with self.engine.connect() as conn:
            r = conn.execute(select(*Run.c).where(Run.c.id == run_id)).mappings().first()
            if r is None:
                return None
            bins = conn.execute(select(RunBin.c.data).where(RunBin.c.run_id == run_id)
                                .order_by(RunBin.c.bin)).scalars().all()
            facts = conn.execute(select(RunData.c.stored_requests, RunData.c.sampled)
                                 .where(RunData.c.run_id == run_id)).first()
        if r["status"] == "done" and facts is None:
            return None  # deleted between our reads (PostgreSQL reads each statement's own snapshot)
        summary = None
        if r["summary"] is not None:
            summary = dict(r["summary"])
            summary["bins"] = list(bins)
        return StoredRun(
            id=r["id"], hash=r["hash"], status=r["status"], stale=self._stale(_Claim(r)),
            created_at=r["created_at"], started_at=r["started_at"], finished_at=r["finished_at"],
            duration_s=r["duration_s"], error=r["error"], config_dict=r["config"], workload=r["workload"],
            latency=r["latency"], code_version=r["code_version"], label=r["label"], mode=r["mode"], gpus=r["gpus"],
            k_bins=r["k_bins"], num_requests=r["num_requests"],
            stored_requests=facts.stored_requests if facts else None, sampled=bool(facts.sampled) if facts else False,
            summary=summary, _store=self)

    def _status_or_deleted(self, conn, run_id: int, run_hash: str, what: str) -> str:
        """The run's status; RunDeletedError if the run is gone (its ``what`` with it)."""
        status = conn.execute(select(Run.c.status).where(Run.c.id == run_id)).scalar()
        if status is None:
            raise RunDeletedError(f"run {run_id} ({run_hash[:12]}) was deleted from the store while it was "
                                  f"being read: its {what} are gone")
        return status

    def _load_arrays(self, run_id: int, run_hash: str) -> tuple:
        with self.engine.connect() as conn:
            blob = conn.execute(select(RunData.c.payload).where(RunData.c.run_id == run_id)).scalar()
            if blob is None:
                status = self._status_or_deleted(conn, run_id, run_hash, "per-request data")
                if status == "done":
                    raise StoreError(f"run {run_id} ({run_hash[:12]}) is done but its per-request data is "
                                     "missing from the store")
                return {}, {}, None, {}  # not finished: no arrays yet
        return payload.decode(blob)

    def _load_series(self, run_id: int, run_hash: str) -> dict:
        with self.engine.connect() as conn:
            rows = conn.execute(select(RunSeries.c.name, RunSeries.c.data).where(RunSeries.c.run_id == run_id)).all()
            if not rows:
                self._status_or_deleted(conn, run_id, run_hash, "chart series")
        return {name: unpack_frame(data) for name, data in rows}

    def _filters(self, mode, status, search) -> list:
        conds = []
        if mode:
            conds.append(Run.c.mode == mode)
        if status:
            if status not in STATUSES:
                raise StoreError(f"status: must be one of {', '.join(STATUSES)}, got {status!r}")
            conds.append(Run.c.status == ("running" if status == "stale" else status))
        if search:
            s = check_search(search)
            conds.append(or_(Run.c.label.icontains(s, autoescape=True), Run.c.mode.icontains(s, autoescape=True),
                             Run.c.hash.startswith(s.lower(), autoescape=True)))
        return conds

    def list_runs(self, mode: str | None = None, status: str | None = None, search: str | None = None,
                  order_by: str = "created_at", descending: bool = True, limit: int | None = None,
                  offset: int = 0) -> list[RunRow]:
        """Light rows (no blobs). ``status``: done, failed, running (live claims) or stale (running
        claims whose process is gone or that timed out); ``search`` matches
        the workload label or mode (case-insensitive substring) or a hash prefix."""
        if order_by not in ORDERABLE:
            raise StoreError(f"order_by: cannot sort by {order_by!r} (choose from {', '.join(sorted(ORDERABLE))})")
        offset = check_count("offset", offset)
        limit = None if limit is None else check_count("limit", limit)
        col = Run.c[order_by]
        order = (col.desc() if descending else col.asc()).nulls_last()
        q = (select(*_ROW_SELECT)
             .where(*self._filters(mode, status, search))
             .order_by(order, Run.c.id.desc() if descending else Run.c.id.asc()))
        python_page = status in ("running", "stale")  # staleness is judged here, not in SQL
        if not python_page:
            q = q.offset(offset or None).limit(limit)
        with self.engine.connect() as conn:
            out = self._make_rows(conn.execute(q).all())
        if python_page:
            out = [r for r in out if r.stale == (status == "stale")][offset:]
            out = out[:limit] if limit is not None else out
        return out

    def count_runs(self, mode: str | None = None, status: str | None = None, search: str | None = None) -> int:
        if status in ("running", "stale"):
            return len(self.list_runs(mode=mode, status=status, search=search))
        with self.engine.connect() as conn:
            return conn.execute(select(func.count(Run.c.id)).where(*self._filters(mode, status, search))).scalar()

    def delete_run(self, key: int | str, force: bool = False) -> bool:
        """Delete a run and everything stored with it; a live ``running`` claim needs ``force``."""
        run_id = self.resolve_run(key)
        if run_id is None:
            return False
        with self._writing(f"delete run {run_id}") as conn:
            row = conn.execute(select(Run.c.id, Run.c.status, Run.c.host, Run.c.pid, Run.c.proc_start, Run.c.started_at)
                               .where(Run.c.id == run_id)).first()
            if row is None:
                return False
            if row.status == "running" and not force and not self._stale(row):
                raise StoreError(f"run {run_id} is being computed right now (pid {row.pid} on {row.host}); "
                                 "wait for it to finish or force the delete")
            return conn.execute(delete(Run).where(Run.c.id == run_id)).rowcount == 1

    def export_runs(self, ids: Iterable[int | str] | None = None, fmt: str = "csv",
                    out: str | Path | IO[str] | None = None) -> int:
        """Write runs (all, or those ``ids`` name) as CSV (one row per run) or JSON; returns the count."""
        from .export import write_runs

        if ids is None:  # every run; one deleted meanwhile is simply no longer part of "every run"
            runs = [self.get_run(r.id) for r in self.list_runs(order_by="id", descending=False)]
            return write_runs([r for r in runs if r is not None], fmt, out)
        runs = []
        for key in ids:
            run_id = self.resolve_run(key)
            if run_id is None:
                raise StoreError(f"no run {key!r} in the store")
            run = self.get_run(run_id)
            if run is None:
                raise RunDeletedError(f"run {run_id} was deleted from the store while it was being exported")
            runs.append(run)
        return write_runs(runs, fmt, out)

    def _rows_by_id(self, ids: list[int]) -> list[RunRow]:
        out: list[RunRow] = []
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                q = select(*_ROW_SELECT).where(Run.c.id.in_(ids[i:i + 500]))
                out += self._make_rows(conn.execute(q).all())
        return out

    def _make_rows(self, rows) -> list[RunRow]:
        """RunRows from ``_ROW_SELECT`` tuples: RUN_ROW_COLUMNS, the claim columns, config and workload."""
        n, e = len(RUN_ROW_COLUMNS), _ERROR_AT
        now, after = utcnow(), self.stale_after_s
        out = []
        for r in rows:
            stale = r[2] == "running" and claims.is_stale(r[2], r[n], r[n + 1], r[n + 2], r[n + 3], now, after)
            err = r[e]
            out.append(RunRow(r[0], r[1], r[2], stale, *r[3:e], err.split("\n", 1)[0] if err else None,
                              *r[e + 1:n], _sources=(r[n + 4], r[n + 5])))
        return out


class _Retry(Exception):
    """The row changed between our read and our write: redo the transaction."""


class _Claim:
    """Adapter: a mapping row read as the attributes ``_stale`` needs."""

    __slots__ = ("status", "host", "pid", "proc_start", "started_at")

    def __init__(self, r):
        for k in self.__slots__:
            setattr(self, k, r[k])


def _judged(run: StoredRun, config: SimConfig, workload: Workload) -> StoredRun:
    """``run`` with its summary judged by ``config``'s percentile SLOs and request classes (core.slo_report),
    which may differ from those of the run that stored it: they are not in the run hash."""
    from batchlab.core import slo_report

    if run.summary is not None and slo_report.judged(config):
        run.summary = slo_report.with_assessment(config, run.summary, run.requests, workload.priority)
    return run

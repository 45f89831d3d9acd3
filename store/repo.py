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

All methods are safe to call from several threads; each opens its own
connection from the engine's pool.
"""
from __future__ import annotations

import importlib.metadata
import logging
import time
import traceback
import uuid
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterable

from sqlalchemy import Engine, delete, func, insert, or_, select, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from . import claims, payload
from .codec import pack_frame, unpack_frame
from .db import check_sqlite_file, display_url, make_engine, resolve_url, sqlite_path, write_connection
from .errors import StoreError, describe_db_error
from .grids import GridsMixin
from .migrate import upgrade
from .models import BIN_COLUMNS, METRIC_COLUMNS, Run, RunBin, RunData, RunSeries, finite_or_none, utcnow
from .records import RUN_ROW_COLUMNS, RunRow, StoredRun
from .sweeps import SweepsMixin

if TYPE_CHECKING:
    from core.config import SimConfig
    from core.result import RunResult
    from workloads.workload import Workload

log = logging.getLogger(__name__)

ORDERABLE = frozenset(RUN_ROW_COLUMNS) - {"error", "stale"}
_ERROR_AT = RUN_ROW_COLUMNS.index("error")
_CLAIM_COLUMNS = (Run.host, Run.pid, Run.proc_start, Run.started_at)
STATUSES = ("running", "done", "failed", "stale")
MAX_ERROR_CHARS = 20_000


def code_version() -> str:
    """The batchlab package version and the simulator's result version."""
    from core.identity import SIM_VERSION

    try:
        version = importlib.metadata.version("batchlab")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"batchlab {version}, sim {SIM_VERSION}"


def open_store(url: str | None = None, *, request_cap: int = payload.REQUEST_CAP,
               stale_after_s: float | None = None) -> "Store":
    """Open (creating or upgrading as needed) the store at ``url`` > ``BATCHLAB_DB_URL`` > default.

    Raises :class:`StoreError` for a non-database or corrupt file (left untouched),
    an unreachable server, or a schema written by a newer batchlab.
    """
    parsed, is_default = resolve_url(url)
    path = sqlite_path(parsed)
    where = str(path) if path else display_url(parsed)
    if path is not None:
        if is_default:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the data directory {path.parent}: {exc.strerror}") from None
        elif not path.parent.is_dir():
            raise StoreError(f"cannot open the store at {path}: directory {path.parent} does not exist")
        check_sqlite_file(path)
    engine = make_engine(parsed)
    try:
        upgrade(engine, where)
    except StoreError:
        engine.dispose()
        raise
    except (SQLAlchemyError, OSError) as exc:
        engine.dispose()
        raise StoreError(f"cannot open the store at {where}: "
                         f"{describe_db_error(exc).removeprefix('database error: ')}") from None
    return Store(engine, parsed, request_cap=request_cap, stale_after_s=stale_after_s)


class Store(SweepsMixin, GridsMixin):
    """Runs, their metrics, series and arrays; sweeps (:mod:`store.sweeps`); calibration grids
    (:mod:`store.grids`). See the module doc."""

    def __init__(self, engine: Engine, url: URL, *, request_cap: int = payload.REQUEST_CAP,
                 stale_after_s: float | None = None):
        self.engine = engine
        self.url = display_url(url)
        self.backend = engine.dialect.name
        self.request_cap = int(request_cap)
        self.stale_after_s = claims.stale_after_default() if stale_after_s is None else float(stale_after_s)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    # ------------------------------------------------------------ runs: write
    def get_or_run(self, config: "SimConfig", workload: "Workload", grid=None,
                   progress: Callable[[float], None] | None = None, simulate_fn: Callable | None = None, *,
                   sweep_id: int | None = None, wait: bool = True) -> tuple[StoredRun, bool]:
        """The stored run for (config, workload), simulating and storing it if needed.

        Returns ``(run, served_from_store)``. ``grid``: for ``latency = grid:NAME``
        without a grid, NAME is looked up in the store's grids, else core falls back
        to its bundled grids. ``simulate_fn`` replaces :func:`core.simulate` (same
        signature). ``wait=False`` raises StoreError instead of waiting for another
        live claim of the same run. ``sweep_id`` links the run to a sweep.
        """
        from core.simulation import build_latency_model, run_identity, simulate

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
            return claim, True
        run_id, token = claim
        started = time.perf_counter()
        try:
            result = (simulate_fn or simulate)(config, workload, grid=grid, progress=progress)
            if result.run_hash != run_hash:
                raise StoreError(f"the simulation returned run {result.run_hash[:12]} for claim {run_hash[:12]} "
                                 "(run identity is not deterministic)")
            return self._store_done(result, workload.identity, sweep_id), False
        except BaseException as exc:
            # a live process must not leave a 'running' claim behind (others would wait for it);
            # a no-op if the run got stored after all
            self._mark_failed(run_id, token, exc, time.perf_counter() - started)
            raise

    def save_result(self, result: "RunResult", workload: "Workload | None" = None, *,
                    sweep_id: int | None = None) -> StoredRun:
        """Store a finished result (one transaction); an identical ``done`` run is kept and returned."""
        if sweep_id is not None:
            self.require_sweep(sweep_id)
        identity = workload.identity if workload is not None else result.meta.get("workload", {})
        return self._store_done(result, identity, sweep_id)

    def _claim_values(self, token: str) -> dict:
        me = claims.this_process()
        return {"status": "running", "claim": token, "host": me.host, "pid": me.pid, "proc_start": me.proc_start,
                "started_at": utcnow(), "finished_at": None, "error": None, "duration_s": None}

    def _acquire(self, run_hash: str, config, workload, latency_identity: dict, wait: bool):
        """A done StoredRun, or (run_id, claim token) once this caller holds the claim."""
        what = {"config": config.to_dict(), "workload": workload.identity, "latency": latency_identity,
                "code_version": code_version(), "label": workload.identity.get("label"), "mode": config.mode,
                "gpus": config.gpus, "k_bins": config.bins, "num_requests": len(workload)}
        delay = 0.02
        while True:
            with self.engine.connect() as conn:
                row = conn.execute(select(Run.id, Run.status, Run.claim, Run.host, Run.pid, Run.proc_start,
                                          Run.started_at).where(Run.hash == run_hash)).first()
            token = uuid.uuid4().hex
            if row is None:
                try:
                    with write_connection(self.engine) as conn:
                        values = {"hash": run_hash, "created_at": utcnow(), **what, **self._claim_values(token)}
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
            with write_connection(self.engine) as conn:  # failed or stale: take it over
                taken = conn.execute(update(Run).where(Run.id == row.id, Run.status == row.status,
                                                       Run.claim == row.claim)
                                     .values(**what, **self._claim_values(token))).rowcount
            if taken == 1:
                if row.status == "running":
                    log.warning("took over stale run %s (pid %s on %s)", row.id, row.pid, row.host)
                return row.id, token

    def _mark_failed(self, run_id: int, token: str, exc: BaseException, elapsed: float) -> None:
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        if not isinstance(exc, (KeyboardInterrupt, StoreError)):
            text += "\n\n" + "".join(traceback.format_exception(exc))
        try:
            with write_connection(self.engine) as conn:
                conn.execute(update(Run).where(Run.id == run_id, Run.claim == token, Run.status == "running")
                             .values(status="failed", error=text[:MAX_ERROR_CHARS], finished_at=utcnow(),
                                     duration_s=elapsed))
        except Exception:  # the original error matters more; the claim goes stale when we exit
            log.exception("could not mark run %s failed", run_id)

    def _store_done(self, result: "RunResult", workload_identity: dict, sweep_id: int | None) -> StoredRun:
        run_hash = result.run_hash
        summary = dict(result.summary)
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
                with write_connection(self.engine) as conn:
                    row = conn.execute(select(Run.id, Run.status).where(Run.hash == run_hash)).first()
                    if row is not None and row.status == "done":
                        run_id = row.id  # someone else finished first: theirs is kept
                    else:
                        if row is not None:
                            changed = conn.execute(update(Run).where(Run.id == row.id, Run.status != "done")
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
        """The id of the run ``key`` names: an id, a full hash or a hash prefix (>= 4 characters)."""
        text_key = str(key).strip().lower()
        with self.engine.connect() as conn:
            if isinstance(key, int) or (text_key.isdigit() and len(text_key) <= 18):
                found = conn.execute(select(Run.id).where(Run.id == int(text_key))).scalar()
                if found is not None or isinstance(key, int) or len(text_key) < 4:
                    return found
            if len(text_key) < 4:
                raise StoreError(f"run {key!r}: give a run id or at least 4 characters of its hash")
            ids = conn.execute(select(Run.id).where(Run.hash.startswith(text_key, autoescape=True))
                               .limit(2)).scalars().all()
        if len(ids) > 1:
            raise StoreError(f"run {text_key!r}: the hash prefix matches several runs; give more characters")
        return ids[0] if ids else None

    def get_run(self, key: int | str) -> StoredRun | None:
        """The run with this id, hash or hash prefix (None if there is none)."""
        run_id = self.resolve_run(key)
        if run_id is None:
            return None
        with self.engine.connect() as conn:
            r = conn.execute(select(*Run.__table__.c).where(Run.id == run_id)).mappings().first()
            if r is None:
                return None
            bins = conn.execute(select(RunBin.data).where(RunBin.run_id == run_id).order_by(RunBin.bin)).scalars().all()
            facts = conn.execute(select(RunData.stored_requests, RunData.sampled)
                                 .where(RunData.run_id == run_id)).first()
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

    def _load_arrays(self, run_id: int) -> tuple:
        with self.engine.connect() as conn:
            blob = conn.execute(select(RunData.payload).where(RunData.run_id == run_id)).scalar()
        if blob is None:
            return {}, {}, None, {}
        return payload.decode(blob)

    def _load_series(self, run_id: int) -> dict:
        with self.engine.connect() as conn:
            rows = conn.execute(select(RunSeries.name, RunSeries.data).where(RunSeries.run_id == run_id)).all()
        return {name: unpack_frame(data) for name, data in rows}

    def _filters(self, mode, status, search) -> list:
        conds = []
        if mode:
            conds.append(Run.mode == mode)
        if status:
            if status not in STATUSES:
                raise StoreError(f"status: must be one of {', '.join(STATUSES)}, got {status!r}")
            conds.append(Run.status == ("running" if status == "stale" else status))
        if search:
            s = search.strip()
            conds.append(or_(Run.label.icontains(s, autoescape=True), Run.mode.icontains(s, autoescape=True),
                             Run.hash.startswith(s.lower(), autoescape=True)))
        return conds

    def list_runs(self, mode: str | None = None, status: str | None = None, search: str | None = None,
                  order_by: str = "created_at", descending: bool = True, limit: int | None = None,
                  offset: int = 0) -> list[RunRow]:
        """Light rows (no blobs). ``status``: done, failed, running (live claims) or stale (running
        claims whose process is gone or that timed out); ``search`` matches
        the workload label or mode (case-insensitive substring) or a hash prefix."""
        if order_by not in ORDERABLE:
            raise StoreError(f"order_by: cannot sort by {order_by!r} (choose from {', '.join(sorted(ORDERABLE))})")
        col = getattr(Run, order_by)
        order = (col.desc() if descending else col.asc()).nulls_last()
        cols = [getattr(Run, c) for c in RUN_ROW_COLUMNS]
        q = (select(*cols, *_CLAIM_COLUMNS)
             .where(*self._filters(mode, status, search))
             .order_by(order, Run.id.desc() if descending else Run.id.asc()))
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
            return conn.execute(select(func.count(Run.id)).where(*self._filters(mode, status, search))).scalar()

    def delete_run(self, key: int | str, force: bool = False) -> bool:
        """Delete a run and everything stored with it; a live ``running`` claim needs ``force``."""
        run_id = self.resolve_run(key)
        if run_id is None:
            return False
        with write_connection(self.engine) as conn:
            row = conn.execute(select(Run.id, Run.status, Run.host, Run.pid, Run.proc_start, Run.started_at)
                               .where(Run.id == run_id)).first()
            if row is None:
                return False
            if row.status == "running" and not force and not self._stale(row):
                raise StoreError(f"run {run_id} is being computed right now (pid {row.pid} on {row.host}); "
                                 "wait for it to finish or force the delete")
            return conn.execute(delete(Run).where(Run.id == run_id)).rowcount == 1

    def export_runs(self, ids: Iterable[int | str] | None = None, fmt: str = "csv",
                    out: str | Path | IO[str] | None = None) -> int:
        """Write runs (all, or those ``ids`` name) as CSV (one row per run) or JSON; returns the count."""
        from .export import write_runs

        if ids is None:
            run_ids = [r.id for r in self.list_runs(order_by="id", descending=False)]
        else:
            run_ids = []
            for key in ids:
                run_id = self.resolve_run(key)
                if run_id is None:
                    raise StoreError(f"no run {key!r} in the store")
                run_ids.append(run_id)
        runs = [self.get_run(i) for i in run_ids]
        return write_runs([r for r in runs if r is not None], fmt, out)

    def _rows_by_id(self, ids: list[int]) -> list[RunRow]:
        out: list[RunRow] = []
        cols = [getattr(Run, c) for c in RUN_ROW_COLUMNS]
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                q = select(*cols, *_CLAIM_COLUMNS).where(Run.id.in_(ids[i:i + 500]))
                out += self._make_rows(conn.execute(q).all())
        return out

    def _make_rows(self, rows) -> list[RunRow]:
        """RunRows from (RUN_ROW_COLUMNS..., host, pid, proc_start, started_at) tuples."""
        n, e = len(RUN_ROW_COLUMNS), _ERROR_AT
        now, after = utcnow(), self.stale_after_s
        out = []
        for r in rows:
            stale = r[2] == "running" and claims.is_stale(r[2], r[n], r[n + 1], r[n + 2], r[n + 3], now, after)
            err = r[e]
            out.append(RunRow(r[0], r[1], r[2], stale, *r[3:e], err.split("\n", 1)[0] if err else None,
                              *r[e + 1:n]))
        return out


class _Retry(Exception):
    """The row changed between our read and our write: redo the transaction."""


class _Claim:
    """Adapter: a mapping row read as the attributes ``_stale`` needs."""

    __slots__ = ("status", "host", "pid", "proc_start", "started_at")

    def __init__(self, r):
        for k in self.__slots__:
            setattr(self, k, r[k])

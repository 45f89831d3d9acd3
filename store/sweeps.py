"""Sweeps: a named set of runs (e.g. one per grid point), in the order they were added.

A run can belong to several sweeps; deleting a sweep keeps its runs, deleting a
run removes it from its sweeps. A sweep's ``params`` (JSON) hold its plan (what
:mod:`store.sweep_jobs` runs), its ``key`` (the plan's hash: the same plan finds
the same sweep), and what its runner reports: ``status``, ``progress``,
``result`` and the runner's host and pid.
"""
from __future__ import annotations

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from .errors import StoreError
from .keys import valid_id
from .models import Run, Sweep, SweepRun, utcnow
from .records import RunRow, SweepRow


class SweepsMixin:
    """The sweep methods of :class:`store.repo.Store`."""

    def create_sweep(self, name: str, params: dict | None = None) -> int:
        with self._writing(f"create sweep {name!r}") as conn:
            return conn.execute(insert(Sweep).values(name=name, params=params or {}, created_at=utcnow())
                                ).inserted_primary_key[0]

    @staticmethod
    def _sweep_exists(conn, sweep_id: int) -> bool:
        if not valid_id(sweep_id):
            return False
        return conn.execute(select(Sweep.c.id).where(Sweep.c.id == sweep_id)).scalar() is not None

    def _link(self, conn, sweep_id: int, run_id: int) -> None:
        if not self._sweep_exists(conn, sweep_id):
            raise StoreError(f"no sweep {sweep_id} in the store")
        exists = conn.execute(select(SweepRun.c.run_id).where(SweepRun.c.sweep_id == sweep_id,
                                                            SweepRun.c.run_id == run_id)).scalar()
        if exists is None:
            pos = conn.execute(select(func.coalesce(func.max(SweepRun.c.position), -1) + 1)
                               .where(SweepRun.c.sweep_id == sweep_id)).scalar()
            conn.execute(insert(SweepRun).values(sweep_id=sweep_id, run_id=run_id, position=pos))

    def add_sweep_run(self, sweep_id: int, run_id: int) -> None:
        """Add a run to a sweep (idempotent; members keep the order they were added in)."""
        if not valid_id(run_id):
            raise StoreError(f"cannot add run {run_id!r} to sweep {sweep_id}: no such run")
        try:
            with self._writing(f"add run {run_id} to sweep {sweep_id}") as conn:
                self._link(conn, sweep_id, run_id)
        except IntegrityError:
            raise StoreError(f"cannot add run {run_id} to sweep {sweep_id}: no such run") from None

    def list_sweeps(self) -> list[SweepRow]:
        members = (select(SweepRun.c.sweep_id, func.count().label("n")).group_by(SweepRun.c.sweep_id).subquery())
        q = (select(Sweep.c.id, Sweep.c.name, Sweep.c.params, Sweep.c.created_at, func.coalesce(members.c.n, 0))
             .outerjoin(members, members.c.sweep_id == Sweep.c.id).order_by(Sweep.c.id.desc()))
        with self.engine.connect() as conn:
            return [SweepRow(*r) for r in conn.execute(q).all()]

    def sweep_runs(self, sweep_id: int) -> list[RunRow]:
        """The sweep's member runs, in the order they were added."""
        if not valid_id(sweep_id):
            return []
        with self.engine.connect() as conn:
            ids = conn.execute(select(SweepRun.c.run_id).where(SweepRun.c.sweep_id == sweep_id)
                               .order_by(SweepRun.c.position)).scalars().all()
        by_id = {r.id: r for r in self._rows_by_id(ids)}
        return [by_id[i] for i in ids if i in by_id]

    def require_sweep(self, sweep_id: int) -> None:
        """Raise StoreError unless the sweep exists."""
        with self.engine.connect() as conn:
            if not self._sweep_exists(conn, sweep_id):
                raise StoreError(f"no sweep {sweep_id} in the store")

    def get_sweep(self, sweep_id: int) -> SweepRow | None:
        if not valid_id(sweep_id):
            return None
        members = select(func.count()).where(SweepRun.c.sweep_id == sweep_id).scalar_subquery()
        q = select(Sweep.c.id, Sweep.c.name, Sweep.c.params, Sweep.c.created_at, members).where(Sweep.c.id == sweep_id)
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return SweepRow(*row) if row is not None else None

    def find_sweep(self, key: str) -> SweepRow | None:
        """The newest sweep whose ``params["key"]`` is ``key`` (a plan's hash), if any."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(Sweep.c.id, Sweep.c.params).order_by(Sweep.c.id.desc())).all()
        for sweep_id, params in rows:
            if (params or {}).get("key") == key:
                return self.get_sweep(sweep_id)
        return None

    def update_sweep(self, sweep_id: int, **changes) -> dict:
        """Merge ``changes`` into the sweep's params (one transaction); returns the new params."""
        with self._writing(f"update sweep {sweep_id}") as conn:
            params = conn.execute(select(Sweep.c.params).where(Sweep.c.id == sweep_id)).scalar()
            if params is None:
                raise StoreError(f"no sweep {sweep_id} in the store")
            params = {**params, **changes}
            conn.execute(update(Sweep).where(Sweep.c.id == sweep_id).values(params=params))
        return params

    def sweep_members(self, sweep_id: int) -> list[dict]:
        """Each member run as plain data: id, hash, status, error (first line), config, workload
        spec, summary (no per-bin rows; None unless done), in the order they were added."""
        q = (select(Run.c.id, Run.c.hash, Run.c.status, Run.c.error, Run.c.config, Run.c.workload, Run.c.summary,
                    Run.c.duration_s)
             .join(SweepRun, SweepRun.c.run_id == Run.c.id).where(SweepRun.c.sweep_id == sweep_id)
             .order_by(SweepRun.c.position))
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [{"id": r.id, "hash": r.hash, "status": r.status,
                 "error": r.error.split("\n", 1)[0] if r.error else None, "config": r.config,
                 "spec": (r.workload or {}).get("spec"), "summary": r.summary, "duration_s": r.duration_s}
                for r in rows]

    def delete_sweep(self, sweep_id: int) -> bool:
        """Delete a sweep (its runs stay in the store)."""
        if not valid_id(sweep_id):
            return False
        with self._writing(f"delete sweep {sweep_id}") as conn:
            return conn.execute(delete(Sweep).where(Sweep.c.id == sweep_id)).rowcount == 1

"""Sweeps: a named set of runs (e.g. one per grid point), in the order they were added.

A run can belong to several sweeps; deleting a sweep keeps its runs, deleting a
run removes it from its sweeps.
"""
from __future__ import annotations

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from .errors import StoreError
from .keys import valid_id
from .models import Sweep, SweepRun, utcnow
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

    def delete_sweep(self, sweep_id: int) -> bool:
        """Delete a sweep (its runs stay in the store)."""
        if not valid_id(sweep_id):
            return False
        with self._writing(f"delete sweep {sweep_id}") as conn:
            return conn.execute(delete(Sweep).where(Sweep.c.id == sweep_id)).rowcount == 1

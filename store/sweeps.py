"""Sweeps: a named set of runs (e.g. one per grid point), in the order they were added.

A run can belong to several sweeps; deleting a sweep keeps its runs, deleting a
run removes it from its sweeps. A sweep's ``key`` (the hash of the plan it runs)
is unique in the database: :meth:`SweepsMixin.open_sweep` gives every process
that opens the same plan the same sweep, however many do it at once. Its
``params`` (JSON) hold its plan (what :mod:`store.sweep_jobs` runs) and what its
runner reports: ``status``, ``progress``, ``result`` and the runner's host and pid.

Linking a run to a sweep is idempotent and safe under concurrency: the linker
locks the sweep's row (``SELECT ... FOR NO KEY UPDATE`` on PostgreSQL; a SQLite
write transaction holds the whole file), so the linkers of one sweep take turns,
each member is linked once and gets the next free position (positions are unique
per sweep in the database).
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
        """A new sweep without a key (nothing finds it by its plan)."""
        with self._writing(f"create sweep {name!r}") as conn:
            return conn.execute(insert(Sweep).values(name=name, params=params or {}, created_at=utcnow())
                                ).inserted_primary_key[0]

    def open_sweep(self, key: str, name: str, params: dict | None = None) -> int:
        """The id of the sweep whose key is ``key``, created with ``name`` and ``params`` if none has it.

        Atomic across processes: the key is unique in the database, so of several processes
        creating it at once one insert wins and the others read the winner's sweep."""
        for _ in range(3):
            found = self._sweep_id(key)
            if found is not None:
                return found
            try:
                with self._writing(f"create sweep {name!r}") as conn:
                    return conn.execute(insert(Sweep).values(key=key, name=name, params=params or {},
                                                             created_at=utcnow())).inserted_primary_key[0]
            except IntegrityError:
                continue  # another process created it since we looked: read theirs
        raise StoreError(f"cannot open sweep {name!r}: a sweep with its key kept being created and deleted "
                         "by other processes")

    def _sweep_id(self, key: str) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(select(Sweep.c.id).where(Sweep.c.key == key)).scalar()

    @staticmethod
    def _sweep_exists(conn, sweep_id: int) -> bool:
        if not valid_id(sweep_id):
            return False
        return conn.execute(select(Sweep.c.id).where(Sweep.c.id == sweep_id)).scalar() is not None

    @staticmethod
    def _link(conn, sweep_id: int, run_id: int) -> None:
        """Link a run to a sweep in ``conn``'s write transaction (a no-op if it is a member already)."""
        locked = valid_id(sweep_id) and conn.execute(
            select(Sweep.c.id).where(Sweep.c.id == sweep_id).with_for_update(key_share=True)).scalar()
        if not locked:
            raise StoreError(f"no sweep {sweep_id} in the store")
        if conn.execute(select(Run.c.id).where(Run.c.id == run_id)).scalar() is None:
            raise StoreError(f"cannot add run {run_id} to sweep {sweep_id}: no such run")
        linked = conn.execute(select(SweepRun.c.run_id).where(SweepRun.c.sweep_id == sweep_id,
                                                              SweepRun.c.run_id == run_id)).scalar()
        if linked is None:
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
        except IntegrityError:  # the run was deleted between our check and the insert
            raise StoreError(f"cannot add run {run_id} to sweep {sweep_id}: no such run") from None

    def list_sweeps(self) -> list[SweepRow]:
        members = (select(SweepRun.c.sweep_id, func.count().label("n")).group_by(SweepRun.c.sweep_id).subquery())
        q = (select(Sweep.c.id, Sweep.c.name, Sweep.c.params, Sweep.c.created_at, func.coalesce(members.c.n, 0),
                    Sweep.c.key)
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
        q = (select(Sweep.c.id, Sweep.c.name, Sweep.c.params, Sweep.c.created_at, members, Sweep.c.key)
             .where(Sweep.c.id == sweep_id))
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return SweepRow(*row) if row is not None else None

    def find_sweep(self, key: str) -> SweepRow | None:
        """The sweep whose key is ``key`` (a plan's hash), if any."""
        found = self._sweep_id(key)
        return self.get_sweep(found) if found is not None else None

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

"""One sweep per plan, one position per member: ``sweeps.key`` (unique) and a unique
(sweep_id, position) on ``sweep_runs``.

``key`` is filled from the plan hash that earlier releases kept in ``params["key"]`` (the
params are left as they were). Where several sweeps share a key (two processes that opened
the same plan at once), the newest keeps it, as the newest was the one a rerun resumed; the
older ones keep their members and params and lose only the key, so nothing resumes them.
Members that shared a position (two runs linked at once) are renumbered in the order
(position, run id), which is the order they were listed in.

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

sweeps = sa.table("sweeps", sa.column("id", sa.Integer()), sa.column("params", sa.Text()),
                  sa.column("key", sa.String(64)))
sweep_runs = sa.table("sweep_runs", sa.column("sweep_id", sa.Integer()), sa.column("run_id", sa.Integer()),
                      sa.column("position", sa.Integer()))


def _plan_key(params: str | None) -> str | None:
    try:
        key = json.loads(params or "{}").get("key")
    except (TypeError, ValueError, AttributeError):
        return None
    return key if isinstance(key, str) and 0 < len(key) <= 64 else None


def upgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(sa.Column("key", sa.String(64), nullable=True))
    conn = op.get_bind()
    taken: set[str] = set()
    for sweep_id, params in conn.execute(sa.select(sweeps.c.id, sweeps.c.params).order_by(sweeps.c.id.desc())):
        key = _plan_key(params)
        if key is not None and key not in taken:  # newest first: the newest of a key keeps it
            taken.add(key)
            conn.execute(sweeps.update().where(sweeps.c.id == sweep_id).values(key=key))
    op.create_index("ix_sweeps_key", "sweeps", ["key"], unique=True)

    shared = (sa.select(sweep_runs.c.sweep_id).group_by(sweep_runs.c.sweep_id, sweep_runs.c.position)
              .having(sa.func.count() > 1).distinct())
    for sweep_id in conn.execute(shared).scalars().all():
        members = conn.execute(sa.select(sweep_runs.c.run_id).where(sweep_runs.c.sweep_id == sweep_id)
                               .order_by(sweep_runs.c.position, sweep_runs.c.run_id)).scalars().all()
        for position, run_id in enumerate(members):
            conn.execute(sweep_runs.update().where(sweep_runs.c.sweep_id == sweep_id, sweep_runs.c.run_id == run_id)
                         .values(position=position))
    op.create_index("uq_sweep_runs_position", "sweep_runs", ["sweep_id", "position"], unique=True)


def downgrade() -> None:
    """Back to 0002, which finds a sweep by ``params["key"]``: the key moves back there."""
    conn = op.get_bind()
    for sweep_id, params, key in conn.execute(sa.select(sweeps.c.id, sweeps.c.params, sweeps.c.key)
                                              .where(sweeps.c.key.is_not(None))):
        data = json.loads(params or "{}")
        if data.get("key") != key:
            conn.execute(sweeps.update().where(sweeps.c.id == sweep_id)
                         .values(params=json.dumps({**data, "key": key}, separators=(",", ":"))))
    op.drop_index("uq_sweep_runs_position", table_name="sweep_runs")
    op.drop_index("ix_sweeps_key", table_name="sweeps")
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("key")

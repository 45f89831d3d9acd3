"""runs.label (the workload's label, so ``runs list --search`` filters in SQL) and an index
on runs.created_at (the default listing order). Existing runs get their label from the
workload identity they already store.

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("label", sa.Text(), nullable=True))
    op.create_index("ix_runs_created_at", "runs", ["created_at"])
    runs = sa.table("runs", sa.column("id", sa.Integer()), sa.column("workload", sa.Text()),
                    sa.column("label", sa.Text()))
    conn = op.get_bind()
    for run_id, workload in conn.execute(sa.select(runs.c.id, runs.c.workload)).all():
        try:
            label = json.loads(workload).get("label")
        except (TypeError, ValueError, AttributeError):
            label = None
        if label is not None:
            conn.execute(runs.update().where(runs.c.id == run_id).values(label=str(label)))


def downgrade() -> None:
    op.drop_index("ix_runs_created_at", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("label")

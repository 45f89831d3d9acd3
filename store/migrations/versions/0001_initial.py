"""Initial schema: runs with their bins, series and arrays; sweeps; calibration grids.

Revision ID: 0001
Revises:
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
METRICS = ("throughput_rps", "throughput_tps", "latency_mean_s", "latency_p50_s", "latency_p95_s",
           "latency_p99_s", "ttft_mean_s", "ttft_p99_s", "tbt_mean_s", "queue_delay_mean_s",
           "sla_attainment", "sla_violation_rate_ttft", "sla_violation_rate_tbt", "sla_violation_rate_e2e",
           "gpu_utilization", "mean_batch_size", "makespan_s")
BIN_METRICS = ("pred_lo", "pred_hi", "mean_batch_size", "latency_mean_s", "latency_p99_s", "ttft_mean_s",
               "tbt_mean_s", "sla_attainment", "sla_violation_rate_ttft", "sla_violation_rate_tbt",
               "sla_violation_rate_e2e")


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("finished_at", TZ, nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("proc_start", sa.BigInteger(), nullable=True),
        sa.Column("claim", sa.String(32), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("workload", sa.Text(), nullable=False),
        sa.Column("latency", sa.Text(), nullable=False),
        sa.Column("code_version", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(32), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("k_bins", sa.Integer(), nullable=False),
        sa.Column("num_requests", sa.Integer(), nullable=False),
        *[sa.Column(m, sa.Float(), nullable=True) for m in METRICS],
        sa.Column("summary", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.UniqueConstraint("hash", name="uq_runs_hash"),
        sa.CheckConstraint("status IN ('running', 'done', 'failed')", name="ck_runs_status"),
        sqlite_autoincrement=True,  # run ids are never reused after a delete
    )
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_index("ix_runs_mode", "runs", ["mode"])

    op.create_table(
        "run_bins",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("bin", sa.Integer(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("batches", sa.Integer(), nullable=False),
        *[sa.Column(m, sa.Float(), nullable=True) for m in BIN_METRICS],
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "bin", name="pk_run_bins"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE", name="fk_run_bins_run_id_runs"),
    )
    op.create_table(
        "run_series",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "name", name="pk_run_series"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE", name="fk_run_series_run_id_runs"),
    )
    op.create_table(
        "run_data",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("codec", sa.String(32), nullable=False),
        sa.Column("num_requests", sa.Integer(), nullable=False),
        sa.Column("stored_requests", sa.Integer(), nullable=False),
        sa.Column("sampled", sa.Boolean(), nullable=False),
        sa.Column("nbytes", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_run_data"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE", name="fk_run_data_run_id_runs"),
    )
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sweeps"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "sweep_runs",
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("sweep_id", "run_id", name="pk_sweep_runs"),
        sa.ForeignKeyConstraint(["sweep_id"], ["sweeps.id"], ondelete="CASCADE",
                                name="fk_sweep_runs_sweep_id_sweeps"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE", name="fk_sweep_runs_run_id_runs"),
    )
    op.create_index("ix_sweep_runs_run_id", "sweep_runs", ["run_id"])
    op.create_table(
        "grids",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("device", sa.String(200), nullable=True),
        sa.Column("dtype", sa.String(64), nullable=True),
        sa.Column("source", sa.String(200), nullable=True),
        sa.Column("uploaded_at", TZ, nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("meta", sa.Text(), nullable=False),
        sa.Column("warnings", sa.Text(), nullable=False),
        sa.Column("csv", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_grids"),
        sa.UniqueConstraint("name", name="uq_grids_name"),
        sa.UniqueConstraint("sha256", name="uq_grids_sha256"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    for table in ("grids", "sweep_runs", "sweeps", "run_data", "run_series", "run_bins", "runs"):
        op.drop_table(table)

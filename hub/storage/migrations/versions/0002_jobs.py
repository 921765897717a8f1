"""Jobs, tasks, buckets, report keys; client tags and boot ids.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.String(24)


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("boot_id", sa.String(64), nullable=False, server_default=""))
    op.create_table(
        "jobs",
        sa.Column("id", ID, primary_key=True),
        sa.Column("code", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("queue", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("user_id", ID, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("parent_id", ID, nullable=True),
        sa.Column("source_scope", sa.String(16), nullable=False),
        sa.Column("source_id", sa.String(255), nullable=False),
        sa.Column("destination_scope", sa.String(16), nullable=False),
        sa.Column("destination_id", sa.String(255), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("modified", sa.DateTime(), nullable=False),
        sa.Column("modifier", ID, nullable=True),
        sa.Column("started", sa.DateTime(), nullable=True),
        sa.Column("finished", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_jobs_status", "jobs", ["status"])
    op.create_index("ix_jobs_finished", "jobs", ["finished"])
    op.create_table(
        "tasks",
        sa.Column("id", ID, primary_key=True),
        sa.Column("job_id", ID, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("uri", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("item", sa.String(1024), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("bucket_id", ID, nullable=True),
        sa.Column("client_id", ID, nullable=True),
        sa.Column("lane_id", ID, nullable=True),
        sa.Column("abort_to", sa.String(16), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("log_tail", sa.Text(), nullable=False),
        sa.Column("has_log", sa.Boolean(), nullable=False),
        sa.Column("cpu_seconds", sa.Float(), nullable=True),
        sa.Column("peak_memory", sa.BigInteger(), nullable=True),
        sa.Column("time", sa.BigInteger(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("modified", sa.DateTime(), nullable=False),
        sa.Column("started", sa.DateTime(), nullable=True),
        sa.Column("finished", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_tasks_job_status", "tasks", ["job_id", "status"])
    op.create_index("ix_tasks_job_finished", "tasks", ["job_id", "finished"])
    op.create_index("ix_tasks_status", "tasks", ["status"])
    op.create_index("ix_tasks_bucket_id", "tasks", ["bucket_id"])
    op.create_table(
        "buckets",
        sa.Column("id", ID, primary_key=True),
        sa.Column("job_id", ID, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("client_id", ID, nullable=False),
        sa.Column("lane_id", ID, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("leased_until", sa.DateTime(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("started", sa.DateTime(), nullable=True),
        sa.Column("ended", sa.DateTime(), nullable=True),
        sa.Column("time", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_buckets_job_id", "buckets", ["job_id"])
    op.create_index("ix_buckets_client_id", "buckets", ["client_id"])
    op.create_index("ix_buckets_status", "buckets", ["status"])
    op.create_index("ix_buckets_leased_until", "buckets", ["leased_until"])
    op.create_table(
        "report_keys",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("received", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in ("report_keys", "buckets", "tasks", "jobs"):
        op.drop_table(table)
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("boot_id")
        batch.drop_column("tags")

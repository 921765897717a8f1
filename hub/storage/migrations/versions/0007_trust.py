"""Trust boundaries: report keys belong to the reporting client and its bucket; a user's
API keys remember the password they were made under, and may expire.

A report's idempotency key used to be global, so one agent could spend another's keys
(its real reports were then answered "duplicate"). Keys kept from before are given the
client and bucket they were applied for (an agent's keys start with the bucket's id);
those that name no bucket are dropped: they could only ever answer a resend.

A bucket remembers the tasks leased in it (``task_ids``): the log of a run is taken
only for a task that ran in that bucket, from that bucket's agent, even once the task is
queued again and runs elsewhere. Buckets from before have none: for them the task's
current bucket is what counts.

An API key made by a user stops working once that user's password changes: each key
keeps the password's version (``hub.security.password_version``) from when it was made;
keys from before are given their user's current one.

Pages of a job's tasks are read in id order: the index ``ix_tasks_job_id``. It is built
in the migration's transaction (not CONCURRENTLY): on a hub with millions of tasks,
task writes wait for it during the upgrade.

Revision ID: 0007
Revises: 0006
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ID = sa.String(24)


def upgrade() -> None:
    # the table is made anew under its own name (a renamed one would keep the old name
    # for its primary key on PostgreSQL), its rows kept aside meanwhile
    _set_aside("report_keys", "key, received")
    op.create_table(
        "report_keys",
        sa.Column("client_id", ID, primary_key=True),
        sa.Column("bucket_id", ID, primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("received", sa.DateTime(), nullable=False),
    )
    op.execute(
        "INSERT INTO report_keys (client_id, bucket_id, key, received) "
        "SELECT b.client_id, b.id, k.key, k.received FROM report_keys_aside k "
        "JOIN buckets b ON b.id = substr(k.key, 1, 24)")
    op.drop_table("report_keys_aside")
    op.create_index("ix_report_keys_received", "report_keys", ["received"])

    with op.batch_alter_table("buckets") as batch:
        batch.add_column(sa.Column("task_ids", sa.JSON(), nullable=True))
    # a page of one job's tasks reads them in id order: without this, every page sorted
    # all of the job's tasks (paged listings, hub/entities/paging.py)
    op.create_index("ix_tasks_job_id", "tasks", ["job_id", "id"])

    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("password_version", sa.String(16), nullable=True))
        batch.add_column(sa.Column("expires", sa.DateTime(), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT k.id, u.password_hash FROM api_keys k JOIN users u ON u.id = k.user_id")).all()
    for key_id, password_hash in rows:
        version = hashlib.sha256(password_hash.encode()).hexdigest()[:12]
        conn.execute(sa.text("UPDATE api_keys SET password_version = :v WHERE id = :i"),
                     {"v": version, "i": key_id})


def downgrade() -> None:
    op.drop_index("ix_tasks_job_id", "tasks")
    with op.batch_alter_table("buckets") as batch:
        batch.drop_column("task_ids")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("expires")
        batch.drop_column("password_version")
    op.drop_index("ix_report_keys_received", "report_keys")
    _set_aside("report_keys", "key, received")
    op.create_table(
        "report_keys",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("received", sa.DateTime(), nullable=False),
    )
    op.execute("INSERT INTO report_keys (key, received) "
               "SELECT key, MIN(received) FROM report_keys_aside GROUP BY key")
    op.drop_table("report_keys_aside")


def _set_aside(table: str, columns: str) -> None:
    """Copy ``columns`` of ``table`` into ``<table>_aside`` (no keys, no indexes), then
    drop ``table``."""
    op.execute(f"CREATE TABLE {table}_aside AS SELECT {columns} FROM {table}")
    op.drop_table(table)

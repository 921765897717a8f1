"""Queues as records (issue 18): ``queues`` (name, priority, open or paused, per
organization) and ``jobs.queue_id``. Every existing job's organization gets the queues its
jobs name, and each job is linked to its own.

Revision ID: 0011
Revises: 0010
"""

from datetime import UTC, datetime
from uuid import uuid4

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ID = sa.String(24)


# Plain ALTER TABLE on ``jobs`` (not a batch: see 0010, a batch's drop of ``jobs`` would
# delete every job's tasks).
def upgrade() -> None:
    op.create_table(
        "queues",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("organization_id", ID,
                  sa.ForeignKey("organizations.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("modified", sa.DateTime(), nullable=False),
        sa.Column("modifier", ID, nullable=True),
        sa.UniqueConstraint("organization_id", "name"),
    )
    op.create_index("ix_queues_organization_id", "queues", ["organization_id"])
    op.add_column("jobs", sa.Column("queue_id", ID, nullable=True))
    op.create_index("ix_jobs_queue_id", "jobs", ["queue_id"])
    conn = op.get_bind()
    jobs = sa.table("jobs", sa.column("id", ID), sa.column("queue", sa.String),
                    sa.column("organization_id", ID), sa.column("queue_id", ID))
    queues = sa.table("queues", sa.column("id", ID), sa.column("name", sa.String),
                      sa.column("priority", sa.Integer), sa.column("status", sa.String),
                      sa.column("organization_id", ID), sa.column("created", sa.DateTime),
                      sa.column("modified", sa.DateTime))
    now = datetime.now(UTC).replace(tzinfo=None)
    pairs = conn.execute(sa.select(jobs.c.organization_id, jobs.c.queue).distinct()).all()
    for org, name in pairs:
        queue_id = uuid4().hex[:24]  # 24 hex characters, as every id (a migration stands alone)
        conn.execute(sa.insert(queues).values(id=queue_id, name=name, priority=500,
                                              status="open", organization_id=org,
                                              created=now, modified=now))
        org_is = jobs.c.organization_id.is_(None) if org is None \
            else jobs.c.organization_id == org
        conn.execute(sa.update(jobs).where(org_is, jobs.c.queue == name)
                     .values(queue_id=queue_id))


def downgrade() -> None:
    op.drop_index("ix_jobs_queue_id", "jobs")
    op.drop_column("jobs", "queue_id")
    op.drop_index("ix_queues_organization_id", "queues")
    op.drop_table("queues")

"""Limits (issue 18): counted resources across the farm. ``limits`` (name, max, per
organization), ``job_limits`` (the limits a job holds while a bucket of it is leased) and
``jobs.max_lanes`` (at most this many of a job's buckets at once; null: no cap).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

ID = sa.String(24)


# Plain ALTER TABLE on ``jobs`` (not a batch: see 0010, a batch's drop of ``jobs`` would
# delete every job's tasks).
def upgrade() -> None:
    op.create_table(
        "limits",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("max", sa.Integer(), nullable=False),
        sa.Column("organization_id", ID,
                  sa.ForeignKey("organizations.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("modified", sa.DateTime(), nullable=False),
        sa.Column("modifier", ID, nullable=True),
        sa.UniqueConstraint("organization_id", "name"),
    )
    op.create_index("ix_limits_organization_id", "limits", ["organization_id"])
    op.create_table(
        "job_limits",
        sa.Column("job_id", ID, sa.ForeignKey("jobs.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("limit_id", ID, sa.ForeignKey("limits.id", ondelete="CASCADE"),
                  primary_key=True),
    )
    op.create_index("ix_job_limits_limit_id", "job_limits", ["limit_id"])
    op.add_column("jobs", sa.Column("max_lanes", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "max_lanes")
    op.drop_index("ix_job_limits_limit_id", "job_limits")
    op.drop_table("job_limits")
    op.drop_index("ix_limits_organization_id", "limits")
    op.drop_table("limits")

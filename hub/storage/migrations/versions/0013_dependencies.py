"""Jobs that wait for other jobs (issue 18's dependencies): ``job_dependencies``, one row
per job waited for (``kind`` job or items, ``on_failure`` fail or wait). A new table: no
existing row changes.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ID = sa.String(24)


def upgrade() -> None:
    op.create_table(
        "job_dependencies",
        sa.Column("job_id", ID, sa.ForeignKey("jobs.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("after_id", ID, sa.ForeignKey("jobs.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("on_failure", sa.String(8), nullable=False),
    )
    op.create_index("ix_job_dependencies_after_id", "job_dependencies", ["after_id"])


def downgrade() -> None:
    op.drop_index("ix_job_dependencies_after_id", "job_dependencies")
    op.drop_table("job_dependencies")

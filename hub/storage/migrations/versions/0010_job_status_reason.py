"""Jobs say why they wait when no agent they may use matches their targets
(``jobs.status_reason``, issue 18's node filters): a nullable text, null for every job
made before.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


# Plain ALTER TABLE on both engines (SQLite has ADD and DROP COLUMN since 3.35), not a
# batch: a batch copies ``jobs`` and drops the old table, and with foreign keys on, that
# drop deletes every job's tasks (``tasks.job_id`` cascades).
def upgrade() -> None:
    op.add_column("jobs", sa.Column("status_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "status_reason")

"""Inactive jobs (issue 19): ``jobs.deleted``, when ``delete_one`` made the job inactive
(null for every job before, and for every job not deleted). A deleted job keeps its row
and its tasks, for audit; ``find(..., inactive=True)`` finds it.

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


# Plain ALTER TABLE on ``jobs`` (not a batch: see 0010, a batch's copy and drop of a table
# with dependents loses rows); a nullable column, so no existing row is rewritten.
def upgrade() -> None:
    op.add_column("jobs", sa.Column("deleted", sa.DateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "deleted")

"""Speed limits and frame sequences of transfer jobs (issue 19): ``jobs.speed_limit``
(bytes a second its transfers move at most; null: no limit) and ``jobs.frames_missing``
(a frame sequence's frames missing from its range, as ranges; null: not a sequence, or
not listed yet).

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


# Plain ALTER TABLE on ``jobs`` (not a batch: see 0010, a batch's copy and drop of a table
# with dependents loses rows); nullable columns, so no existing row is rewritten.
def upgrade() -> None:
    op.add_column("jobs", sa.Column("speed_limit", sa.BigInteger(), nullable=True))
    op.add_column("jobs", sa.Column("frames_missing", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "frames_missing")
    op.drop_column("jobs", "speed_limit")

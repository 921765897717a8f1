"""A folder moves as one transfer task: the agent that runs it lists it and moves all of
it, and the hub no longer makes a task per file (``POST /agent/expand`` is gone). The
folder a task was listed from (``tasks.folder``), which leased small files of one folder
together, is dropped.

Tasks listed before stay as they are: each is a file of its own, leased and moved alone.
A downgrade gives every task an empty folder (named by a user, none listed).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("folder")


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("folder", sa.String(4096), nullable=False,
                                   server_default=""))

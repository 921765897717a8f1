"""Agents say why they take no work (``clients.status_reason``, issue 18's workstation
schedules and NIMBY): a nullable text, written by every check-in, null for every client
made before.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


# Plain ALTER TABLE on both engines, not a batch: a batch copies ``clients`` and drops the
# old table, and with foreign keys on, that drop deletes every agent's lanes
# (``clients.parent_id`` cascades).
def upgrade() -> None:
    op.add_column("clients", sa.Column("status_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("clients", "status_reason")

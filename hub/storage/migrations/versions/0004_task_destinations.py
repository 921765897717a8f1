"""Where each transfer task lands, and the folder it was listed from.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("destination", sa.String(4096), nullable=False,
                                   server_default=""))
        batch.add_column(sa.Column("folder", sa.String(4096), nullable=False,
                                   server_default=""))
        batch.alter_column("item", type_=sa.String(4096), existing_type=sa.String(1024))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.alter_column("item", type_=sa.String(1024), existing_type=sa.String(4096))
        batch.drop_column("folder")
        batch.drop_column("destination")

"""Shares, the transfer endpoint of each client, and bytes moved per task.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.String(24)


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("transfer_url", sa.String(1024), nullable=False,
                                   server_default=""))
        batch.add_column(sa.Column("transfer_fingerprint", sa.String(64), nullable=False,
                                   server_default=""))
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("transferred", sa.BigInteger(), nullable=False,
                                   server_default="0"))
    op.create_table(
        "shares",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("client_id", ID, sa.ForeignKey("clients.id", ondelete="SET NULL"),
                  nullable=True),
        sa.Column("path", sa.String(4096), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("modified", sa.DateTime(), nullable=False),
        sa.Column("modifier", ID, nullable=True),
    )
    op.create_index("ix_shares_client_id", "shares", ["client_id"])


def downgrade() -> None:
    op.drop_index("ix_shares_client_id", "shares")
    op.drop_table("shares")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("transferred")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("transfer_fingerprint")
        batch.drop_column("transfer_url")

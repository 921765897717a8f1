"""Download links: each agent's transfer certificate's public key, as ``curl
--pinnedpubkey`` takes it (``sha256//<base64>``), reported at enrollment beside the
certificate's fingerprint. Agents from before report none until they are upgraded: their
links are made with an empty pin.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("transfer_pin", sa.String(64), nullable=False,
                                   server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("transfer_pin")

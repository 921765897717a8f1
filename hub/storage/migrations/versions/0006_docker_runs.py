"""Docker runs: each task of a docker job is one organization's run, with its own input and
result (ciphertext in an encrypted collaboration).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("organization_id", sa.String(24), nullable=True))
        batch.add_column(sa.Column("input", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("result", sa.Text(), nullable=False, server_default=""))
        batch.create_index("ix_tasks_organization_status", ["organization_id", "status"])


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_index("ix_tasks_organization_status")
        batch.drop_column("result")
        batch.drop_column("input")
        batch.drop_column("organization_id")

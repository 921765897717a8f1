"""File changes (issue 19): ``file_changes``, one row for each change a user made to a
share's files through the hub (mkdir, rename, mv, delete), with who made it.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

ID = sa.String(24)


def upgrade() -> None:
    op.create_table(
        "file_changes",
        sa.Column("id", ID, primary_key=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("organization_id", ID, nullable=True),
        sa.Column("share_id", ID, nullable=False),
        sa.Column("share", sa.String(64), nullable=False),
        sa.Column("op", sa.String(16), nullable=False),
        sa.Column("path", sa.String(4096), nullable=False),
        sa.Column("result", sa.String(4096), nullable=False),
        sa.Column("recursive", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_file_changes_created", "file_changes", ["created"])
    op.create_index("ix_file_changes_share_id", "file_changes", ["share_id"])


def downgrade() -> None:
    op.drop_index("ix_file_changes_share_id", "file_changes")
    op.drop_index("ix_file_changes_created", "file_changes")
    op.drop_table("file_changes")

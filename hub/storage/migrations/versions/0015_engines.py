"""Engines and progress (issue 18): ``engines`` (a program jobs name instead of a
command, per organization) and what compute tasks' progress lines say: ``tasks.progress``,
``tasks.stage`` and ``tasks.outputs``, null for every task made before.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

ID = sa.String(24)


# Plain ALTER TABLE on ``tasks`` (not a batch: see 0010, a batch's copy and drop of a table
# with dependents loses rows); nullable columns, so no existing row is rewritten.
def upgrade() -> None:
    op.create_table(
        "engines",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("argv", sa.JSON(), nullable=False),
        sa.Column("env", sa.JSON(), nullable=False),
        sa.Column("bucket_size", sa.Integer(), nullable=False),
        sa.Column("clients", sa.JSON(), nullable=False),
        sa.Column("organization_id", ID,
                  sa.ForeignKey("organizations.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("modified", sa.DateTime(), nullable=False),
        sa.Column("modifier", ID, nullable=True),
        sa.UniqueConstraint("organization_id", "name"),
    )
    op.create_index("ix_engines_organization_id", "engines", ["organization_id"])
    op.add_column("tasks", sa.Column("progress", sa.Float(), nullable=True))
    op.add_column("tasks", sa.Column("stage", sa.String(255), nullable=True))
    op.add_column("tasks", sa.Column("outputs", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("tasks", "outputs")
    op.drop_column("tasks", "stage")
    op.drop_column("tasks", "progress")
    op.drop_index("ix_engines_organization_id", "engines")
    op.drop_table("engines")

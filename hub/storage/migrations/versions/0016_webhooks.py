"""Webhooks (issue 19): ``webhooks`` (where an organization's events are POSTed),
``webhook_deliveries`` (the outbox of events to send and their delivery log) and
``clients.offline_told`` (when webhooks were told the agent went offline); hooks: a
job's ``hooks`` (commands run when it ends) and ``hook_of`` (the job a hook job is of).

Every client is marked told at this upgrade: an agent offline for months is not news.

Revision ID: 0016
Revises: 0015
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

ID = sa.String(24)


# Plain ALTER TABLE on ``clients`` and ``jobs`` (not a batch: see 0010, a batch's copy and
# drop of a table with dependents loses rows); nullable columns (``offline_told`` set once
# below).
def upgrade() -> None:
    op.create_table(
        "webhooks",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("secret", sa.String(255), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("organization_id", ID,
                  sa.ForeignKey("organizations.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("modified", sa.DateTime(), nullable=False),
        sa.Column("modifier", ID, nullable=True),
    )
    op.create_index("ix_webhooks_organization_id", "webhooks", ["organization_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", ID, primary_key=True),
        sa.Column("webhook_id", ID, sa.ForeignKey("webhooks.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.DateTime(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("delivered", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_webhook_deliveries_webhook_id", "webhook_deliveries", ["webhook_id"])
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_at"])
    op.add_column("clients", sa.Column("offline_told", sa.DateTime(), nullable=True))
    op.add_column("jobs", sa.Column("hooks", sa.JSON(), nullable=True))
    op.add_column("jobs", sa.Column("hook_of", ID, nullable=True))
    op.create_index("ix_jobs_hook_of", "jobs", ["hook_of"])
    now = datetime.now(UTC).replace(tzinfo=None)
    op.execute(sa.text("UPDATE clients SET offline_told = :now").bindparams(now=now))


def downgrade() -> None:
    op.drop_index("ix_jobs_hook_of", "jobs")
    op.drop_column("jobs", "hook_of")
    op.drop_column("jobs", "hooks")
    op.drop_column("clients", "offline_told")
    op.drop_index("ix_webhook_deliveries_due", "webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_webhook_id", "webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_webhooks_organization_id", "webhooks")
    op.drop_table("webhooks")

"""Users, sites, nodes, API keys and clients.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(24)


def upgrade() -> None:
    op.create_table(
        "hub_state",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", ID, primary_key=True),
        sa.Column("username", sa.String(255), nullable=False, unique=True),
        sa.Column("email", sa.String(255), nullable=True),
        sa.Column("firstname", sa.String(255), nullable=False),
        sa.Column("lastname", sa.String(255), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("modified", sa.DateTime(), nullable=False),
        sa.Column("modifier", ID, nullable=True),
    )
    op.create_table(
        "sites",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("modified", sa.DateTime(), nullable=False),
        sa.Column("modifier", ID, nullable=True),
    )
    op.create_table(
        "nodes",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("user_id", ID, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("modified", sa.DateTime(), nullable=False),
        sa.Column("modifier", ID, nullable=True),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", ID, primary_key=True),
        sa.Column("user_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
        sa.Column("node_id", ID, sa.ForeignKey("nodes.id", ondelete="CASCADE"), nullable=True),
        sa.Column("lookup", sa.String(8), nullable=False),
        sa.Column("hash", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("last_used", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"])
    op.create_index("ix_api_keys_node_id", "api_keys", ["node_id"])
    op.create_index("ix_api_keys_lookup", "api_keys", ["lookup"])
    op.create_table(
        "clients",
        sa.Column("id", ID, primary_key=True),
        sa.Column("code", sa.String(255), nullable=False),
        sa.Column("user_id", ID, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("node_id", ID, sa.ForeignKey("nodes.id", ondelete="SET NULL"), nullable=True),
        sa.Column("site_id", ID, sa.ForeignKey("sites.id", ondelete="SET NULL"), nullable=True),
        sa.Column("parent_id", ID, sa.ForeignKey("clients.id", ondelete="CASCADE"), nullable=True),
        sa.Column("type", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("host_id", sa.Text(), nullable=False),
        sa.Column("machine_id", sa.String(128), nullable=False),
        sa.Column("last_checkin", sa.DateTime(), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("gone", sa.Boolean(), nullable=False),
        sa.Column("os", sa.String(255), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("wan_ip", sa.String(255), nullable=False),
        sa.Column("benchmark", sa.Float(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("modified", sa.DateTime(), nullable=False),
        sa.Column("modifier", ID, nullable=True),
    )
    op.create_index("ix_clients_node_id", "clients", ["node_id"])
    op.create_index("ix_clients_parent_id", "clients", ["parent_id"])
    op.create_index("ix_clients_last_checkin", "clients", ["last_checkin"])


def downgrade() -> None:
    for table in ("clients", "api_keys", "nodes", "sites", "users", "hub_state"):
        op.drop_table(table)

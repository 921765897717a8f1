"""Organizations, collaborations, roles and rules; users, nodes and jobs in an organization.

The rules and default roles themselves are written at every start
(hub.storage.defaults.sync_defaults), as are the organization and roles of users
made before this revision.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.String(24)


def _stamps() -> list[sa.Column[object]]:
    return [sa.Column("created", sa.DateTime(), nullable=False),
            sa.Column("modified", sa.DateTime(), nullable=False),
            sa.Column("modifier", ID, nullable=True)]


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("address1", sa.String(255), nullable=False),
        sa.Column("address2", sa.String(255), nullable=False),
        sa.Column("zipcode", sa.String(64), nullable=False),
        sa.Column("country", sa.String(255), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        *_stamps(),
    )
    op.create_table(
        "collaborations",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("encrypted", sa.Boolean(), nullable=False),
        *_stamps(),
    )
    op.create_table(
        "collaboration_organizations",
        sa.Column("collaboration_id", ID, sa.ForeignKey("collaborations.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("organization_id", ID, sa.ForeignKey("organizations.id", ondelete="CASCADE"),
                  primary_key=True),
    )
    op.create_index("ix_collaboration_organizations_organization_id",
                    "collaboration_organizations", ["organization_id"])
    op.create_table(
        "rules",
        sa.Column("id", ID, primary_key=True),
        sa.Column("resource", sa.String(32), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.UniqueConstraint("resource", "operation", "scope"),
    )
    op.create_table(
        "roles",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("organization_id", ID, sa.ForeignKey("organizations.id", ondelete="CASCADE"),
                  nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        *_stamps(),
    )
    op.create_index("ix_roles_organization_id", "roles", ["organization_id"])
    op.create_table(
        "role_rules",
        sa.Column("role_id", ID, sa.ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("rule_id", ID, sa.ForeignKey("rules.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_table(
        "user_roles",
        sa.Column("user_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("role_id", ID, sa.ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_index("ix_user_roles_role_id", "user_roles", ["role_id"])
    op.create_table(
        "user_rules",
        sa.Column("user_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("rule_id", ID, sa.ForeignKey("rules.id", ondelete="CASCADE"), primary_key=True),
    )
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("organization_id", ID, nullable=True))
        batch.add_column(sa.Column("password_change_required", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.create_foreign_key("fk_users_organization_id", "organizations",
                                 ["organization_id"], ["id"], ondelete="RESTRICT")
        batch.create_index("ix_users_organization_id", ["organization_id"])
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("organization_id", ID, nullable=True))
        batch.add_column(sa.Column("collaboration_id", ID, nullable=True))
        batch.create_foreign_key("fk_nodes_organization_id", "organizations",
                                 ["organization_id"], ["id"], ondelete="RESTRICT")
        batch.create_foreign_key("fk_nodes_collaboration_id", "collaborations",
                                 ["collaboration_id"], ["id"], ondelete="RESTRICT")
        batch.create_index("ix_nodes_organization_id", ["organization_id"])
        batch.create_index("ix_nodes_collaboration_id", ["collaboration_id"])
        batch.create_unique_constraint("uq_nodes_organization_id_collaboration_id",
                                       ["organization_id", "collaboration_id"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("organization_id", ID, nullable=True))
        batch.add_column(sa.Column("collaboration_id", ID, nullable=True))
        batch.create_foreign_key("fk_jobs_organization_id", "organizations",
                                 ["organization_id"], ["id"], ondelete="SET NULL")
        batch.create_foreign_key("fk_jobs_collaboration_id", "collaborations",
                                 ["collaboration_id"], ["id"], ondelete="SET NULL")
        batch.create_index("ix_jobs_organization_id", ["organization_id"])
        batch.create_index("ix_jobs_collaboration_id", ["collaboration_id"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_collaboration_id")
        batch.drop_index("ix_jobs_organization_id")
        batch.drop_constraint("fk_jobs_collaboration_id", type_="foreignkey")
        batch.drop_constraint("fk_jobs_organization_id", type_="foreignkey")
        batch.drop_column("collaboration_id")
        batch.drop_column("organization_id")
    with op.batch_alter_table("nodes") as batch:
        batch.drop_constraint("uq_nodes_organization_id_collaboration_id", type_="unique")
        batch.drop_index("ix_nodes_collaboration_id")
        batch.drop_index("ix_nodes_organization_id")
        batch.drop_constraint("fk_nodes_collaboration_id", type_="foreignkey")
        batch.drop_constraint("fk_nodes_organization_id", type_="foreignkey")
        batch.drop_column("collaboration_id")
        batch.drop_column("organization_id")
    with op.batch_alter_table("users") as batch:
        batch.drop_index("ix_users_organization_id")
        batch.drop_constraint("fk_users_organization_id", type_="foreignkey")
        batch.drop_column("password_change_required")
        batch.drop_column("organization_id")
    for table in ("user_rules", "user_roles", "role_rules", "roles", "rules",
                  "collaboration_organizations", "collaborations", "organizations"):
        op.drop_table(table)

"""policy change control: proposals with messages, approvals, activations, worker heartbeats

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
    with op.batch_alter_table("policy_versions") as batch_op:
        batch_op.add_column(sa.Column("message", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("proposers", sa.JSON(), nullable=True))
    op.create_table(
        "policy_approvals",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("version", sa.String(length=71), sa.ForeignKey("policy_versions.hash"), nullable=False),
        sa.Column("base_version", sa.String(length=71), nullable=True),
        sa.Column("plan_id", sa.String(length=40), nullable=False),
        sa.Column("inventory", sa.String(length=64), nullable=False),
        sa.Column("gains", sa.String(length=64), nullable=False),
        sa.Column("approver", sa.String(length=200), nullable=False),
        sa.Column("acknowledged", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_policy_approvals_version", "policy_approvals", ["version"])
    op.create_table(
        "policy_activations",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("version", sa.String(length=71), sa.ForeignKey("policy_versions.hash"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("previous", sa.String(length=71), nullable=True),
        sa.Column("back_to", sa.String(length=71), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
    )
    op.create_table(
        "gateway_workers",
        sa.Column("id", sa.String(length=200), primary_key=True),
        sa.Column("policy_version", sa.String(length=71), nullable=True),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.bulk_insert(sa.table("gatehouse_meta", sa.column("name", sa.String), sa.column("value", sa.BigInteger)),
                   [{"name": "policy_revision", "value": 0}])
    # A version already active becomes the first activation, so rollback history starts there.
    op.execute("INSERT INTO policy_activations (version, kind, actor, at) "
               "SELECT hash, 'bootstrap', created_by, COALESCE(activated_at, created_at) FROM policy_versions "
               "WHERE state = 'active'")


def downgrade() -> None:
    op.execute("DELETE FROM gatehouse_meta WHERE name = 'policy_revision'")
    op.drop_table("gateway_workers")
    op.drop_table("policy_activations")
    op.drop_index("ix_policy_approvals_version", "policy_approvals")
    op.drop_table("policy_approvals")
    with op.batch_alter_table("policy_versions") as batch_op:
        batch_op.drop_column("proposers")
        batch_op.drop_column("message")

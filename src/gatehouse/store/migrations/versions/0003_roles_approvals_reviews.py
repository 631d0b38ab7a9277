"""roles, identity approvals, access review campaigns

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("identities") as table:
        table.add_column(sa.Column("approved_by", sa.String(length=200), nullable=True))
        table.add_column(sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "role_assignments",
        sa.Column("person_id", sa.Integer(), sa.ForeignKey("people.id"), primary_key=True),
        sa.Column("role", sa.String(length=32), primary_key=True),
        sa.Column("granted_by", sa.String(length=200), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "review_campaigns",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("started_by", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "review_items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("review_campaigns.id"), nullable=False),
        sa.Column("identity_id", sa.Integer(), sa.ForeignKey("identities.id"), nullable=False),
        sa.Column("owner_email", sa.String(length=320), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
    )
    op.create_index("ix_review_items_campaign_id", "review_items", ["campaign_id"])
    op.create_index("ix_review_items_identity_id", "review_items", ["identity_id"])


def downgrade() -> None:
    op.drop_index("ix_review_items_identity_id", "review_items")
    op.drop_index("ix_review_items_campaign_id", "review_items")
    op.drop_table("review_items")
    op.drop_table("review_campaigns")
    op.drop_table("role_assignments")
    with op.batch_alter_table("identities") as table:
        table.drop_column("approved_at")
        table.drop_column("approved_by")

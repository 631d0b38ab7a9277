"""control plane: recovery codes, identity stewards, break-glass reviews

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.String(length=16), primary_key=True),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    )
    with op.batch_alter_table("identities") as batch:
        # every person who has owned, backed up or requested the identity: none of them may
        # raise its clearance or widen its access, whoever owns it now
        batch.add_column(sa.Column("stewards", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("admin_keys") as batch:
        # issued by someone else: good only for exchanging, once, for a key of the person's own
        batch.add_column(sa.Column("enrolment", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("policy_activations") as batch:
        batch.add_column(sa.Column("reviewed_by", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("review_note", sa.Text(), nullable=True))
    # An installation in use before this version had its first identity-admin appointed the old
    # way: it counts as bootstrapped, so the bootstrap cannot reopen once its admins have left.
    op.execute("INSERT INTO gatehouse_meta (name, value) SELECT 'bootstrapped_at', 0 "
               "WHERE EXISTS (SELECT 1 FROM people) OR EXISTS (SELECT 1 FROM role_assignments)")


def downgrade() -> None:
    with op.batch_alter_table("policy_activations") as batch:
        batch.drop_column("review_note")
        batch.drop_column("reviewed_at")
        batch.drop_column("reviewed_by")
    with op.batch_alter_table("identities") as batch:
        batch.drop_column("stewards")
    with op.batch_alter_table("admin_keys") as batch:
        batch.drop_column("enrolment")
    op.drop_table("recovery_codes")

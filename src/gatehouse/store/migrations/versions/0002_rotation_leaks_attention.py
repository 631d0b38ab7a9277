"""key rotation, leak reports, last model, identities needing their owner's attention

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("credentials") as table:
        table.add_column(sa.Column("rotated_to", sa.String(length=12), nullable=True))
        table.add_column(sa.Column("last_model", sa.String(length=200), nullable=True))
        table.add_column(sa.Column("leaked_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("leak_source", sa.Text(), nullable=True))
    with op.batch_alter_table("identities") as table:
        table.add_column(sa.Column("attention", sa.Text(), nullable=True))
        table.create_index("ix_identities_owner_id", ["owner_id"])
        table.create_index("ix_identities_backup_owner_id", ["backup_owner_id"])


def downgrade() -> None:
    with op.batch_alter_table("identities") as table:
        table.drop_index("ix_identities_backup_owner_id")
        table.drop_index("ix_identities_owner_id")
        table.drop_column("attention")
    with op.batch_alter_table("credentials") as table:
        table.drop_column("leak_source")
        table.drop_column("leaked_at")
        table.drop_column("last_model")
        table.drop_column("rotated_to")

"""decision records carry the request's data class and its guardrail verdicts

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("decision_records") as batch_op:
        batch_op.add_column(sa.Column("data_class", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("guardrails", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decision_records") as batch_op:
        batch_op.drop_column("guardrails")
        batch_op.drop_column("data_class")

"""monitoring: per-minute usage counts per worker, incidents, the monitor's lock row

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_minutes",
        sa.Column("minute", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("worker", sa.String(length=200), primary_key=True),
        sa.Column("scope", sa.String(length=16), primary_key=True),
        sa.Column("subject", sa.String(length=200), primary_key=True),
        *(sa.Column(name, sa.Integer(), nullable=False, server_default="0") for name in
          ("requests", "errors", "blocked", "guardrail_hits", "upstream_attempts", "upstream_errors")),
        sa.Column("latency", sa.JSON(), nullable=False),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("threshold", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("policy_version", sa.String(length=71), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("limit", sa.Float(), nullable=False),
        sa.Column("condition", sa.Text(), nullable=False),
        sa.Column("breaching", sa.Boolean(), nullable=False),
        sa.Column("breaching_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_value", sa.Float(), nullable=False),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("acknowledged_by", sa.String(length=200), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=200), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
    )
    op.create_index("ix_incidents_status", "incidents", ["status"])
    op.bulk_insert(sa.table("gatehouse_meta", sa.column("name", sa.String), sa.column("value", sa.BigInteger)),
                   [{"name": "monitor_evaluated_at", "value": 0}])


def downgrade() -> None:
    op.execute("DELETE FROM gatehouse_meta WHERE name = 'monitor_evaluated_at'")
    op.drop_index("ix_incidents_status", "incidents")
    op.drop_table("incidents")
    op.drop_table("usage_minutes")

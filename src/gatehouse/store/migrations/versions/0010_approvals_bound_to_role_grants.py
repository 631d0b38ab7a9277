"""policy approvals record the approver's role grants as they were when approving

Revision ID: 0010
Revises: 0009
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

approvals = sa.table("policy_approvals", sa.column("id", sa.Integer), sa.column("approver", sa.String),
                     sa.column("created_at", sa.DateTime(timezone=True)), sa.column("roles", sa.JSON))
people = sa.table("people", sa.column("id", sa.Integer), sa.column("email", sa.String))
assignments = sa.table("role_assignments", sa.column("person_id", sa.Integer), sa.column("role", sa.String),
                       sa.column("granted_at", sa.DateTime(timezone=True)))


def _utc(moment: datetime) -> datetime:
    """In UTC, as ``gatehouse.policy.approvals.grant_stamp`` writes it (SQLite hands back naive
    datetimes, all UTC; PostgreSQL the session's zone)."""
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).astimezone(UTC)


def upgrade() -> None:
    with op.batch_alter_table("policy_approvals") as batch:
        batch.add_column(sa.Column("roles", sa.JSON(), nullable=False, server_default="{}"))
    # An approval made before: bound to the grants the approver holds now that are older than
    # it (held, as far as the store can tell, since approving); one made before a grant that
    # stands now was given under a grant since revoked, and stays void.
    bind = op.get_bind()
    grants: dict[str, dict[str, datetime]] = {}
    for email, role, granted_at in bind.execute(
            sa.select(people.c.email, assignments.c.role, assignments.c.granted_at)
            .join(people, assignments.c.person_id == people.c.id)):
        grants.setdefault(f"person:{email.lower()}", {})[role] = _utc(granted_at)
    for approval_id, approver, created_at in bind.execute(
            sa.select(approvals.c.id, approvals.c.approver, approvals.c.created_at)).all():
        held = {role: at.isoformat() for role, at in grants.get(approver.lower(), {}).items() if at <= _utc(created_at)}
        bind.execute(approvals.update().where(approvals.c.id == approval_id).values(roles=held))


def downgrade() -> None:
    with op.batch_alter_table("policy_approvals") as batch:
        batch.drop_column("roles")

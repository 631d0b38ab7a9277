"""Read-only views of stored versions for the CLI and the admin API: each with its state,
author, approvals (and whether each still counts) and activations.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from gatehouse.core.clock import as_utc
from gatehouse.policy.approvals import valid_approvals
from gatehouse.policy.versions import activation_dict, current_activation, find_version
from gatehouse.store.db import Database
from gatehouse.store.models import (
    PolicyActivation,
    PolicyApproval,
    PolicyVersion,
)


def version_rows(db: Database) -> list[dict[str, Any]]:
    with db.read() as session:
        current = current_activation(session)
        rows = session.execute(select(PolicyVersion).order_by(PolicyVersion.created_at.desc())).scalars().all()
        return [{"version": row.hash, "state": row.state, "author": row.created_by, "created_at": as_utc(row.created_at),
                 "message": row.message, "approvals": [a.approver for a in valid_approvals(session, row, current)]}
                for row in rows]


def describe_version(db: Database, ref: str) -> dict[str, Any]:
    with db.read() as session:
        row = find_version(session, ref)
        approvals = session.execute(select(PolicyApproval).where(PolicyApproval.version == row.hash)
                                    .order_by(PolicyApproval.id)).scalars().all()
        valid = {a.id for a in valid_approvals(session, row, current_activation(session))}
        activations = session.execute(select(PolicyActivation).where(PolicyActivation.version == row.hash)
                                      .order_by(PolicyActivation.seq)).scalars().all()
        return {
            "version": row.hash, "state": row.state, "author": row.created_by, "created_at": as_utc(row.created_at),
            "proposers": [row.created_by, *(row.proposers or [])], "message": row.message, "source": row.source,
            "approvals": [{"approver": a.approver, "plan_id": a.plan_id, "base_version": a.base_version,
                           "acknowledged": a.acknowledged, "at": as_utc(a.created_at),
                           "counts": a.id in valid} for a in approvals],
            "activations": [activation_dict(a) for a in activations],
        }

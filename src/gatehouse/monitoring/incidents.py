"""What people do with incidents: read them, acknowledge them (the ladder stops climbing), close
them with a note. Acknowledging and closing need the operator role; every change is audited."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gatehouse.audit import log as audit
from gatehouse.authz import require_role
from gatehouse.core.clock import as_utc
from gatehouse.core.config import Settings
from gatehouse.core.errors import Conflict, GatehouseError, NotFound
from gatehouse.monitoring.pager import page
from gatehouse.store.db import Database
from gatehouse.store.models import Incident

STATUSES = ("open", "acknowledged", "closed")


def _when(moment: datetime | None) -> str | None:
    utc = as_utc(moment)
    return utc.isoformat() if utc else None


def summary(incident: Incident) -> dict[str, Any]:
    return {"id": incident.id, "status": incident.status, "threshold": incident.threshold, "scope": incident.scope,
            "subject": incident.subject, "metric": incident.metric, "condition": incident.condition,
            "value": incident.value, "limit": incident.limit, "breaching": incident.breaching,
            "last_value": incident.last_value, "last_checked_at": _when(incident.last_checked_at),
            "opened_at": _when(incident.opened_at), "policy_version": incident.policy_version,
            "steps": incident.steps, "acknowledged_by": incident.acknowledged_by,
            "acknowledged_at": _when(incident.acknowledged_at), "closed_by": incident.closed_by,
            "closed_at": _when(incident.closed_at), "note": incident.note}


def list_incidents(db: Database, status: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Newest first; without ``status``, those not closed."""
    if status is not None and status not in STATUSES:
        raise GatehouseError(f"status must be one of {', '.join(STATUSES)}")
    with db.read() as session:
        query = select(Incident).order_by(Incident.opened_at.desc()).limit(limit)
        query = query.where(Incident.status == status) if status else query.where(Incident.status != "closed")
        return [summary(incident) for incident in session.execute(query).scalars()]


def get_incident(db: Database, incident_id: str) -> dict[str, Any]:
    with db.read() as session:
        return summary(_find(session, incident_id))


def _find(session: Session, incident_id: str, lock: bool = False) -> Incident:
    # Locked for a change: an evaluation taking a step waits, or is waited for, and sees the new status.
    incident = session.get(Incident, incident_id, with_for_update=lock)
    if incident is None:
        raise NotFound(f"no incident {incident_id!r} (see `gatehouse incident list`)")
    return incident


def acknowledge(db: Database, actor: str, incident_id: str, note: str | None, settings: Settings) -> dict[str, Any]:
    """Someone is on it: no further escalation step is taken."""
    with db.write() as session:
        person = require_role(session, actor, "operator", "acknowledging an incident")
        incident = _find(session, incident_id, lock=True)
        if incident.status != "open":
            raise Conflict(f"incident {incident_id} is {incident.status}")
        incident.status, incident.acknowledged_by = "acknowledged", f"person:{person.email}"
        incident.acknowledged_at = datetime.now(UTC)
        if note:
            incident.note = note
        audit.append(session, incident.acknowledged_by, "incident.acknowledge", f"incident:{incident.id}", {"note": note})
        paged = any(step["action"] == "page" for step in incident.steps)
        result = summary(incident)
    if paged:
        page(settings, "acknowledge", incident_id, result)
    return result


def close(db: Database, actor: str, incident_id: str, note: str, settings: Settings) -> dict[str, Any]:
    """Over, with what was found and done. Keys the ladder suspended stay suspended: resuming
    the identity is an identity-admin's decision (`gatehouse identities resume`)."""
    if not note or not note.strip():
        raise GatehouseError("say what happened: closing an incident needs a note (-m)")
    with db.write() as session:
        person = require_role(session, actor, "operator", "closing an incident")
        incident = _find(session, incident_id, lock=True)
        if incident.status == "closed":
            raise Conflict(f"incident {incident_id} is already closed")
        incident.status, incident.closed_by, incident.closed_at = "closed", f"person:{person.email}", datetime.now(UTC)
        incident.note = note
        audit.append(session, incident.closed_by, "incident.close", f"incident:{incident.id}",
                     {"note": note, "breaching": incident.breaching})
        paged = any(step["action"] == "page" for step in incident.steps)
        result = summary(incident)
    if paged:
        page(settings, "resolve", incident_id, result)
    return result


EVIDENCE_LOST = "evidence.records_lost"  # the incident's threshold name: not a policy threshold, never re-evaluated


def evidence_lost(db: Database, worker: str, lost: int, policy_version: str) -> str:
    """Open an incident for decision records a worker could not keep (its spool was at its
    bound, or the disk refused it, while it was told to keep serving). Returns its id."""
    now = datetime.now(UTC)
    condition = (f"{lost} decision record(s) were not kept: the spool was full or the disk refused it "
                 "(requests answered under GATEHOUSE_EVIDENCE_AT_BOUND=serve, or refused under refuse)")
    with db.write() as session:
        incident = Incident(id="inc-" + secrets.token_hex(6), threshold=EVIDENCE_LOST, scope="gateway", subject=worker,
                            metric="records_lost", status="open", policy_version=policy_version, opened_at=now,
                            value=float(lost), limit=0.0, condition=condition, breaching=False, breaching_since=now,
                            last_value=float(lost), last_checked_at=now, steps=[])
        session.add(incident)
        audit.append(session, "system:records", "incident.open", f"incident:{incident.id}",
                     {"threshold": EVIDENCE_LOST, "scope": "gateway", "subject": worker, "lost": lost})
        return incident.id

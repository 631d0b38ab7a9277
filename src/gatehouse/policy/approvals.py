"""Which approvals count: for the current baseline, made since it became active, by active
people who did not propose the content and still hold the very approver grant they approved
under; and how many a change needs (set by the approved baseline, so a change cannot lower
its own bar).

An approval records the approver's roles as they were, each with when it was granted
(``roles_held``). Revoking the role deletes that grant; granting it again makes a new one,
with a new time, so an approval given under the old grant never counts again (ADR 0017):
the approver approves again, under the grant they hold now, if they still agree.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gatehouse.authz import actor_email
from gatehouse.core.clock import as_utc
from gatehouse.core.errors import Conflict, GatehouseError
from gatehouse.policy.loader import LoadedPolicy
from gatehouse.policy.planning import PlannedChange
from gatehouse.policy.versions import baseline_of, earlier_activation, loaded_version, stored_version
from gatehouse.store.models import (
    Person,
    PolicyActivation,
    PolicyApproval,
    PolicyVersion,
    RoleAssignment,
)


class NotApproved(GatehouseError):
    """Apply or rollback lacks the approvals it needs."""


def proposers_of(row: PolicyVersion) -> set[str]:
    """The e-mails of everyone who proposed this content (an author who is not a person: none)."""
    actors = [row.created_by, *(row.proposers or [])]
    return {email for email in (actor_email(actor) for actor in actors) if email}


def grant_stamp(granted_at: datetime) -> str:
    """When a role was granted, in the one spelling approvals record (UTC, ISO 8601, to the
    microsecond: two grants of one role are never that close)."""
    return as_utc(granted_at).astimezone(UTC).isoformat()


def roles_held(session: Session, person: Person) -> dict[str, str]:
    """Every role ``person`` holds, with its ``grant_stamp``: what an approval records."""
    rows = session.execute(select(RoleAssignment).where(RoleAssignment.person_id == person.id)).scalars()
    return {row.role: grant_stamp(row.granted_at) for row in rows}


def approved_under_standing_grant(session: Session, approval: PolicyApproval, person: Person) -> bool:
    """The approver role the approval was given under is still held: the same grant, not one
    made since (a revoke ends an approval for good; a new grant does not bring it back)."""
    held = session.get(RoleAssignment, (person.id, "approver"))
    recorded = (approval.roles or {}).get("approver")
    return held is not None and recorded is not None and recorded == grant_stamp(held.granted_at)


def baseline_since(session: Session, current: PolicyActivation | None) -> datetime | None:
    """When the approved baseline last became active: approvals older than that were made
    against an earlier stint of it and no longer count."""
    if current is None:
        return None
    if current.kind != "break-glass":
        return as_utc(current.at)
    earlier = earlier_activation(session, current.back_to, current.seq)
    return as_utc(earlier.at) if earlier else None


def valid_approvals(session: Session, version: PolicyVersion, current: PolicyActivation | None,
                     applier: str | None = None) -> list[PolicyApproval]:
    """Approvals for the current baseline, made since it became active, by active people who
    hold the approver grant they approved under and did not propose this content; one per
    person (their latest); never the applier's own (applying an older version again is
    authoring it)."""
    base, since = baseline_of(current), baseline_since(session, current)
    excluded = proposers_of(version)
    applier_email = actor_email(applier) if applier is not None else None
    if applier_email:
        excluded = excluded | {applier_email}
    approvals = session.execute(select(PolicyApproval).where(PolicyApproval.version == version.hash)
                                .order_by(PolicyApproval.id.desc())).scalars().all()
    valid: dict[str, PolicyApproval] = {}
    for approval in approvals:
        email = actor_email(approval.approver)
        if (email is None or email in excluded or email in valid or approval.base_version != base
                or (since is not None and as_utc(approval.created_at) < since)):
            continue
        person = session.execute(select(Person).where(Person.email == email)).scalar_one_or_none()
        if person is not None and person.status == "active" and approved_under_standing_grant(session, approval, person):
            valid[email] = approval
    return list(valid.values())[::-1]


def required_approvals(session: Session, current: PolicyActivation | None, candidate: LoadedPolicy) -> int:
    """Set by the approved baseline's own ``change_control``: a change cannot lower the bar it
    is judged by. With nothing active yet, the first version's setting applies."""
    base = baseline_of(current)
    document = loaded_version(stored_version(session, base)).document if base else candidate.document
    return document.change_control.approvers


def check_approver_pool(session: Session, loaded: LoadedPolicy) -> None:
    """A version asking for more approvals than there are approvers would lock policy changes
    (a rollback needs them too) until roles are granted."""
    wanted = loaded.document.change_control.approvers
    if wanted == 0:
        return
    approvers = session.execute(select(Person.email).join(RoleAssignment, RoleAssignment.person_id == Person.id)
                                .where(RoleAssignment.role == "approver", Person.status == "active")).scalars().all()
    if wanted > len(approvers):
        raise Conflict(f"this version asks for {wanted} approval(s) per change, but only {len(approvers)} active "
                       "approver(s) exist: grant the role first")


def check_approved(session: Session, row: PolicyVersion, planned: PlannedChange, required: int,
                    current: PolicyActivation | None, applier: str) -> list[str]:
    """The approvers that make this change go ahead, or NotApproved saying what is missing."""
    approvals = valid_approvals(session, row, current, applier)
    if len(approvals) < required:
        have = ", ".join(a.approver for a in approvals) or "none"
        raise NotApproved(f"version {row.hash[:19]} needs {required} approval(s) by approvers other than its author "
                          f"against the active version (has: {have}); plan it, then `gatehouse policy approve`")
    for approval in approvals:
        seen = {item["id"] for item in approval.acknowledged}
        unseen = [key for key in planned.widening_ids if key not in seen]
        if unseen:
            raise NotApproved(f"the plan changed since {approval.approver} approved it: {len(unseen)} widening(s) "
                              f"they did not acknowledge ({planned.widening_ids[unseen[0]]}…); plan and approve again")
        if approval.gains != planned.gains_digest:
            raise NotApproved(f"who gains access changed since {approval.approver} approved it (identities were "
                              f"created or changed; {len(planned.plan.gained)} gain(s) now); plan and approve again")
    return [approval.approver for approval in approvals]

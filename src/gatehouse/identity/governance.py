"""Who may do what to identities: roles, joiner approval, clearance, access reviews.

Separation of duties, enforced here for every caller (command line, admin API): nobody
approves an identity they requested or ever owned or backed up; nobody changes their own
roles, and only an identity-admin grants any (the first one comes from
``gatehouse.identity.bootstrap``, never from here); nobody who has owned, backed up or
requested an identity raises its data clearance; a pending identity whose owner left is not
approved. The acting person is named by the ``actor`` string ``person:<email>`` (see
``gatehouse.authz``); an actor that is not a person (``local:<os user>``) may change
nothing here, and ``system:<job>`` only what its job does (``enforce_reviews``). Moves of
owner or team are in ``gatehouse.oversight.transfers``: they are judged by the active policy.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from gatehouse import audit
from gatehouse.authz import ROLES, Forbidden, acting_person, actor_email, require_role
from gatehouse.core.classification import DATA_CLASSES, rank
from gatehouse.core.clock import as_utc, utcnow
from gatehouse.core.errors import GatehouseError
from gatehouse.identity.credentials import mark_revoked
from gatehouse.identity.lookup import identity_by_name, person_by_email
from gatehouse.identity.rules import (
    DEFAULT_REVIEW_INTERVAL,
    check_clearance_raise,
    require_keeper,
    require_outside_admin,
    stewards_of,
)
from gatehouse.store.db import Database, bump_revision
from gatehouse.store.models import Credential, Identity, Person, ReviewCampaign, ReviewItem, RoleAssignment

# -- roles --------------------------------------------------------------------------------

def change_role(db: Database, actor: str, email: str, role: str, grant: bool) -> None:
    if role not in ROLES:
        raise GatehouseError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    with db.write() as session:
        bump_revision(session)
        person = person_by_email(session, email)
        if actor_email(actor) == person.email:
            raise Forbidden("nobody changes their own roles")
        # Only an identity-admin grants or revokes roles, even when none is left: the first one
        # comes from the once-only bootstrap, a later one from recovery (identity.bootstrap).
        require_role(session, actor, "identity-admin", "changing roles")
        held = session.get(RoleAssignment, (person.id, role))
        if grant:
            if person.status != "active":
                raise GatehouseError(f"{person.email} is {person.status}")
            if held is not None:
                raise GatehouseError(f"{person.email} already holds {role}")
            session.add(RoleAssignment(person_id=person.id, role=role, granted_by=actor, granted_at=utcnow()))
        else:
            if held is None:
                raise GatehouseError(f"{person.email} does not hold {role}")
            session.delete(held)
        audit.append(session, actor, "role.grant" if grant else "role.revoke", f"person:{person.email}", {"role": role})


def list_roles(db: Database) -> list[dict[str, Any]]:
    with db.read() as session:
        rows = session.execute(select(Person.email, RoleAssignment.role, RoleAssignment.granted_by,
                                      RoleAssignment.granted_at).join(Person, RoleAssignment.person_id == Person.id)
                               .order_by(Person.email, RoleAssignment.role)).all()
    return [{"email": email, "role": role, "granted_by": by, "granted_at": as_utc(at).isoformat()}
            for email, role, by, at in rows]


# -- joiners ------------------------------------------------------------------------------

def decide_identity(db: Database, actor: str, name: str, approve: bool, reason: str | None = None) -> Identity:
    """An identity-admin other than the requester approves (→ active) or rejects (→ retired).
    Approving also needs an identity-admin who has never owned or backed it up (a steward), an
    active owner, and no flag on it (an orphaned request is rejected, or moved and its flag
    cleared by an identity-admin first)."""
    with db.write() as session:
        revision = bump_revision(session)
        admin = require_role(session, actor, "identity-admin", "approving an identity")
        identity = identity_by_name(session, name)
        if identity.status != "pending":
            raise GatehouseError(f"identity {name!r} is {identity.status}, not pending")
        if actor_email(identity.created_by) == admin.email:
            raise Forbidden("nobody approves their own identity request")
        if approve:
            owner = session.get(Person, identity.owner_id)
            if owner is None or owner.status != "active":
                raise Forbidden(f"the owner of {name!r}, {owner.email if owner else '?'}, is "
                                f"{owner.status if owner else 'gone'}: a request whose owner left cannot be approved "
                                "(reject it, or move it to a new owner first)")
            if identity.attention:
                raise Forbidden(f"{name!r} is flagged ({identity.attention[:200]}): an identity-admin clears the flag "
                                "(`gatehouse identity attended`) before it can be approved")
            require_outside_admin(session, actor, stewards_of(session, identity), "approving an identity",
                                  f"identity {name!r}")
        now = utcnow()
        identity.status = "active" if approve else "retired"
        identity.approved_by, identity.approved_at, identity.revision = actor, now, revision
        if approve:
            identity.review_due_at = now + DEFAULT_REVIEW_INTERVAL
        audit.append(session, actor, "identity.approve" if approve else "identity.reject", f"identity:{name}",
                     {"requested_by": identity.created_by, "reason": reason})
        return identity


# -- clearance ----------------------------------------------------------------------------

def set_clearance(db: Database, actor: str, name: str, clearance: str) -> Identity:
    """Lowering is for the owner, the backup owner or an identity-admin; raising needs an
    identity-admin who has never owned, backed up or requested the identity."""
    if clearance not in DATA_CLASSES:
        raise GatehouseError(f"invalid data clearance {clearance!r}: one of {', '.join(DATA_CLASSES)}")
    with db.write() as session:
        revision = bump_revision(session)
        identity = identity_by_name(session, name)
        before = identity.data_clearance
        if rank(clearance) > rank(before):
            check_clearance_raise(session, actor, identity, clearance, before)
        else:
            require_keeper(session, actor, identity, "lowering a data clearance")
        identity.data_clearance, identity.revision = clearance, revision
        audit.append(session, actor, "identity.clearance", f"identity:{name}", {"from": before, "to": clearance})
        return identity


# -- access reviews -----------------------------------------------------------------------

DECISIONS = ("keep", "narrow", "retire")


def start_review(db: Database, actor: str, due: timedelta) -> tuple[int, int]:
    """Open a campaign: every identity not retired is put to its owner. Returns (id, items)."""
    with db.write() as session:
        bump_revision(session)
        require_role(session, actor, "identity-admin", "starting an access review")
        now = utcnow()
        campaign = ReviewCampaign(started_by=actor, started_at=now, due_at=now + due, status="open")
        session.add(campaign)
        session.flush()
        rows = session.execute(select(Identity.id, Person.email).join(Person, Identity.owner_id == Person.id)
                               .where(Identity.status.in_(("active", "suspended")))).all()
        session.add_all([ReviewItem(campaign_id=campaign.id, identity_id=ident, owner_email=email) for ident, email in rows])
        audit.append(session, actor, "review.start", f"review:{campaign.id}",
                     {"due_at": campaign.due_at.isoformat(), "identities": len(rows)})
        return campaign.id, len(rows)


def attest(db: Database, actor: str, name: str, decision: str, note: str | None = None) -> ReviewItem:
    """The identity's owner answers the open campaign's question for it."""
    if decision not in DECISIONS:
        raise GatehouseError(f"invalid decision {decision!r}: one of {', '.join(DECISIONS)}")
    if decision == "narrow" and not note:
        raise GatehouseError("say what to narrow (--note), e.g. 'only chat-small; drop the code models'")
    with db.write() as session:
        revision = bump_revision(session)
        person = acting_person(session, actor, "attesting an identity")
        identity = identity_by_name(session, name)
        items = session.execute(select(ReviewItem).join(ReviewCampaign, ReviewItem.campaign_id == ReviewCampaign.id)
                                .where(ReviewItem.identity_id == identity.id, ReviewCampaign.status == "open",
                                       ReviewItem.decision.is_(None)).order_by(ReviewItem.campaign_id)).scalars().all()
        if not items:
            raise GatehouseError(f"identity {name!r} has nothing to attest in an open review")
        item = items[0]
        owner = session.get(Person, identity.owner_id)
        if owner is None or owner.id != person.id:
            raise Forbidden(f"only the owner of {name!r} ({owner.email if owner else '?'}) attests it")
        now = utcnow()
        for open_item in items:  # one answer serves every open campaign asking about this identity
            open_item.decision, open_item.decided_by, open_item.decided_at, open_item.note = decision, actor, now, note
        identity.review_due_at, identity.revision = now + DEFAULT_REVIEW_INTERVAL, revision
        if decision == "narrow":
            identity.attention = f"owner chose to narrow its access in review {item.campaign_id}: {note}"
        if decision == "retire":
            identity.status = "retired"
            for key in session.execute(select(Credential).where(Credential.identity_id == identity.id,
                                                                Credential.status == "active")).scalars():
                mark_revoked(key, actor, f"retired in access review {item.campaign_id}", revision)
        audit.append(session, actor, "review.attest", f"identity:{name}",
                     {"review": item.campaign_id, "decision": decision, "note": note})
        return item


def enforce_reviews(db: Database, actor: str = "system:reviews") -> list[str]:
    """Past their due date, open campaigns close: every unattested identity is suspended (its
    keys stop within a second) and flagged. Safe to run from every worker: the change lock
    serialises them and a closed campaign is not closed twice. Returns the suspended names."""
    now = utcnow()
    with db.read() as session:
        due = session.execute(select(ReviewCampaign.id).where(ReviewCampaign.status == "open")
                              .where(ReviewCampaign.due_at <= now)).scalars().all()
    suspended: list[str] = []
    for campaign_id in due:
        closed_now: list[str] = []
        with db.write() as session:
            revision = bump_revision(session)
            campaign = session.get(ReviewCampaign, campaign_id)
            if campaign is None or campaign.status != "open":
                continue
            for item, identity in session.execute(
                    select(ReviewItem, Identity).join(Identity, ReviewItem.identity_id == Identity.id)
                    .where(ReviewItem.campaign_id == campaign_id, ReviewItem.decision.is_(None))).all():
                item.decision, item.decided_by, item.decided_at = "expired", actor, now
                if identity.status == "active":
                    identity.status = "suspended"
                    identity.attention = f"not attested in access review {campaign_id} by its due date"
                    identity.revision = revision
                    closed_now.append(identity.name)
                    audit.append(session, actor, "identity.suspend", f"identity:{identity.name}",
                                 {"from": "active", "to": "suspended", "reason": f"review {campaign_id} not attested"})
            campaign.status, campaign.closed_at = "closed", now
            audit.append(session, actor, "review.close", f"review:{campaign_id}", {"suspended": closed_now})
        suspended += closed_now
    return suspended


def review_status(db: Database) -> list[dict[str, Any]]:
    with db.read() as session:
        rows = session.execute(select(ReviewCampaign, ReviewItem, Identity.name)
                               .join(ReviewItem, ReviewItem.campaign_id == ReviewCampaign.id)
                               .join(Identity, ReviewItem.identity_id == Identity.id)
                               .order_by(ReviewCampaign.id, Identity.name)).all()
    return [{"review": campaign.id, "status": campaign.status, "due_at": as_utc(campaign.due_at).isoformat(),
             "identity": name, "owner": item.owner_email, "decision": item.decision, "decided_by": item.decided_by,
             "note": item.note} for campaign, item, name in rows]

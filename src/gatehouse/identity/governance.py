"""Who may do what to identities: roles, joiner approval, movers, clearance, access reviews.

Separation of duties, enforced here for every caller (command line and, later, admin API):
nobody approves an identity they requested; nobody changes their own roles; an owner cannot
raise their own identity's data clearance. The acting person is named by the ``actor``
string ``person:<email>`` (the CLI takes it from ``GATEHOUSE_ACTOR``); an actor that is not a
person (``local:<os user>``) may do what needs no second person, and nothing that does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from gatehouse import audit
from gatehouse.classification import DATA_CLASSES
from gatehouse.errors import GatehouseError
from gatehouse.identity.service import (
    DEFAULT_REVIEW_INTERVAL,
    _check_name,
    _identity_by_name,
    _mark_revoked,
    _person_by_email,
    as_utc,
    utcnow,
)
from gatehouse.policy.compiled import CompiledPolicy, IdentityView
from gatehouse.store.db import Database, bump_revision
from gatehouse.store.models import Credential, Identity, Person, ReviewCampaign, ReviewItem, RoleAssignment

ROLES = ("identity-admin", "policy-admin", "approver", "auditor", "operator")


class Forbidden(GatehouseError):
    """A separation-of-duties rule refused the action."""


def actor_email(actor: str) -> str | None:
    return actor.removeprefix("person:").lower() if actor.startswith("person:") else None


def roles_of(session: Session, email: str) -> set[str]:
    person = session.execute(select(Person).where(Person.email == email.lower())).scalar_one_or_none()
    if person is None:
        return set()
    return set(session.execute(select(RoleAssignment.role).where(RoleAssignment.person_id == person.id)).scalars())


def _acting_person(session: Session, actor: str, why: str) -> Person:
    email = actor_email(actor)
    if email is None:
        raise Forbidden(f"{why} needs to know who you are: set GATEHOUSE_ACTOR to your e-mail")
    person = session.execute(select(Person).where(Person.email == email)).scalar_one_or_none()
    if person is None or person.status != "active":
        raise Forbidden(f"{email} is not an active person in Gatehouse")
    return person


def _require_role(session: Session, actor: str, role: str, why: str) -> Person:
    person = _acting_person(session, actor, why)
    if role not in roles_of(session, person.email):
        raise Forbidden(f"{why} needs the {role} role, which {person.email} does not hold")
    return person


# -- roles --------------------------------------------------------------------------------

def change_role(db: Database, actor: str, email: str, role: str, grant: bool) -> None:
    if role not in ROLES:
        raise GatehouseError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    with db.write() as session:
        bump_revision(session)
        person = _person_by_email(session, email)
        if actor_email(actor) == person.email:
            raise Forbidden("nobody changes their own roles")
        if _has_identity_admin(session):
            _require_role(session, actor, "identity-admin", "changing roles")
        elif not (grant and role == "identity-admin"):
            raise Forbidden("grant identity-admin to someone first: until then it is the only role that can be granted")
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


def _has_identity_admin(session: Session) -> bool:
    """Before the first identity-admin exists, anyone may appoint one (bootstrap); after, only they grant roles."""
    return session.execute(select(RoleAssignment.person_id).join(Person, RoleAssignment.person_id == Person.id)
                           .where(RoleAssignment.role == "identity-admin", Person.status == "active")
                           .limit(1)).first() is not None


def check_clearance_raise(session: Session, actor: str, owner: Person, clearance: str, baseline: str) -> None:
    """A clearance above ``baseline`` needs an identity-admin who is not the identity's owner."""
    if DATA_CLASSES.index(clearance) > DATA_CLASSES.index(baseline):
        admin = _require_role(session, actor, "identity-admin", "raising a data clearance")
        if owner.id == admin.id:
            raise Forbidden("an owner cannot raise their own identity's data clearance")


def check_resume(session: Session, actor: str, identity: Identity) -> None:
    """An identity suspended for a reason its owner must answer (orphaned, review missed, leak)
    is resumed by an identity-admin, not by whoever holds the CLI."""
    if identity.attention:
        _require_role(session, actor, "identity-admin", f"resuming an identity flagged '{identity.attention[:80]}'")


def list_roles(db: Database) -> list[dict]:
    with db.read() as session:
        rows = session.execute(select(Person.email, RoleAssignment.role, RoleAssignment.granted_by,
                                      RoleAssignment.granted_at).join(Person, RoleAssignment.person_id == Person.id)
                               .order_by(Person.email, RoleAssignment.role)).all()
    return [{"email": email, "role": role, "granted_by": by, "granted_at": as_utc(at).isoformat()}
            for email, role, by, at in rows]


# -- joiners ------------------------------------------------------------------------------

def needs_approval(environment: str, exempt: frozenset[str]) -> bool:
    return environment not in exempt


def check_requester(session: Session, actor: str, owner_email: str) -> None:
    """An identity that needs approval is requested by its owner or by an identity-admin."""
    person = _acting_person(session, actor, "requesting an identity that needs approval")
    if person.email != owner_email.lower() and "identity-admin" not in roles_of(session, person.email):
        raise Forbidden(f"{person.email} may request identities only for themselves (or hold identity-admin)")


def decide_identity(db: Database, actor: str, name: str, approve: bool, reason: str | None = None) -> Identity:
    """An identity-admin other than the requester approves (→ active) or rejects (→ retired)."""
    with db.write() as session:
        revision = bump_revision(session)
        admin = _require_role(session, actor, "identity-admin", "approving an identity")
        identity = _identity_by_name(session, name)
        if identity.status != "pending":
            raise GatehouseError(f"identity {name!r} is {identity.status}, not pending")
        if actor_email(identity.created_by) == admin.email:
            raise Forbidden("nobody approves their own identity request")
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
    """Lowering is anyone's to do; raising needs an identity-admin who is not the owner."""
    if clearance not in DATA_CLASSES:
        raise GatehouseError(f"invalid data clearance {clearance!r}: one of {', '.join(DATA_CLASSES)}")
    with db.write() as session:
        revision = bump_revision(session)
        identity = _identity_by_name(session, name)
        before = identity.data_clearance
        owner = session.get(Person, identity.owner_id)
        assert owner is not None
        check_clearance_raise(session, actor, owner, clearance, before)
        identity.data_clearance, identity.revision = clearance, revision
        audit.append(session, actor, "identity.clearance", f"identity:{name}", {"from": before, "to": clearance})
        return identity


# -- movers -------------------------------------------------------------------------------

@dataclass
class TransferPlan:
    identity: str
    owner_before: str
    owner_after: str
    team_before: str | None
    team_after: str | None
    aliases_before: list[str]
    aliases_after: list[str]

    @property
    def gained(self) -> list[str]:
        return sorted(set(self.aliases_after) - set(self.aliases_before))

    @property
    def lost(self) -> list[str]:
        return sorted(set(self.aliases_before) - set(self.aliases_after))

    def as_dict(self) -> dict:
        return {"identity": self.identity, "owner": [self.owner_before, self.owner_after],
                "team": [self.team_before, self.team_after], "aliases_before": self.aliases_before,
                "aliases_after": self.aliases_after, "gained": self.gained, "lost": self.lost}


def plan_transfer(db: Database, policy: CompiledPolicy | None, name: str, owner_email: str | None,
                  team: str | None) -> TransferPlan:
    """The identity's effective access before and after a change of owner and/or team."""
    if team is not None:
        _check_name("team", team)
    with db.read() as session:
        identity = _identity_by_name(session, name)
        owner = session.get(Person, identity.owner_id)
        new_owner = _person_by_email(session, owner_email) if owner_email else owner
        assert owner is not None and new_owner is not None
        if new_owner.status != "active":
            raise GatehouseError(f"{new_owner.email} is {new_owner.status}: an identity needs an active owner")
        before = IdentityView.of(identity.name, identity.team, identity.environment, identity.labels)
        after = IdentityView.of(identity.name, team if team is not None else identity.team, identity.environment,
                                identity.labels)
        allowed = (lambda view: sorted(policy.allowed_aliases(view))) if policy else (lambda view: [])
        return TransferPlan(name, owner.email, new_owner.email, identity.team, after.team, allowed(before), allowed(after))


def transfer_identity(db: Database, actor: str, plan: TransferPlan) -> Identity:
    """Apply a planned move (an identity-admin's job); the identity comes up for review by its
    (new) owner at once. A move that widens access needs an admin who is neither owner."""
    with db.write() as session:
        revision = bump_revision(session)
        admin = _require_role(session, actor, "identity-admin", "moving an identity")
        if plan.gained and admin.email in (plan.owner_before, plan.owner_after):
            raise Forbidden(f"this move gives {plan.identity} {', '.join(plan.gained)}: an identity-admin who is "
                            "neither its old nor its new owner must make it")
        identity = _identity_by_name(session, plan.identity)
        owner = session.get(Person, identity.owner_id)
        if owner is None or owner.email != plan.owner_before or identity.team != plan.team_before:
            raise GatehouseError("the identity changed since the plan was shown: run the command again")
        new_owner = _person_by_email(session, plan.owner_after)
        if identity.backup_owner_id == new_owner.id:
            identity.backup_owner_id = None  # the backup must be someone else
        identity.owner_id, identity.team = new_owner.id, plan.team_after
        identity.review_due_at, identity.revision = utcnow(), revision
        audit.append(session, actor, "identity.transfer", f"identity:{plan.identity}", plan.as_dict())
        return identity


# -- access reviews -----------------------------------------------------------------------

DECISIONS = ("keep", "narrow", "retire")


def start_review(db: Database, actor: str, due: timedelta) -> tuple[int, int]:
    """Open a campaign: every identity not retired is put to its owner. Returns (id, items)."""
    with db.write() as session:
        bump_revision(session)
        _require_role(session, actor, "identity-admin", "starting an access review")
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
        person = _acting_person(session, actor, "attesting an identity")
        identity = _identity_by_name(session, name)
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
                _mark_revoked(key, actor, f"retired in access review {item.campaign_id}", revision)
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


def review_status(db: Database) -> list[dict]:
    with db.read() as session:
        rows = session.execute(select(ReviewCampaign, ReviewItem, Identity.name)
                               .join(ReviewItem, ReviewItem.campaign_id == ReviewCampaign.id)
                               .join(Identity, ReviewItem.identity_id == Identity.id)
                               .order_by(ReviewCampaign.id, Identity.name)).all()
    return [{"review": campaign.id, "status": campaign.status, "due_at": as_utc(campaign.due_at).isoformat(),
             "identity": name, "owner": item.owner_email, "decision": item.decision, "decided_by": item.decided_by,
             "note": item.note} for campaign, item, name in rows]

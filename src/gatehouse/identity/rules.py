"""Separation-of-duties checks on identities, shared by every operation that creates,
approves, resumes or re-clears one. Each runs inside the caller's transaction, after the
change lock, so it judges the latest state."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from gatehouse.authz import Forbidden, acting_person, require_role, roles_of
from gatehouse.core.classification import rank
from gatehouse.store.models import Identity, Person, RoleAssignment

DEFAULT_REVIEW_INTERVAL = timedelta(days=90)


def has_identity_admin(session: Session) -> bool:
    """Before the first identity-admin exists, anyone may appoint one (bootstrap); after, only they grant roles."""
    return session.execute(select(RoleAssignment.person_id).join(Person, RoleAssignment.person_id == Person.id)
                           .where(RoleAssignment.role == "identity-admin", Person.status == "active")
                           .limit(1)).first() is not None


def check_clearance_raise(session: Session, actor: str, owner: Person, clearance: str, baseline: str) -> None:
    """A clearance above ``baseline`` needs an identity-admin who is not the identity's owner."""
    if rank(clearance) > rank(baseline):
        admin = require_role(session, actor, "identity-admin", "raising a data clearance")
        if owner.id == admin.id:
            raise Forbidden("an owner cannot raise their own identity's data clearance")


def check_resume(session: Session, actor: str, identity: Identity) -> None:
    """An identity suspended for a reason its owner must answer (orphaned, review missed, leak)
    is resumed by an identity-admin, not by whoever holds the CLI."""
    if identity.attention:
        require_role(session, actor, "identity-admin", f"resuming an identity flagged '{identity.attention[:80]}'")


def needs_approval(environment: str, exempt: frozenset[str]) -> bool:
    return environment not in exempt


def check_requester(session: Session, actor: str, owner_email: str) -> None:
    """An identity that needs approval is requested by its owner or by an identity-admin."""
    person = acting_person(session, actor, "requesting an identity that needs approval")
    if person.email != owner_email.lower() and "identity-admin" not in roles_of(session, person.email):
        raise Forbidden(f"{person.email} may request identities only for themselves (or hold identity-admin)")

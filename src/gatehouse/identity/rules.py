"""Separation-of-duties checks on identities, shared by every operation that creates,
approves, resumes, moves or re-clears one. Each runs inside the caller's transaction, after
the change lock, so it judges the latest state.

An identity's *stewards* are every person who has owned it, been its backup owner or
requested it (``Identity.stewards``, plus whoever holds those places now: identities created
before the column existed have an empty list). None of them may raise its clearance, widen
its access or approve it, whoever owns it at the moment: that is what stops a sequence of
moves (hand it to someone else, raise it, take it back) doing what one move may not.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from gatehouse.authz import Forbidden, acting_person, actor_email, require_role, roles_of
from gatehouse.core.classification import rank
from gatehouse.core.errors import GatehouseError
from gatehouse.store.models import Identity, Person, RoleAssignment

DEFAULT_REVIEW_INTERVAL = timedelta(days=90)
BASELINE_CLEARANCE = "internal"  # what an identity may be created with by anyone who may create it


def has_identity_admin(session: Session) -> bool:
    """Whether an active identity-admin exists (bootstrap and recovery ask; granting roles never
    falls back to anything when none does)."""
    return session.execute(select(RoleAssignment.person_id).join(Person, RoleAssignment.person_id == Person.id)
                           .where(RoleAssignment.role == "identity-admin", Person.status == "active")
                           .limit(1)).first() is not None


def is_identity_admin(session: Session, person: Person) -> bool:
    return "identity-admin" in roles_of(session, person.email)


# -- stewards -----------------------------------------------------------------------------

def stewards_of(session: Session, identity: Identity) -> set[str]:
    """Every person (e-mail) who has owned, backed up or requested the identity."""
    found = {email.lower() for email in identity.stewards or []}
    for person_id in (identity.owner_id, identity.backup_owner_id):
        person = session.get(Person, person_id) if person_id is not None else None
        if person is not None:
            found.add(person.email)
    creator = actor_email(identity.created_by or "")
    if creator:
        found.add(creator)
    return found


def remember_stewards(session: Session, identity: Identity, *emails: str) -> None:
    """Record whoever holds the identity now (and ``emails``) among its stewards, for good.
    Call it before a change of owner or backup owner, and after."""
    identity.stewards = sorted(stewards_of(session, identity) | {email.lower() for email in emails})


def require_outside_admin(session: Session, actor: str, stewards: set[str], why: str, subject: str) -> Person:
    """An identity-admin who has never owned, backed up or requested ``subject``."""
    admin = require_role(session, actor, "identity-admin", why)
    if admin.email in stewards:
        raise Forbidden(f"{why} needs an identity-admin who has never owned, backed up or requested {subject}; "
                        f"{admin.email} has")
    return admin


# -- who may act on an identity -----------------------------------------------------------

def require_keeper(session: Session, actor: str, identity: Identity, why: str) -> Person:
    """The identity's owner, its backup owner, or an identity-admin."""
    person = acting_person(session, actor, why)
    if person.id in (identity.owner_id, identity.backup_owner_id) or is_identity_admin(session, person):
        return person
    raise Forbidden(f"{why} is for the owner or backup owner of {identity.name!r} or an identity-admin; "
                    f"{person.email} is none of them")


def check_requester(session: Session, actor: str, owner_email: str) -> Person:
    """Any active person requests an identity they will own; one for someone else is an
    identity-admin's to request."""
    person = acting_person(session, actor, "requesting an identity")
    if person.email != owner_email.lower() and not is_identity_admin(session, person):
        raise Forbidden(f"{person.email} may request identities only for themselves (or hold identity-admin)")
    return person


def check_clearance_at_creation(session: Session, actor: str, owner: Person, backup: Person | None,
                                clearance: str) -> bool:
    """A clearance above the baseline at creation is requested by an identity-admin who is
    neither its owner nor its backup; the identity then waits for another identity-admin, who
    never was one of its stewards, to approve it. Returns whether it was raised."""
    if rank(clearance) <= rank(BASELINE_CLEARANCE):
        return False
    admin = require_role(session, actor, "identity-admin", "raising a data clearance")
    if admin.id == owner.id:
        raise Forbidden("an owner cannot raise their own identity's data clearance")
    if backup is not None and admin.id == backup.id:
        raise Forbidden("a backup owner cannot raise the data clearance of an identity they back up")
    return True


def check_clearance_raise(session: Session, actor: str, identity: Identity, clearance: str, baseline: str) -> None:
    """A clearance above ``baseline`` needs an identity-admin who is not one of the identity's
    stewards (not only not its owner of the moment)."""
    if rank(clearance) > rank(baseline):
        admin = require_role(session, actor, "identity-admin", "raising a data clearance")
        if admin.id == identity.owner_id:
            raise Forbidden("an owner cannot raise their own identity's data clearance")
        require_outside_admin(session, actor, stewards_of(session, identity), "raising a data clearance",
                              f"identity {identity.name!r}")


def check_resume(session: Session, actor: str, identity: Identity) -> None:
    """An identity suspended for a reason its owner must answer (orphaned, review missed, leak)
    is resumed by an identity-admin, not by whoever holds the CLI."""
    owner = session.get(Person, identity.owner_id)
    if owner is None or owner.status != "active":
        raise GatehouseError(f"identity {identity.name!r} belongs to {owner.email if owner else 'nobody'}, who is "
                             f"{owner.status if owner else 'gone'}: transfer it to an active owner before resuming it")
    if identity.attention:
        require_flag_clearer(session, actor, identity, f"resuming an identity flagged '{identity.attention[:80]}'")


def require_flag_clearer(session: Session, actor: str, identity: Identity, why: str) -> Person:
    """An identity-admin who neither owns nor backs up the identity: owners act on a flag, they
    do not clear their own."""
    admin = require_role(session, actor, "identity-admin", why)
    if admin.id in (identity.owner_id, identity.backup_owner_id):
        raise Forbidden(f"{why} needs an identity-admin who neither owns nor backs up {identity.name!r}")
    return admin


def needs_approval(environment: str, exempt: frozenset[str]) -> bool:
    return environment not in exempt

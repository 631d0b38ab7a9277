"""Who is acting, and what their roles let them do on the control plane.

The actor is a string: ``person:<email>`` for a person, ``system:<job>`` for Gatehouse's own
background work, ``local:<os user>`` for a shell that names nobody. Only a person holds
roles; an actor that is not an active person may do nothing that needs one. Every service
function checks here, inside its own transaction, so the rule is the same on every entry
point (CLI, admin API, console).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from gatehouse.core.errors import GatehouseError
from gatehouse.store.models import Person, RoleAssignment

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


def acting_person(session: Session, actor: str, why: str) -> Person:
    email = actor_email(actor)
    if email is None:
        raise Forbidden(f"{why} needs a person: sign in with your own admin key (`gatehouse login`)")
    person = session.execute(select(Person).where(Person.email == email)).scalar_one_or_none()
    if person is None or person.status != "active":
        raise Forbidden(f"{email} is not an active person in Gatehouse")
    return person


def require_role(session: Session, actor: str, role: str, why: str) -> Person:
    person = acting_person(session, actor, why)
    if role not in roles_of(session, person.email):
        raise Forbidden(f"{why} needs the {role} role, which {person.email} does not hold")
    return person


def require_any_role(session: Session, actor: str, roles: frozenset[str], why: str) -> Person:
    person = acting_person(session, actor, why)
    if not roles & roles_of(session, person.email):
        raise Forbidden(f"{why} needs one of the roles {', '.join(sorted(roles))}, which {person.email} does not hold")
    return person

"""Finding people and identities by the names callers give, and checking those names.

Every control-plane operation looks records up here, so a missing one is reported the same
way everywhere (NotFound, naming what to do).
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from gatehouse.core.errors import GatehouseError, NotFound
from gatehouse.store.models import Identity, Person

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def check_name(kind: str, value: str) -> str:
    if not NAME_PATTERN.match(value or ""):
        raise GatehouseError(
            f"invalid {kind} {value!r}: use 1-100 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def person_by_email(session: Session, email: str) -> Person:
    person = session.execute(select(Person).where(Person.email == email.lower())).scalar_one_or_none()
    if person is None:
        raise NotFound(f"no person with e-mail {email!r} (add one with `gatehouse person add`)")
    return person


def identity_by_name(session: Session, name: str) -> Identity:
    identity = session.execute(select(Identity).where(Identity.name == name)).scalar_one_or_none()
    if identity is None:
        raise NotFound(f"no identity named {name!r}")
    return identity

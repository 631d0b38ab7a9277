"""The first identity-admin, once per installation, and the way back when none is left.

These are the only changes made without an authenticated person behind them, so each is
loud: an audit entry (``installation.bootstrap``, ``installation.recover``), and for recovery a
notification through the webhook as well.

- ``bootstrap`` appoints the first identity-admin and issues their admin key. It runs once:
  a marker in the store records that it happened, and it is refused for good afterwards —
  even when every identity-admin has departed (that is what recovery is for).
- It also makes the recovery codes: ``RECOVERY_CODES`` of them, to be handed to different
  people; any ``RECOVERY_THRESHOLD`` of them together (``recover``) appoint a new
  identity-admin, only while no active identity-admin can sign in (none left, or none with an
  unexpired admin key: nobody else could issue them one). Only an HMAC of each code is
  kept. A recovery uses up the codes presented and replaces the whole set.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from hashlib import sha256

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gatehouse import audit
from gatehouse.authz import Forbidden
from gatehouse.core.clock import utcnow
from gatehouse.core.errors import Conflict, GatehouseError
from gatehouse.identity.admin_keys import mint_admin_key
from gatehouse.identity.lookup import EMAIL_PATTERN, check_name
from gatehouse.identity.rules import has_identity_admin
from gatehouse.store.db import Database, bump_revision
from gatehouse.store.models import AdminKey, Meta, Person, RecoveryCode, RoleAssignment

BOOTSTRAPPED = "bootstrapped_at"  # the marker row: epoch seconds of the bootstrap
RECOVERY_CODES = 3
RECOVERY_THRESHOLD = 2
CODE_PREFIX = "ghr_"


@dataclass
class Appointment:
    """What bootstrap or recovery hands over, once: the admin key and the recovery codes."""

    email: str
    key_id: str
    admin_key: str = field(repr=False)
    recovery_codes: list[str] = field(repr=False)


def _code_hash(pepper: bytes, code: str) -> str:
    return hmac.new(pepper, code.encode(), sha256).hexdigest()


def _new_codes(session: Session, pepper: bytes) -> list[str]:
    """A fresh set of recovery codes; every earlier one stops working."""
    session.execute(update(RecoveryCode).where(RecoveryCode.used_at.is_(None)).values(used_at=utcnow()))
    codes = []
    for _ in range(RECOVERY_CODES):
        code_id = secrets.token_hex(6)
        code = f"{CODE_PREFIX}{code_id}_{secrets.token_urlsafe(24)}"
        session.add(RecoveryCode(id=code_id, secret_hash=_code_hash(pepper, code), created_at=utcnow()))
        codes.append(code)
    return codes


def is_bootstrapped(session: Session) -> bool:
    return session.get(Meta, BOOTSTRAPPED) is not None


def _appoint(session: Session, actor: str, email: str, team: str | None, pepper: bytes, ttl: timedelta) -> Appointment:
    email = (email or "").strip().lower()
    if not EMAIL_PATTERN.match(email):
        raise GatehouseError(f"invalid e-mail address {email!r}")
    if team is not None:
        check_name("team", team)
    person = session.execute(select(Person).where(Person.email == email)).scalar_one_or_none()
    if person is None:
        person = Person(email=email, team=team, status="active", created_at=utcnow(), revision=bump_revision(session))
        session.add(person)
        session.flush()
        audit.append(session, actor, "person.add", f"person:{email}", {"team": team, "name": None})
    elif person.status != "active":
        raise GatehouseError(f"{email} is {person.status}: appoint someone who is active")
    if session.get(RoleAssignment, (person.id, "identity-admin")) is None:
        session.add(RoleAssignment(person_id=person.id, role="identity-admin", granted_by=actor, granted_at=utcnow()))
        audit.append(session, actor, "role.grant", f"person:{email}", {"role": "identity-admin"})
    row, key = mint_admin_key(session, actor, person, pepper=pepper, ttl=ttl)
    return Appointment(email, row.id, key, _new_codes(session, pepper))


def _identity_admin_who_can_sign_in(session: Session) -> bool:
    """An active identity-admin holding an active, unexpired admin key: someone who can act.
    An identity-admin whose only key has expired cannot be issued a new one by anyone else."""
    now = utcnow()
    return session.execute(
        select(AdminKey.id).join(Person, AdminKey.person_id == Person.id)
        .join(RoleAssignment, RoleAssignment.person_id == Person.id)
        .where(RoleAssignment.role == "identity-admin", Person.status == "active", AdminKey.status == "active",
               AdminKey.expires_at > now).limit(1)).first() is not None


def bootstrap(db: Database, actor: str, email: str, *, pepper: bytes, ttl: timedelta,
              team: str | None = None) -> Appointment:
    """Appoint the installation's first identity-admin. Refused once it has happened."""
    with db.write() as session:
        bump_revision(session)  # the change lock: two racing bootstraps cannot both pass
        if is_bootstrapped(session):
            raise Conflict("this installation was bootstrapped already; it never is again. If no identity-admin "
                           "is left, recover with the recovery codes (`gatehouse recover`)")
        if has_identity_admin(session):
            raise Conflict("an identity-admin exists already: they grant roles and issue admin keys")
        session.add(Meta(name=BOOTSTRAPPED, value=int(utcnow().timestamp())))
        appointment = _appoint(session, actor, email, team, pepper, ttl)
        audit.append(session, actor, "installation.bootstrap", f"person:{appointment.email}",
                     {"admin_key": appointment.key_id, "recovery_codes": RECOVERY_CODES,
                      "recovery_threshold": RECOVERY_THRESHOLD})
        return appointment


def recover(db: Database, actor: str, codes: list[str], email: str, *, pepper: bytes, ttl: timedelta) -> Appointment:
    """Appoint an identity-admin when none is left, on ``RECOVERY_THRESHOLD`` distinct codes.
    A refused attempt is recorded too: the transaction commits its audit entry, then refuses."""
    refusal: str | None = None
    with db.write() as session:
        bump_revision(session)
        if not is_bootstrapped(session):
            raise Conflict("this installation was never bootstrapped: run `gatehouse init --admin EMAIL`")
        found = _valid_codes(session, codes, pepper)
        if _identity_admin_who_can_sign_in(session):
            refusal = "an active identity-admin with a usable admin key exists: recovery is only for when none is left"
        elif len(found) < RECOVERY_THRESHOLD:
            refusal = (f"recovery needs {RECOVERY_THRESHOLD} different valid recovery codes "
                       f"({len(found)} given were valid)")
        if refusal is not None:
            audit.append(session, actor, "installation.recover_refused", "installation",
                         {"valid_codes": len(found), "needed": RECOVERY_THRESHOLD, "reason": refusal})
        else:
            appointment = _spend_and_appoint(session, actor, found, email, pepper, ttl)
    if refusal is not None:
        raise Forbidden(refusal)
    return appointment


def _valid_codes(session: Session, codes: list[str], pepper: bytes) -> dict[str, RecoveryCode]:
    found: dict[str, RecoveryCode] = {}
    for code in codes:
        code_id = code.removeprefix(CODE_PREFIX).split("_", 1)[0]
        row = session.get(RecoveryCode, code_id)
        if (row is None or row.used_at is not None
                or not hmac.compare_digest(row.secret_hash, _code_hash(pepper, code))):
            continue  # never say which one was wrong: each is someone else's secret
        found[row.id] = row
    return found


def _spend_and_appoint(session: Session, actor: str, found: dict[str, RecoveryCode], email: str, pepper: bytes,
                       ttl: timedelta) -> Appointment:
    """The codes presented are spent, then the appointment is made and recorded."""
    for row in found.values():
        row.used_at = utcnow()
    appointment = _appoint(session, actor, email, None, pepper, ttl)
    audit.append(session, actor, "installation.recover", f"person:{appointment.email}",
                 {"codes_used": sorted(found), "admin_key": appointment.key_id,
                  "note": "an identity-admin was appointed with recovery codes; the code set was replaced"})
    return appointment


def recovery_event(appointment: Appointment, actor: str) -> dict[str, str]:
    """What the webhook hears of a recovery: who was appointed, by whom; no secret."""
    return {"event": "installation.recover", "appointed": appointment.email, "actor": actor,
            "admin_key": appointment.key_id,
            "action": "an identity-admin was appointed with recovery codes: check that this was planned"}

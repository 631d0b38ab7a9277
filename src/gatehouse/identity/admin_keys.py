"""People's keys to the admin API, and who is calling it.

Admin keys use the ``gth_`` format (scanners and leak response find them like any key) but
live in their own table: a workload key is refused by every admin endpoint, whatever its
identity, and an admin key never reaches a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gatehouse import audit
from gatehouse.authz import Forbidden, acting_person, require_role, roles_of
from gatehouse.core.clock import as_utc, utcnow
from gatehouse.core.durations import format_duration
from gatehouse.core.errors import GatehouseError, NotFound
from gatehouse.core.keyformat import MalformedKey, hash_secret, parse_key, secret_matches
from gatehouse.identity.credentials import check_key_id, new_key
from gatehouse.identity.lookup import person_by_email
from gatehouse.store.db import Database, bump_revision
from gatehouse.store.models import AdminKey, Credential, Person, RoleAssignment

ENROLMENT_TTL = timedelta(hours=24)  # an admin key issued to someone else lasts at most this, unexchanged


class AdminAuthError(Exception):
    def __init__(self, status: int, message: str, code: str) -> None:
        self.status, self.message, self.code = status, message, code
        super().__init__(message)


@dataclass(frozen=True)
class AdminPrincipal:
    email: str
    key_id: str
    roles: frozenset[str]
    enrolment: bool = False  # an enrolment key: it may only be exchanged for the person's own key


def issue_admin_key(db: Database, actor: str, email: str, *, pepper: bytes, ttl: timedelta,
                    max_ttl: timedelta) -> tuple[AdminKey, str]:
    """An identity-admin issues a person their admin key (the person is told through the
    notification webhook by the caller). The key text is returned once and never stored."""
    if ttl > max_ttl:
        raise GatehouseError(f"TTL {format_duration(ttl)} is over the maximum of {format_duration(max_ttl)}")
    with db.write() as session:
        bump_revision(session)
        issuer = require_role(session, actor, "identity-admin", "issuing an admin key")
        person = person_by_email(session, email)
        if person.id == issuer.id:
            return mint_admin_key(session, actor, person, pepper=pepper, ttl=ttl)
        # For someone else: an enrolment key, good once for a key of their own that the issuer
        # never sees. Only the newest one counts (earlier ones stop), and exchanging one stops
        # every other key the person holds: a key the issuer got by exchanging it first stops
        # when the person exchanges theirs, and if the issuer does it afterwards, the person's
        # own key stops. Either way the person finds out.
        _revoke_keys_of(session, actor, person, "replaced by a newer enrolment key", enrolment_only=True)
        return mint_admin_key(session, actor, person, pepper=pepper, ttl=min(ttl, ENROLMENT_TTL), enrolment=True)


def _revoke_keys_of(session: Session, actor: str, person: Person, reason: str, enrolment_only: bool = False,
                    keep: str | None = None) -> list[str]:
    query = select(AdminKey).where(AdminKey.person_id == person.id, AdminKey.status == "active")
    if enrolment_only:
        query = query.where(AdminKey.enrolment.is_(True))
    revoked = []
    for row in session.execute(query).scalars():
        if row.id == keep:
            continue
        row.status, row.revoked_at = "revoked", utcnow()
        revoked.append(row.id)
        audit.append(session, actor, "admin_key.revoke", f"admin_key:{row.id}", {"person": person.email, "reason": reason})
    return revoked


def redeem_admin_key(db: Database, principal: AdminPrincipal, *, pepper: bytes, ttl: timedelta,
                     max_ttl: timedelta) -> tuple[AdminKey, str]:
    """Exchange an enrolment key for a key of the person's own: the enrolment key stops at
    once (it is single-use), the new one is made here and shown only to whoever exchanged it."""
    if not principal.enrolment:
        raise GatehouseError("this admin key is your own already: nothing to exchange")
    if ttl > max_ttl:
        raise GatehouseError(f"TTL {format_duration(ttl)} is over the maximum of {format_duration(max_ttl)}")
    with db.write() as session:
        bump_revision(session)
        enrolment = session.get(AdminKey, principal.key_id)
        if enrolment is None or enrolment.status != "active" or not enrolment.enrolment:
            raise GatehouseError("this enrolment key was exchanged already: if not by you, report it")
        enrolment.status, enrolment.revoked_at = "revoked", utcnow()
        person = person_by_email(session, principal.email)
        actor = f"person:{person.email}"
        replaced = _revoke_keys_of(session, actor, person, "replaced by an exchanged enrolment key")
        audit.append(session, actor, "admin_key.redeem", f"admin_key:{enrolment.id}",
                     {"person": person.email, "issued_by": enrolment.created_by, "replaced": replaced})
        return mint_admin_key(session, actor, person, pepper=pepper, ttl=ttl)


def mint_admin_key(session: Session, actor: str, person: Person, *, pepper: bytes, ttl: timedelta,
                   enrolment: bool = False) -> tuple[AdminKey, str]:
    """The key itself, in the caller's transaction, once it has decided who may have one."""
    if person.status != "active":
        raise GatehouseError(f"{person.email} is {person.status}")
    key = new_key(session)
    now = utcnow()
    row = AdminKey(id=key.key_id, person_id=person.id, secret_hash=hash_secret(pepper, key), status="active",
                   created_at=now, created_by=actor, expires_at=now + ttl, enrolment=enrolment)
    session.add(row)
    session.flush()
    audit.append(session, actor, "admin_key.issue", f"admin_key:{key.key_id}",
                 {"person": person.email, "expires_at": row.expires_at.isoformat(), "enrolment": enrolment})
    return row, key.text


def revoke_admin_keys_of(session: Session, actor: str, person: Person, reason: str) -> list[str]:
    revoked: list[str] = []
    for row in session.execute(select(AdminKey).where(AdminKey.person_id == person.id,
                                                      AdminKey.status == "active")).scalars():
        row.status, row.revoked_at = "revoked", utcnow()
        revoked.append(row.id)
        audit.append(session, actor, "admin_key.revoke", f"admin_key:{row.id}", {"person": person.email, "reason": reason})
    return revoked


def revoke_admin_key(db: Database, actor: str, key_id: str) -> None:
    """An identity-admin revokes anyone's admin key; a person revokes their own."""
    check_key_id(key_id)
    with db.write() as session:
        bump_revision(session)
        person = acting_person(session, actor, "revoking an admin key")
        row = session.get(AdminKey, key_id)
        if row is None:
            raise NotFound(f"no admin key with id {key_id!r}")
        if row.person_id != person.id and "identity-admin" not in roles_of(session, person.email):
            raise Forbidden(f"revoking someone else's admin key needs the identity-admin role, which {person.email} "
                            "does not hold")
        if row.status != "active":
            raise GatehouseError(f"admin key {key_id} is already {row.status}")
        row.status, row.revoked_at = "revoked", utcnow()
        audit.append(session, actor, "admin_key.revoke", f"admin_key:{key_id}", {})


def authenticate_admin(db: Database, pepper: bytes, authorization: str | None) -> AdminPrincipal:
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AdminAuthError(401, "send your admin key as 'Authorization: Bearer gth_…'", "missing_admin_key")
    try:
        key = parse_key(token)
    except MalformedKey as exc:
        raise AdminAuthError(401, f"invalid admin key: {exc}", "invalid_admin_key") from None
    with db.read() as session:  # nothing is written for a caller who has not authenticated
        row = session.get(AdminKey, key.key_id)
        if row is None:
            workload = session.get(Credential, key.key_id)
            if workload is not None and secret_matches(pepper, key, workload.secret_hash):
                raise AdminAuthError(403, "workload identities cannot call admin endpoints", "admin_forbidden")
            # an unknown id and a made-up secret on a real id answer alike: key ids are not enumerable
            raise AdminAuthError(401, "invalid admin key", "invalid_admin_key")
        if not secret_matches(pepper, key, row.secret_hash):
            raise AdminAuthError(401, "invalid admin key", "invalid_admin_key")
        if row.status != "active" or as_utc(row.expires_at) <= utcnow():
            raise AdminAuthError(401, f"admin key {row.id} is {'revoked' if row.status != 'active' else 'expired'}",
                                 "invalid_admin_key")
        person = session.get(Person, row.person_id)
        if person is None or person.status != "active":
            raise AdminAuthError(401, "the person behind this admin key is not active", "invalid_admin_key")
        principal = AdminPrincipal(person.email, row.id, frozenset(roles_of(session, person.email)), row.enrolment)
    with db.write() as session:
        session.execute(update(AdminKey).where(AdminKey.id == principal.key_id).values(last_used_at=utcnow()))
    return principal


def admin_principals(db: Database) -> list[dict[str, Any]]:
    """People holding a role or an admin key, for the inventory."""
    now = utcnow()
    with db.read() as session:
        roles: dict[int, list[str]] = {}
        for person_id, role in session.execute(select(RoleAssignment.person_id, RoleAssignment.role)):
            roles.setdefault(person_id, []).append(role)
        keys: dict[int, list[tuple[str, datetime, datetime | None]]] = {}  # status, expires, last used
        for person_id, status, expires, used in session.execute(
                select(AdminKey.person_id, AdminKey.status, AdminKey.expires_at, AdminKey.last_used_at)):
            keys.setdefault(person_id, []).append((status, as_utc(expires), as_utc(used)))
        people = session.execute(select(Person).where(Person.id.in_(set(roles) | set(keys))).order_by(Person.email)).scalars()
        rows = []
        for person in people:
            mine = keys.get(person.id, [])
            active = [k for k in mine if k[0] == "active" and k[1] > now]
            used = max((k[2] for k in mine if k[2] is not None), default=None)
            rows.append({"email": person.email, "team": person.team, "status": person.status,
                         "roles": sorted(roles.get(person.id, [])), "active_keys": len(active),
                         "expires_at": max(k[1] for k in active).isoformat() if active else None,
                         "last_used_at": used.isoformat() if used else None})
        return rows

"""Control-plane operations on people, identities and keys.

Every change runs in one transaction with its audit entry and bumps the revision counter
that tells gateway workers to refresh their in-memory tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from gatehouse import audit
from gatehouse.authz import require_role
from gatehouse.core.classification import DATA_CLASSES
from gatehouse.core.clock import as_utc, utcnow
from gatehouse.core.durations import format_duration
from gatehouse.core.errors import Conflict, GatehouseError, NotFound
from gatehouse.core.keyformat import hash_secret
from gatehouse.identity.credentials import check_key_id, mark_revoked, new_key
from gatehouse.identity.lookup import EMAIL_PATTERN, check_name, identity_by_name, person_by_email
from gatehouse.identity.rules import (
    DEFAULT_REVIEW_INTERVAL,
    check_clearance_at_creation,
    check_requester,
    check_resume,
    needs_approval,
    require_keeper,
)
from gatehouse.store.db import Database, bump_revision
from gatehouse.store.models import Credential, Identity, Person

# -- people -----------------------------------------------------------------------------

def add_person(db: Database, actor: str, email: str, team: str | None = None, name: str | None = None) -> Person:
    """An identity-admin adds a person (the first one comes from ``bootstrap``)."""
    email = (email or "").strip().lower()
    if not EMAIL_PATTERN.match(email):
        raise GatehouseError(f"invalid e-mail address {email!r}")
    if team is not None:
        check_name("team", team)
    with db.write() as session:
        revision = bump_revision(session)  # the change lock first: every check below sees the latest state
        require_role(session, actor, "identity-admin", "adding a person")
        if session.execute(select(Person).where(Person.email == email)).scalar_one_or_none():
            raise Conflict(f"a person with e-mail {email!r} already exists")
        person = Person(email=email, team=team, name=name, status="active", created_at=utcnow(), revision=revision)
        session.add(person)
        session.flush()
        audit.append(session, actor, "person.add", f"person:{email}", {"team": team, "name": name})
    return person


def list_people(db: Database) -> list[Person]:
    with db.read() as session:
        return list(session.execute(select(Person).order_by(Person.email)).scalars())


def get_person(db: Database, email: str) -> Person:
    with db.read() as session:
        return person_by_email(session, email)


# -- identities -------------------------------------------------------------------------

def create_identity(
    db: Database,
    actor: str,
    name: str,
    owner_email: str,
    *,
    team: str | None = None,
    environment: str = "dev",
    purpose: str | None = None,
    backup_owner_email: str | None = None,
    data_clearance: str = "internal",
    labels: dict[str, str] | None = None,
    exempt_environments: frozenset[str] = frozenset({"dev"}),
) -> Identity:
    """Any active person requests an identity they will own; one for someone else needs an
    identity-admin. It starts ``pending`` until an identity-admin who is neither its requester
    nor one of its stewards approves it (governance.decide_identity) when it is outside
    ``exempt_environments``, or when what it asks for selects grants or data of its own: a team
    other than its owner's, any labels, or a clearance above the baseline (which only an
    identity-admin other than its owner and backup may ask for)."""

    check_name("identity name", name)
    check_name("environment", environment)
    if team is not None:
        check_name("team", team)
    if data_clearance not in DATA_CLASSES:
        raise GatehouseError(f"invalid data clearance {data_clearance!r}: one of {', '.join(DATA_CLASSES)}")
    with db.write() as session:
        revision = bump_revision(session)  # the change lock first: every check below sees the latest state
        owner = person_by_email(session, owner_email)
        if owner.status != "active":
            raise GatehouseError(f"owner {owner.email} is {owner.status}: an identity needs an active owner")
        backup = None
        if backup_owner_email:
            backup = person_by_email(session, backup_owner_email)
            if backup.status != "active":
                raise GatehouseError(f"backup owner {backup.email} is {backup.status}")
            if backup.id == owner.id:
                raise GatehouseError("the backup owner must be someone other than the owner")
        if session.execute(select(Identity).where(Identity.name == name)).scalar_one_or_none():
            raise Conflict(f"an identity named {name!r} already exists")
        requester = check_requester(session, actor, owner.email)
        identity_team = team if team is not None else owner.team
        raised = check_clearance_at_creation(session, actor, owner, backup, data_clearance)
        because = [reason for reason, applies in (
            (f"environment {environment} needs approval", needs_approval(environment, exempt_environments)),
            (f"team {identity_team} is not its owner's ({owner.team})", identity_team != owner.team),
            ("labels select grants", bool(labels)),
            (f"data clearance {data_clearance} is above the baseline", raised),
        ) if applies]
        pending = bool(because)
        now = utcnow()
        identity = Identity(
            name=name, owner_id=owner.id, backup_owner_id=backup.id if backup else None,
            team=identity_team, environment=environment, purpose=purpose,
            data_clearance=data_clearance, labels=dict(labels or {}), status="pending" if pending else "active",
            review_due_at=None if pending else now + DEFAULT_REVIEW_INTERVAL, created_at=now, created_by=actor,
            revision=revision,
            stewards=sorted({owner.email, requester.email} | ({backup.email} if backup else set())),
        )
        session.add(identity)
        session.flush()
        audit.append(session, actor, "identity.create", f"identity:{name}", {
            "owner": owner.email, "backup_owner": backup.email if backup else None,
            "team": identity.team, "environment": environment, "purpose": purpose,
            "data_clearance": data_clearance, "labels": identity.labels, "status": identity.status,
            "pending_because": because,
        })
    return identity


def list_identities(db: Database) -> list[tuple[Identity, Person]]:
    with db.read() as session:
        rows = session.execute(
            select(Identity, Person).join(Person, Identity.owner_id == Person.id).order_by(Identity.name)
        ).all()
        return [(identity, owner) for identity, owner in rows]


def describe_identity(db: Database, name: str) -> dict[str, Any]:
    with db.read() as session:
        identity = identity_by_name(session, name)
        owner = session.get(Person, identity.owner_id)
        backup = session.get(Person, identity.backup_owner_id) if identity.backup_owner_id else None
        keys = session.execute(
            select(Credential).where(Credential.identity_id == identity.id).order_by(Credential.created_at)
        ).scalars().all()
        return {
            "name": identity.name, "status": identity.status,
            "owner": owner.email if owner else None, "backup_owner": backup.email if backup else None,
            "team": identity.team, "environment": identity.environment, "purpose": identity.purpose,
            "data_clearance": identity.data_clearance, "labels": identity.labels,
            "created_at": as_utc(identity.created_at).isoformat(), "created_by": identity.created_by,
            "review_due_at": as_utc(identity.review_due_at).isoformat() if identity.review_due_at else None,
            "attention": identity.attention,
            "keys": [key_summary(key, identity.name) for key in keys],
        }


_TRANSITIONS = {
    "suspend": ({"active"}, "suspended"),
    "resume": ({"suspended"}, "active"),
    "retire": ({"pending", "active", "suspended"}, "retired"),
}


def change_identity_status(db: Database, actor: str, name: str, action: str, reason: str | None = None) -> Identity:
    """Suspend (keys stop working), resume, or retire (for good; every key is revoked)."""
    allowed_from, new_status = _TRANSITIONS[action]
    with db.write() as session:
        revision = bump_revision(session)  # the change lock first: every check below sees the latest state
        identity = identity_by_name(session, name)
        require_keeper(session, actor, identity, f"{action.removesuffix('e')}ing an identity")
        if identity.status not in allowed_from:
            raise GatehouseError(f"cannot {action} identity {name!r}: it is {identity.status}")
        if action == "resume":
            check_resume(session, actor, identity)
        previous, identity.status, identity.revision = identity.status, new_status, revision
        revoked: list[str] = []
        if new_status == "retired":
            for key in session.execute(select(Credential).where(
                Credential.identity_id == identity.id, Credential.status == "active"
            )).scalars():
                mark_revoked(key, actor, f"identity retired: {reason}" if reason else "identity retired", revision)
                revoked.append(key.id)
        audit.append(session, actor, f"identity.{action}", f"identity:{name}",
                     {"from": previous, "to": new_status, "reason": reason, "revoked_keys": revoked})
    return identity


# -- keys -------------------------------------------------------------------------------

def issue_key(
    db: Database,
    actor: str,
    identity_name: str,
    *,
    pepper: bytes,
    ttl: timedelta,
    max_ttl: timedelta,
    scopes: Sequence[str] | None = None,
) -> tuple[Credential, str]:
    """Create a key; returns the row and the key text, which is never stored or shown again."""
    if ttl > max_ttl:
        raise GatehouseError(
            f"TTL {format_duration(ttl)} is over the maximum of {format_duration(max_ttl)} "
            "(GATEHOUSE_MAX_KEY_TTL)"
        )
    clean_scopes = sorted(set(scopes)) if scopes else None
    for scope in clean_scopes or ():
        if not scope or len(scope) > 200 or any(ch.isspace() for ch in scope):
            raise GatehouseError(f"invalid scope {scope!r}: a scope is a model alias name")
    with db.write() as session:
        revision = bump_revision(session)  # the change lock first: every check below sees the latest state
        identity = identity_by_name(session, identity_name)
        require_keeper(session, actor, identity, "issuing a key")
        if identity.status != "active":
            raise GatehouseError(f"identity {identity_name!r} is {identity.status}: keys are issued to active identities only")
        key = new_key(session)
        now = utcnow()
        credential = Credential(
            id=key.key_id, identity_id=identity.id, secret_hash=hash_secret(pepper, key),
            scopes=clean_scopes, status="active", created_at=now, created_by=actor,
            expires_at=now + ttl, revision=revision,
        )
        session.add(credential)
        session.flush()
        audit.append(session, actor, "key.issue", f"key:{key.key_id}", {
            "identity": identity_name, "expires_at": credential.expires_at.isoformat(),
            "scopes": clean_scopes,
        })
    return credential, key.text


def key_summary(key: Credential, identity_name: str) -> dict[str, Any]:
    now = utcnow()
    expires_at = as_utc(key.expires_at)
    status = key.status
    if status == "active" and expires_at <= now:
        status = "expired"
    return {
        "key_id": key.id, "identity": identity_name, "status": status,
        "scopes": key.scopes, "created_at": as_utc(key.created_at).isoformat(),
        "created_by": key.created_by, "expires_at": expires_at.isoformat(),
        "last_used_at": as_utc(key.last_used_at).isoformat() if key.last_used_at else None,
        "last_model": key.last_model,
        "revoked_at": as_utc(key.revoked_at).isoformat() if key.revoked_at else None,
        "rotated_to": key.rotated_to,
        "leaked_at": as_utc(key.leaked_at).isoformat() if key.leaked_at else None,
    }


def list_keys(db: Database, identity_name: str | None = None) -> list[dict[str, Any]]:
    with db.read() as session:
        query = select(Credential, Identity.name).join(Identity, Credential.identity_id == Identity.id)
        if identity_name:
            identity_by_name(session, identity_name)
            query = query.where(Identity.name == identity_name)
        rows = session.execute(query.order_by(Identity.name, Credential.created_at)).all()
        return [key_summary(key, name) for key, name in rows]


def revoke_key(db: Database, actor: str, key_id: str, reason: str | None = None) -> Credential:
    check_key_id(key_id)
    with db.write() as session:
        revision = bump_revision(session)  # the change lock first: every check below sees the latest state
        key = session.get(Credential, key_id)
        if key is None:
            raise NotFound(f"no key with id {key_id!r}")
        identity = session.get(Identity, key.identity_id)
        if identity is None:
            raise GatehouseError(f"key {key_id} belongs to no identity; the store was altered")
        require_keeper(session, actor, identity, "revoking a key")
        if key.status == "revoked":
            raise GatehouseError(f"key {key_id} is already revoked")
        mark_revoked(key, actor, reason, revision)
        audit.append(session, actor, "key.revoke", f"key:{key_id}",
                     {"identity": identity.name, "reason": reason})
    return key

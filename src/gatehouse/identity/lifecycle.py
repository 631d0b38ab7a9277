"""What happens to identities and keys over time: rotation, leaks, and people leaving.

Like every control-plane change, each operation here is one transaction with its audit
entry, and bumps the revision counter so that gateway workers pick it up within 0.2 s. Each
checks who is acting after taking that lock: a key is rotated by its identity's owner, backup
owner or an identity-admin; a leak is reported by any active person or a secret scanner
(``SCANNER_ACTORS``); only an identity-admin clears a flag or records a departure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gatehouse import audit
from gatehouse.authz import Forbidden, acting_person, require_role
from gatehouse.core.clock import as_utc, utcnow
from gatehouse.core.durations import format_duration
from gatehouse.core.errors import GatehouseError, NotFound
from gatehouse.core.keyformat import MalformedKey, hash_secret, mask_keys, parse_key, secret_matches
from gatehouse.identity.admin_keys import revoke_admin_keys_of
from gatehouse.identity.credentials import check_key_id, mark_revoked, new_key
from gatehouse.identity.lookup import identity_by_name, person_by_email
from gatehouse.identity.rules import is_identity_admin, remember_stewards, require_flag_clearer, require_keeper
from gatehouse.store.db import Database, bump_revision
from gatehouse.store.models import AdminKey, Credential, Identity, Person

MAX_GRACE = timedelta(days=7)

# The actors ``POST /admin/leaks`` reports for the scanners it authenticates (a GitHub
# signature, the leak report token), with and without the ``system:`` prefix. Any other
# reporter must be an active person.
SCANNER_ACTORS = frozenset({"github-secret-scanning", "leak-report-token",
                            "system:github-secret-scanning", "system:leak-report-token"})


# -- rotation -----------------------------------------------------------------------------

@dataclass
class Rotation:
    old_key_id: str
    new_key_id: str
    new_key: str                 # shown once
    identity: str
    old_key_stops_at: str
    new_key_expires_at: str


def rotate_key(db: Database, actor: str, key_id: str, *, pepper: bytes, grace: timedelta, ttl: timedelta | None,
               max_ttl: timedelta) -> Rotation:
    """Issue a successor with the same identity and scopes; the old key keeps working for
    ``grace`` (never past its own expiry), then stops."""
    check_key_id(key_id)
    if grace > MAX_GRACE:
        raise GatehouseError(f"a grace period of {format_duration(grace)} is over the maximum of "
                             f"{format_duration(MAX_GRACE)}: both keys work during it")
    with db.write() as session:
        revision = bump_revision(session)
        old = session.get(Credential, key_id)
        if old is None:
            raise NotFound(f"no key with id {key_id!r}")
        identity = session.get(Identity, old.identity_id)
        if identity is None:
            raise GatehouseError(f"key {key_id} belongs to no identity; the store was altered")
        require_keeper(session, actor, identity, "rotating a key")  # first: a stranger learns nothing of its state
        now = utcnow()
        if old.status != "active" or as_utc(old.expires_at) <= now:
            raise GatehouseError(f"key {key_id} is {'expired' if old.status == 'active' else old.status}: "
                                 "issue a new key with `gatehouse key issue` instead")
        if old.rotated_to:
            raise GatehouseError(f"key {key_id} was already rotated to {old.rotated_to}")
        if identity.status != "active":
            raise GatehouseError(f"identity {identity.name!r} is {identity.status}: keys are issued to active identities only")
        lifetime = ttl if ttl is not None else as_utc(old.expires_at) - as_utc(old.created_at)
        if lifetime > max_ttl:
            if ttl is not None:
                raise GatehouseError(f"TTL {format_duration(ttl)} is over the maximum of {format_duration(max_ttl)} "
                                     "(GATEHOUSE_MAX_KEY_TTL)")
            lifetime = max_ttl
        key = new_key(session)
        successor = Credential(
            id=key.key_id, identity_id=old.identity_id, secret_hash=hash_secret(pepper, key), scopes=old.scopes,
            status="active", created_at=now, created_by=actor, expires_at=now + lifetime, revision=revision,
        )
        session.add(successor)
        old.expires_at = min(as_utc(old.expires_at), now + grace)
        old.rotated_to, old.revision = key.key_id, revision
        session.flush()
        audit.append(session, actor, "key.rotate", f"key:{key_id}", {
            "identity": identity.name, "successor": key.key_id, "grace": format_duration(grace) if grace else "0s",
            "old_key_stops_at": as_utc(old.expires_at).isoformat(),
            "successor_expires_at": successor.expires_at.isoformat(), "scopes": old.scopes,
        })
        return Rotation(key_id, key.key_id, key.text, identity.name, as_utc(old.expires_at).isoformat(),
                        successor.expires_at.isoformat())


# -- leaks --------------------------------------------------------------------------------

@dataclass
class LeakOutcome:
    key_id: str
    identity: str | None
    owner: str | None
    backup_owner: str | None
    already_revoked: bool
    source: str | None
    reported_by: str


def key_id_from_report(text: str) -> str:
    """A leak report names a whole key (checked offline by its checksum) or just its id."""
    text = (text or "").strip()
    if text.startswith("gth_"):
        try:
            return parse_key(text).key_id
        except MalformedKey as exc:
            raise GatehouseError(str(exc)) from None
    check_key_id(text)
    return text


def report_leak(db: Database, actor: str, key_text_or_id: str, *, source: str | None = None,
                reported_by: str | None = None, pepper: bytes | None = None) -> LeakOutcome:
    """Revoke the key at once, record who reported it and where it was seen, and flag its
    identity for its owner. Reporting a key that is already revoked still records the report.

    With ``pepper``, a whole key must also match the stored secret: scanners report what they
    find, and a made-up key around a real key id must not be able to revoke it."""
    key_id = key_id_from_report(key_text_or_id)
    source = mask_keys((source or "").strip())[:2000] or None  # a URL can carry the key itself
    reporter = (reported_by or actor)[:200]
    with db.write() as session:
        revision = bump_revision(session)
        check_reporter(session, actor)
        by_id = not key_text_or_id.strip().startswith("gth_")  # key ids appear in logs: anyone could know one
        key = session.get(Credential, key_id)
        if key is None:
            admin_key = session.get(AdminKey, key_id)
            if admin_key is None:
                raise NotFound(f"no key with id {key_id!r}")
            if by_id and actor not in SCANNER_ACTORS:
                reporter_person = acting_person(session, actor, "reporting an admin key by its id")
                if reporter_person.id != admin_key.person_id and not is_identity_admin(session, reporter_person):
                    raise Forbidden("reporting someone else's admin key by its id is an identity-admin's to do; "
                                    "give the whole leaked key instead")
            return _admin_key_leak(session, actor, admin_key, key_text_or_id, source, reporter, pepper, revision)
        holder = session.get(Identity, key.identity_id)
        if by_id and actor not in SCANNER_ACTORS and holder is not None:
            require_keeper(session, actor, holder, "reporting a key by its id (give the whole leaked key instead)")
        if pepper is not None and not secret_matches(pepper, parse_key(key_text_or_id.strip()), key.secret_hash):
            raise GatehouseError(f"the reported key's secret does not match key {key_id}: not a real key")
        already = key.status == "revoked"
        now = utcnow()
        if not already:
            mark_revoked(key, actor, "leaked" + (f": seen at {source}" if source else ""), revision)
        key.leaked_at, key.leak_source, key.revision = now, source, revision
        identity = session.get(Identity, key.identity_id)
        owner = session.get(Person, identity.owner_id) if identity else None
        backup = session.get(Person, identity.backup_owner_id) if identity and identity.backup_owner_id else None
        if identity is not None:
            identity.attention = (f"key {key_id} leaked on {now.date().isoformat()}"
                                  + (f" ({source})" if source else "")
                                  + ": check its recent use, then issue a replacement")
            identity.revision = revision
        audit.append(session, actor, "key.leak", f"key:{key_id}", {
            "identity": identity.name if identity else None, "source": source, "reported_by": reporter,
            "already_revoked": already,
        })
        return LeakOutcome(key_id, identity.name if identity else None, owner.email if owner else None,
                           backup.email if backup else None, already, source, reporter)


def check_reporter(session: Session, actor: str) -> None:
    """A leak is reported by a secret scanner the admin API authenticated, or an active person."""
    if actor not in SCANNER_ACTORS:
        acting_person(session, actor, "reporting a leaked key")


def _admin_key_leak(session: Session, actor: str, key: AdminKey, text: str, source: str | None, reporter: str,
                    pepper: bytes | None, revision: int) -> LeakOutcome:
    """An admin key leaked: the same response as a workload key's, the person is the owner."""
    if pepper is not None and not secret_matches(pepper, parse_key(text.strip()), key.secret_hash):
        raise GatehouseError(f"the reported key's secret does not match key {key.id}: not a real key")
    already = key.status != "active"
    if not already:
        key.status, key.revoked_at = "revoked", utcnow()
    person = session.get(Person, key.person_id)
    audit.append(session, actor, "admin_key.leak", f"admin_key:{key.id}", {
        "person": person.email if person else None, "source": source, "reported_by": reporter,
        "already_revoked": already})
    return LeakOutcome(key.id, None, person.email if person else None, None, already, source, reporter)


def clear_attention(db: Database, actor: str, identity_name: str, note: str | None = None) -> Identity:
    """An identity-admin records that what needed attention (a leak, an orphaning, a missed
    review, an incident) was dealt with. Owners act; they do not clear their own flags."""
    with db.write() as session:
        revision = bump_revision(session)
        identity = identity_by_name(session, identity_name)
        require_flag_clearer(session, actor, identity, "clearing an identity's attention flag")
        if identity.attention is None:
            raise GatehouseError(f"identity {identity_name!r} needs no attention")
        previous, identity.attention, identity.revision = identity.attention, None, revision
        audit.append(session, actor, "identity.attention_cleared", f"identity:{identity_name}",
                     {"was": previous, "note": note})
        return identity


# -- leavers ------------------------------------------------------------------------------

@dataclass
class DepartureReport:
    person: str
    reassigned: list[dict[str, str]] = field(default_factory=list)   # {"identity", "to"}
    suspended: list[str] = field(default_factory=list)      # no active backup owner: orphaned
    backup_removed: list[str] = field(default_factory=list)
    admin_keys_revoked: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"person": self.person, "reassigned": self.reassigned, "suspended": self.suspended,
                "backup_removed": self.backup_removed, "admin_keys_revoked": self.admin_keys_revoked}


def depart_person(db: Database, actor: str, email: str) -> DepartureReport:
    """Mark a person departed. Each identity they own passes to its backup owner when that
    person is active (and comes up for review), else is suspended as orphaned (its keys stop
    working within a second). Where they were the backup, the identity loses its backup."""
    with db.write() as session:
        revision = bump_revision(session)
        admin = require_role(session, actor, "identity-admin", "recording a departure")
        person = person_by_email(session, email)
        if person.id == admin.id:
            raise Forbidden("nobody records their own departure: another identity-admin does")
        if person.status == "departed":
            raise GatehouseError(f"{person.email} has already departed")
        now = utcnow()
        person.status, person.departed_at, person.revision = "departed", now, revision
        report = DepartureReport(person.email)

        report.admin_keys_revoked = revoke_admin_keys_of(session, actor, person, "person departed")
        identities = session.execute(select(Identity).where(
            or_(Identity.owner_id == person.id, Identity.backup_owner_id == person.id),
            Identity.status != "retired").order_by(Identity.name)).scalars().all()
        for identity in identities:
            identity.revision = revision
            remember_stewards(session, identity)  # whoever held it stays one of its stewards
            if identity.owner_id != person.id:
                identity.backup_owner_id = None
                report.backup_removed.append(identity.name)
                audit.append(session, actor, "identity.backup_removed", f"identity:{identity.name}",
                             {"departed": person.email})
                continue
            backup = session.get(Person, identity.backup_owner_id) if identity.backup_owner_id else None
            if backup is not None and backup.status == "active":
                identity.owner_id, identity.backup_owner_id = backup.id, None
                identity.review_due_at = now  # a new owner attests it is still needed
                report.reassigned.append({"identity": identity.name, "to": backup.email})
                audit.append(session, actor, "identity.reassign", f"identity:{identity.name}",
                             {"from": person.email, "to": backup.email, "reason": "owner departed"})
            else:
                previous = identity.status
                if identity.status == "active":  # a pending one stays pending: it still needs its approval
                    identity.status = "suspended"
                identity.attention = f"orphaned: owner {person.email} departed with no active backup owner"
                report.suspended.append(identity.name)
                audit.append(session, actor, "identity.suspend", f"identity:{identity.name}",
                             {"from": previous, "to": identity.status, "reason": "orphaned: owner departed"})
        audit.append(session, actor, "person.depart", f"person:{person.email}", report.as_dict())
        return report

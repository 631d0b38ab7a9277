"""Authentication from an in-memory table of keys and identities.

No database round trip per request: workers poll the store's change counter a few times
a second and load only rows whose revision is newer than what they hold, so a revoked
key stops working on every worker within a fraction of a second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from gatehouse.core.clock import as_utc
from gatehouse.core.errors import Unauthenticated
from gatehouse.core.keyformat import MalformedKey, parse_key, secret_matches
from gatehouse.identity.view import IdentityView
from gatehouse.store.db import Database, current_revision
from gatehouse.store.models import Credential, Identity


@dataclass(frozen=True, slots=True)
class KeyEntry:
    key_id: str
    secret_hash: str
    identity_id: int
    expires_at: float
    scopes: frozenset[str] | None
    revoked: bool


@dataclass(frozen=True, slots=True)
class IdentityEntry:
    id: int
    view: IdentityView
    status: str
    clearance: str  # the highest data class it may send


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    identity: IdentityView
    scopes: frozenset[str] | None
    clearance: str = "internal"


def _epoch(moment: datetime) -> float:
    return as_utc(moment).timestamp()


class KeyTable:
    def __init__(self, pepper: bytes) -> None:
        self._pepper = pepper
        self._keys: dict[str, KeyEntry] = {}
        self._identities: dict[int, IdentityEntry] = {}
        self.revision = -1
        self.last_used: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def refresh(self, db: Database) -> bool:
        """Load what changed since the last refresh. Returns whether anything did."""
        with db.read() as session:
            revision = current_revision(session)
            if revision == self.revision:
                return False
            since = self.revision
            # Columns, not ORM objects: a worker starting against 200,000 keys loads them all.
            identities = session.execute(select(
                Identity.id, Identity.name, Identity.team, Identity.environment, Identity.labels, Identity.status,
                Identity.data_clearance,
            ).where(Identity.revision > since)).all()
            keys = session.execute(select(
                Credential.id, Credential.secret_hash, Credential.identity_id, Credential.expires_at, Credential.scopes,
                Credential.status,
            ).where(Credential.revision > since)).all()
        for ident_id, name, team, environment, labels, status, clearance in identities:
            view = IdentityView.of(name, team, environment, labels)
            self._identities[ident_id] = IdentityEntry(ident_id, view, status, clearance)
        for key_id, secret_hash, identity_id, expires_at, scopes, status in keys:
            self._keys[key_id] = KeyEntry(
                key_id=key_id, secret_hash=secret_hash, identity_id=identity_id, expires_at=_epoch(expires_at),
                scopes=frozenset(scopes) if scopes is not None else None, revoked=status != "active",
            )
        self.revision = revision
        return True

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthenticated("missing API key: send it as 'Authorization: Bearer gth_…'", "missing_api_key")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("send the API key as 'Authorization: Bearer gth_…'", "invalid_api_key")
        token = token.strip()
        try:
            key = parse_key(token)
        except MalformedKey as exc:
            raise Unauthenticated(f"invalid API key: {exc}", "invalid_api_key") from None
        entry = self._keys.get(key.key_id)
        if entry is None or not secret_matches(self._pepper, key, entry.secret_hash):
            raise Unauthenticated(f"invalid API key (key id {key.key_id} is unknown or its secret does not match)",
                           "invalid_api_key")
        if entry.revoked:
            raise Unauthenticated(f"API key {key.key_id} has been revoked", "revoked_api_key")
        now = time.time()
        if entry.expires_at <= now:
            raise Unauthenticated(f"API key {key.key_id} has expired", "expired_api_key")
        identity = self._identities.get(entry.identity_id)
        if identity is None or identity.status != "active":
            status = identity.status if identity else "unknown"
            raise Unauthenticated(f"the identity behind key {key.key_id} is {status}", "identity_not_active")
        self.last_used[key.key_id] = now
        return Principal(key.key_id, identity.view, entry.scopes, identity.clearance)

    def take_last_used(self) -> dict[str, float]:
        used, self.last_used = self.last_used, {}
        return used

"""Key rows shared by workload and admin keys: fresh ids, id checks, revocation marks."""

from __future__ import annotations

from sqlalchemy.orm import Session

from gatehouse.core.clock import utcnow
from gatehouse.core.errors import GatehouseError
from gatehouse.core.keyformat import KEY_ID_PATTERN, ParsedKey, generate_key
from gatehouse.store.models import AdminKey, Credential


def check_key_id(key_id: str) -> None:
    if not KEY_ID_PATTERN.match(key_id or ""):
        # Never echo the input: it may be a whole key, mistyped.
        raise GatehouseError("invalid key id: a key id is the 12 characters after 'gth_' (or give the whole gth_ key)")


def new_key(session: Session) -> ParsedKey:
    """A fresh key whose id is used by no workload or admin key (62^12 ids: a clash is astronomically rare)."""
    key = generate_key()
    while session.get(Credential, key.key_id) is not None or session.get(AdminKey, key.key_id) is not None:
        key = generate_key()
    return key


def mark_revoked(key: Credential, actor: str, reason: str | None, revision: int) -> None:
    key.status, key.revoked_at, key.revoked_by = "revoked", utcnow(), actor
    key.revoke_reason, key.revision = reason, revision

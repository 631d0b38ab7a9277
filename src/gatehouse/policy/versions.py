"""Stored policy versions and activations: the store is the one source of the active version.

Every transition takes the policy lock (a counter row that workers also poll, so the same
write that changes the version tells them to reload). ``active_policy`` is what the gateway,
``findings``, ``inventory``, transfers and the admin API all judge by: never a policy file.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gatehouse.core.clock import as_utc, utcnow
from gatehouse.core.errors import GatehouseError, NotFound
from gatehouse.policy.compiled import CompiledPolicy
from gatehouse.policy.loader import LoadedPolicy, load_policy_text
from gatehouse.store.db import Database
from gatehouse.store.models import (
    Meta,
    PolicyActivation,
    PolicyVersion,
)

POLICY_COUNTER = "policy_revision"


def policy_revision(session: Session) -> int:
    return session.execute(select(Meta.value).where(Meta.name == POLICY_COUNTER)).scalar_one()


def lock(session: Session) -> None:
    """Serialise policy transitions; the bump is also what workers poll for."""
    session.execute(update(Meta).where(Meta.name == POLICY_COUNTER).values(value=Meta.value + 1))


def hold(session: Session) -> None:
    """Take the policy lock without telling workers anything changed: for a change elsewhere
    (an identity's move) that is judged by the active version and must not race an apply."""
    session.execute(select(Meta.value).where(Meta.name == POLICY_COUNTER).with_for_update())


def current_activation(session: Session) -> PolicyActivation | None:
    return session.execute(select(PolicyActivation).order_by(PolicyActivation.seq.desc()).limit(1)).scalar_one_or_none()


def baseline_of(activation: PolicyActivation | None) -> str | None:
    """The last version that went through approval: under break-glass, the one it replaced."""
    if activation is None:
        return None
    return activation.back_to if activation.kind == "break-glass" else activation.version


def stored_version(session: Session, version: str) -> PolicyVersion:
    """A version another row names (an activation, a baseline, an activation's way back). Such
    a name is only ever written for a stored version, and versions are never deleted, so one
    that is missing means the store was altered: said so, rather than failing on ``None``."""
    row = session.get(PolicyVersion, version)
    if row is None:
        raise GatehouseError(f"policy version {version} is named in the store but missing from it; the store was altered")
    return row


def loaded_version(row: PolicyVersion) -> LoadedPolicy:
    loaded = load_policy_text(row.source, f"<policy {row.hash[:19]}>")
    if loaded.version != row.hash:  # the stored text no longer hashes to its name
        raise GatehouseError(f"stored policy {row.hash} does not match its content hash; the store was altered")
    return loaded


def active_policy(db: Database) -> tuple[LoadedPolicy, PolicyActivation] | None:
    with db.read() as session:
        activation = current_activation(session)
        if activation is None:
            return None
        return loaded_version(stored_version(session, activation.version)), activation


def find_version(session: Session, ref: str) -> PolicyVersion:
    """By full hash, ``sha256:`` prefix or bare hex prefix (at least 6 characters)."""
    text = ref.strip().lower()
    bare = text.removeprefix("sha256:")
    if len(bare) < 6 or any(c not in "0123456789abcdef" for c in bare):
        raise NotFound(f"{ref!r} is not a policy version: give its hash or at least 6 hex digits of it "
                       "(see `gatehouse policy list`)")
    rows = session.execute(select(PolicyVersion).where(PolicyVersion.hash.startswith("sha256:" + bare)).limit(3)).scalars().all()
    if not rows:
        raise NotFound(f"no stored policy version starts with {bare} (see `gatehouse policy list`)")
    if len(rows) > 1:
        raise NotFound(f"{bare} matches several versions; give more digits")
    return rows[0]


def earlier_activation(session: Session, version: str | None, before_seq: int) -> PolicyActivation | None:
    """The last time ``version`` became active before activation ``before_seq``."""
    return session.execute(select(PolicyActivation).where(PolicyActivation.version == version,
                                                          PolicyActivation.seq < before_seq)
                           .order_by(PolicyActivation.seq.desc()).limit(1)).scalar_one_or_none()


def activation_dict(row: PolicyActivation) -> dict[str, Any]:
    return {"seq": row.seq, "version": row.version, "kind": row.kind, "actor": row.actor, "at": as_utc(row.at),
            "previous": row.previous, "expires_at": as_utc(row.expires_at) if row.expires_at else None,
            "reason": row.reason}


def summary(loaded: LoadedPolicy) -> dict[str, Any]:
    document = loaded.document
    return {"deployments": sorted(document.deployments), "aliases": sorted(document.aliases),
            "grants": [grant.name for grant in document.grants]}


def store_version(session: Session, actor: str, loaded: LoadedPolicy, message: str | None) -> tuple[PolicyVersion, bool]:
    row = session.get(PolicyVersion, loaded.version)
    if row is not None:
        return row, False
    row = PolicyVersion(hash=loaded.version, document=loaded.document.model_dump(mode="json"), source=loaded.text,
                        state="draft", created_at=utcnow(), created_by=actor, message=message, proposers=[])
    session.add(row)
    session.flush()
    return row, True


_COMPILED: dict[str, CompiledPolicy] = {}  # stored versions are immutable: compiled once per hash


def active_compiled_in(session: Session) -> CompiledPolicy | None:
    """The active version, compiled, read in the caller's transaction: what findings, the
    inventory, transfers and the admin API judge identities by (the gateway enforces the same
    version, with its classifiers loaded). None before any version is active."""
    version = version_in_force(session)
    if version is None:
        return None
    compiled = _COMPILED.get(version)
    if compiled is None:
        if len(_COMPILED) >= 8:
            _COMPILED.clear()
        compiled = _COMPILED[version] = CompiledPolicy(loaded_version(stored_version(session, version)))
    return compiled


def version_in_force(session: Session) -> str | None:
    """The version requests are judged by now: the active one, or — once a break-glass
    activation has expired, before any worker has recorded its end — the baseline it replaced."""
    activation = current_activation(session)
    if activation is None:
        return None
    if activation.kind == "break-glass" and activation.expires_at is not None and as_utc(activation.expires_at) <= utcnow():
        return activation.back_to
    return activation.version


def active_compiled(db: Database) -> CompiledPolicy | None:
    with db.read() as session:
        return active_compiled_in(session)


def in_force(db: Database) -> str | None:
    with db.read() as session:
        return version_in_force(session)

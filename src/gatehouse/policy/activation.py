"""Record which policy version is in force: stored by content hash, audited when it changes."""

from __future__ import annotations

from sqlalchemy import select

from gatehouse import audit
from gatehouse.identity.service import utcnow
from gatehouse.policy.loader import LoadedPolicy
from gatehouse.store.db import Database
from gatehouse.store.models import PolicyVersion


def record_activation(db: Database, actor: str, loaded: LoadedPolicy, source: str) -> bool:
    """Make ``loaded`` the active version. Returns False if it already was."""
    with db.write() as session:
        active = session.execute(select(PolicyVersion).where(PolicyVersion.state == "active")).scalars().all()
        if [row.hash for row in active] == [loaded.version]:
            return False
        for row in active:
            row.state = "superseded"
        version = session.get(PolicyVersion, loaded.version)
        now = utcnow()
        if version is None:
            version = PolicyVersion(hash=loaded.version, document=loaded.document.model_dump(mode="json"),
                                    source=loaded.text, state="active", created_at=now, created_by=actor,
                                    activated_at=now)
            session.add(version)
        else:
            version.state, version.activated_at = "active", now
        session.flush()
        audit.append(session, actor, "policy.activate", f"policy:{loaded.version}", {
            "source": source, "previous": [row.hash for row in active],
            "deployments": sorted(loaded.document.deployments), "aliases": sorted(loaded.document.aliases),
            "grants": [grant.name for grant in loaded.document.grants],
        })
    return True

"""The attributes of an identity that grants match on, as the policy sees them."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from gatehouse.store.db import Database
from gatehouse.store.models import Identity


@dataclass(frozen=True, slots=True)
class IdentityView:
    """The attributes of an identity that grants match on."""

    name: str
    team: str | None
    environment: str
    labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, name: str, team: str | None, environment: str, labels: dict[str, str] | None) -> IdentityView:
        """From an identity's stored columns (labels as a dict, in any order)."""
        return cls(name, team, environment, tuple(sorted((labels or {}).items())))


def identity_views(db: Database) -> list[IdentityView]:
    """What grants match on, for every identity that is not retired."""
    with db.read() as session:
        return identity_views_in(session)


def identity_views_in(session: Session) -> list[IdentityView]:
    rows = session.execute(select(Identity.name, Identity.team, Identity.environment, Identity.labels)
                           .where(Identity.status != "retired").order_by(Identity.name)).all()
    return [IdentityView.of(*row) for row in rows]

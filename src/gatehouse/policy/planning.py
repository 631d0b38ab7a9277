"""The plan for a change as change control records it: the diff against the approved
baseline and the inventory it was computed on, named by a ``plan_id`` an approval binds to.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy.orm import Session

from gatehouse.identity.view import IdentityView, identity_views_in
from gatehouse.policy.loader import LoadedPolicy
from gatehouse.policy.plan import Plan, plan
from gatehouse.policy.schema import PolicyDocument
from gatehouse.policy.versions import baseline_of, current_activation, find_version, loaded_version, stored_version
from gatehouse.store.db import Database
from gatehouse.store.models import (
    PolicyVersion,
)

EMPTY_POLICY = PolicyDocument.model_construct(version=1, deployments={}, aliases={}, grants=())


def widening_id(text: str) -> str:
    return "w-" + hashlib.sha256(text.encode()).hexdigest()[:10]


def inventory_fingerprint(views: Iterable[IdentityView]) -> str:
    digest = hashlib.sha256()
    for view in sorted(views, key=lambda v: v.name):
        digest.update(orjson.dumps([view.name, view.team, view.environment, view.labels]))
    return digest.hexdigest()


@dataclass
class PlannedChange:
    version: str
    base: str | None
    plan: Plan
    inventory: str
    identities: int
    widening_ids: dict[str, str] = field(default_factory=dict)  # id → text

    @property
    def gains_digest(self) -> str:
        """Who gains what: an approval holds it, so apply can tell if that changed since."""
        digest = hashlib.sha256()
        for change in sorted(self.plan.gained, key=lambda c: (c.identity, c.alias)):
            digest.update(f"{change.identity}\t{change.alias}\t{change.after}\n".encode())
        return digest.hexdigest()

    @property
    def plan_id(self) -> str:
        return "plan-" + hashlib.sha256(f"{self.base}|{self.version}|{self.inventory}".encode()).hexdigest()[:16]

    def as_dict(self) -> dict[str, Any]:
        body = self.plan.as_dict()
        body["widenings"] = [{"id": key, "change": text} for key, text in self.widening_ids.items()]
        return {"plan_id": self.plan_id, "from": self.base, "to": self.version, "identities": self.identities, **body}


def compute_plan(before: PolicyDocument | None, after: LoadedPolicy, base: str | None,
                 views: Sequence[IdentityView]) -> PlannedChange:
    result = plan(before or EMPTY_POLICY, after.document, views)
    return PlannedChange(after.version, base, result, inventory_fingerprint(views), len(views),
                         {widening_id(text): text for text in result.widenings})


def plan_against(session: Session, candidate: LoadedPolicy, base: str | None) -> PlannedChange:
    """In the caller's transaction, so the plan an approval or apply checks is the one it
    records. (On PostgreSQL an identity committed meanwhile by another transaction is not seen:
    the policy lock does not block identity writes.)"""
    before = loaded_version(stored_version(session, base)).document if base else None
    return compute_plan(before, candidate, base, identity_views_in(session))


def plan_in(session: Session, target: PolicyVersion, base: str | None) -> PlannedChange:
    return plan_against(session, loaded_version(target), base)


def plan_version(db: Database, ref: str) -> PlannedChange:
    """The plan for replacing the approved baseline with a stored version."""
    with db.read() as session:
        target = find_version(session, ref)
        return plan_in(session, target, baseline_of(current_activation(session)))


def plan_document(db: Database, candidate: LoadedPolicy) -> PlannedChange:
    """The same for a policy file that has not been proposed yet."""
    with db.read() as session:
        return plan_against(session, candidate, baseline_of(current_activation(session)))

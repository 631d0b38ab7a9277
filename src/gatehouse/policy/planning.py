"""The plan for a change as change control records it: the diff against the approved
baseline and the inventory it was computed on, named by a ``plan_id`` an approval binds to.

A plan reads only the identities the change can reach (``access_diff.Reach``: those matching a
subject of a rule it changes), narrowed in SQL and checked again here, and its inventory
fingerprint covers exactly those: the plan is a function of the two versions and of them, so
the same ``plan_id`` means the same plan, and any change to an identity the change can reach
(one created, moved into a team a changed grant names, relabelled) makes it stale (ADR 0018).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Text, and_, cast, func, or_, select
from sqlalchemy.orm import Session

from gatehouse.core.errors import GatehouseError
from gatehouse.identity.view import IdentityView
from gatehouse.policy.access_diff import Reach, in_reach
from gatehouse.policy.loader import LoadedPolicy, version_of
from gatehouse.policy.plan import Plan, plan
from gatehouse.policy.schema import PolicyDocument, reference_problems
from gatehouse.policy.versions import baseline_of, current_activation, find_version, loaded_version, stored_version
from gatehouse.store.db import Database
from gatehouse.store.models import (
    Identity,
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
    """Over ``views``, every identity there is (the fingerprint covers those the change can reach)."""
    before = before or EMPTY_POLICY
    reach = Reach.of(before, after.document)
    return _planned(before, after, base, in_reach(reach, views), len(views))


def _planned(before: PolicyDocument, after: LoadedPolicy, base: str | None, reached: Sequence[IdentityView],
             identities: int) -> PlannedChange:
    result = plan(before, after.document, reached)
    return PlannedChange(after.version, base, result, inventory_fingerprint(reached), identities,
                         {widening_id(text): text for text in result.widenings})


MAX_NARROWED = 32  # subjects narrowed in SQL; a change with more reaches most identities, read them all


def _reach_filter(session: Session, reach: Reach) -> ColumnElement[bool] | None:
    """A superset of the identities the reach can match, as SQL: the names subjects name, the
    teams they name, and for subjects with neither their environment and, on PostgreSQL, their
    labels. None: every identity is a candidate. Only a pre-filter: ``in_reach`` decides, by the
    same matching as access itself."""
    if len(reach.requirements) > MAX_NARROWED or not all(map(_sendable, _values(reach))):
        return None
    postgres = session.get_bind().dialect.name == "postgresql"
    names = sorted({name for name, _, _, _ in reach.requirements if name is not None})
    teams = sorted({team for name, team, _, _ in reach.requirements if name is None and team is not None})
    clauses: list[ColumnElement[bool]] = [column.in_(values) for column, values
                                          in ((Identity.name, names), (Identity.team, teams)) if values]
    for name, team, environment, labels in reach.requirements:
        if name is not None or team is not None:
            continue
        parts = [Identity.environment == environment] if environment is not None else []
        if postgres:  # ->> on json: the last of duplicate keys, as Python reads them
            parts += [Identity.labels[key].as_string() == value for key, value in labels]
        if not parts:
            return None
        clauses.append(and_(*parts))
    return or_(*clauses)


def _values(reach: Reach) -> Iterator[str]:
    for name, team, environment, labels in reach.requirements:
        yield from (value for value in (name, team, environment) if value is not None)
        for pair in labels:
            yield from pair


def _sendable(value: str) -> bool:
    """Text a database can be asked about: PostgreSQL text holds no NUL, and nothing holds a lone surrogate."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


def _labels(name: str, stored: str | None) -> dict[str, str] | None:
    """An identity's labels as the API writes them (text to text); anything else was written
    behind its back, and a plan over it would be a guess."""
    try:
        labels = orjson.loads(stored) if stored is not None else None
    except orjson.JSONDecodeError:
        labels = stored
    if labels is not None and (not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values())):
        raise GatehouseError(f"identity {name!r} has labels that are not text to text; the store was altered")
    return labels


def reached_views_in(session: Session, reach: Reach) -> list[IdentityView]:
    """The identities (not retired) the change can reach, by name, read from the store."""
    if not reach.requirements:
        return []
    query = (select(Identity.name, Identity.team, Identity.environment, cast(Identity.labels, Text))
             .where(Identity.status != "retired").order_by(Identity.name))
    narrowed = _reach_filter(session, reach)
    if narrowed is not None:
        query = query.where(narrowed)
    views = [IdentityView.of(name, team, environment, _labels(name, labels))
             for name, team, environment, labels in session.execute(query)]
    return in_reach(reach, views)


def identity_count(session: Session) -> int:
    return session.execute(select(func.count()).select_from(Identity).where(Identity.status != "retired")).scalar_one()


_DOCUMENTS: dict[str, PolicyDocument] = {}  # version → its content, once held to its hash: a name for content


def stored_document(row: PolicyVersion) -> PolicyDocument:
    """A stored version's document as a read-only plan needs it: validated from the JSON stored
    with it (no YAML to parse: about 40 ms for 2,000 grants, not 2 s), with the same reference
    checks, and held to its content hash, so it is that version's content (and kept, since a
    hash names one content). Anything that does not hold falls back to the source text
    (``loaded_version``: its content, or the error that the store was altered). Change control
    plans from the source text, which also proves the text people read for the version is its
    content."""
    known = _DOCUMENTS.get(row.hash)
    if known is not None:
        return known
    try:
        document = PolicyDocument.model_validate(row.document)
    except ValueError:
        return loaded_version(row).document
    if reference_problems(row.document) or version_of(document) != row.hash:
        return loaded_version(row).document
    if len(_DOCUMENTS) >= 16:
        _DOCUMENTS.clear()
    _DOCUMENTS[row.hash] = document
    return document


def baseline_document(session: Session, base: str) -> PolicyDocument:
    """The approved baseline's document, as ``stored_document`` reads it (without reading its row
    again once known: a hash names one content)."""
    known = _DOCUMENTS.get(base)
    return known if known is not None else stored_document(stored_version(session, base))


def plan_against(session: Session, candidate: LoadedPolicy, base: str | None,
                 before: PolicyDocument | None = None) -> PlannedChange:
    """In the caller's transaction, so the plan an approval or apply checks is the one it
    records. (On PostgreSQL an identity committed meanwhile by another transaction is not seen:
    the policy lock does not block identity writes.)"""
    if before is None and base:
        before = loaded_version(stored_version(session, base)).document
    before = before or EMPTY_POLICY
    reach = Reach.of(before, candidate.document)
    return _planned(before, candidate, base, reached_views_in(session, reach), identity_count(session))


def plan_in(session: Session, target: PolicyVersion, base: str | None) -> PlannedChange:
    return plan_against(session, loaded_version(target), base)


def _stored(row: PolicyVersion) -> LoadedPolicy:
    return LoadedPolicy(stored_document(row), row.source, row.hash)


def plan_version(db: Database, ref: str) -> PlannedChange:
    """The plan for replacing the approved baseline with a stored version (read-only: both from
    their stored documents)."""
    with db.read() as session:
        target = find_version(session, ref)
        base = baseline_of(current_activation(session))
        before = baseline_document(session, base) if base else None
        return plan_against(session, _stored(target), base, before)


def plan_document(db: Database, candidate: LoadedPolicy) -> PlannedChange:
    """The same for a policy file that has not been proposed yet."""
    with db.read() as session:
        base = baseline_of(current_activation(session))
        before = baseline_document(session, base) if base else None
        return plan_against(session, candidate, base, before)


def plan_between(db: Database, before: LoadedPolicy, candidate: LoadedPolicy) -> PlannedChange:
    """The plan from one document to another, over the store's inventory."""
    with db.read() as session:
        return plan_against(session, candidate, before.version, before.document)

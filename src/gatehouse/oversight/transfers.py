"""Movers: an identity changing owner or team, judged by the access it would gain or lose
under the policy version the store says is active (never a file on someone's disk).

The plan a person is shown names that version; the transfer judges the move again inside its
own transaction, after the change lock, and refuses if anything the plan showed has changed,
so the rule always sees the real gains: a move that widens access, or that hands the
identity to an owner outside its team, needs an identity-admin who is not one of its stewards
(who has never owned, backed up or requested it, nor is to own it now). That is what stops a
sequence of moves (hand it to someone, change its team, take it back) doing what one may not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from gatehouse import audit
from gatehouse.authz import Forbidden, require_role
from gatehouse.core.classification import rank
from gatehouse.core.clock import utcnow
from gatehouse.core.errors import GatehouseError
from gatehouse.identity.lookup import check_name, identity_by_name, person_by_email
from gatehouse.identity.rules import remember_stewards, stewards_of
from gatehouse.identity.view import IdentityView
from gatehouse.policy.versions import active_compiled_in
from gatehouse.policy.versions import hold as hold_policy
from gatehouse.store.db import Database, bump_revision
from gatehouse.store.models import Identity, Person


@dataclass(frozen=True)
class TransferPlan:
    identity: str
    owner_before: str
    owner_after: str
    team_before: str | None
    team_after: str | None
    access_before: dict[str, str]  # alias → the highest data class granted
    access_after: dict[str, str]
    policy_version: str | None  # the version in force the access was judged by; None: no version active yet

    @property
    def aliases_before(self) -> list[str]:
        return sorted(self.access_before)

    @property
    def aliases_after(self) -> list[str]:
        return sorted(self.access_after)

    @property
    def gained(self) -> list[str]:
        """Aliases reached after the move that were not before, or reached at a higher data class."""
        return sorted(alias for alias, data_class in self.access_after.items()
                      if alias not in self.access_before or rank(data_class) > rank(self.access_before[alias]))

    @property
    def lost(self) -> list[str]:
        return sorted(set(self.access_before) - set(self.access_after))

    @property
    def widens(self) -> bool:
        """Gains anything, or changes what grants match on while no version is active to tell:
        access that cannot be judged is treated as a widening."""
        return bool(self.gained) or (self.policy_version is None and self.team_before != self.team_after)

    def as_dict(self) -> dict[str, Any]:
        raised = {alias: [self.access_before[alias], data_class] for alias, data_class in self.access_after.items()
                  if alias in self.access_before and data_class != self.access_before[alias]}
        return {"identity": self.identity, "owner": [self.owner_before, self.owner_after],
                "team": [self.team_before, self.team_after], "aliases_before": self.aliases_before,
                "aliases_after": self.aliases_after, "gained": self.gained, "lost": self.lost,
                "data_classes_changed": raised, "widens": self.widens, "policy_version": self.policy_version}


def _plan_in(session: Session, name: str, owner_email: str | None, team: str | None) -> TransferPlan:
    identity = identity_by_name(session, name)
    owner = session.get(Person, identity.owner_id)
    new_owner = person_by_email(session, owner_email) if owner_email else owner
    if owner is None or new_owner is None:
        raise GatehouseError(f"identity {name!r} has no owner on record")
    if new_owner.status != "active":
        raise GatehouseError(f"{new_owner.email} is {new_owner.status}: an identity needs an active owner")
    before = IdentityView.of(identity.name, identity.team, identity.environment, identity.labels)
    after = IdentityView.of(identity.name, team if team is not None else identity.team, identity.environment,
                            identity.labels)
    policy = active_compiled_in(session)

    def access(view: IdentityView) -> dict[str, str]:
        return dict(policy.access.access(view)) if policy is not None else {}

    return TransferPlan(name, owner.email, new_owner.email, identity.team, after.team, access(before), access(after),
                        policy.version if policy is not None else None)


def plan_transfer(db: Database, name: str, owner_email: str | None, team: str | None) -> TransferPlan:
    """The identity's effective access before and after a change of owner and/or team."""
    if team is not None:
        check_name("team", team)
    with db.read() as session:
        return _plan_in(session, name, owner_email, team)


def transfer_identity(db: Database, actor: str, plan: TransferPlan) -> Identity:
    """Apply a planned move (an identity-admin's job); the identity comes up for review by its
    (new) owner at once. A move that widens access, or hands the identity to an owner of
    another team, needs an identity-admin who is none of its stewards, old or new."""
    with db.write() as session:
        hold_policy(session)  # an apply waits for this move, or this move for the apply: never both unseen
        revision = bump_revision(session)
        admin = require_role(session, actor, "identity-admin", "moving an identity")
        now = _plan_in(session, plan.identity, plan.owner_after, plan.team_after)
        if now != plan:  # the identity, the people or the active policy moved since the plan was shown
            raise GatehouseError("the identity or the active policy changed since the plan was shown: "
                                 "run the command again")
        identity = identity_by_name(session, now.identity)
        new_owner = person_by_email(session, now.owner_after)
        stewards = stewards_of(session, identity) | {new_owner.email}
        if now.widens and admin.email in stewards:
            what = ", ".join(now.gained) or "access no active policy version can judge yet"
            raise Forbidden(f"this move gives {now.identity} {what}: an identity-admin who is neither its old nor its "
                            f"new owner, and has never owned, backed up or requested it, must make it ({admin.email} "
                            "has)")
        if now.owner_after != now.owner_before and new_owner.team != now.team_after and admin.email in stewards:
            raise Forbidden(f"this move hands {now.identity} (team {now.team_after}) to {new_owner.email} of team "
                            f"{new_owner.team}: an identity-admin who has never owned, backed up or requested it must "
                            f"make it ({admin.email} has)")
        remember_stewards(session, identity)
        if identity.backup_owner_id == new_owner.id:
            identity.backup_owner_id = None  # the backup must be someone else
        identity.owner_id, identity.team = new_owner.id, now.team_after
        remember_stewards(session, identity, new_owner.email)
        identity.review_due_at, identity.revision = utcnow(), revision
        audit.append(session, actor, "identity.transfer", f"identity:{now.identity}", now.as_dict())
        return identity

"""Policy change control: propose → plan → approve (by someone else) → apply; rollback and
break-glass; what every gateway worker enforces.

The store is the source of truth for the active version; gateway workers follow it (see
``gatehouse.policy.runtime``). Every transition takes the policy lock (a counter row that
workers also poll, so the same write that changes the version tells them to reload), runs its
checks inside that transaction and appends to the audit log in it.

An approval is bound to the version, to the baseline it replaces and to the plan the approver
saw (``plan_id`` covers baseline, version and the inventory the plan was computed on). At apply
the plan is computed again: a different baseline, or a widening no approver acknowledged (an
identity created since that gains access, say), sends it back for a new plan and approval.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from gatehouse import audit
from gatehouse.config import Settings
from gatehouse.engines.credentials import credential_problem
from gatehouse.errors import Conflict, GatehouseError, NotFound
from gatehouse.guardrails.classifier import classifier_problem
from gatehouse.identity.governance import Forbidden, _acting_person, _require_role, actor_email, roles_of
from gatehouse.identity.inventory import identity_views_in
from gatehouse.identity.service import as_utc, utcnow
from gatehouse.policy.compiled import IdentityView
from gatehouse.policy.loader import LoadedPolicy, load_policy_text
from gatehouse.policy.plan import Plan, plan
from gatehouse.policy.schema import PolicyDocument
from gatehouse.store.db import Database
from gatehouse.store.models import (
    GatewayWorker,
    Meta,
    Person,
    PolicyActivation,
    PolicyApproval,
    PolicyVersion,
    RoleAssignment,
)

POLICY_COUNTER = "policy_revision"
BREAK_GLASS_MAX = timedelta(hours=4)
EMPTY_POLICY = PolicyDocument.model_construct(version=1, deployments={}, aliases={}, grants=())
SYSTEM_ACTOR = "system:policy"


class StalePlan(GatehouseError):
    """The plan an approval names is not what the plan is now."""


class NotApproved(GatehouseError):
    """Apply or rollback lacks the approvals it needs."""


# -- reading ------------------------------------------------------------------------------


def policy_revision(session: Session) -> int:
    return session.execute(select(Meta.value).where(Meta.name == POLICY_COUNTER)).scalar_one()


def _lock(session: Session) -> None:
    """Serialise policy transitions; the bump is also what workers poll for."""
    session.execute(update(Meta).where(Meta.name == POLICY_COUNTER).values(value=Meta.value + 1))


def current_activation(session: Session) -> PolicyActivation | None:
    return session.execute(select(PolicyActivation).order_by(PolicyActivation.seq.desc()).limit(1)).scalar_one_or_none()


def baseline_of(activation: PolicyActivation | None) -> str | None:
    """The last version that went through approval: under break-glass, the one it replaced."""
    if activation is None:
        return None
    return activation.back_to if activation.kind == "break-glass" else activation.version


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
        return loaded_version(session.get(PolicyVersion, activation.version)), activation


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

    def as_dict(self) -> dict:
        body = self.plan.as_dict()
        body["widenings"] = [{"id": key, "change": text} for key, text in self.widening_ids.items()]
        return {"plan_id": self.plan_id, "from": self.base, "to": self.version, "identities": self.identities, **body}


def compute_plan(before: PolicyDocument | None, after: LoadedPolicy, base: str | None,
                 views: Sequence[IdentityView]) -> PlannedChange:
    result = plan(before or EMPTY_POLICY, after.document, views)
    return PlannedChange(after.version, base, result, inventory_fingerprint(views), len(views),
                         {widening_id(text): text for text in result.widenings})


def _plan_against(session: Session, candidate: LoadedPolicy, base: str | None) -> PlannedChange:
    """In the caller's transaction, so the plan an approval or apply checks is the one it
    records. (On PostgreSQL an identity committed meanwhile by another transaction is not seen:
    the policy lock does not block identity writes.)"""
    before = loaded_version(session.get(PolicyVersion, base)).document if base else None
    return compute_plan(before, candidate, base, identity_views_in(session))


def _plan_in(session: Session, target: PolicyVersion, base: str | None) -> PlannedChange:
    return _plan_against(session, loaded_version(target), base)


def plan_version(db: Database, ref: str) -> PlannedChange:
    """The plan for replacing the approved baseline with a stored version."""
    with db.read() as session:
        target = find_version(session, ref)
        return _plan_in(session, target, baseline_of(current_activation(session)))


def plan_document(db: Database, candidate: LoadedPolicy) -> PlannedChange:
    """The same for a policy file that has not been proposed yet."""
    with db.read() as session:
        return _plan_against(session, candidate, baseline_of(current_activation(session)))


def proposers_of(row: PolicyVersion) -> set[str]:
    """The e-mails of everyone who proposed this content (an author who is not a person: none)."""
    actors = [row.created_by, *(row.proposers or [])]
    return {email for email in (actor_email(actor) for actor in actors) if email}


def _baseline_since(session: Session, current: PolicyActivation | None) -> datetime | None:
    """When the approved baseline last became active: approvals older than that were made
    against an earlier stint of it and no longer count."""
    if current is None:
        return None
    if current.kind != "break-glass":
        return as_utc(current.at)
    earlier = _earlier_activation(session, current.back_to, current.seq)
    return as_utc(earlier.at) if earlier else None


def _earlier_activation(session: Session, version: str | None, before_seq: int) -> PolicyActivation | None:
    """The last time ``version`` became active before activation ``before_seq``."""
    return session.execute(select(PolicyActivation).where(PolicyActivation.version == version,
                                                          PolicyActivation.seq < before_seq)
                           .order_by(PolicyActivation.seq.desc()).limit(1)).scalar_one_or_none()


def _valid_approvals(session: Session, version: PolicyVersion, current: PolicyActivation | None,
                     applier: str | None = None) -> list[PolicyApproval]:
    """Approvals for the current baseline, made since it became active, by active people who
    still hold the approver role and did not propose this content; one per person; never the
    applier's own (applying an older version again is authoring it)."""
    base, since = baseline_of(current), _baseline_since(session, current)
    excluded = proposers_of(version)
    if applier is not None and actor_email(applier):
        excluded = excluded | {actor_email(applier)}  # type: ignore[operator]
    approvals = session.execute(select(PolicyApproval).where(PolicyApproval.version == version.hash)
                                .order_by(PolicyApproval.id.desc())).scalars().all()
    valid: dict[str, PolicyApproval] = {}
    for approval in approvals:
        email = actor_email(approval.approver)
        if (email is None or email in excluded or email in valid or approval.base_version != base
                or (since is not None and as_utc(approval.created_at) < since)):
            continue
        person = session.execute(select(Person).where(Person.email == email)).scalar_one_or_none()
        if person is not None and person.status == "active" and "approver" in roles_of(session, email):
            valid[email] = approval
    return list(valid.values())[::-1]


def required_approvals(session: Session, current: PolicyActivation | None, candidate: LoadedPolicy) -> int:
    """Set by the approved baseline's own ``change_control``: a change cannot lower the bar it
    is judged by. With nothing active yet, the first version's setting applies."""
    base = baseline_of(current)
    document = loaded_version(session.get(PolicyVersion, base)).document if base else candidate.document
    return document.change_control.approvers


def version_rows(db: Database) -> list[dict]:
    with db.read() as session:
        current = current_activation(session)
        rows = session.execute(select(PolicyVersion).order_by(PolicyVersion.created_at.desc())).scalars().all()
        return [{"version": row.hash, "state": row.state, "author": row.created_by, "created_at": as_utc(row.created_at),
                 "message": row.message, "approvals": [a.approver for a in _valid_approvals(session, row, current)]}
                for row in rows]


def describe_version(db: Database, ref: str) -> dict:
    with db.read() as session:
        row = find_version(session, ref)
        approvals = session.execute(select(PolicyApproval).where(PolicyApproval.version == row.hash)
                                    .order_by(PolicyApproval.id)).scalars().all()
        valid = {a.id for a in _valid_approvals(session, row, current_activation(session))}
        activations = session.execute(select(PolicyActivation).where(PolicyActivation.version == row.hash)
                                      .order_by(PolicyActivation.seq)).scalars().all()
        return {
            "version": row.hash, "state": row.state, "author": row.created_by, "created_at": as_utc(row.created_at),
            "proposers": [row.created_by, *(row.proposers or [])], "message": row.message, "source": row.source,
            "approvals": [{"approver": a.approver, "plan_id": a.plan_id, "base_version": a.base_version,
                           "acknowledged": a.acknowledged, "at": as_utc(a.created_at),
                           "counts": a.id in valid} for a in approvals],
            "activations": [activation_dict(a) for a in activations],
        }


def activation_dict(row: PolicyActivation) -> dict:
    return {"seq": row.seq, "version": row.version, "kind": row.kind, "actor": row.actor, "at": as_utc(row.at),
            "previous": row.previous, "expires_at": as_utc(row.expires_at) if row.expires_at else None,
            "reason": row.reason}


# -- transitions --------------------------------------------------------------------------


def _summary(loaded: LoadedPolicy) -> dict:
    document = loaded.document
    return {"deployments": sorted(document.deployments), "aliases": sorted(document.aliases),
            "grants": [grant.name for grant in document.grants]}


def _store(session: Session, actor: str, loaded: LoadedPolicy, message: str | None) -> tuple[PolicyVersion, bool]:
    row = session.get(PolicyVersion, loaded.version)
    if row is not None:
        return row, False
    row = PolicyVersion(hash=loaded.version, document=loaded.document.model_dump(mode="json"), source=loaded.text,
                        state="draft", created_at=utcnow(), created_by=actor, message=message, proposers=[])
    session.add(row)
    session.flush()
    return row, True


def _check_credentials(loaded: LoadedPolicy) -> None:
    """Credentials Gatehouse must never send, and injection classifiers this host lacks (a
    version that names one could not be enforced)."""
    problems = [f"{name}: {problem}" for name, spec in loaded.document.deployments.items()
                if (problem := credential_problem(spec.credential))]
    home = Settings.from_env().home
    for name, profile in loaded.document.guardrails.profiles.items():
        classifier = profile.injection.classifier if profile.injection is not None else None
        if classifier and (problem := classifier_problem(home, classifier)):
            problems.append(f"profile {name}: {problem}")
    if problems:
        raise GatehouseError("; ".join(problems))


def _check_approver_pool(session: Session, loaded: LoadedPolicy) -> None:
    """A version asking for more approvals than there are approvers would lock policy changes
    (a rollback needs them too) until roles are granted."""
    wanted = loaded.document.change_control.approvers
    if wanted == 0:
        return
    approvers = session.execute(select(Person.email).join(RoleAssignment, RoleAssignment.person_id == Person.id)
                                .where(RoleAssignment.role == "approver", Person.status == "active")).scalars().all()
    if wanted > len(approvers):
        raise Conflict(f"this version asks for {wanted} approval(s) per change, but only {len(approvers)} active "
                       "approver(s) exist: grant the role first")


def _acting_as(session: Session, actor: str, role: str, why: str) -> str:
    """The actor, once checked to hold ``role``, in one spelling (``person:<lower-case e-mail>``)."""
    return f"person:{_require_role(session, actor, role, why).email}"


def propose(db: Database, actor: str, loaded: LoadedPolicy, message: str) -> tuple[PolicyVersion, bool]:
    """Store an immutable draft. The same content is the same version: proposing it again
    returns the stored one (``False``) rather than a copy, and adds the proposer to the people
    who may not approve it."""
    if not message or not message.strip():
        raise GatehouseError("say why: a proposal needs a message (-m)")
    _check_credentials(loaded)
    with db.write() as session:
        _lock(session)
        _require_role(session, actor, "policy-admin", "proposing a policy")
        row, created = _store(session, actor, loaded, message.strip())
        if not created and actor not in [row.created_by, *(row.proposers or [])]:
            row.proposers = [*(row.proposers or []), actor]
        audit.append(session, actor, "policy.propose", f"policy:{loaded.version}",
                     {"message": message.strip(), "again": not created, **_summary(loaded)})
        return row, created


def reject(db: Database, actor: str, ref: str, reason: str) -> PolicyVersion:
    with db.write() as session:
        _lock(session)
        row = find_version(session, ref)
        person = _acting_person(session, actor, "rejecting a policy")
        if actor_email(row.created_by) != person.email and "approver" not in roles_of(session, person.email):
            raise Forbidden(f"rejecting a policy needs the approver role (or being its author), which {person.email} lacks")
        if row.state != "draft":
            raise Conflict(f"version {row.hash[:19]} is {row.state}; only a draft can be rejected")
        row.state = "rejected"
        audit.append(session, actor, "policy.reject", f"policy:{row.hash}", {"reason": reason})
        return row


def approve(db: Database, actor: str, ref: str, plan_id: str, acknowledged: Iterable[str],
            note: str | None = None) -> PolicyApproval:
    acknowledged = {item.strip() for item in acknowledged if item.strip()}
    with db.write() as session:
        _lock(session)
        row = find_version(session, ref)
        actor = _acting_as(session, actor, "approver", "approving a policy")
        if actor_email(actor) in proposers_of(row):
            raise Forbidden("nobody approves their own change: another approver must approve this version")
        current = current_activation(session)
        keeping_break_glass = current is not None and current.kind == "break-glass" and current.version == row.hash
        if row.state == "rejected" or (row.state == "active" and not keeping_break_glass):
            raise Conflict(f"version {row.hash[:19]} is {row.state}; there is nothing to approve")
        base = baseline_of(current)
        planned = _plan_in(session, row, base)
        if planned.plan_id != plan_id.strip():
            raise StalePlan(f"plan {plan_id} is stale: the active version or the inventory changed since it was "
                            f"computed; run `gatehouse policy plan {row.hash[:19]}` again (it is now {planned.plan_id})")
        if planned.plan.violations:
            flows = ", ".join(f"{f.data_class} → {f.deployment}" for f in planned.plan.violations)
            raise Forbidden(f"the plan sends data to deployments not allowed to receive it ({flows}); fix the policy")
        unknown = sorted(acknowledged - planned.widening_ids.keys())
        if unknown:
            raise GatehouseError(f"not widenings of this plan: {', '.join(unknown)}")
        missing = [key for key in planned.widening_ids if key not in acknowledged]
        if missing:
            listed = "; ".join(f"{key} ({planned.widening_ids[key]})" for key in missing[:20])
            more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
            raise Forbidden(f"{len(missing)} widening(s) not acknowledged: {listed}{more}. Acknowledge each one "
                            "(--ack ID) after checking it")
        session.execute(delete(PolicyApproval).where(PolicyApproval.version == row.hash,
                                                     PolicyApproval.approver == actor,
                                                     PolicyApproval.base_version == base))
        approval = PolicyApproval(version=row.hash, base_version=base, plan_id=planned.plan_id,
                                  inventory=planned.inventory, gains=planned.gains_digest, approver=actor,
                                  created_at=utcnow(),
                                  acknowledged=[{"id": key, "change": planned.widening_ids[key]}
                                                for key in planned.widening_ids])
        session.add(approval)
        audit.append(session, actor, "policy.approve", f"policy:{row.hash}", {
            "base": base, "plan_id": planned.plan_id, "note": note, "no_new_access": not planned.widening_ids,
            "acknowledged": sorted(planned.widening_ids)})
        return approval


def _check_approved(session: Session, row: PolicyVersion, planned: PlannedChange, required: int,
                    current: PolicyActivation | None, applier: str) -> list[str]:
    """The approvers that make this change go ahead, or NotApproved saying what is missing."""
    approvals = _valid_approvals(session, row, current, applier)
    if len(approvals) < required:
        have = ", ".join(a.approver for a in approvals) or "none"
        raise NotApproved(f"version {row.hash[:19]} needs {required} approval(s) by approvers other than its author "
                          f"against the active version (has: {have}); plan it, then `gatehouse policy approve`")
    for approval in approvals:
        seen = {item["id"] for item in approval.acknowledged}
        unseen = [key for key in planned.widening_ids if key not in seen]
        if unseen:
            raise NotApproved(f"the plan changed since {approval.approver} approved it: {len(unseen)} widening(s) "
                              f"they did not acknowledge ({planned.widening_ids[unseen[0]]}…); plan and approve again")
        if approval.gains != planned.gains_digest:
            raise NotApproved(f"who gains access changed since {approval.approver} approved it (identities were "
                              f"created or changed; {len(planned.plan.gained)} gain(s) now); plan and approve again")
    return [approval.approver for approval in approvals]


def _activate(session: Session, actor: str, row: PolicyVersion, kind: str, previous: PolicyActivation | None,
              back_to: str | None, reason: str | None = None, expires_at: datetime | None = None,
              details: dict | None = None) -> PolicyActivation:
    now = utcnow()
    for active in session.execute(select(PolicyVersion).where(PolicyVersion.state == "active")).scalars():
        active.state = "superseded"
    row.state, row.activated_at = "active", now
    activation = PolicyActivation(version=row.hash, kind=kind, actor=actor, at=now,
                                  previous=previous.version if previous else None, back_to=back_to,
                                  expires_at=expires_at, reason=reason)
    session.add(activation)
    session.flush()
    audit.append(session, actor, "policy.activate", f"policy:{row.hash}", {
        "kind": kind, "previous": activation.previous, "reason": reason,
        "expires_at": expires_at.isoformat() if expires_at else None, **(details or {})})
    return activation


def apply(db: Database, actor: str, ref: str) -> PolicyActivation:
    """Activate an approved version (policy-admin). Applying the version a break-glass put in
    force, once approved, keeps it for good."""
    with db.write() as session:
        _lock(session)
        actor = _acting_as(session, actor, "policy-admin", "applying a policy")
        row = find_version(session, ref)
        current = current_activation(session)
        if row.state == "rejected":
            raise Conflict(f"version {row.hash[:19]} was rejected; propose a new version")
        if current is not None and current.version == row.hash and current.kind != "break-glass":
            raise Conflict(f"version {row.hash[:19]} is already active")
        base = baseline_of(current)
        planned = _plan_in(session, row, base)
        _check_approver_pool(session, loaded_version(row))
        required = required_approvals(session, current, loaded_version(row))
        approvers = _check_approved(session, row, planned, required, current, actor) if required > 0 else []
        return _activate(session, actor, row, "apply", current, back_to=base,
                         details={"base": base, "plan_id": planned.plan_id, "approvers": approvers,
                                  "approvals_required": required, "widenings": len(planned.widening_ids)})


def rollback(db: Database, actor: str, reason: str) -> PolicyActivation:
    """Back to the version active before the current one. Needs approval only when that
    version would give access the current one does not (ending break-glass never does)."""
    if not reason or not reason.strip():
        raise GatehouseError("say why: a rollback needs a reason (-m)")
    with db.write() as session:
        _lock(session)
        actor = _acting_as(session, actor, "policy-admin", "rolling back the policy")
        current = current_activation(session)
        if current is None or current.back_to is None:
            raise Conflict("there is no earlier active version to roll back to")
        target = session.get(PolicyVersion, current.back_to)
        planned = _plan_in(session, target, current.version)
        required = required_approvals(session, current, loaded_version(target))
        approvers: list[str] = []
        if planned.widening_ids and current.kind != "break-glass" and required > 0:
            approvers = _check_approved(session, target, planned, required, current, actor)
        earlier = _earlier_activation(session, target.hash, current.seq)
        return _activate(session, actor, target, "rollback", current, back_to=earlier.back_to if earlier else None,
                         reason=reason.strip(), details={"widenings": len(planned.widening_ids), "approvers": approvers})


def break_glass(db: Database, actor: str, loaded: LoadedPolicy, reason: str, ttl: timedelta) -> tuple[PolicyActivation, PlannedChange]:
    """Activate without approval, for an emergency: a policy-admin, a reason, at most four
    hours. The audit entry is marked; when it expires every worker returns to the approved
    baseline. To keep the change, propose and approve it as usual."""
    if not reason or not reason.strip():
        raise GatehouseError("break-glass needs a reason (--reason)")
    if ttl <= timedelta(0) or ttl > BREAK_GLASS_MAX:
        raise GatehouseError("break-glass lasts more than 0 and at most 4h (--ttl)")
    _check_credentials(loaded)
    with db.write() as session:
        _lock(session)
        actor = _acting_as(session, actor, "policy-admin", "break-glass")
        current = current_activation(session)
        if current is None:
            raise Conflict("no policy is active yet: start the gateway once first")
        if current.kind == "break-glass":
            raise Conflict(f"a break-glass version is in force until {as_utc(current.expires_at):%H:%M} UTC; end it with "
                           "`policy rollback` first (break-glass is not renewed: propose and approve what must last)")
        if current.version == loaded.version:
            raise Conflict(f"version {loaded.short_version} is already active")
        row, _ = _store(session, actor, loaded, f"break-glass: {reason.strip()}")
        if row.state == "rejected":
            raise Conflict(f"version {row.hash[:19]} was rejected; break-glass cannot bring it back")
        base = baseline_of(current)
        planned = _plan_in(session, row, base)
        baseline_deployments = loaded_version(session.get(PolicyVersion, base)).document.deployments if base else {}
        unknown = [name for name, spec in loaded.document.deployments.items() if baseline_deployments.get(name) != spec]
        if unknown:
            raise Forbidden(f"break-glass can only route between deployments the approved version already defines "
                            f"as they are; new or changed: {', '.join(sorted(unknown))}")
        if planned.plan.violations:
            raise Forbidden("break-glass cannot send data to a deployment not allowed to receive it")
        activation = _activate(session, actor, row, "break-glass", current, back_to=base, reason=reason.strip(),
                               expires_at=utcnow() + ttl,
                               details={"break_glass": True, "base": base, "widenings": list(planned.widening_ids.values())[:50]})
        audit.append(session, actor, "policy.break_glass", f"policy:{row.hash}", {
            "reason": reason.strip(), "expires_at": activation.expires_at.isoformat(), "returns_to": base,
            "widenings": len(planned.widening_ids)})
        return activation, planned


def break_glass_event(activation: PolicyActivation, planned: PlannedChange) -> dict:
    """What the webhook hears: who, why, until when, and the first widenings nobody reviewed."""
    return {"event": "policy.break_glass", "version": activation.version, "actor": activation.actor,
            "reason": activation.reason, "expires_at": as_utc(activation.expires_at).isoformat(),
            "returns_to": activation.back_to, "widenings": list(planned.widening_ids.values())[:50]}


def expire_break_glass(db: Database, actor: str = "system:break-glass") -> PolicyActivation | None:
    """Return to the approved baseline once a break-glass activation has expired. Safe to run
    from every worker: the lock serialises them and only the first finds it still to do."""
    with db.read() as session:
        current = current_activation(session)
        if current is None or current.kind != "break-glass" or as_utc(current.expires_at) > utcnow():
            return None
    with db.write() as session:
        _lock(session)
        current = current_activation(session)
        if current is None or current.kind != "break-glass" or as_utc(current.expires_at) > utcnow():
            return None
        target = session.get(PolicyVersion, current.back_to)
        earlier = _earlier_activation(session, target.hash, current.seq)
        audit.append(session, actor, "policy.break_glass_expired", f"policy:{current.version}",
                     {"returns_to": target.hash})
        return _activate(session, actor, target, "revert", current, back_to=earlier.back_to if earlier else None,
                         reason=f"break-glass of {current.version[:19]} expired")


def activate_served_file(db: Database, actor: str, loaded: LoadedPolicy, source: str) -> str:
    """What ``gatehouse serve`` does with the policy file. The first version becomes active as
    it is (there is nothing to compare it with); after that the store decides, and a file that
    differs is only applied when the active version asks for no approvals (single-person mode)."""
    with db.write() as session:
        _lock(session)
        current = current_activation(session)
        if current is not None and current.version == loaded.version:
            return "unchanged"
        if current is not None and required_approvals(session, current, loaded) > 0:
            return "differs"
        existing = session.get(PolicyVersion, loaded.version)
        if existing is not None and existing.state == "rejected":
            return "differs"
        row, _ = _store(session, actor, loaded, f"served from {source}")
        _activate(session, actor, row, "bootstrap" if current is None else "apply", current,
                  back_to=baseline_of(current), reason=f"served from {source}",
                  details={"source": source, **_summary(loaded)})
        return "activated"


# -- workers ------------------------------------------------------------------------------

HEARTBEAT_INTERVAL = 5.0  # seconds
GONE_AFTER = timedelta(seconds=20)


def heartbeat(db: Database, worker: str, version: str | None, problem: str | None, started: datetime) -> None:
    now = utcnow()
    with db.write() as session:
        row = session.get(GatewayWorker, worker)
        if row is None:
            session.add(GatewayWorker(id=worker, policy_version=version, problem=problem, started_at=started, seen_at=now))
        else:
            row.policy_version, row.problem, row.seen_at = version, problem, now
        session.execute(delete(GatewayWorker).where(GatewayWorker.seen_at < now - timedelta(days=1)))


def forget_worker(db: Database, worker: str) -> None:
    with db.write() as session:
        session.execute(delete(GatewayWorker).where(GatewayWorker.id == worker))


def status(db: Database) -> dict:
    """The active version, and per live worker what it enforces; ``drift`` when any differs."""
    now = utcnow()
    with db.read() as session:
        current = current_activation(session)
        workers = session.execute(select(GatewayWorker).order_by(GatewayWorker.id)).scalars().all()
        history = session.execute(select(PolicyActivation).order_by(PolicyActivation.seq.desc()).limit(10)).scalars().all()
    active = current.version if current else None
    rows = []
    for worker in workers:
        seen = as_utc(worker.seen_at)
        if now - seen > GONE_AFTER:
            state = "gone"
        elif worker.problem:
            state = "error"
        elif worker.policy_version != active:
            state = "drift"
        else:
            state = "in sync"
        rows.append({"worker": worker.id, "policy_version": worker.policy_version, "state": state,
                     "problem": worker.problem, "seen_seconds_ago": round((now - seen).total_seconds(), 1),
                     "started_at": as_utc(worker.started_at)})
    live = [row for row in rows if row["state"] != "gone"]
    return {
        "active": active,
        "activation": activation_dict(current) if current else None,
        "break_glass": current is not None and current.kind == "break-glass",
        "baseline": baseline_of(current),
        "workers": rows,
        "drift": any(row["state"] in ("drift", "error") for row in live),
        "history": [activation_dict(row) for row in history],
    }

"""Policy change control: propose → plan → approve (by someone else) → apply; rollback and
break-glass; and the first version ``gatehouse serve`` activates.

The store is the source of truth for the active version (``versions``); gateway workers
follow it (``gatehouse.runtime.enforced``). Every transition takes the policy lock (a counter
row that workers also poll, so the same write that changes the version tells them to
reload), runs its checks inside that transaction and appends to the audit log in it.

An approval is bound to the version, to the baseline it replaces and to the plan the approver
saw (``plan_id`` covers baseline, version and the inventory the plan was computed on), and to
the approver role as they held it (``approvals.roles_held``: a revoke voids it for good). At apply
the plan is computed again: a different baseline, or a widening no approver acknowledged (an
identity created since that gains access, say), sends it back for a new plan and approval.

Break-glass skips approval, so it is fenced in: a reason, a notification channel to tell
people through, a limit per person and per installation over a window (``Settings``), an
expiry, and a review afterwards by an approver other than whoever broke the glass
(``review_break_glass``); until then ``policy status`` and the findings show it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from gatehouse import audit
from gatehouse.authz import Forbidden, acting_person, actor_email, require_role, roles_of
from gatehouse.core.clock import as_utc, utcnow
from gatehouse.core.config import Settings
from gatehouse.core.durations import format_duration
from gatehouse.core.errors import Conflict, GatehouseError, NotFound
from gatehouse.engines.credentials import credential_problem, own_files
from gatehouse.guardrails.classifier import classifier_problem
from gatehouse.policy.approvals import check_approved, check_approver_pool, proposers_of, required_approvals, roles_held
from gatehouse.policy.compiled import CompiledPolicy
from gatehouse.policy.loader import LoadedPolicy
from gatehouse.policy.planning import PlannedChange, plan_in
from gatehouse.policy.versions import (
    baseline_of,
    current_activation,
    earlier_activation,
    find_version,
    hold,
    loaded_version,
    lock,
    store_version,
    stored_version,
    summary,
)
from gatehouse.store.db import Database
from gatehouse.store.models import (
    PolicyActivation,
    PolicyApproval,
    PolicyVersion,
)

BREAK_GLASS_MAX = timedelta(hours=4)
BREAK_GLASS_WIDENINGS_SENT = 50  # listed in the webhook's event and the activation; the count is of all


class StalePlan(GatehouseError):
    """The plan an approval names is not what the plan is now."""


class BreakGlassLimit(Forbidden):
    """Break-glass was used as often as the installation allows within its window."""


def _check_credentials(loaded: LoadedPolicy, settings: Settings) -> None:
    """Credentials Gatehouse must never send (its own settings, the files of its home other
    than ``credentials/``, its signing key and store wherever they are, a relative path), and
    injection classifiers this host lacks (a version that names one could not be enforced).
    Where a reference points is checked here; what it holds only where a worker reads it."""
    home = settings.home
    problems = [f"{name}: {problem}" for name, spec in loaded.document.deployments.items()
                if (problem := credential_problem(spec.credential, home, reserved=own_files(settings)))]
    for name, profile in loaded.document.guardrails.profiles.items():
        classifier = profile.injection.classifier if profile.injection is not None else None
        if classifier and (problem := classifier_problem(home, classifier)):
            problems.append(f"profile {name}: {problem}")
    if problems:
        raise GatehouseError("; ".join(problems))


def _expiry(activation: PolicyActivation) -> datetime:
    """When a break-glass activation ends: ``break_glass`` always sets it (the column is
    nullable only because other activations have none), so a missing one means the store was
    altered."""
    if activation.expires_at is None:
        raise GatehouseError(f"break-glass activation {activation.seq} has no expiry; the store was altered")
    return as_utc(activation.expires_at)


def _break_glass_expired(current: PolicyActivation | None) -> bool:
    """A break-glass activation is in force and its time is up."""
    return current is not None and current.kind == "break-glass" and _expiry(current) <= utcnow()


def _acting_as(session: Session, actor: str, role: str, why: str) -> str:
    """The actor, once checked to hold ``role``, in one spelling (``person:<lower-case e-mail>``)."""
    return f"person:{require_role(session, actor, role, why).email}"


def propose(db: Database, actor: str, loaded: LoadedPolicy, message: str, *,
            settings: Settings | None = None) -> tuple[PolicyVersion, bool]:
    """Store an immutable draft. The same content is the same version: proposing it again
    returns the stored one (``False``) rather than a copy, and adds the proposer to the people
    who may not approve it. ``settings`` are the installation's (its home, its own files),
    against which credential references are checked; the environment's when not given."""
    if not message or not message.strip():
        raise GatehouseError("say why: a proposal needs a message (-m)")
    settings = settings or Settings.from_env()
    _check_credentials(loaded, settings)
    classifiers = CompiledPolicy(loaded).classifier_digests(settings.home)  # the injection models it would run
    with db.write() as session:
        lock(session)
        require_role(session, actor, "policy-admin", "proposing a policy")
        row, created = store_version(session, actor, loaded, message.strip())
        if not created and actor not in [row.created_by, *(row.proposers or [])]:
            row.proposers = [*(row.proposers or []), actor]
        audit.append(session, actor, "policy.propose", f"policy:{loaded.version}",
                     {"message": message.strip(), "again": not created, **summary(loaded),
                      **({"classifiers": classifiers} if classifiers else {})})
        return row, created


def reject(db: Database, actor: str, ref: str, reason: str) -> PolicyVersion:
    with db.write() as session:
        lock(session)
        row = find_version(session, ref)
        person = acting_person(session, actor, "rejecting a policy")
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
        lock(session)
        row = find_version(session, ref)
        approver = require_role(session, actor, "approver", "approving a policy")
        actor = f"person:{approver.email}"
        if actor_email(actor) in proposers_of(row):
            raise Forbidden("nobody approves their own change: another approver must approve this version")
        current = current_activation(session)
        keeping_break_glass = current is not None and current.kind == "break-glass" and current.version == row.hash
        if row.state == "rejected" or (row.state == "active" and not keeping_break_glass):
            raise Conflict(f"version {row.hash[:19]} is {row.state}; there is nothing to approve")
        base = baseline_of(current)
        planned = plan_in(session, row, base)
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
                                  created_at=utcnow(), roles=roles_held(session, approver),
                                  acknowledged=[{"id": key, "change": planned.widening_ids[key]}
                                                for key in planned.widening_ids])
        session.add(approval)
        audit.append(session, actor, "policy.approve", f"policy:{row.hash}", {
            "base": base, "plan_id": planned.plan_id, "note": note, "no_new_access": not planned.widening_ids,
            "acknowledged": sorted(planned.widening_ids), "roles": approval.roles})
        return approval


def _activate(session: Session, actor: str, row: PolicyVersion, kind: str, previous: PolicyActivation | None,
              back_to: str | None, reason: str | None = None, expires_at: datetime | None = None,
              details: dict[str, Any] | None = None) -> PolicyActivation:
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
        lock(session)
        actor = _acting_as(session, actor, "policy-admin", "applying a policy")
        row = find_version(session, ref)
        current = current_activation(session)
        if row.state == "rejected":
            raise Conflict(f"version {row.hash[:19]} was rejected; propose a new version")
        if current is not None and current.version == row.hash and current.kind != "break-glass":
            raise Conflict(f"version {row.hash[:19]} is already active")
        base = baseline_of(current)
        planned = plan_in(session, row, base)
        check_approver_pool(session, loaded_version(row))
        required = required_approvals(session, current, loaded_version(row))
        approvers = check_approved(session, row, planned, required, current, actor) if required > 0 else []
        return _activate(session, actor, row, "apply", current, back_to=base,
                         details={"base": base, "plan_id": planned.plan_id, "approvers": approvers,
                                  "approvals_required": required, "widenings": len(planned.widening_ids)})


def rollback(db: Database, actor: str, reason: str) -> PolicyActivation:
    """Back to the version active before the current one. Needs approval only when that
    version would give access the current one does not (ending break-glass never does)."""
    if not reason or not reason.strip():
        raise GatehouseError("say why: a rollback needs a reason (-m)")
    with db.write() as session:
        lock(session)
        actor = _acting_as(session, actor, "policy-admin", "rolling back the policy")
        current = current_activation(session)
        if current is None or current.back_to is None:
            raise Conflict("there is no earlier active version to roll back to")
        target = stored_version(session, current.back_to)
        planned = plan_in(session, target, current.version)
        required = required_approvals(session, current, loaded_version(target))
        approvers: list[str] = []
        if planned.widening_ids and current.kind != "break-glass" and required > 0:
            approvers = check_approved(session, target, planned, required, current, actor)
        earlier = earlier_activation(session, target.hash, current.seq)
        return _activate(session, actor, target, "rollback", current, back_to=earlier.back_to if earlier else None,
                         reason=reason.strip(), details={"widenings": len(planned.widening_ids), "approvers": approvers})


def _check_break_glass_limits(session: Session, actor: str, settings: Settings) -> None:
    """At most ``break_glass_per_person`` activations by one person and
    ``break_glass_per_installation`` by everyone within ``break_glass_window``."""
    window = settings.break_glass_window
    actors = session.execute(select(PolicyActivation.actor).where(
        PolicyActivation.kind == "break-glass", PolicyActivation.at >= utcnow() - window)).scalars().all()
    mine = sum(1 for who in actors if who == actor)
    if mine >= settings.break_glass_per_person:
        raise BreakGlassLimit(f"{actor_email(actor)} has used break-glass {mine} time(s) in the last "
                              f"{format_duration(window)}, the limit per person "
                              f"(GATEHOUSE_BREAK_GLASS_PER_PERSON={settings.break_glass_per_person}): propose the "
                              "change and have it approved")
    if len(actors) >= settings.break_glass_per_installation:
        raise BreakGlassLimit(f"break-glass was used {len(actors)} time(s) in the last {format_duration(window)}, the "
                              "limit for this installation (GATEHOUSE_BREAK_GLASS_PER_INSTALLATION="
                              f"{settings.break_glass_per_installation}): propose the change and have it approved")


def break_glass(db: Database, actor: str, loaded: LoadedPolicy, reason: str, ttl: timedelta, *,
                settings: Settings) -> tuple[PolicyActivation, PlannedChange]:
    """Activate without approval, for an emergency: a policy-admin, a reason, at most four
    hours, a notification channel configured (``settings.notify_webhook``: the caller sends
    ``break_glass_event`` to it) and the limits per person and per installation not reached.
    The audit entry is marked; when it expires every worker returns to the approved baseline,
    and it stays unreviewed until an approver other than its actor reviews it
    (``review_break_glass``). To keep the change, propose and approve it as usual."""
    if not reason or not reason.strip():
        raise GatehouseError("break-glass needs a reason (--reason)")
    if ttl <= timedelta(0) or ttl > BREAK_GLASS_MAX:
        raise GatehouseError("break-glass lasts more than 0 and at most 4h (--ttl)")
    _check_credentials(loaded, settings)
    with db.write() as session:
        lock(session)
        actor = _acting_as(session, actor, "policy-admin", "break-glass")
        if not (settings.notify_webhook or "").strip():
            raise GatehouseError("break-glass needs a notification channel, so that people hear of it: set "
                                 "GATEHOUSE_NOTIFY_WEBHOOK on the gateway")
        current = current_activation(session)
        if current is None:
            raise Conflict("no policy is active yet: start the gateway once first")
        if current.kind == "break-glass":
            raise Conflict(f"a break-glass version is in force until {_expiry(current):%H:%M} UTC; end it with "
                           "`policy rollback` first (break-glass is not renewed: propose and approve what must last)")
        if current.version == loaded.version:
            raise Conflict(f"version {loaded.short_version} is already active")
        row, _ = store_version(session, actor, loaded, f"break-glass: {reason.strip()}")
        if row.state == "rejected":
            raise Conflict(f"version {row.hash[:19]} was rejected; break-glass cannot bring it back")
        base = baseline_of(current)
        planned = plan_in(session, row, base)
        baseline_deployments = loaded_version(stored_version(session, base)).document.deployments if base else {}
        unknown = [name for name, spec in loaded.document.deployments.items() if baseline_deployments.get(name) != spec]
        if unknown:
            raise Forbidden(f"break-glass can only route between deployments the approved version already defines "
                            f"as they are; new or changed: {', '.join(sorted(unknown))}")
        if planned.plan.violations:
            raise Forbidden("break-glass cannot send data to a deployment not allowed to receive it")
        _check_break_glass_limits(session, actor, settings)  # last: only a break-glass that would happen counts
        expires_at = utcnow() + ttl
        activation = _activate(session, actor, row, "break-glass", current, back_to=base, reason=reason.strip(),
                               expires_at=expires_at,
                               details={"break_glass": True, "base": base,
                                        "widenings": list(planned.widening_ids.values())[:BREAK_GLASS_WIDENINGS_SENT],
                                        "widenings_total": len(planned.widening_ids)})
        audit.append(session, actor, "policy.break_glass", f"policy:{row.hash}", {
            "reason": reason.strip(), "expires_at": expires_at.isoformat(), "returns_to": base,
            "widenings": len(planned.widening_ids)})
        return activation, planned


def review_break_glass(db: Database, actor: str, seq: int, note: str) -> PolicyActivation:
    """An approver other than whoever broke the glass records that they looked at what it did
    and why. Until then the activation shows in ``policy status`` and the findings."""
    if not note or not note.strip():
        raise GatehouseError("say what you checked: a review needs a note (--note)")
    with db.write() as session:
        hold(session)  # serialises with other policy transitions; nothing for workers to reload
        reviewer = _acting_as(session, actor, "approver", "reviewing a break-glass activation")
        row = session.get(PolicyActivation, seq)
        if row is None or row.kind != "break-glass":
            raise NotFound(f"no break-glass activation {seq} (see `gatehouse policy status`)")
        if row.reviewed_at is not None:
            raise Conflict(f"break-glass activation {seq} was reviewed already, by {row.reviewed_by}")
        if actor_email(row.actor) == actor_email(reviewer):
            raise Forbidden("nobody reviews their own break-glass: another approver must")
        version = session.get(PolicyVersion, row.version)
        if version is not None and actor_email(reviewer) in proposers_of(version):
            # whoever wrote the content it put in force is judging their own change
            raise Forbidden("nobody reviews a break-glass of a version they proposed: another approver must")
        row.reviewed_by, row.reviewed_at, row.review_note = reviewer, utcnow(), note.strip()
        audit.append(session, reviewer, "policy.break_glass_review", f"policy:{row.version}",
                     {"seq": seq, "break_glass_by": row.actor, "reason": row.reason, "note": note.strip()})
        return row


def unreviewed_break_glass(session: Session) -> list[dict[str, Any]]:
    """Every break-glass activation nobody has reviewed yet, oldest first."""
    rows = session.execute(select(PolicyActivation).where(PolicyActivation.kind == "break-glass",
                                                          PolicyActivation.reviewed_at.is_(None))
                           .order_by(PolicyActivation.seq)).scalars().all()
    return [{"seq": row.seq, "actor": row.actor, "at": as_utc(row.at), "reason": row.reason} for row in rows]


def break_glass_event(activation: PolicyActivation, planned: PlannedChange) -> dict[str, Any]:
    """What the webhook hears: who, why, until when, and the first widenings nobody reviewed,
    with how many there are in all (a list cut at 50 must not read as the whole change)."""
    widenings = list(planned.widening_ids.values())
    return {"event": "policy.break_glass", "version": activation.version, "actor": activation.actor,
            "reason": activation.reason, "expires_at": _expiry(activation).isoformat(),
            "returns_to": activation.back_to, "widenings": widenings[:BREAK_GLASS_WIDENINGS_SENT],
            "widenings_total": len(widenings)}


def expire_break_glass(db: Database, actor: str = "system:break-glass") -> PolicyActivation | None:
    """Return to the approved baseline once a break-glass activation has expired. Safe to run
    from every worker: the lock serialises them and only the first finds it still to do."""
    with db.read() as session:
        if not _break_glass_expired(current_activation(session)):
            return None
    with db.write() as session:
        lock(session)
        current = current_activation(session)
        if current is None or not _break_glass_expired(current):
            return None
        if current.back_to is None:  # break_glass always records the approved version it replaced
            raise GatehouseError(f"break-glass activation {current.seq} names no version to return to; the store was altered")
        target = stored_version(session, current.back_to)
        earlier = earlier_activation(session, target.hash, current.seq)
        audit.append(session, actor, "policy.break_glass_expired", f"policy:{current.version}",
                     {"returns_to": target.hash})
        return _activate(session, actor, target, "revert", current, back_to=earlier.back_to if earlier else None,
                         reason=f"break-glass of {current.version[:19]} expired")


def activate_served_file(db: Database, actor: str, loaded: LoadedPolicy, source: str) -> str:
    """What ``gatehouse serve`` does with the policy file. The first version becomes active as
    it is (there is nothing to compare it with); after that the store decides, and a file that
    differs is only applied when the active version asks for no approvals (single-person mode)."""
    with db.write() as session:
        lock(session)
        current = current_activation(session)
        if current is not None and current.version == loaded.version:
            return "unchanged"
        if current is not None and required_approvals(session, current, loaded) > 0:
            return "differs"
        existing = session.get(PolicyVersion, loaded.version)
        if existing is not None and existing.state == "rejected":
            return "differs"
        row, _ = store_version(session, actor, loaded, f"served from {source}")
        _activate(session, actor, row, "bootstrap" if current is None else "apply", current,
                  back_to=baseline_of(current), reason=f"served from {source}",
                  details={"source": source, **summary(loaded)})
        return "activated"

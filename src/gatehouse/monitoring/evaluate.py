"""Judge the active policy's thresholds on the usage counts, open incidents, climb their ladders.

One evaluation at a time across every worker and replica: a conditional update of one counter
row both serialises evaluators and lets the others skip while a fresh one exists. Decisions
(incidents opened, steps taken, keys suspended) commit together; webhook and pager calls go out
after the commit and their outcome is written back onto the incident.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from gatehouse.audit import log as audit
from gatehouse.core.clock import as_utc
from gatehouse.core.config import Settings
from gatehouse.core.webhook import notify
from gatehouse.monitoring.pager import page
from gatehouse.monitoring.schema import COUNTS as COUNT_METRICS
from gatehouse.monitoring.schema import RATES, Threshold
from gatehouse.monitoring.usage import COUNTS, LATENCY_BUCKETS, prune
from gatehouse.store.db import Database, bump_revision
from gatehouse.store.models import Identity, Incident, Meta, UsageMinute

log = logging.getLogger("gatehouse.monitoring")
MONITOR = "system:monitor"
LOCK_ROW = "monitor_evaluated_at"
KEEP_USAGE = timedelta(days=8)  # longest window plus baseline, and a day to look back on
FLOOR = {"count": 1.0, "rate": 0.001, "latency": 0.001}  # a baseline of zero compares as this


@dataclass
class Totals:
    counts: dict[str, int]
    latency: list[int] | None = None

    def value(self, metric: str) -> tuple[float, int] | None:
        """The metric and how many observations it rests on; None when there are none."""
        c = self.counts
        if metric in COUNT_METRICS:
            return float(c[metric]), c["requests"]
        if metric == "upstream_error_rate":
            return (c["upstream_errors"] / c["upstream_attempts"], c["upstream_attempts"]) if c["upstream_attempts"] else None
        if metric in RATES:
            part = {"error_rate": "errors", "block_rate": "blocked"}[metric]
            return (c[part] / c["requests"], c["requests"]) if c["requests"] else None
        assert self.latency is not None
        observed = sum(self.latency)
        return (quantile(self.latency, int(metric.removeprefix("latency_p")) / 100), observed) if observed else None


def quantile(buckets: list[int], q: float) -> float:
    """As Prometheus' histogram_quantile: linear within the bucket that holds the rank; the
    open-ended last bucket answers with its lower bound."""
    rank, seen = q * sum(buckets), 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            if index >= len(LATENCY_BUCKETS):
                return LATENCY_BUCKETS[-1]
            low = LATENCY_BUCKETS[index - 1] if index else 0.0
            return low + (LATENCY_BUCKETS[index] - low) * (rank - seen) / count
        seen += count
    return LATENCY_BUCKETS[-1]


def _totals(session: Session, threshold: Threshold, start: datetime, end: datetime) -> dict[str, Totals]:
    where = [UsageMinute.scope == threshold.per, UsageMinute.minute >= start, UsageMinute.minute < end]
    if threshold.only is not None:
        where.append(UsageMinute.subject.in_(threshold.only))
    found = {subject: Totals(dict(zip(COUNTS, sums, strict=True))) for subject, *sums in session.execute(
        select(UsageMinute.subject, *(func.sum(getattr(UsageMinute, name)) for name in COUNTS))
        .where(*where).group_by(UsageMinute.subject)).all()}
    if threshold.metric.startswith("latency_"):
        for subject, latency in session.execute(select(UsageMinute.subject, UsageMinute.latency).where(*where)):
            totals = found[subject]
            totals.latency = [a + b for a, b in zip(totals.latency, latency, strict=True)] if totals.latency else list(latency)
    return found


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _kind(metric: str) -> str:
    return "count" if metric in COUNT_METRICS else "rate" if metric in RATES else "latency"


@dataclass
class Breach:
    value: float
    limit: float
    condition: str


def judge(threshold: Threshold, now_totals: Totals, before: Totals | None) -> Breach | None:
    measured = now_totals.value(threshold.metric)
    if measured is None:
        return None
    value, observed = measured
    if now_totals.counts["requests"] < threshold.min_requests:
        return None
    limits: list[float] = []
    if threshold.above is not None:
        limits.append(threshold.above)
    described = f"{threshold.metric} {value:.4g}"
    if threshold.factor is not None:
        if before is None or before.counts["requests"] < threshold.min_requests:
            return None  # no history to compare with (a new subject, monitoring just enabled)
        kind = _kind(threshold.metric)
        earlier = before.value(threshold.metric)
        expected = earlier[0] if earlier is not None else 0.0
        if kind == "count":  # the baseline period is longer than the window: scale it down
            expected *= threshold.window_span / threshold.baseline_span
        limits.append(threshold.factor * max(expected, FLOOR[kind]))
        described += f" vs {expected:.4g} in the {threshold.baseline} before"
    limit = max(limits)
    if value <= limit:
        return None
    return Breach(value, limit, f"{described} > {limit:.4g} over {threshold.window} ({observed} observed, "
                                f"{'per ' + threshold.per if threshold.per != 'gateway' else 'whole gateway'})")


def _claim(session: Session, now: datetime, every: float) -> bool:
    """Take the evaluation turn unless another worker had it less than ``every`` seconds ago."""
    stamp = int(now.timestamp())
    claimed = session.execute(update(Meta).where(Meta.name == LOCK_ROW, Meta.value <= stamp - int(every * 0.8))
                              .values(value=stamp))
    return bool(cast(CursorResult[Any], claimed).rowcount)  # an UPDATE's result is a cursor result


@dataclass
class Delivery:
    incident: str
    step: int
    action: str  # notify | page
    event: dict[str, Any]


def evaluate(db: Database, thresholds: tuple[Threshold, ...], policy_version: str, settings: Settings,
             now: datetime | None = None, every: float = 0.0) -> list[str] | None:
    """One evaluation. Returns the ids of incidents opened, or None when another worker's
    evaluation is recent enough."""
    now = now or datetime.now(UTC)
    deliveries: list[Delivery] = []
    with db.write() as session:
        if not _claim(session, now, every):
            return None
        opened = _evaluate(session, thresholds, policy_version, now, deliveries)
    for delivery in deliveries:
        outcome = (notify(settings.notify_webhook, delivery.event) if delivery.action == "notify"
                   else page(settings, "trigger", delivery.incident, delivery.event))
        _record_outcome(db, delivery, outcome)
    return opened


def _evaluate(session: Session, thresholds: tuple[Threshold, ...], policy_version: str, now: datetime,
              deliveries: list[Delivery]) -> list[str]:
    # Locked: a person acknowledging or closing one meanwhile waits, then sees what was done.
    active = {(i.threshold, i.scope, i.subject): i for i in session.execute(
        select(Incident).where(Incident.status != "closed").with_for_update()).scalars()}
    opened: list[str] = []
    for threshold in thresholds:
        # Rows are whole minutes: take every minute the window touches (w to w+1 minutes).
        window_start = _minute(now - threshold.window_span)
        current = _totals(session, threshold, window_start, now + timedelta(minutes=1))
        before = (_totals(session, threshold, _minute(window_start - threshold.baseline_span), window_start)
                  if threshold.baseline else {})
        breaches = {subject: judge(threshold, totals, before.get(subject)) for subject, totals in current.items()}
        for (name, scope, subject), incident in active.items():
            if name == threshold.id and scope == threshold.per:
                breach = breaches.get(subject)
                if breach is not None and not incident.breaching:
                    incident.breaching_since = now  # crossed again: the ladder's delays count from now
                incident.breaching, incident.last_checked_at = breach is not None, now
                incident.last_value = breach.value if breach else (
                    (current[subject].value(threshold.metric) or (0.0, 0))[0] if subject in current else 0.0)
        for subject, breach in breaches.items():
            if breach is None or (threshold.id, threshold.per, subject) in active:
                continue
            incident = Incident(id="inc-" + secrets.token_hex(6), threshold=threshold.id, scope=threshold.per,
                                subject=subject, metric=threshold.metric, status="open", policy_version=policy_version,
                                opened_at=now, value=breach.value, limit=breach.limit, condition=breach.condition,
                                breaching=True, breaching_since=now, last_value=breach.value, last_checked_at=now, steps=[])
            session.add(incident)
            active[(threshold.id, threshold.per, subject)] = incident
            opened.append(incident.id)
            audit.append(session, MONITOR, "incident.open", f"incident:{incident.id}",
                         {"threshold": threshold.id, "scope": threshold.per, "subject": subject,
                          "condition": breach.condition, "policy_version": policy_version})
    by_id = {threshold.id: threshold for threshold in thresholds}
    for incident in active.values():
        defined = by_id.get(incident.threshold)  # None: the policy no longer has this threshold
        if defined is not None and incident.status == "open" and incident.breaching:
            _escalate(session, incident, defined, now, deliveries)
    return opened


def _escalate(session: Session, incident: Incident, threshold: Threshold, now: datetime,
              deliveries: list[Delivery]) -> None:
    """Take every step of the ladder that is due and not yet taken; send again a notification
    or page that failed (or was never sent: a crash between commit and delivery)."""
    steps = [dict(step) for step in incident.steps]
    taken = {step["step"]: step for step in steps}
    since = _stored_utc(incident.breaching_since)
    for index, step in enumerate(threshold.escalate):
        done = taken.get(index)
        if done is not None:
            if _redeliver(done, now):
                done["tries"] = done.get("tries", 1) + 1
                done["outcome"], done["at"] = "pending", now.isoformat()
                deliveries.append(Delivery(incident.id, index, done["action"], event(incident, done["action"])))
            continue
        if since + step.delay > now:
            continue
        entry: dict[str, Any] = {"step": index, "action": step.action, "at": now.isoformat(), "outcome": "pending"}
        if step.action == "suspend_keys":
            entry["outcome"] = _suspend(session, incident)
        else:
            deliveries.append(Delivery(incident.id, index, step.action, event(incident, step.action)))
        steps.append(entry)
        audit.append(session, MONITOR, "incident.escalate", f"incident:{incident.id}",
                     {"step": index, "action": step.action, "outcome": entry["outcome"]})
    incident.steps = steps


MAX_TRIES = 5
RETRY_AFTER = timedelta(minutes=1)


def _redeliver(step: dict[str, Any], now: datetime) -> bool:
    if step["action"] == "suspend_keys" or step.get("tries", 1) >= MAX_TRIES:
        return False
    failed = step["outcome"].startswith("failed") or step["outcome"] == "pending"
    return failed and datetime.fromisoformat(step["at"]) + RETRY_AFTER <= now


def _suspend(session: Session, incident: Incident) -> str:
    identity = session.execute(select(Identity).where(Identity.name == incident.subject)).scalar_one_or_none()
    if identity is None:
        return "no such identity"
    if identity.status != "active":
        return f"not suspended: the identity is {identity.status}"
    identity.status, identity.revision = "suspended", bump_revision(session)  # gateways drop its keys at once
    identity.attention = f"suspended by incident {incident.id}: {incident.condition}"[:2000]
    audit.append(session, MONITOR, "identity.suspend", f"identity:{identity.name}",
                 {"from": "active", "to": "suspended", "reason": f"incident {incident.id} ({incident.threshold})"})
    return "suspended"


def _stored_utc(moment: datetime) -> datetime:
    """``as_utc`` of a NOT NULL column: never None, since the moment is not."""
    utc = as_utc(moment)
    assert utc is not None
    return utc


def event(incident: Incident, action: str) -> dict[str, Any]:
    """What the webhook and the pager hear: the incident, never request content."""
    return {"event": f"incident.{action}", "incident": incident.id, "threshold": incident.threshold,
            "scope": incident.scope, "subject": incident.subject, "metric": incident.metric,
            "condition": incident.condition, "status": incident.status,
            "opened_at": _stored_utc(incident.opened_at).isoformat(), "policy_version": incident.policy_version,
            "action": f"acknowledge with `gatehouse incident ack {incident.id}`"}


def _record_outcome(db: Database, delivery: Delivery, outcome: str) -> None:
    with db.write() as session:
        incident = session.get(Incident, delivery.incident, with_for_update=True)  # another evaluation may be writing
        if incident is None:
            return
        incident.steps = [step | {"outcome": outcome} if step["step"] == delivery.step else step
                          for step in incident.steps]


def prune_usage(db: Database, now: datetime | None = None) -> int:

    return prune(db, (now or datetime.now(UTC)) - KEEP_USAGE)

"""Findings: unused, stale, orphaned and over-granted identities and keys, and the credential report.

Like IAM Access Analyzer's unused-access findings, each finding names its subject, its owner,
what was observed and what to do. They are computed from the store (and, for unexercised
grants, the decision records of the window and the active policy), never from guesses. A
break-glass activation no other approver has reviewed is a finding too, whatever the policy.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from gatehouse.authz import actor_email
from gatehouse.core.clock import as_utc, utcnow
from gatehouse.identity.view import IdentityView
from gatehouse.policy.change_control import unreviewed_break_glass
from gatehouse.policy.compiled import CompiledPolicy
from gatehouse.store.db import Database
from gatehouse.store.models import Credential, DecisionRecord, Identity, Person

SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}


@dataclass(frozen=True)
class Thresholds:
    unused: timedelta = timedelta(days=30)      # identities, keys and grants unused this long
    expiry: timedelta = timedelta(days=14)      # keys expiring within this
    rotation: timedelta = timedelta(days=90)    # keys older than this should be rotated


@dataclass(frozen=True)
class Finding:
    kind: str
    severity: str
    subject: str
    owner: str | None
    detail: str
    action: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _IdentityRow:
    id: int
    name: str
    status: str
    owner: str
    owner_status: str
    backup: str | None
    team: str | None
    environment: str
    labels: dict[str, str]
    created_at: datetime
    review_due_at: datetime | None
    attention: str | None


def _identities(session: Session) -> list[_IdentityRow]:
    owner, backup = aliased(Person), aliased(Person)
    rows = session.execute(
        select(Identity.id, Identity.name, Identity.status, owner.email, owner.status, backup.email, Identity.team,
               Identity.environment, Identity.labels, Identity.created_at, Identity.review_due_at, Identity.attention)
        .join(owner, Identity.owner_id == owner.id).outerjoin(backup, Identity.backup_owner_id == backup.id)
        .where(Identity.status != "retired").order_by(Identity.name)).all()
    return [_IdentityRow(*row) for row in rows]


_KeyRow = tuple[str, datetime, datetime, datetime | None, str | None]  # id, created, expires, last used, rotated to


def _keys(session: Session) -> tuple[dict[int, list[_KeyRow]], dict[int, datetime]]:
    """Active keys per identity, and each identity's last use over all its keys (a revoked or
    rotated key's use still counts as the identity's)."""
    keys: dict[int, list[_KeyRow]] = defaultdict(list)
    last_used: dict[int, datetime] = {}
    for identity_id, key_id, created, expires, used, rotated_to, status in session.execute(
            select(Credential.identity_id, Credential.id, Credential.created_at, Credential.expires_at,
                   Credential.last_used_at, Credential.rotated_to, Credential.status)):
        if used is not None and (identity_id not in last_used or as_utc(used) > last_used[identity_id]):
            last_used[identity_id] = as_utc(used)
        if status == "active":
            keys[identity_id].append((key_id, created, expires, used, rotated_to))
    return keys, last_used


def _used_aliases(session: Session, since: datetime) -> dict[str, set[str]]:
    """The aliases each identity called successfully since ``since``. A record that names no
    identity or no alias (the columns are nullable) is skipped: no grant is judged by it."""
    used: dict[str, set[str]] = defaultdict(set)
    for identity, alias in session.execute(
            select(DecisionRecord.identity, DecisionRecord.alias).where(DecisionRecord.ts >= since,
                                                                        DecisionRecord.status == 200)
            .group_by(DecisionRecord.identity, DecisionRecord.alias)):
        if identity is not None and alias is not None:
            used[identity].add(alias)
    return used


def compute_findings(db: Database, policy: CompiledPolicy | None, thresholds: Thresholds = Thresholds()) -> list[Finding]:
    now = utcnow()
    since = now - thresholds.unused
    with db.read() as session:
        identities = _identities(session)
        keys, identity_last_used = _keys(session)
        used = _used_aliases(session, since) if policy is not None else {}
        unreviewed = unreviewed_break_glass(session)
    findings: list[Finding] = []
    add = findings.append
    for activation in unreviewed:
        add(Finding("break_glass_unreviewed", "high", f"break-glass:{activation['seq']}",
                    actor_email(activation["actor"]) or activation["actor"],
                    f"break-glass by {activation['actor']} at {activation['at'].isoformat(timespec='seconds')} "
                    f"({activation['reason']}), not reviewed by another approver",
                    f"gatehouse policy review-break-glass {activation['seq']} --note …"))
    for ident in identities:
        subject, owner = f"identity:{ident.name}", ident.owner
        if ident.owner_status != "active":
            add(Finding("orphaned", "high", subject, owner, f"its owner {owner} is {ident.owner_status}",
                        "assign a new owner or retire the identity"))
        if ident.attention:
            add(Finding("needs_attention", "high", subject, owner, ident.attention,
                        f"act, then `gatehouse identity attended {ident.name}`"))
        if ident.status != "active":
            continue
        if ident.backup is None:
            add(Finding("no_backup_owner", "low", subject, owner, "no backup owner: if the owner leaves it is orphaned",
                        "name a backup owner"))
        if ident.review_due_at is not None and as_utc(ident.review_due_at) <= now:
            add(Finding("review_overdue", "medium", subject, owner,
                        f"review was due {as_utc(ident.review_due_at).date().isoformat()}",
                        "the owner attests it is still needed (keep / narrow / retire)"))
        mine = keys.get(ident.id, [])
        last_used = identity_last_used.get(ident.id)
        if as_utc(ident.created_at) <= since and (last_used is None or last_used < since):
            add(Finding("identity_unused", "medium", subject, owner,
                        f"no key used in {thresholds.unused.days} days" if last_used else "never used",
                        "retire it if it is no longer needed"))
        for key_id, created, expires, key_used, rotated_to in mine:
            findings.extend(_key_findings(f"key:{key_id}", owner, ident.name, as_utc(created), as_utc(expires),
                                          as_utc(key_used), rotated_to, now, thresholds))
        if policy is not None and as_utc(ident.created_at) <= since:
            view = IdentityView.of(ident.name, ident.team, ident.environment, ident.labels)
            findings.extend(_grant_findings(policy, view, used.get(ident.name, set()), owner, thresholds))
    findings.sort(key=lambda f: (SEVERITY_ORDER[f.severity], f.kind, f.subject))
    return findings


def _key_findings(subject: str, owner: str, identity: str, created: datetime, expires: datetime,
                  used: datetime | None, rotated_to: str | None, now: datetime, thresholds: Thresholds) -> Iterator[Finding]:
    if expires <= now:
        return
    age = now - created
    if used is None and age >= timedelta(days=7):
        yield Finding("key_never_used", "medium", subject, owner, f"issued {age.days} days ago to {identity}, never used",
                      "revoke it")
    elif used is not None and used < now - thresholds.unused:
        yield Finding("key_unused", "medium", subject, owner, f"last used {(now - used).days} days ago ({identity})",
                      "revoke it")
    if expires - now <= thresholds.expiry and rotated_to is None:
        yield Finding("key_near_expiry", "low", subject, owner, f"expires {expires.date().isoformat()} ({identity})",
                      f"gatehouse key rotate {subject[4:]}")
    if age >= thresholds.rotation and rotated_to is None:
        yield Finding("key_too_old", "medium", subject, owner,
                      f"{age.days} days old, over the rotation age of {thresholds.rotation.days} days ({identity})",
                      f"gatehouse key rotate {subject[4:]}")


def _grant_findings(policy: CompiledPolicy, view: IdentityView, used: set[str], owner: str,
                    thresholds: Thresholds) -> Iterator[Finding]:
    for grant in policy.grants_for(view):
        unused = sorted(set(grant.aliases) - used)
        if not unused:
            continue
        kept = sorted(set(grant.aliases) & used)
        suggestion = (f"narrow it to {', '.join(kept)} (or scope its keys: --scope {' --scope '.join(kept)})"
                      if kept else "remove the identity from this grant")
        yield Finding("grant_unused", "low", f"identity:{view.name}", owner,
                      f"grant {grant.name!r} allows {', '.join(unused)}, not called in {thresholds.unused.days} days",
                      suggestion)


# -- credential report --------------------------------------------------------------------

REPORT_COLUMNS = ("key_id", "identity", "owner", "created_at", "last_used_at", "last_model", "expires_at", "status")


def credential_report(db: Database) -> list[dict[str, Any]]:
    now = utcnow()
    with db.read() as session:
        rows = session.execute(
            select(Credential.id, Identity.name, Person.email, Credential.created_at, Credential.last_used_at,
                   Credential.last_model, Credential.expires_at, Credential.status, Identity.status)
            .join(Identity, Credential.identity_id == Identity.id).join(Person, Identity.owner_id == Person.id)
            .order_by(Identity.name, Credential.created_at)).all()
    report = []
    for key_id, identity, owner, created, used, model, expires, status, identity_status in rows:
        expires = as_utc(expires)
        if status == "active" and expires > now and identity_status != "active":
            status = f"active, identity {identity_status}"  # the key is refused while its identity is not active
        report.append({"key_id": key_id, "identity": identity, "owner": owner,
                       "created_at": as_utc(created).isoformat(),
                       "last_used_at": as_utc(used).isoformat() if used else None, "last_model": model,
                       "expires_at": expires.isoformat(),
                       "status": "expired" if status == "active" and expires <= now else status})
    return report


def as_csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({column: "" if row.get(column) is None else _csv_safe(row[column]) for column in columns})
    return out.getvalue()


def _csv_safe(value: object) -> str:
    # Cells starting with = + - @ are formulas in spreadsheets (CSV injection); names come from users.
    text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


__all__ = ["Finding", "Thresholds", "as_csv", "compute_findings", "credential_report"]

"""The inventory: every identity and credential in the inference path, with its owner.

Three kinds of rows: workload identities (the callers), the credentials Gatehouse itself uses
towards deployments (from the active policy: references only, never values), and the
credentials that reach admin or export endpoints (the leak-report token, GitHub's scanning
keys, the notification webhook), read from this process's environment.
"""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import aliased

from gatehouse.core.clock import as_utc, utcnow
from gatehouse.core.config import Settings
from gatehouse.identity.admin_keys import admin_principals
from gatehouse.identity.view import IdentityView
from gatehouse.policy.compiled import CompiledPolicy
from gatehouse.store.db import Database
from gatehouse.store.models import Credential, Identity, Person

COLUMNS = ("kind", "name", "owner", "backup_owner", "team", "environment", "purpose", "grants", "aliases",
           "created_at", "last_used_at", "expires_at", "active_keys", "status", "reference")


def _blank(kind: str, name: str, **values: object) -> dict[str, Any]:
    return {column: None for column in COLUMNS} | {"kind": kind, "name": name} | values


def workload_rows(db: Database, policy: CompiledPolicy | None) -> list[dict[str, Any]]:
    owner, backup = aliased(Person), aliased(Person)
    now = utcnow()
    with db.read() as session:
        identities = session.execute(
            select(Identity.id, Identity.name, owner.email, backup.email, Identity.team, Identity.environment,
                   Identity.purpose, Identity.labels, Identity.created_at, Identity.status)
            .join(owner, Identity.owner_id == owner.id).outerjoin(backup, Identity.backup_owner_id == backup.id)
            .order_by(Identity.name)).all()
        keys: dict[int, list[tuple[datetime, datetime | None, str]]] = defaultdict(list)  # expires, last used, status
        for identity_id, expires, used, status in session.execute(
                select(Credential.identity_id, Credential.expires_at, Credential.last_used_at, Credential.status)):
            keys[identity_id].append((as_utc(expires), as_utc(used), status))
    rows = []
    for ident_id, name, owner_email, backup_email, team, environment, purpose, labels, created, status in identities:
        mine = keys.get(ident_id, [])
        active = [k for k in mine if k[2] == "active" and k[0] > now]
        used = max((k[1] for k in mine if k[1] is not None), default=None)
        grants: list[str] = []
        aliases: list[str] = []
        if policy is not None:
            view = IdentityView.of(name, team, environment, labels)
            grants = [grant.name for grant in policy.grants_for(view)]
            aliases = sorted(policy.allowed_aliases(view))
        rows.append(_blank(
            "workload-identity", name, owner=owner_email, backup_owner=backup_email, team=team,
            environment=environment, purpose=purpose, grants=grants, aliases=aliases,
            created_at=as_utc(created).isoformat(), last_used_at=used.isoformat() if used else None,
            expires_at=max(k[0] for k in active).isoformat() if active else None, active_keys=len(active),
            status=status))
    return rows


def deployment_credential_rows(policy: CompiledPolicy | None) -> list[dict[str, Any]]:
    rows = []
    for name, deployment in sorted((policy.deployments if policy else {}).items()):
        credential = deployment.credential
        if credential is None:
            continue
        if credential.env:
            reference, present = f"env:{credential.env}", bool(os.environ.get(credential.env))
        else:
            reference, present = f"file:{credential.file}", Path(str(credential.file)).is_file()
        rows.append(_blank("deployment-credential", name, reference=reference,
                           status="resolvable here" if present else "not resolvable in this shell",
                           purpose=f"Gatehouse → {deployment.engine} at {deployment.url}"))
    return rows


def admin_credential_rows(settings: Settings) -> list[dict[str, Any]]:
    rows = [_blank("admin-credential", "leak-report-token", reference="env:GATEHOUSE_LEAK_REPORT_TOKEN",
                   purpose="authenticates secret scanners to POST /admin/leaks",
                   status="configured" if settings.leak_report_token else "not configured")]
    keys_file = os.environ.get("GATEHOUSE_GITHUB_SCANNING_KEYS")
    rows.append(_blank("admin-credential", "github-secret-scanning-keys",
                       reference=f"file:{keys_file}" if keys_file else "env:GATEHOUSE_GITHUB_SCANNING_KEYS",
                       purpose="GitHub's public keys, to verify its leak reports",
                       status="configured" if keys_file else "not configured"))
    webhook = settings.notify_webhook
    rows.append(_blank("export-credential", "notify-webhook", reference="env:GATEHOUSE_NOTIFY_WEBHOOK",
                       purpose=f"owner notifications to {urlsplit(webhook).hostname}" if webhook else "owner notifications",
                       status="configured" if webhook else "not configured"))
    return rows


def admin_principal_rows(db: Database) -> list[dict[str, Any]]:
    return [_blank("admin-principal", row["email"], owner=row["email"], team=row["team"], grants=row["roles"],
                   purpose="roles: " + (", ".join(row["roles"]) or "none"), active_keys=row["active_keys"],
                   expires_at=row["expires_at"], last_used_at=row["last_used_at"], status=row["status"])
            for row in admin_principals(db)]


def inventory(db: Database, policy: CompiledPolicy | None, settings: Settings) -> list[dict[str, Any]]:
    return (workload_rows(db, policy) + deployment_credential_rows(policy) + admin_principal_rows(db)
            + admin_credential_rows(settings))

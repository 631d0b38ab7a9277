"""Findings, the credential report and the inventory, from a store with known history, on
SQLite and on a real PostgreSQL server."""


from datetime import timedelta

import pytest
from sqlalchemy import insert, update

from gatehouse.core import clock
from gatehouse.core.config import Settings
from gatehouse.identity import bootstrap, governance, lifecycle, service
from gatehouse.oversight.findings import REPORT_COLUMNS, Thresholds, as_csv, compute_findings, credential_report
from gatehouse.oversight.inventory import inventory
from gatehouse.policy.compiled import CompiledPolicy
from gatehouse.policy.loader import load_policy_text
from gatehouse.store.models import Credential, DecisionRecord, Identity

ACTOR = "person:root@example.com"  # the bootstrapped identity-admin
PEPPER = b"pepper"
POLICY = CompiledPolicy(load_policy_text("""\
version: 1
deployments:
  mock: {engine: openai, url: "http://127.0.0.1:9/v1", model: m, credential: {env: TEST_UNSET_UPSTREAM_CREDENTIAL}}
aliases:
  chat: {route: [mock]}
  code: {route: [mock]}
  vision: {route: [mock]}
grants:
  - {name: everything, subjects: [{team: platform}], aliases: [chat, code, vision]}
  - {name: chat-only, subjects: [{identity: idle}], aliases: [chat]}
"""))


def age(db, model, key, **values):
    with db.write() as session:
        session.execute(update(model).where(model.id == key).values(**values))


@pytest.fixture
def history(db):
    now = clock.utcnow()
    bootstrap.bootstrap(db, "local:init", "root@example.com", pepper=PEPPER, ttl=timedelta(hours=1))
    for email in ("alice@example.com", "bob@example.com", "carol@example.com"):
        service.add_person(db, ACTOR, email, team="platform")
    governance.change_role(db, ACTOR, "carol@example.com", "identity-admin", True)
    service.create_identity(db, ACTOR, "busy", "alice@example.com", backup_owner_email="bob@example.com")
    service.create_identity(db, ACTOR, "idle", "alice@example.com", team="other", backup_owner_email="bob@example.com")
    # a team other than its owner's selects grants: another identity-admin approves it (issue 14)
    governance.decide_identity(db, "person:carol@example.com", "idle", approve=True)
    service.create_identity(db, ACTOR, "new", "bob@example.com", backup_owner_email="alice@example.com")
    busy = service.issue_key(db, ACTOR, "busy", pepper=PEPPER, ttl=timedelta(days=30), max_ttl=timedelta(days=90))[0]
    stale = service.issue_key(db, ACTOR, "busy", pepper=PEPPER, ttl=timedelta(days=90), max_ttl=timedelta(days=90))[0]
    never = service.issue_key(db, ACTOR, "idle", pepper=PEPPER, ttl=timedelta(days=90), max_ttl=timedelta(days=90))[0]
    fresh = service.issue_key(db, ACTOR, "new", pepper=PEPPER, ttl=timedelta(days=90), max_ttl=timedelta(days=90))[0]
    for name in ("busy", "idle"):
        with db.write() as session:
            session.execute(update(Identity).where(Identity.name == name).values(created_at=now - timedelta(days=200)))
    age(db, Credential, busy.id, created_at=now - timedelta(days=100), expires_at=now + timedelta(days=5),
        last_used_at=now - timedelta(hours=1), last_model="chat")
    age(db, Credential, stale.id, created_at=now - timedelta(days=60), last_used_at=now - timedelta(days=45))
    age(db, Credential, never.id, created_at=now - timedelta(days=20))
    with db.write() as session:
        session.execute(insert(DecisionRecord), [
            {"request_id": f"req_{i}", "ts": now - timedelta(days=i), "identity": "busy", "key_id": busy.id,
             "endpoint": "chat/completions", "alias": alias, "deployment": "mock", "fallbacks": [],
             "policy_version": POLICY.version, "status": status, "stream": False, "latency_ms": 1.0}
            for i, (alias, status) in enumerate([("chat", 200), ("code", 200), ("vision", 403)])
        ] + [{"request_id": "req_old", "ts": now - timedelta(days=40), "identity": "busy", "key_id": busy.id,
              "endpoint": "chat/completions", "alias": "vision", "deployment": "mock", "fallbacks": [],
              "policy_version": POLICY.version, "status": 200, "stream": False, "latency_ms": 1.0}])
    return db, {"busy": busy.id, "stale": stale.id, "never": never.id, "fresh": fresh.id}


def kinds(found, subject):
    return sorted(f.kind for f in found if f.subject == subject)


def test_findings_from_known_history(history):
    db, keys = history
    found = compute_findings(db, POLICY, Thresholds(unused=timedelta(days=30)))
    assert kinds(found, f"key:{keys['busy']}") == ["key_near_expiry", "key_too_old"]
    assert kinds(found, f"key:{keys['stale']}") == ["key_unused"]
    assert kinds(found, f"key:{keys['never']}") == ["key_never_used"]
    assert kinds(found, f"key:{keys['fresh']}") == []  # a day-old unused key is not a finding yet
    # busy used chat and code in the window; vision only failed (403) or was used 40 days ago.
    grant = next(f for f in found if f.kind == "grant_unused" and f.subject == "identity:busy")
    assert "vision" in grant.detail and "chat" not in grant.detail and "narrow it to chat, code" in grant.action
    assert kinds(found, "identity:idle") == ["grant_unused", "identity_unused"]
    assert kinds(found, "identity:new") == []  # younger than the window: nothing to judge yet
    assert [f.severity for f in found] == sorted((f.severity for f in found), key=["high", "medium", "low"].index)


def test_use_through_a_revoked_key_still_counts_for_the_identity(history):
    db, keys = history
    service.revoke_key(db, ACTOR, keys["busy"])
    found = compute_findings(db, POLICY)
    assert "identity_unused" not in kinds(found, "identity:busy")
    report = {row["key_id"]: row for row in credential_report(db)}
    assert report[keys["busy"]]["status"] == "revoked"
    service.change_identity_status(db, ACTOR, "busy", "suspend")
    assert {row["key_id"]: row for row in credential_report(db)}[keys["stale"]]["status"] == "active, identity suspended"


def test_owner_problems_are_findings(history):
    db, keys = history
    service.create_identity(db, ACTOR, "solo", "alice@example.com")
    lifecycle.report_leak(db, ACTOR, keys["busy"])
    lifecycle.depart_person(db, ACTOR, "bob@example.com")  # new → alice; idle/busy lose their backup
    found = compute_findings(db, None)
    assert "needs_attention" in kinds(found, "identity:busy") and "no_backup_owner" in kinds(found, "identity:busy")
    assert "review_overdue" in kinds(found, "identity:new")  # reassigned: due for review now
    assert "no_backup_owner" in kinds(found, "identity:solo")
    lifecycle.depart_person(db, ACTOR, "alice@example.com")
    found = compute_findings(db, None)
    assert {"orphaned", "needs_attention"} <= set(kinds(found, "identity:solo"))


def test_credential_report_rows_and_csv(history):
    db, keys = history
    rows = {row["key_id"]: row for row in credential_report(db)}
    assert set(rows) == set(keys.values())
    assert rows[keys["busy"]]["last_model"] == "chat" and rows[keys["busy"]]["owner"] == "alice@example.com"
    assert rows[keys["never"]]["last_used_at"] is None and rows[keys["never"]]["status"] == "active"
    text = as_csv(list(rows.values()), REPORT_COLUMNS)
    assert text.splitlines()[0] == ",".join(REPORT_COLUMNS) and len(text.splitlines()) == 5


def test_csv_cells_cannot_be_formulas():
    text = as_csv([{"key_id": "=HYPERLINK(\"x\")", "identity": "+1", "owner": "@a", "status": "-2",
                    "last_model": "\tcmd"}], REPORT_COLUMNS)
    assert "'=HYPERLINK" in text and ",'+1," in text and ",'@a," in text and ",'-2" in text and "'\tcmd" in text


def test_inventory_lists_workloads_and_the_credentials_gatehouse_holds(history, monkeypatch):
    db, keys = history
    monkeypatch.delenv("GATEHOUSE_GITHUB_SCANNING_KEYS", raising=False)
    settings = Settings.from_env()
    settings = Settings(settings.home, settings.database_url, settings.policy_path, settings.max_key_ttl,
                        settings.max_body_bytes, notify_webhook="https://hooks.example.com/T0/secret-path",
                        leak_report_token="s3cr3t-report-token")
    rows = {row["name"]: row for row in inventory(db, POLICY, settings)}
    busy = rows["busy"]
    assert (busy["kind"], busy["owner"], busy["backup_owner"], busy["active_keys"]) == (
        "workload-identity", "alice@example.com", "bob@example.com", 2)
    assert busy["grants"] == ["everything"] and busy["aliases"] == ["chat", "code", "vision"]
    assert rows["idle"]["aliases"] == ["chat"] and rows["idle"]["last_used_at"] is None
    assert rows["mock"]["kind"] == "deployment-credential"
    assert rows["mock"]["reference"] == "env:TEST_UNSET_UPSTREAM_CREDENTIAL"
    assert rows["mock"]["status"] == "not resolvable in this shell"
    assert rows["leak-report-token"]["status"] == "configured" and "s3cr3t" not in str(rows)
    assert rows["notify-webhook"]["purpose"].endswith("hooks.example.com")  # never the path, which may hold a secret
    assert "secret-path" not in str(rows)

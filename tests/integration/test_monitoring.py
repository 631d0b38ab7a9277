"""Thresholds → escalation → incidents, on SQLite and on a real PostgreSQL server: usage counts
from two workers add up, a crossed threshold opens one incident per subject, its ladder notifies,
suspends the identity's keys and pages on time unless someone acknowledged it, and people close it."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from gatehouse.audit import log as audit_log
from gatehouse.authz import Forbidden
from gatehouse.core.config import Settings
from gatehouse.core.decision import RequestRecord
from gatehouse.core.errors import Conflict, Unauthenticated
from gatehouse.identity import bootstrap, governance, service
from gatehouse.monitoring import incidents
from gatehouse.monitoring.evaluate import evaluate, quantile
from gatehouse.monitoring.usage import UsageRollup
from gatehouse.policy.loader import PolicyError, load_policy_text
from gatehouse.runtime.keytable import KeyTable
from gatehouse.store.models import AuditEntry, Identity, UsageMinute

from helpers import Receiver

PEPPER = b"pepper"
ROOT = "person:root@example.com"  # the bootstrapped identity-admin
OLIVE, PETE = "person:olive@example.com", "person:pete@example.com"
NOW = datetime(2026, 11, 24, 12, 0, 30, tzinfo=UTC)
ROUTING_KEY = "pager-routing-key-secret"


@pytest.fixture
def hooks():
    webhook, pager = Receiver(), Receiver()
    yield webhook, pager
    webhook.close()
    pager.close()


@pytest.fixture
def org(db, settings, hooks):
    bootstrap.bootstrap(db, "local:init", "root@example.com", pepper=PEPPER, ttl=timedelta(hours=1))
    for name in ("olive", "pete", "owner"):
        service.add_person(db, ROOT, f"{name}@example.com", team="platform")
    governance.change_role(db, ROOT, "pete@example.com", "identity-admin", True)
    governance.change_role(db, PETE, "olive@example.com", "operator", True)
    for name in ("app-a", "app-b"):
        service.create_identity(db, ROOT, name, "owner@example.com", environment="dev",
                                exempt_environments=frozenset({"dev"}))
    webhook, pager = hooks
    return replace(settings, notify_webhook=webhook.url, pager_url=pager.url, pager_routing_key=ROUTING_KEY)


def thresholds(text: str):
    policy = ("version: 1\ndeployments:\n  d1: {engine: openai, url: 'http://127.0.0.1:9/v1', model: m}\n"
              "  d2: {engine: openai, url: 'http://127.0.0.1:9/v1', model: m}\n"
              "aliases:\n  chat: {route: [d1, d2]}\ngrants: []\nmonitoring:\n  thresholds:\n" + text)
    return load_policy_text(policy).document.monitoring.thresholds


BLOCK_RATE = thresholds("""\
    - id: block-rate
      metric: block_rate
      per: identity
      above: 0.05
      window: 10m
      escalate:
        - {after: 0m, action: notify}
        - {after: 5m, action: suspend_keys}
        - {after: 15m, action: page}
""")


def record(identity="app-a", alias="chat", status=200, error_code=None, deployment="d1", fallbacks=(), latency_ms=100.0,
           guardrails=None):
    return RequestRecord("req_test", NOW, "chat/completions", "sha256:test", identity=identity, alias=alias,
                         status=status, error_code=error_code, deployment=deployment, fallbacks=list(fallbacks),
                         latency_ms=latency_ms, guardrails=guardrails)


def traffic(db, worker, records, at=NOW):
    rollup = UsageRollup(worker)
    for one in records:
        rollup.observe(one, now=at.timestamp())
    rollup.flush(db)


def blocked(identity):
    return record(identity, status=400, error_code="guardrail_blocked", deployment=None,
                  guardrails=[{"rule": "secrets.aws_access_key_id", "action": "block", "shadow": False}])


def run(db, settings, checks=BLOCK_RATE, at=NOW):
    return evaluate(db, checks, "sha256:test", settings, now=at)


def actions(db, target):
    with db.read() as session:
        return [entry.action for entry in session.execute(
            select(AuditEntry).where(AuditEntry.target == target).order_by(AuditEntry.seq)).scalars()]


def test_a_crossed_threshold_climbs_its_ladder_until_closed(db, org, hooks):
    webhook, pager = hooks
    # Two workers each see part of app-a's traffic: 3 + 3 blocked of 40 (15%). app-b: 1 of 40.
    traffic(db, "host:1", [blocked("app-a")] * 3 + [record("app-a")] * 17 + [blocked("app-b")] + [record("app-b")] * 19)
    traffic(db, "host:2", [blocked("app-a")] * 3 + [record("app-a")] * 17 + [record("app-b")] * 20)
    _, key = service.issue_key(db, ROOT, "app-a", pepper=PEPPER, ttl=timedelta(days=1), max_ttl=timedelta(days=90))

    opened = run(db, org)
    assert len(opened) == 1
    incident = incidents.get_incident(db, opened[0])
    assert (incident["subject"], incident["status"], incident["value"]) == ("app-a", "open", 0.15)
    assert "block_rate 0.15 > 0.05 over 10m (40 observed" in incident["condition"]
    assert [(s["action"], s["outcome"]) for s in incident["steps"]] == [("notify", "delivered")]
    assert webhook.received[-1]["event"] == "incident.notify" and webhook.received[-1]["incident"] == opened[0]
    assert run(db, org, at=NOW + timedelta(seconds=30)) == []  # the same incident, not a second one

    keys = KeyTable(PEPPER)
    keys.refresh(db)
    keys.authenticate(f"Bearer {key}")
    run(db, org, at=NOW + timedelta(minutes=5))  # still breaching: the identity's keys stop working
    with db.read() as session:
        identity = session.execute(select(Identity).where(Identity.name == "app-a")).scalar_one()
        assert identity.status == "suspended" and opened[0] in identity.attention
    keys.refresh(db)
    with pytest.raises(Unauthenticated):
        keys.authenticate(f"Bearer {key}")
    assert pager.received == []

    run(db, org, at=NOW + timedelta(minutes=9, seconds=59))
    assert pager.received == []
    traffic(db, "host:1", [blocked("app-a")] * 4 + [record("app-a")] * 20, at=NOW + timedelta(minutes=6))  # still breaching
    run(db, org, at=NOW + timedelta(minutes=15))
    trigger = pager.received[-1]
    assert (trigger["event_action"], trigger["dedup_key"], trigger["routing_key"]) == ("trigger", opened[0], ROUTING_KEY)
    assert [s["action"] for s in incidents.get_incident(db, opened[0])["steps"]] == ["notify", "suspend_keys", "page"]

    with pytest.raises(Forbidden):
        incidents.close(db, PETE, opened[0], "not mine to close", org)  # identity-admin, not operator
    closed = incidents.close(db, OLIVE, opened[0], "key leaked into a test fixture; rotated", org)
    assert closed["status"] == "closed" and closed["closed_by"] == OLIVE
    assert pager.received[-1]["event_action"] == "resolve"
    with pytest.raises(Conflict):
        incidents.close(db, OLIVE, opened[0], "again", org)
    assert actions(db, f"incident:{opened[0]}") == [
        "incident.open", "incident.escalate", "incident.escalate", "incident.escalate", "incident.close"]
    assert ROUTING_KEY not in json.dumps([e for e in webhook.received]) and ROUTING_KEY not in str(
        incidents.get_incident(db, opened[0]))
    with db.read() as session:
        assert audit_log.verify(session).ok


def test_acknowledged_incidents_stop_climbing(db, org, hooks):
    webhook, pager = hooks
    traffic(db, "host:1", [blocked("app-a")] * 5 + [record("app-a")] * 20)
    [opened] = run(db, org)
    with pytest.raises(Forbidden):
        incidents.acknowledge(db, PETE, opened, None, org)
    incidents.acknowledge(db, OLIVE, opened, "looking", org)
    run(db, org, at=NOW + timedelta(minutes=20))
    with db.read() as session:
        assert session.execute(select(Identity.status).where(Identity.name == "app-a")).scalar_one() == "active"
    assert [s["action"] for s in incidents.get_incident(db, opened)["steps"]] == ["notify"] and pager.received == []
    assert [i["id"] for i in incidents.list_incidents(db)] == [opened]
    assert incidents.list_incidents(db, "acknowledged")[0]["acknowledged_by"] == OLIVE


def test_closing_while_it_still_breaches_opens_a_new_incident(db, org):
    traffic(db, "host:1", [blocked("app-a")] * 5 + [record("app-a")] * 20)
    [first] = run(db, org)
    incidents.close(db, OLIVE, first, "thought it was fixed", org)
    [second] = run(db, org, at=NOW + timedelta(seconds=20))
    assert second != first
    assert run(db, org, at=NOW + timedelta(minutes=11)) == []  # the window moved past the traffic
    assert incidents.get_incident(db, second)["breaching"] is False


def test_too_few_requests_prove_nothing(db, org):
    traffic(db, "host:1", [blocked("app-a")] * 5 + [record("app-a")] * 5)  # 50% of 10 requests
    assert run(db, org) == []


def test_latency_upstream_errors_and_jumps_over_the_baseline(db, org):
    checks = thresholds("""\
    - {id: slow-chat, metric: latency_p99, per: alias, only: [chat], above: 3, window: 10m}
    - {id: d1-failing, metric: upstream_error_rate, per: deployment, above: 0.02, window: 10m, min_requests: 10}
    - id: hits-jump
      metric: guardrail_hits
      per: gateway
      window: 10m
      baseline: 1h
      factor: 3
""")
    hit = [{"rule": "pii.email", "action": "redact", "shadow": False}]
    earlier = NOW - timedelta(minutes=40)  # the hour before the window: 12 hits, 2 per 10 minutes
    traffic(db, "host:1", [record(guardrails=hit)] * 12 + [record()] * 30, at=earlier)
    fast = [record(latency_ms=200)] * 95
    slow = [record(latency_ms=8000)] * 5  # p99 lands among these
    failover = [record(deployment="d2", fallbacks=["d1=connect"])] * 3
    traffic(db, "host:1", fast + slow + failover + [record(guardrails=hit)] * 7)
    opened = {incidents.get_incident(db, i)["threshold"]: incidents.get_incident(db, i) for i in run(db, org, checks)}
    assert set(opened) == {"slow-chat", "d1-failing", "hits-jump"}
    assert 7.5 <= opened["slow-chat"]["value"] <= 10 and opened["slow-chat"]["subject"] == "chat"
    # d1 answered 107 and failed 3
    assert opened["d1-failing"]["subject"] == "d1" and opened["d1-failing"]["value"] == pytest.approx(3 / 110)
    assert opened["hits-jump"]["value"] == 7 and opened["hits-jump"]["limit"] == pytest.approx(6)


def test_one_evaluation_at_a_time(db, org):
    traffic(db, "host:1", [blocked("app-a")] * 5 + [record("app-a")] * 20)
    assert evaluate(db, BLOCK_RATE, "sha256:test", org, now=NOW, every=15) is not None
    assert evaluate(db, BLOCK_RATE, "sha256:test", org, now=NOW + timedelta(seconds=5), every=15) is None
    assert evaluate(db, BLOCK_RATE, "sha256:test", org, now=NOW + timedelta(seconds=15), every=15) == []


def test_a_window_covers_every_minute_it_touches(db, org):
    checks = thresholds("    - {id: burst, metric: requests, above: 50, window: 1m}\n")
    traffic(db, "host:1", [record()] * 100, at=NOW - timedelta(seconds=45))  # the previous minute, 45 s ago
    assert len(run(db, org, checks)) == 1


def test_a_jump_needs_a_baseline_to_jump_from(db, org):
    checks = thresholds("    - {id: jump, metric: error_rate, per: alias, window: 10m, baseline: 1h, factor: 5}\n")
    traffic(db, "host:1", [record(status=502, error_code="upstream_unavailable")] + [record()] * 99)
    assert run(db, org, checks) == []  # no history: nothing to compare with
    traffic(db, "host:2", [record()] * 100, at=NOW - timedelta(minutes=30))  # an hour before with no errors
    assert len(run(db, org, checks, at=NOW + timedelta(seconds=20))) == 1


def test_a_failed_page_is_sent_again_and_a_new_breach_restarts_the_ladder_clock(db, org, hooks):
    webhook, pager = hooks
    checks = thresholds("""\
    - id: leak
      metric: block_rate
      per: identity
      above: 0.05
      window: 10m
      escalate: [{after: 0m, action: page}, {after: 5m, action: suspend_keys}]
""")
    pager.status = 503
    traffic(db, "host:1", [blocked("app-a")] * 5 + [record("app-a")] * 20)
    [opened] = run(db, org, checks)
    assert incidents.get_incident(db, opened)["steps"][0]["outcome"] == "failed: HTTP 503"
    pager.status = 202
    run(db, org, checks, at=NOW + timedelta(seconds=30))
    assert len(pager.received) == 1  # not yet: retried a minute after the failure
    run(db, org, checks, at=NOW + timedelta(minutes=1, seconds=5))
    step = incidents.get_incident(db, opened)["steps"][0]
    assert (step["outcome"], step["tries"], len(pager.received)) == ("delivered", 2, 2)
    run(db, org, checks, at=NOW + timedelta(minutes=11))  # the window has moved past the traffic: clear
    assert incidents.get_incident(db, opened)["breaching"] is False
    traffic(db, "host:1", [blocked("app-a")] * 5 + [record("app-a")] * 20, at=NOW + timedelta(minutes=30))
    run(db, org, checks, at=NOW + timedelta(minutes=30, seconds=10))  # crossed again, 30 minutes after opening
    with db.read() as session:  # the suspension is 5 minutes after this breach began, not overdue at once
        assert session.execute(select(Identity.status).where(Identity.name == "app-a")).scalar_one() == "active"
    run(db, org, checks, at=NOW + timedelta(minutes=35, seconds=10))
    with db.read() as session:
        assert session.execute(select(Identity.status).where(Identity.name == "app-a")).scalar_one() == "suspended"


def test_names_nobody_defined_and_busy_deployments_are_not_counted_against_anyone(db, org):
    rollup = UsageRollup("host:1", defined=lambda alias: alias == "chat")
    for _ in range(30):
        rollup.observe(record(alias="made-up-" + "x" * 30, status=400, error_code="invalid_value", deployment=None),
                       now=NOW.timestamp())
        rollup.observe(record(deployment="d2", fallbacks=["d1=busy"]), now=NOW.timestamp())
        rollup.observe(record(deployment="d2", fallbacks=["d1=data_class"]), now=NOW.timestamp())
    rollup.flush(db)
    with db.read() as session:
        subjects = set(session.execute(select(UsageMinute.scope, UsageMinute.subject)).all())
        d1 = session.execute(select(UsageMinute.upstream_errors).where(UsageMinute.subject == "d1")).scalar_one_or_none()
    assert ("alias", "chat") in subjects and not any(s.startswith("made-up") for _, s in subjects)
    assert d1 is None  # a full deployment, or one not allowed the data, is not a failing one


def test_quantile_interpolates_within_a_bucket():
    from gatehouse.monitoring.usage import LATENCY_BUCKETS

    buckets = [0] * (len(LATENCY_BUCKETS) + 1)
    buckets[LATENCY_BUCKETS.index(1.0)] = 100  # all between 0.75 and 1.0
    assert quantile(buckets, 0.5) == pytest.approx(0.875)


@pytest.mark.parametrize("text, message", [
    ("    - {id: x, metric: block_rate, per: alias, above: 0.1, escalate: [{action: suspend_keys}]}\n", "per: identity"),
    ("    - {id: x, metric: block_rate, above: 5}\n", "share between 0 and 1"),
    ("    - {id: x, metric: requests, per: alias, only: [nope], above: 5}\n", "unknown alias 'nope'"),
    ("    - {id: x, metric: requests, factor: 3}\n", "go together"),
    ("    - {id: x, metric: requests, window: 2d, above: 1}\n", "at most 24h"),
    ("    - {id: x, metric: requests, above: 1}\n    - {id: x, metric: requests, above: 2}\n", "unique"),
])
def test_thresholds_that_cannot_work_are_refused(text, message):
    with pytest.raises(PolicyError) as refused:
        thresholds(text)
    assert message in str(refused.value.problems)


def test_settings_never_show_the_pager_key(org):
    assert ROUTING_KEY not in repr(org)


def test_settings_from_environment(monkeypatch, home):
    monkeypatch.setenv("GATEHOUSE_PAGER_URL", "http://pager.example/v2/enqueue")
    monkeypatch.setenv("GATEHOUSE_MONITOR_INTERVAL", "5")
    settings = Settings.from_env()
    assert settings.pager_url == "http://pager.example/v2/enqueue" and settings.monitor_interval == 5


def test_a_plan_shows_threshold_changes_and_weakening_one_needs_acknowledging():
    from gatehouse.policy.plan import plan

    base = ("version: 1\ndeployments:\n  d1: {engine: openai, url: 'http://127.0.0.1:9/v1', model: m}\n"
            "aliases:\n  chat: {route: [d1]}\ngrants: []\n")
    watched = base + "monitoring:\n  thresholds:\n    - {id: errors, metric: error_rate, above: 0.02}\n"
    before = load_policy_text(watched).document
    added = plan(load_policy_text(base).document, before, [])
    assert [m.subject for m in added.monitoring] == ["threshold errors"] and added.widenings == []
    looser = plan(before, load_policy_text(watched.replace("0.02", "0.5")).document, [])
    assert looser.widenings == ["monitoring: threshold errors metric=error_rate, above=0.02 → metric=error_rate, above=0.5"]
    assert plan(before, load_policy_text(base).document, []).widenings[0].startswith("monitoring: threshold errors")
    assert load_policy_text(base).version == load_policy_text(base + "monitoring: {}\n").version  # old hashes kept

"""Policy change control through a real gateway with two workers: people drive it over the admin
API with their own admin keys; an applied version reaches every worker while a stream that
started on the old one finishes on it."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from openai import OpenAI

from gatehouse.identity import governance, service
from gatehouse.policy import workers as policy_workers
from gatehouse.policy.loader import load_policy_text

from gateway_support import ACTOR, Deployment, wait_until_accepted
from helpers import Receiver, own_admin_key, start_gateway

PEPPER = b"e2e-pepper"
METRICS_TOKEN = "policy-metrics-token"  # /metrics answers whoever sends it (GATEHOUSE_METRICS_TOKEN)


def policy(mock: str, deployment: str, extra_grant: str = "") -> str:
    return (f"version: 1\ndeployments:\n  {deployment}: {{engine: openai, url: '{mock}/ok/v1', model: m}}\n"
            f"aliases:\n  chat: {{route: [{deployment}]}}\n"
            f"grants:\n  - {{name: dev-chat, subjects: [{{environment: dev}}], aliases: [chat]}}\n{extra_grant}")


@pytest.fixture(scope="module")
def hook():
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, shared_models_dir, mock, logs, hook):
    home = Deployment(tmp_path_factory.mktemp("policy") / "home", policy(mock.url, "mock-a"), shared_models_dir,
                      GATEHOUSE_NOTIFY_WEBHOOK=hook.url,  # break-glass needs someone to hear of it
                      GATEHOUSE_METRICS_TOKEN=METRICS_TOKEN)
    db = home.db
    for name in ("alice", "bob", "carol", "dave"):
        service.add_person(db, ACTOR, f"{name}@example.com", team="platform")
    governance.change_role(db, ACTOR, "alice@example.com", "identity-admin", True)
    governance.change_role(db, "person:alice@example.com", "bob@example.com", "policy-admin", True)
    governance.change_role(db, "person:alice@example.com", "carol@example.com", "approver", True)
    governance.change_role(db, "person:alice@example.com", "bob@example.com", "approver", True)  # never for his own
    keys = {name: own_admin_key(db, ACTOR, f"{name}@example.com", PEPPER) for name in ("bob", "carol", "dave")}
    home.identity("app")
    keys["workload"] = home.key("app")
    gateway = start_gateway(home.env, logs, workers=2, name="policy-gateway")
    wait_until_accepted(gateway, keys["workload"])
    yield home, gateway, keys
    gateway.stop()


def call(gateway, method, path, key, body=None):
    return httpx.request(method, f"{gateway.url}/admin/policy{path}", json=body,
                         headers={"authorization": f"Bearer {key}"}, timeout=30)


def live_workers(home) -> list[dict]:
    return [w for w in policy_workers.status(home.db)["workers"] if w["state"] != "gone"]


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_apply_reaches_every_worker_without_dropping_a_stream(setup, mock):
    home, gateway, keys = setup
    wait_for(lambda: len(live_workers(home)) == 2, what="two worker heartbeats")
    assert not policy_workers.status(home.db)["drift"]
    new = load_policy_text(policy(mock.url, "mock-b"))
    httpx.post(f"{mock.url}/_mock/config", json={"tokens_per_second": 10})
    client = OpenAI(base_url=f"{gateway.url}/v1", api_key=keys["workload"], max_retries=0, timeout=60)
    received: list[str] = []
    first = threading.Event()
    outcome: dict = {}

    def stream() -> None:
        with client.chat.completions.with_streaming_response.create(
                model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=20, stream=True) as response:
            outcome["headers"] = dict(response.headers)
            for chunk in response.parse():
                if chunk.choices and chunk.choices[0].delta.content:
                    received.append(chunk.choices[0].delta.content)
                    first.set()

    try:
        streamer = threading.Thread(target=stream)
        streamer.start()
        assert first.wait(10)
        proposed = call(gateway, "POST", "/versions", keys["bob"], {"source": new.text, "message": "move to mock-b"})
        assert proposed.status_code == 201 and proposed.json()["version"] == new.version
        ref = new.version[7:19]
        plan = call(gateway, "GET", f"/versions/{ref}/plan", keys["carol"]).json()
        assert plan["from"] == home.policy_version and plan["no_new_access"] is False  # mock-b starts receiving data
        approval = call(gateway, "POST", f"/versions/{ref}/approve", keys["carol"],
                        {"plan_id": plan["plan_id"], "acknowledge": [w["id"] for w in plan["widenings"]]})
        assert approval.status_code == 200, approval.text
        applied_at = time.monotonic()
        applied = call(gateway, "POST", f"/versions/{ref}/apply", keys["bob"])
        assert applied.status_code == 200 and applied.json()["kind"] == "apply"
        wait_for(lambda: all(w["policy_version"] == new.version for w in live_workers(home)), what="both workers")
        enforced_after = time.monotonic() - applied_at
        assert enforced_after < 5
        assert streamer.is_alive()  # the stream that began on the old version is still running …
        streamer.join(30)
    finally:
        httpx.post(f"{mock.url}/_mock/config", json={"tokens_per_second": 0})
    assert len(received) == 20  # … and finished whole, on the old version's engine
    assert outcome["headers"]["x-gatehouse-deployment"] == "mock-a"
    assert outcome["headers"]["x-gatehouse-policy-version"] == home.policy_version
    for _ in range(4):  # every worker answers on the new version
        response = client.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        assert response.headers["x-gatehouse-deployment"] == "mock-b"
        assert response.headers["x-gatehouse-policy-version"] == new.version
    health = httpx.get(f"{gateway.url}/healthz").json()
    assert health["policy_version"] == new.version and health["policy_current"] is True and health["worker_pid"] > 0
    status = call(gateway, "GET", "/status", keys["carol"]).json()
    assert status["active"] == new.version and not status["drift"] and len(
        [w for w in status["workers"] if w["state"] == "in sync"]) == 2


def test_the_admin_api_enforces_roles_and_separation_of_duties(setup, mock):
    home, gateway, keys = setup
    text = policy(mock.url, "mock-c", "  - {name: platform-chat, subjects: [{team: platform}], aliases: [chat]}\n")
    version = load_policy_text(text).version
    assert call(gateway, "POST", "/versions", keys["carol"], {"source": text, "message": "x"}).status_code == 403
    assert call(gateway, "POST", "/versions", keys["workload"], {"source": text, "message": "x"}).status_code in (401, 403)
    assert call(gateway, "GET", "/versions", keys["dave"]).status_code == 403  # no role
    deep = "version: 1\ngrants: " + "[" * 100_000 + "]" * 100_000  # crashes a C YAML composer
    assert call(gateway, "POST", "/versions", keys["dave"], {"source": deep, "message": "x"}).status_code == 403
    refused = call(gateway, "POST", "/versions", keys["bob"], {"source": deep, "message": "x"})
    message = refused.json()["error"]["message"]  # ours, or libyaml's own limit (PyYAML 6.0.4 and later)
    assert refused.status_code == 400 and ("nested more than 64 levels" in message or "maximum nesting depth" in message)
    bomb = "version: 1\nx0: &x0 [a]\nx1: &x1 [*x0, *x0]\n"
    assert "anchors and aliases" in call(gateway, "POST", "/versions", keys["bob"], {"source": bomb, "message": "x"}).text
    bad = call(gateway, "POST", "/versions", keys["bob"], {"source": "version: 2\n", "message": "x"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_policy"
    assert call(gateway, "POST", "/versions", keys["bob"], {"source": text}).json()["error"]["param"] == "message"
    assert call(gateway, "POST", "/versions", keys["bob"], {"source": text, "message": "platform too"}).status_code == 201
    ref = version[7:19]
    plan = call(gateway, "GET", f"/versions/{ref}/plan", keys["carol"]).json()
    acks = [w["id"] for w in plan["widenings"]]
    stale = call(gateway, "POST", f"/versions/{ref}/approve", keys["carol"], {"plan_id": "plan-0", "acknowledge": acks})
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "stale_plan"
    partial = call(gateway, "POST", f"/versions/{ref}/approve", keys["carol"],
                   {"plan_id": plan["plan_id"], "acknowledge": acks[:-1]})
    assert partial.status_code == 403 and "not acknowledged" in partial.json()["error"]["message"]
    own = call(gateway, "POST", f"/versions/{ref}/approve", keys["bob"], {"plan_id": plan["plan_id"], "acknowledge": acks})
    assert own.status_code == 403 and "nobody approves their own change" in own.json()["error"]["message"]
    nul = call(gateway, "POST", f"/versions/{ref}/reject", keys["carol"], {"reason": "no\u0000"})
    assert nul.status_code == 400 and nul.json()["error"]["param"] == "reason"
    unapproved = call(gateway, "POST", f"/versions/{ref}/apply", keys["bob"])
    assert unapproved.status_code == 409 and unapproved.json()["error"]["code"] == "not_approved"
    assert call(gateway, "GET", "/versions/zz", keys["carol"]).status_code == 404
    garbage = httpx.post(f"{gateway.url}/admin/policy/rollback", content=b"{not json",
                         headers={"authorization": f"Bearer {keys['bob']}"})
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == "invalid_json"
    detail = call(gateway, "GET", f"/versions/{ref}", keys["carol"]).json()
    assert detail["state"] == "draft" and detail["author"] == "person:bob@example.com"


def test_reject_rollback_and_break_glass_over_the_admin_api(setup, mock, hook):
    home, gateway, keys = setup
    text = policy(mock.url, "mock-d")
    ref = call(gateway, "POST", "/versions", keys["bob"], {"source": text, "message": "to be rejected"}).json()["version"][7:19]
    rejected = call(gateway, "POST", f"/versions/{ref}/reject", keys["carol"], {"reason": "not now"})
    assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"
    active = policy_workers.status(home.db)["active"]
    moved = call(gateway, "POST", "/break-glass", keys["bob"], {"version": home.policy_version[7:19], "reason": "INC-1"})
    assert moved.status_code == 403 and "new or changed: mock-a" in moved.json()["error"]["message"]
    closed = policy(mock.url, "mock-b").split("grants:")[0] + "grants: []\n"  # everyone off chat, at once
    glass = call(gateway, "POST", "/break-glass", keys["bob"], {"source": closed, "reason": "INC-1", "ttl": "10m"})
    assert glass.status_code == 200 and glass.json()["kind"] == "break-glass", glass.text
    assert glass.json()["notification"] == "delivered" and hook.received[-1]["event"] == "policy.break_glass"
    assert call(gateway, "GET", "/status", keys["carol"]).json()["break_glass"] is True
    too_long = call(gateway, "POST", "/break-glass", keys["bob"], {"source": text, "reason": "INC-2", "ttl": "9h"})
    assert too_long.status_code == 400
    ended = call(gateway, "POST", "/rollback", keys["bob"], {"reason": "INC-1 over"})
    assert ended.status_code == 200 and ended.json()["version"] == active
    assert call(gateway, "POST", "/rollback", keys["carol"], {"reason": "x"}).status_code == 403


def test_metrics_add_up_every_worker(setup):
    from prometheus_client.parser import text_string_to_metric_families

    home, gateway, keys = setup

    def answered() -> float:
        text = httpx.get(f"{gateway.url}/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"}).text
        return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                   if sample.name == "gatehouse_requests_total" and sample.labels["gatehouse_identity"] == "app")

    before = answered()
    pids = set()
    for _ in range(16):  # a fresh connection each: the kernel hands them to either worker
        with httpx.Client() as fresh:
            fresh.post(f"{gateway.url}/v1/chat/completions", headers={"authorization": f"Bearer {keys['workload']}"},
                       json={"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
            pids.add(fresh.get(f"{gateway.url}/healthz").json()["worker_pid"])
    assert len(pids) == 2, "both workers should have answered"
    assert [answered() - before for _ in range(4)] == [16] * 4  # whichever worker answers the scrape

"""A threshold watched by a real gateway: blocked requests from one identity cross it, the
incident opens, the webhook hears of it, the identity's keys stop working, and an operator
acknowledges and closes it over the admin API."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from openai import OpenAI

from gatehouse.identity import governance, service

from gateway_support import ACTOR, Deployment, wait_until_accepted
from helpers import Receiver, own_admin_key, start_gateway

PEPPER = b"e2e-pepper"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


def policy(mock: str) -> str:
    return f"""\
version: 1
deployments:
  upstream: {{engine: openai, url: "{mock}/ok/v1", model: m}}
aliases:
  chat: {{route: [upstream]}}
grants:
  - {{name: dev, subjects: [{{environment: dev}}], aliases: [chat]}}
guardrails:
  default: standard
  profiles:
    standard:
      secrets: {{action: block}}
monitoring:
  thresholds:
    - id: leaky-identity
      metric: block_rate
      per: identity
      above: 0.2
      window: 10m
      min_requests: 5
      escalate:
        - {{after: 0m, action: notify}}
        - {{after: 0m, action: suspend_keys}}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory, shared_models_dir, mock, logs):
    webhook = Receiver()
    home = Deployment(tmp_path_factory.mktemp("monitoring") / "home", policy(mock.url), shared_models_dir,
                      GATEHOUSE_MONITOR_INTERVAL="0.5", GATEHOUSE_NOTIFY_WEBHOOK=webhook.url)
    for name in ("olive", "pete"):
        service.add_person(home.db, ACTOR, f"{name}@example.com", team="platform")
    governance.change_role(home.db, ACTOR, "pete@example.com", "identity-admin", True)
    governance.change_role(home.db, "person:pete@example.com", "olive@example.com", "operator", True)
    admin = {name: own_admin_key(home.db, ACTOR, f"{name}@example.com", PEPPER) for name in ("olive", "pete")}
    keys = {name: home.key(home.identity(name)) for name in ("leaky", "careful")}
    gateway = start_gateway(home.env, logs, name="monitoring-gateway")
    for key in keys.values():
        wait_until_accepted(gateway, key)
    yield home, gateway, keys, admin, webhook
    gateway.stop()
    webhook.close()


def admin_call(gateway, method, path, key, body=None):
    return httpx.request(method, f"{gateway.url}/admin/incidents{path}", json=body,
                         headers={"authorization": f"Bearer {key}"}, timeout=30)


def test_blocked_requests_open_an_incident_that_suspends_the_identity(setup):
    home, gateway, keys, admin, webhook = setup
    leaky = OpenAI(base_url=f"{gateway.url}/v1", api_key=keys["leaky"], max_retries=0, timeout=30)
    careful = OpenAI(base_url=f"{gateway.url}/v1", api_key=keys["careful"], max_retries=0, timeout=30)
    for _ in range(4):
        leaky.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hello"}], max_tokens=2)
        careful.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hello"}], max_tokens=2)
    for _ in range(3):
        with pytest.raises(openai.BadRequestError):
            leaky.chat.completions.create(model="chat", messages=[{"role": "user", "content": f"key {AWS_KEY}"}])

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            leaky.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hello"}], max_tokens=2)
        except openai.AuthenticationError:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the identity's keys were never suspended")
    careful.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hello"}], max_tokens=2)

    assert admin_call(gateway, "GET", "", keys["careful"]).status_code == 403  # a workload key is not an admin key
    listed = admin_call(gateway, "GET", "", admin["olive"]).json()["incidents"]
    assert [(i["threshold"], i["subject"], i["status"]) for i in listed] == [("leaky-identity", "leaky", "open")]
    incident = listed[0]
    assert [(s["action"], s["outcome"]) for s in incident["steps"]] == [("notify", "delivered"), ("suspend_keys", "suspended")]
    assert webhook.received[0]["incident"] == incident["id"] and AWS_KEY not in str(webhook.received)

    refused = admin_call(gateway, "POST", f"/{incident['id']}/acknowledge", admin["pete"], {})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    acked = admin_call(gateway, "POST", f"/{incident['id']}/acknowledge", admin["olive"], {"note": "on it"})
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
    no_note = admin_call(gateway, "POST", f"/{incident['id']}/close", admin["olive"], {})
    assert no_note.status_code == 400 and no_note.json()["error"]["param"] == "note"
    closed = admin_call(gateway, "POST", f"/{incident['id']}/close", admin["olive"], {"note": "test key pasted; rotated"})
    assert closed.json()["status"] == "closed" and closed.json()["closed_by"] == "person:olive@example.com"
    assert admin_call(gateway, "GET", "/inc-nope", admin["olive"]).status_code == 404

"""POST /admin/leaks through a real gateway: GitHub-signed and token-authenticated reports
revoke the key on every worker within a second and notify the owner's webhook."""

from __future__ import annotations

import base64
import hashlib
import json
import time

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from gatehouse.core.keyformat import PREFIX, checksum

from gateway_support import LEAK_REPORT_TOKEN

HELLO = {"model": "mock-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def signed(private_key, body: bytes, key_id: str = "test-key-1") -> dict[str, str]:
    signature = private_key.sign(body, ec.ECDSA(hashes.SHA256()))
    return {"github-public-key-identifier": key_id, "github-public-key-signature": base64.b64encode(signature).decode(),
            "content-type": "application/json"}


def refused_within(gateway, key: str, seconds: float = 1.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        response = httpx.post(f"{gateway.url}/v1/chat/completions", json=HELLO, headers={"authorization": f"Bearer {key}"})
        if response.status_code == 401:
            assert response.json()["error"]["code"] == "revoked_api_key"
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"the leaked key still worked {seconds}s after the report")


def test_a_github_signed_report_revokes_within_a_second_and_notifies(gateway, dev_key, fresh_key, mock_upstream,
                                                                      github_scanning_key, gateway_home):
    key = fresh_key()
    assert httpx.post(f"{gateway.url}/v1/chat/completions", json=HELLO,
                      headers={"authorization": f"Bearer {key}"}).status_code == 200
    fake_body = f"{PREFIX}{key[4:16]}_{'x' * 32}"
    matches = [
        {"token": key, "type": "gatehouse_api_key", "url": "https://github.com/acme/app/blob/main/.env",
         "source": "content"},
        {"token": fake_body + checksum(fake_body), "type": "gatehouse_api_key", "url": "", "source": "content"},
        {"token": "gth_not_a_key", "type": "gatehouse_api_key", "url": "", "source": "content"},
    ]
    body = json.dumps(matches).encode()
    response = httpx.post(f"{gateway.url}/admin/leaks", content=body, headers=signed(github_scanning_key[0], body))
    assert response.status_code == 200
    labels = [answer["label"] for answer in response.json()]
    assert labels == ["true_positive", "false_positive", "false_positive"]
    assert response.json()[0]["token_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in response.text
    refused_within(gateway, key)
    info = gateway_home.key_info(key[4:16])
    assert info["leaked_at"] is not None and info["status"] == "revoked"
    hooks = httpx.get(f"{mock_upstream.url}/_mock/webhook").json()
    event = next(h for h in reversed(hooks) if h.get("key_id") == key[4:16])
    assert event["event"] == "key.leaked" and event["owner"] == "owner@example.com"
    assert event["reported_by"] == "github-secret-scanning" and "github.com/acme" in event["source"]
    assert key not in json.dumps(hooks) and key not in gateway.log()


def test_a_token_authenticated_report(gateway, dev_key, fresh_key):
    key = fresh_key()
    response = httpx.post(f"{gateway.url}/admin/leaks", json=[{"token": key, "type": "t", "url": "https://x"}],
                          headers={"authorization": f"Bearer {LEAK_REPORT_TOKEN}"})
    assert response.status_code == 200 and response.json()[0]["label"] == "true_positive"
    refused_within(gateway, key)


@pytest.mark.parametrize("case, status, code", [
    ("workload key", 403, "admin_forbidden"),
    ("wrong token", 401, "invalid_report_credentials"),
    ("no credentials", 401, "invalid_report_credentials"),
    ("bad signature", 401, "invalid_signature"),
    ("unknown signing key", 401, "invalid_signature"),
    ("not an array", 400, "invalid_report"),
    ("not json", 400, "invalid_json"),
])
def test_bad_reports_are_refused(gateway, dev_key, github_scanning_key, case, status, code):
    body = json.dumps([{"token": dev_key, "type": "t"}]).encode()
    headers = {"authorization": f"Bearer {LEAK_REPORT_TOKEN}"}
    if case == "workload key":
        headers = {"authorization": f"Bearer {dev_key}"}
    elif case == "wrong token":
        headers = {"authorization": "Bearer nope"}
    elif case == "no credentials":
        headers = {}
    elif case == "bad signature":
        headers = signed(github_scanning_key[0], b"something else")
    elif case == "unknown signing key":
        headers = signed(github_scanning_key[0], body, key_id="other")
    elif case == "not an array":
        body = json.dumps({"token": dev_key}).encode()
    elif case == "not json":
        body = b"{nope"
    response = httpx.post(f"{gateway.url}/admin/leaks", content=body, headers=headers)
    assert response.status_code == status and response.json()["error"]["code"] == code
    # The dev key was in every refused report: it must still work.
    assert httpx.post(f"{gateway.url}/v1/chat/completions", json=HELLO,
                      headers={"authorization": f"Bearer {dev_key}"}).status_code == 200

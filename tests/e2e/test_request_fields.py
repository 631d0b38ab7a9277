"""The request model through a real gateway (issue 16): every field a caller can plant text in
is scanned before any engine sees it, the data-class header raises and never lowers, and no
odd body — deep, huge numbers, chunked, slow — is a 500 or a held connection."""

from __future__ import annotations

import base64
import json
import socket
import time
from typing import Any

import httpx
import pytest

from gatehouse.identity import governance, service

from gateway_support import ACTOR, Deployment, decision_record, mock_requests, wait_until_accepted
from helpers import start_gateway

EMAIL, AWS_KEY = "jane.doe@example.com", "AKIAIOSFODNN7EXAMPLE"
HEADER_TIMEOUT, BODY_TIMEOUT = 2, 2


def policy(mock: str) -> str:
    return f"""\
version: 1
deployments:
  cloud: {{engine: openai, url: "{mock}/ok/v1", model: m, location: cloud, data_classes: [public]}}
  onprem: {{engine: openai, url: "{mock}/ok/v1", model: m, location: on-prem,
           data_classes: [public, internal, confidential, restricted]}}
aliases:
  chat: {{route: [cloud, onprem]}}
  cloud-only: {{route: [cloud]}}
  engine-extras: {{route: [onprem], requests: {{extra_fields: [documents, chat_template]}}}}
  no-urls: {{route: [onprem], requests: {{remote_urls: false}}}}
  bounded: {{route: [onprem], requests: {{max_output_tokens: 256}}}}
grants:
  - {{name: dev, subjects: [{{environment: dev}}], aliases: [chat, cloud-only, engine-extras, no-urls, bounded],
     max_data_class: confidential}}
guardrails:
  default: standard
  profiles:
    standard:
      pii: {{action: redact, kinds: [email]}}
      secrets: {{action: block}}
      injection: {{action: block}}
    flagging:
      inherits: standard
      pii: {{action: flag}}
  assign:
    - {{identity: flag-app, profile: flagging}}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory, mock, logs):
    models = tmp_path_factory.mktemp("no-models")  # no embedded deployment here
    home = Deployment(tmp_path_factory.mktemp("fields") / "home", policy(mock.url), models,
                      GATEHOUSE_HEADER_TIMEOUT=str(HEADER_TIMEOUT), GATEHOUSE_BODY_TIMEOUT=str(BODY_TIMEOUT))
    service.add_person(home.db, ACTOR, "admin@example.com", team="security")
    governance.change_role(home.db, ACTOR, "admin@example.com", "identity-admin", True)
    admin = "person:admin@example.com"  # raises clearances (not the owner)
    keys = {name: home.key(home.identity(name, actor=admin, **extra)) for name, extra in
            (("app", {"data_clearance": "confidential"}), ("flag-app", {"data_clearance": "confidential"}),
             ("public-app", {"data_clearance": "public"}))}
    gateway = start_gateway(home.env, logs, name="fields-gateway")
    for key in keys.values():
        wait_until_accepted(gateway, key)
    yield home, gateway, keys
    gateway.stop()


def post(gateway, key: str, body: Any, path: str = "/v1/chat/completions", headers: dict | None = None,
         **kwargs: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) or not isinstance(body, dict | list) else json.dumps(body).encode()
    return httpx.post(f"{gateway.url}{path}", content=content, timeout=60,
                      headers={"authorization": f"Bearer {key}", "content-type": "application/json", **(headers or {})},
                      **kwargs)






def assert_error_shape(response: httpx.Response) -> dict:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert EMAIL not in response.text and AWS_KEY not in response.text
    return error


def message(content: Any = "hello", **fields: Any) -> dict:
    return {"model": "chat", "messages": [{"role": "user", "content": content}], "max_tokens": 2, **fields}


# -- data classes only go up --------------------------------------------------------------------

def test_the_data_class_header_raises_the_class_but_never_lowers_it(setup, mock):
    home, gateway, keys = setup
    lowered = post(gateway, keys["app"], message(), headers={"x-gatehouse-data-class": "public"})
    assert lowered.status_code == 200
    assert lowered.headers["x-gatehouse-deployment"] == "onprem" and lowered.headers["x-gatehouse-fallbacks"] == "cloud=data_class"
    assert decision_record(home, lowered.headers["x-gatehouse-request-id"])["data_class"] == "internal"  # its default, not public
    flagged = post(gateway, keys["flag-app"], message(f"write to {EMAIL}"), headers={"x-gatehouse-data-class": "public"})
    assert flagged.status_code == 200 and flagged.headers["x-gatehouse-deployment"] == "onprem"
    assert decision_record(home, flagged.headers["x-gatehouse-request-id"])["data_class"] == "confidential"
    nowhere = post(gateway, keys["flag-app"], message(f"write to {EMAIL}", model="cloud-only"),
                   headers={"x-gatehouse-data-class": "public"})
    assert nowhere.status_code == 403 and assert_error_shape(nowhere)["code"] == "data_class_not_allowed"
    raised = post(gateway, keys["app"], message(), headers={"x-gatehouse-data-class": "confidential"})
    assert raised.headers["x-gatehouse-deployment"] == "onprem"
    assert decision_record(home, raised.headers["x-gatehouse-request-id"])["data_class"] == "confidential"
    public = post(gateway, keys["public-app"], message(), headers={"x-gatehouse-data-class": "public"})
    assert public.headers["x-gatehouse-deployment"] == "cloud"  # an identity cleared only for public sends public


# -- every field is scanned before it leaves ------------------------------------------------------

def data_url(text: str) -> str:
    return "data:text/plain;base64," + base64.b64encode(text.encode()).decode()


def parts(*content: dict) -> dict:
    return message(list(content))


PLANTED = {
    "dict key": message(tools=[{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": {EMAIL: {"type": "string"}}}}}]),
    "image_url query": parts({"type": "image_url", "image_url": {"url": f"http://169.254.169.254/latest?key={AWS_KEY}"}}),
    "file data": parts({"type": "file", "file": {"file_data": data_url(f"mail {EMAIL}")}}),
    "content part type": parts({"type": EMAIL, "text": "x"}),
    "tool_calls id": message(messages=[{"role": "user", "content": "hi"}, {
        "role": "assistant", "tool_calls": [{"id": AWS_KEY, "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]),
    "tool_call_id": message(messages=[{"role": "tool", "tool_call_id": EMAIL, "content": "42"}]),
    "functions": message(functions=[{"name": "f", "description": f"mail {EMAIL}"}]),
    "json_schema": message(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {EMAIL: 1}}}),
    "prediction": message(prediction={"type": "content", "content": f"to {EMAIL}"}),
    "documents (not allowed)": message(documents=[{"text": EMAIL}]),
    "documents (allowed)": message(model="engine-extras", documents=[{"title": "t", "text": f"from {EMAIL}"}]),
    "chat_template": message(model="engine-extras", chat_template=f"{{{{ '{EMAIL}' }}}}"),
    "user": message(user=EMAIL),
    "metadata": message(metadata={EMAIL: EMAIL}),
    "prompt_embeds": {"model": "chat", "prompt": "x", "prompt_embeds": base64.b64encode(EMAIL.encode()).decode()},
}


@pytest.mark.parametrize("name", list(PLANTED))
def test_text_planted_in_any_field_reaches_no_engine_unscanned(setup, mock, name):
    home, gateway, keys = setup
    body = PLANTED[name]
    before = len(mock_requests(mock))
    path = "/v1/completions" if "prompt" in body else "/v1/chat/completions"
    response = post(gateway, keys["app"], body, path=path)
    assert response.status_code in (200, 400), response.text
    received = mock_requests(mock)[before:]
    for upstream in received:  # what any engine got holds neither the address nor the key
        sent = json.dumps(upstream["body"])
        assert EMAIL not in sent and AWS_KEY not in sent and base64.b64encode(EMAIL.encode()).decode() not in sent
    if response.status_code == 400:
        assert not received and assert_error_shape(response)["code"] in (
            "guardrail_blocked", "unknown_field", "invalid_value")
    else:
        sent = json.dumps(received[-1]["body"])
        assert "[EMAIL_1]" in sent or base64.b64encode(b"mail [EMAIL_1]").decode() in sent
    kept = decision_record(home, response.headers["x-gatehouse-request-id"])
    assert EMAIL not in json.dumps(kept) and AWS_KEY not in json.dumps(kept)  # paths with indices, never the text


def test_an_unknown_model_is_not_repeated_back(setup):
    home, gateway, keys = setup
    response = post(gateway, keys["app"], message(model=EMAIL))
    assert response.status_code == 404 and assert_error_shape(response)["code"] == "model_not_found"


def test_a_policy_can_refuse_remote_urls(setup, mock):
    home, gateway, keys = setup
    body = parts({"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}})
    refused = post(gateway, keys["app"], {**body, "model": "no-urls"})
    assert refused.status_code == 400 and assert_error_shape(refused) == {
        "message": refused.json()["error"]["message"], "type": "invalid_request_error",
        "param": "messages[0].content[0].image_url.url", "code": "remote_url_refused"}
    assert post(gateway, keys["app"], body).status_code == 200  # the other aliases take them, scanned
    inline = parts({"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(bytes(8)).decode()}})
    assert post(gateway, keys["app"], {**inline, "model": "no-urls"}).status_code == 200


# -- limits ---------------------------------------------------------------------------------------

def test_max_tokens_is_bounded_by_the_policy_and_never_forwarded_huge(setup, mock):
    home, gateway, keys = setup
    before = len(mock_requests(mock))
    huge = post(gateway, keys["app"], message(max_tokens=9223372036854775807))
    assert huge.status_code == 400 and assert_error_shape(huge)["param"] == "max_tokens"
    beyond = post(gateway, keys["app"], message(max_tokens=2**70))
    assert beyond.status_code == 400 and assert_error_shape(beyond)["param"] == "max_tokens"
    over = post(gateway, keys["app"], message(model="bounded", max_completion_tokens=257))
    assert over.status_code == 400 and "at most 256" in assert_error_shape(over)["message"]
    assert len(mock_requests(mock)) == before
    assert post(gateway, keys["app"], message(model="bounded", max_tokens=3)).status_code == 200
    assert mock_requests(mock)[-1]["body"]["max_tokens"] == 3
    # a caller who names no bound gets the policy's, not the engine's default (review of issue 16)
    unbounded = {key: value for key, value in message(model="bounded").items() if key != "max_tokens"}
    assert post(gateway, keys["app"], unbounded).status_code == 200
    assert mock_requests(mock)[-1]["body"]["max_tokens"] == 256
    assert post(gateway, keys["app"], {**unbounded, "max_completion_tokens": 9}).status_code == 200
    assert "max_tokens" not in mock_requests(mock)[-1]["body"]  # the caller's own field is left as it is


@pytest.mark.parametrize("depth", [65, 300, 1000, 1100])
def test_deep_nesting_is_a_400_naming_where(setup, depth):
    home, gateway, keys = setup
    nested = b"[" * depth + b"]" * depth
    for body in (b'{"model": "chat", "messages": [{"role": "user", "content": ' + nested + b"}]}",
                 b'{"model": "chat", "messages": [{"role": "user", "content": "x"}], "metadata": {"k": ' + nested + b"}}"):
        response = post(gateway, keys["app"], body)
        assert response.status_code == 400, response.text
        assert assert_error_shape(response)["code"] in ("nesting_too_deep", "invalid_json")


def test_a_chunked_body_is_treated_like_a_sized_one(setup, mock):
    home, gateway, keys = setup
    body = json.dumps(message("lorem ipsum dolor " * 20_000 + EMAIL)).encode()  # 360 KB: checked off the event loop

    def chunked():
        for start in range(0, len(body), 65536):
            yield body[start:start + 65536]

    sized = post(gateway, keys["app"], body)
    streamed = post(gateway, keys["app"], chunked())
    assert sized.status_code == streamed.status_code == 200
    assert mock_requests(mock)[-1]["body"]["messages"][0]["content"].endswith("[EMAIL_1]")
    assert [decision_record(home, r.headers["x-gatehouse-request-id"])["guardrails"] for r in (sized, streamed)] == [
        [{"rule": "pii.email", "action": "redact", "shadow": False, "field": "messages[0].content",
          "start": len("lorem ipsum dolor ") * 20_000, "end": len("lorem ipsum dolor ") * 20_000 + len(EMAIL),
          "score": 0.95}]] * 2  # (the size cap, the same for both: test_errors.py)


def slow_client(gateway, first: bytes, trickle: bytes, seconds: float) -> tuple[bytes, float]:
    """Send ``first``, then ``trickle`` every 0.25 s for up to ``seconds``; what came back and when."""
    started = time.monotonic()
    connection = socket.create_connection(("127.0.0.1", gateway.port))
    connection.sendall(first)
    try:
        while time.monotonic() - started < seconds:
            time.sleep(0.25)
            connection.sendall(trickle)
    except OSError:
        pass  # the server closed the connection
    connection.settimeout(10)
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except OSError:
        pass
    connection.close()
    return received, time.monotonic() - started


def test_slow_headers_and_slow_bodies_are_answered_408_and_closed(setup):
    home, gateway, keys = setup
    limit = (HEADER_TIMEOUT + BODY_TIMEOUT) * 4
    answer, _ = slow_client(gateway, b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n", b"x", limit)
    assert answer.startswith(b"HTTP/1.1 408") and b'"code":"request_timeout"' in answer
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {keys['app']}\r\n"
            "content-type: application/json\r\n")
    for framing in ("content-length: 100000\r\n\r\n", "transfer-encoding: chunked\r\n\r\n"):
        trickle = b"1\r\n \r\n" if "chunked" in framing else b" "
        answer, _ = slow_client(gateway, (head + framing).encode(), trickle, limit)
        assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer
    assert httpx.get(f"{gateway.url}/healthz").status_code == 200  # and the gateway carries on

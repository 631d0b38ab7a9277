"""Adversarial review of issue 16's request side, through a real gateway and the mock upstream:
what reaches the engine is what was scanned, whatever tricks the body, its headers or its
connection play."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import sqlite3
import time
from typing import Any

import httpx
import pytest

from gatehouse.identity import governance, service

from gateway_support import ACTOR, Deployment, decision_record, mock_requests, wait_until_accepted
from helpers import start_gateway

EMAIL = "jane.doe@example.com"
HEADER_TIMEOUT, BODY_TIMEOUT = 2, 2
MAX_BODY = 200_000


def policy(mock: str) -> str:
    return f"""\
version: 1
deployments:
  cloud: {{engine: openai, url: "{mock}/ok/v1", model: m, location: cloud, data_classes: [public, internal]}}
  onprem: {{engine: openai, url: "{mock}/ok/v1", model: m, location: on-prem,
           data_classes: [public, internal, confidential, restricted]}}
  slow: {{engine: openai, url: "{mock}/slow/v1", model: m, location: on-prem, data_classes: [public, internal]}}
aliases:
  chat: {{route: [cloud, onprem]}}
  slow: {{route: [slow]}}
  token-level: {{route: [onprem], requests: {{extra_fields: [prompt_logprobs, n_probs, documents]}}}}
grants:
  - {{name: dev, subjects: [{{environment: dev}}], aliases: [chat, slow, token-level], max_data_class: confidential}}
guardrails:
  default: standard
  profiles:
    standard:
      pii: {{action: redact, kinds: [email]}}
      secrets: {{action: block}}
    answers:
      output: true
      pii: {{action: redact, kinds: [email]}}
  assign:
    - {{alias: token-level, profile: answers}}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory, mock, logs):
    models = tmp_path_factory.mktemp("no-models")
    home = Deployment(tmp_path_factory.mktemp("attacks") / "home", policy(mock.url), models,
                      GATEHOUSE_HEADER_TIMEOUT=str(HEADER_TIMEOUT), GATEHOUSE_BODY_TIMEOUT=str(BODY_TIMEOUT),
                      GATEHOUSE_MAX_BODY_BYTES=str(MAX_BODY))
    service.add_person(home.db, ACTOR, "admin@example.com", team="security")
    governance.change_role(home.db, ACTOR, "admin@example.com", "identity-admin", True)
    key = home.key(home.identity("app", actor="person:admin@example.com", data_clearance="confidential"))
    gateway = start_gateway(home.env, logs, name="attacks-gateway")
    wait_until_accepted(gateway, key)
    yield home, gateway, key
    gateway.stop()


def post(gateway, key: str, content: bytes | Any, headers: list[tuple[str, str]] | None = None) -> httpx.Response:
    if not isinstance(content, bytes) and not hasattr(content, "__next__"):
        content = json.dumps(content).encode()
    return httpx.post(f"{gateway.url}/v1/chat/completions", content=content, timeout=60,
                      headers=[("authorization", f"Bearer {key}"), ("content-type", "application/json"),
                               *(headers or [])])






def message(content: Any = "hello", **fields: Any) -> dict:
    return {"model": "chat", "messages": [{"role": "user", "content": content}], "max_tokens": 2, **fields}


def test_a_repeated_data_class_header_cannot_lower_what_a_later_one_raises(setup, mock):
    home, gateway, key = setup
    response = post(gateway, key, message(), [("x-gatehouse-data-class", "public"),
                                              ("x-gatehouse-data-class", "confidential")])
    assert response.status_code == 200, response.text
    assert response.headers["x-gatehouse-deployment"] == "onprem"  # not the cloud one, which takes up to internal
    assert decision_record(home, response.headers["x-gatehouse-request-id"])["data_class"] == "confidential"


def test_duplicate_keys_the_engine_gets_the_value_that_was_scanned(setup, mock):
    home, gateway, key = setup
    for first, last in ((EMAIL, "hi"), ("hi", EMAIL)):
        raw = (b'{"model": "chat", "max_tokens": 2, "messages": [{"role": "user", "content": ' + json.dumps(first).encode()
               + b', "content": ' + json.dumps(last).encode() + b"}]}")
        before = len(mock_requests(mock))
        assert post(gateway, key, raw).status_code == 200
        assert EMAIL not in json.dumps(mock_requests(mock)[before:])


def test_an_unsplittable_image_url_is_a_400(setup, mock):
    home, gateway, key = setup
    before = len(mock_requests(mock))
    response = post(gateway, key, message([{"type": "image_url", "image_url": {"url": "https://[::1/x.png"}}]))
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages[0].content[0].image_url.url"
    assert len(mock_requests(mock)) == before


def test_percent_encoded_and_odd_base64_urls_reach_no_engine_unscanned(setup, mock):
    home, gateway, key = setup
    encoded = EMAIL.replace("@", "%40")
    payload = base64.b64encode(f"to {EMAIL}?".encode()).decode()
    before = len(mock_requests(mock))
    for url in (f"https://example.com/u/{encoded}.png", f"https://example.com/x.png?to={encoded}",
                "data:text/plain;base64," + payload.replace("/", "_").replace("+", "-"),
                "data:text/plain;base64," + payload[:8] + "\n" + payload[8:],
                "data:text/plain;base64," + payload.rstrip("="),
                "data:text/plain," + encoded):
        response = post(gateway, key, message([{"type": "image_url", "image_url": {"url": url}}]))
        assert response.status_code in (200, 400), response.text
    sent = json.dumps(mock_requests(mock)[before:])
    assert EMAIL not in sent and encoded not in sent and payload not in sent


def test_a_gzipped_body_is_a_400_and_reaches_no_engine(setup, mock):
    home, gateway, key = setup
    before = len(mock_requests(mock))
    response = post(gateway, key, gzip.compress(json.dumps(message(EMAIL)).encode()), [("content-encoding", "gzip")])
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    assert len(mock_requests(mock)) == before


def test_a_chunked_body_over_the_cap_is_a_413(setup, mock):
    home, gateway, key = setup
    body = json.dumps(message("x" * MAX_BODY)).encode()

    def chunked():
        for start in range(0, len(body), 16384):
            yield body[start:start + 16384]

    response = post(gateway, key, chunked())
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


def test_a_slow_second_request_on_a_kept_alive_connection_is_answered_408(setup):
    home, gateway, key = setup
    body = json.dumps(message()).encode()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n"
               f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body
    connection = socket.create_connection(("127.0.0.1", gateway.port))
    connection.settimeout(10)
    try:
        connection.sendall(request)
        first = b""
        while b"\r\n\r\n" not in first:
            first += connection.recv(65536)
        head, _, rest = first.partition(b"\r\n\r\n")
        length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")))
        while len(rest) < length:  # the whole of the first answer, however it was cut into segments
            rest += connection.recv(65536)
        assert first.startswith(b"HTTP/1.1 200") and len(rest) == length, first[:200]
        connection.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")  # and no more
        started, answer = time.monotonic(), b""
        while chunk := connection.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer, (first, answer, time.monotonic() - started)
        assert time.monotonic() - started < HEADER_TIMEOUT + 3
    finally:
        connection.close()


def test_a_pipelined_request_is_timed_from_when_it_is_read_not_while_it_waits(setup, mock):
    # request 1 takes 4 s upstream; request 2, pipelined behind it, has only half its body in the
    # first packet: the server stops reading while request 1 runs, so request 2's body timer runs
    # once request 1 is answered — never writing a 408 where request 1's answer belongs
    home, gateway, key = setup
    httpx.post(f"{mock.url}/_mock/config", json={"slow_seconds": 4}).raise_for_status()
    body = json.dumps({**message(), "model": "slow"}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n").encode()
    connection = socket.create_connection(("127.0.0.1", gateway.port))
    connection.settimeout(15)
    try:
        connection.sendall(head + body + head + body[:10])
        started, answer = time.monotonic(), b""
        while chunk := connection.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        assert answer.count(b"HTTP/1.1 408") == 1 and answer.index(b"HTTP/1.1 408") > answer.index(b'"usage"')
        assert time.monotonic() - started >= 4 + BODY_TIMEOUT - 0.5
    finally:
        connection.close()
        httpx.post(f"{mock.url}/_mock/config", json={"slow_seconds": 30})


def test_text_in_a_data_url_s_parameters_reaches_no_engine(setup, mock):
    home, gateway, key = setup
    png = base64.b64encode(bytes(8)).decode()
    before = len(mock_requests(mock))
    for url in (f"data:image/png;note=AKIAIOSFODNN7EXAMPLE;base64,{png}", f"data:AKIAIOSFODNN7EXAMPLE/png;base64,{png}"):
        response = post(gateway, key, message([{"type": "image_url", "image_url": {"url": url}}]))
        assert response.status_code == 400 and response.json()["error"]["code"] == "guardrail_blocked", response.text
    assert "AKIAIOSFODNN7EXAMPLE" not in json.dumps(mock_requests(mock)[before:])


def test_engine_fields_that_return_answers_token_by_token_are_refused_while_output_rules_redact(setup, mock):
    home, gateway, key = setup
    before = len(mock_requests(mock))
    for field, value in (("prompt_logprobs", 5), ("prompt_logprobs", 0), ("n_probs", 3)):
        response = post(gateway, key, message(model="token-level", **{field: value}))
        assert response.status_code == 400, response.text
        assert (response.json()["error"]["code"], response.json()["error"]["param"]) == ("guardrail_unscannable", field)
    assert len(mock_requests(mock)) == before
    for fields in ({"n_probs": 0}, {"prompt_logprobs": None}, {"documents": [{"text": "x"}]}):
        assert post(gateway, key, message(model="token-level", **fields)).status_code == 200


def codes(home) -> list[tuple[int, str]]:
    connection = sqlite3.connect(home.home / "gatehouse.db")
    rows = connection.execute("SELECT status, error_code FROM decision_records WHERE error_code IS NOT NULL").fetchall()
    connection.close()
    return rows


def test_a_body_cut_off_by_the_timer_is_recorded_as_a_timeout_not_a_client_that_left(setup):
    home, gateway, key = setup
    before = codes(home)
    connection = socket.create_connection(("127.0.0.1", gateway.port))
    connection.settimeout(10)
    try:
        connection.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n"
                            "content-type: application/json\r\ncontent-length: 1000\r\n\r\n{").encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408")
    finally:
        connection.close()
    deadline = time.monotonic() + 10
    while (408, "request_timeout") not in codes(home)[len(before):] and time.monotonic() < deadline:
        time.sleep(0.2)  # records are drained from the spool in the background: earlier tests' may come first
    added = codes(home)[len(before):]
    assert (408, "request_timeout") in added and (499, "client_disconnected") not in added, added


def test_malformed_framing_is_refused_in_the_error_shape_and_reaches_no_engine(setup, mock):
    home, gateway, key = setup
    body = json.dumps(message(EMAIL)).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n"
            "content-type: application/json\r\n")
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    before = len(mock_requests(mock))
    for request in ((head + "content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n").encode() + chunked,
                    (head + f"content-length: {len(body)}\r\ncontent-length: 5\r\n\r\n").encode() + body,
                    (head + "content-length: -1\r\n\r\n").encode() + body):
        connection = socket.create_connection(("127.0.0.1", gateway.port))
        connection.settimeout(10)
        try:
            connection.sendall(request)
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        finally:
            connection.close()
        assert answer.startswith(b"HTTP/1.1 400"), answer
        error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
        assert error["code"] == "invalid_http" and set(error) == {"message", "type", "param", "code"}
    assert len(mock_requests(mock)) == before

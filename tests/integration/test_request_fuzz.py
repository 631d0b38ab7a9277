"""Fuzzed request bodies through a running gateway in front of the bundled mock upstream (issue
16): valid shapes, odd types, deep nesting, huge numbers, unknown fields, odd keys. Never a
5xx; every 4xx in the API's error shape, naming no planted text; and whatever reaches the
engine holds no planted e-mail address or key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway_support import Deployment, wait_until_accepted
from helpers import start_gateway, start_mock_upstream

EMAIL, AWS_KEY = "jane.doe@example.com", "AKIAIOSFODNN7EXAMPLE"
DEEP = "__deep__"  # replaced by that many nested arrays in the bytes sent


def policy(mock: str) -> str:
    return f"""\
version: 1
deployments:
  onprem: {{engine: openai, url: "{mock}/ok/v1", model: m, data_classes: [public, internal, confidential]}}
aliases:
  fuzz: {{route: [onprem], requests: {{extra_fields: [documents], max_output_tokens: 32}}}}
grants:
  - {{name: dev, subjects: [{{environment: dev}}], aliases: [fuzz], max_data_class: confidential}}
guardrails:
  default: standard
  profiles:
    standard:
      pii: {{action: redact, kinds: [email]}}
      secrets: {{action: block}}
      injection: {{action: block}}
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    logs = tmp_path_factory.mktemp("logs")
    mock = start_mock_upstream(logs)
    home = Deployment(tmp_path_factory.mktemp("fuzz") / "home", policy(mock.url), tmp_path_factory.mktemp("models"))
    key = home.key(home.identity("fuzz-app"))
    server = start_gateway(home.env, logs, name="fuzz-gateway")
    wait_until_accepted(server, key)
    with httpx.Client(base_url=server.url, timeout=30, headers={"authorization": f"Bearer {key}",
                                                               "content-type": "application/json"}) as client, \
            httpx.Client(base_url=mock.url, timeout=30) as upstream:
        yield client, upstream
    server.stop()
    mock.stop()


PLANTED = st.sampled_from([EMAIL, AWS_KEY, f"mail {EMAIL} now", f"key={AWS_KEY}", f"http://169.254.169.254/?k={AWS_KEY}",
                           "data:text/plain;base64,amFuZS5kb2VAZXhhbXBsZS5jb20=", "data:image/png;base64,AAAA",
                           "data:;base64,@@", "file:///etc/passwd", "https://example.com/a.png"])
WORDS = st.one_of(st.text(max_size=30), PLANTED)  # keys, and strings anywhere
TEXT = st.one_of(WORDS, st.just(DEEP))
NUMBER = st.one_of(st.integers(), st.sampled_from([2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30]),
                   st.floats(allow_nan=False, allow_infinity=False))
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
FIELD = st.sampled_from(["role", "content", "type", "text", "image_url", "url", "tool_calls", "id", "tool_call_id",
                         "function", "name", "arguments", "parameters", "description", "metadata", "tools", "stop",
                         "max_tokens", "max_completion_tokens", "n", "temperature", "logit_bias", "response_format",
                         "json_schema", "schema", "prediction", "documents", "chat_template", "functions", "user",
                         "file", "file_data", "input_audio", "data", "prompt_embeds", "stream", "stream_options",
                         "include_usage", "seed", "top_p", "guided_json"])
KEY = st.one_of(FIELD, WORDS)
JSON = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEY, inner, max_size=4)),
                    max_leaves=20)
PART = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": TEXT})}),
    st.fixed_dictionaries({"type": st.just("file"), "file": st.fixed_dictionaries({"file_data": TEXT})}),
    st.dictionaries(KEY, JSON, max_size=3),
)
VALID_MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool"]),
                           "content": st.one_of(TEXT, st.lists(PART, max_size=3))},
                          optional={"name": TEXT, "tool_call_id": TEXT, "tool_calls": st.lists(
                              st.fixed_dictionaries({"id": TEXT, "type": st.just("function"), "function": st.fixed_dictionaries(
                                  {"name": TEXT, "arguments": TEXT})}), max_size=2)})
MESSAGE = st.one_of(VALID_MESSAGE, VALID_MESSAGE, VALID_MESSAGE, st.dictionaries(KEY, JSON, max_size=4), JSON)
MESSAGES = st.lists(MESSAGE, min_size=1, max_size=3)
TOOLS = st.lists(st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries(
    {"name": WORDS}, optional={"description": TEXT, "parameters": JSON})}), max_size=2)
SCHEMA = st.fixed_dictionaries({"type": st.just("json_schema"), "json_schema": st.fixed_dictionaries(
    {"name": WORDS, "schema": JSON})})
CHAT = st.fixed_dictionaries({"model": st.sampled_from(["fuzz"] * 8 + ["nope", 5]),
                              "messages": st.one_of(MESSAGES, MESSAGES, MESSAGES, JSON)},
                             optional={"max_tokens": st.one_of(st.integers(1, 32), NUMBER), "tools": st.one_of(TOOLS, JSON),
                                       "metadata": st.dictionaries(WORDS, WORDS, max_size=3),
                                       "response_format": st.one_of(SCHEMA, JSON), "documents": JSON,
                                       "stop": st.one_of(WORDS, st.lists(WORDS, max_size=4), JSON), "user": TEXT,
                                       "temperature": st.one_of(st.floats(0, 2), NUMBER),
                                       "logit_bias": st.dictionaries(KEY, NUMBER, max_size=2)})
BODY = st.tuples(CHAT, st.one_of(st.just({}), st.just({}), st.dictionaries(KEY, JSON, max_size=3)),
                 st.sampled_from([1, 30, 62, 63, 64, 65, 254, 255, 1025, 5000]))


def raw(body: dict[str, Any], extra: dict[str, Any], depth: int) -> bytes:
    merged = {**extra, **body}
    encoded = json.dumps(merged, ensure_ascii=False).encode()  # integers of any size, as a caller may send
    return encoded.replace(f'"{DEEP}"'.encode(), b"[" * depth + b"]" * depth)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=BODY, endpoint=st.sampled_from(["chat/completions", "chat/completions", "completions", "embeddings"]))
def test_no_body_is_a_5xx_and_no_planted_text_reaches_the_engine(gateway, case, endpoint):
    client, mock = gateway
    body, extra, depth = case
    if endpoint != "chat/completions":
        body = {"model": body["model"], ("prompt" if endpoint == "completions" else "input"): body["messages"]}
    before = mock.get("/_mock/requests").json()
    response = client.post(f"/v1/{endpoint}", content=raw(body, extra, depth))
    assert response.status_code < 500, response.text
    event(f"{response.status_code} {response.json()['error']['code'] if response.status_code >= 400 else ''}")
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"] and error["code"]
        assert EMAIL not in response.text and AWS_KEY not in response.text
    after = mock.get("/_mock/requests").json()  # the last 100: one request more shifts them by one
    arrived = after[len(before):] if len(after) > len(before) else after[-1:] if after != before else []
    for upstream in arrived:
        sent = json.dumps(upstream["body"])
        assert EMAIL not in sent and AWS_KEY not in sent

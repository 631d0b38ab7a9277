"""The request model (issue 16): every field of an inference request is scanned text, a closed
value or refused by its JSON path; keys are text; verdicts and errors never hold the caller's
text; nesting is walked without recursion."""

from __future__ import annotations

import base64
import copy
import functools
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatehouse.api.errors import ApiError
from gatehouse.api.request_model import check_request, output_token_limit
from gatehouse.api.validation import MAX_DEPTH, nesting_problem
from gatehouse.engines.spec import Deployment
from gatehouse.guardrails.inspect import Blocked, inspect_input, text_sites
from gatehouse.guardrails.profiles import EffectiveProfile, ProfileIndex
from gatehouse.guardrails.schema import Guardrails
from gatehouse.policy.loader import PolicyError, load_policy_text
from gatehouse.policy.schema import DEFAULT_OUTPUT_TOKENS
from gatehouse.policy.starter import STARTER_POLICY

EMAIL, AWS_KEY = "jane.doe@example.com", "AKIAIOSFODNN7EXAMPLE"


@functools.cache
def profile() -> EffectiveProfile:
    guardrails = Guardrails.model_validate({"default": "standard", "profiles": {"standard": {
        "pii": {"action": "redact", "kinds": ["email"]}, "secrets": {"action": "block"},
        "injection": {"action": "block"}}}})
    found = ProfileIndex(guardrails).default
    assert found is not None
    return found


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "user", "content": "hello"}], **fields}


def user_parts(*parts: dict[str, Any]) -> dict[str, Any]:
    return chat(messages=[{"role": "user", "content": list(parts)}])


def data_url(text: str, media: str = "text/plain") -> str:
    return f"data:{media};base64,{base64.b64encode(text.encode()).decode()}"


def refused(endpoint: str, body: dict[str, Any], extra: frozenset[str] = frozenset()) -> ApiError:
    with pytest.raises(ApiError) as caught:
        check_request(endpoint, body, extra)
    return caught.value


def scanned(endpoint: str, body: dict[str, Any], extra: frozenset[str] = frozenset()) -> dict[str, str]:
    return {site.field: site.text for site in check_request(endpoint, body, extra).sites}


# Each field the issue found forwarded but never scanned, with an e-mail address or a key planted in it:
# (endpoint, body, the field that must be scanned and holds the planted text, extra fields allowed)
PLANTED = [
    ("dict key", "chat/completions",
     chat(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                                                                            "properties": {EMAIL: {"type": "string"}}}}}]),
     "tools[0].function.parameters.properties.keys()[0]", frozenset()),
    ("image_url query", "chat/completions",
     user_parts({"type": "image_url", "image_url": {"url": f"http://169.254.169.254/latest?key={AWS_KEY}"}}),
     "messages[0].content[0].image_url.url", frozenset()),
    ("file data", "chat/completions", user_parts({"type": "file", "file": {"file_data": data_url(f"mail {EMAIL}")}}),
     "messages[0].content[0].file.file_data", frozenset()),
    ("file name", "chat/completions", user_parts({"type": "file", "file": {"filename": f"{EMAIL}.pdf"}}),
     "messages[0].content[0].file.filename", frozenset()),
    ("tool_calls id", "chat/completions",
     chat(messages=[{"role": "assistant", "tool_calls": [{"id": AWS_KEY, "type": "function",
                                                          "function": {"name": "f", "arguments": "{}"}}]}]),
     "messages[0].tool_calls[0].id", frozenset()),
    ("tool_call_id", "chat/completions",
     chat(messages=[{"role": "tool", "tool_call_id": AWS_KEY, "content": "42"}]), "messages[0].tool_call_id", frozenset()),
    ("legacy functions", "chat/completions",
     chat(functions=[{"name": "f", "description": f"mail {EMAIL}", "parameters": {}}]),
     "functions[0].description", frozenset()),
    ("json_schema", "chat/completions",
     chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"description": EMAIL}}}),
     "response_format.json_schema.schema.description", frozenset()),
    ("prediction", "chat/completions", chat(prediction={"type": "content", "content": f"to {EMAIL}"}),
     "prediction.content", frozenset()),
    ("documents", "chat/completions", chat(documents=[{"title": "t", "text": f"to {EMAIL}"}]),
     "documents[0].text", frozenset({"documents"})),
    ("chat_template", "chat/completions", chat(chat_template=f"{{{{ '{EMAIL}' }}}}"), "chat_template",
     frozenset({"chat_template"})),
    ("user", "chat/completions", chat(user=EMAIL), "user", frozenset()),
    ("metadata key", "chat/completions", chat(metadata={EMAIL: "x"}), "metadata.keys()[0]", frozenset()),
    ("metadata value", "chat/completions", chat(metadata={"k": EMAIL}), "metadata.<key 0>", frozenset()),
    ("stop", "chat/completions", chat(stop=[EMAIL]), "stop[0]", frozenset()),
    ("suffix", "completions", {"model": "m", "prompt": "p", "suffix": EMAIL}, "suffix", frozenset()),
    ("embeddings user", "embeddings", {"model": "m", "input": "x", "user": EMAIL}, "user", frozenset()),
]


@pytest.mark.parametrize(("endpoint", "body", "where", "extra"), [case[1:] for case in PLANTED],
                         ids=[case[0] for case in PLANTED])
def test_each_field_found_unscanned_is_now_scanned_and_acted_on(endpoint, body, where, extra):
    sites = scanned(endpoint, body, extra)
    assert where in sites and (EMAIL in sites[where] or AWS_KEY in sites[where])
    before = copy.deepcopy(body)
    shape = check_request(endpoint, body, extra)
    try:
        inspection = inspect_input(profile(), endpoint, body, shape.sites, shape.binary_bytes)
    except Blocked as blocked:  # a key: the request goes nowhere
        assert blocked.verdict.rule.startswith("secrets.") and blocked.verdict.field == where
        return
    assert any(v.field == where for v in inspection.verdicts)
    sent = orjson.dumps(body)
    assert EMAIL.encode() not in sent and base64.b64encode(EMAIL.encode()) not in sent and sent != orjson.dumps(before)
    for verdict in inspection.verdicts:
        assert EMAIL not in verdict.field and AWS_KEY not in verdict.field


def test_a_redacted_key_keeps_its_value_which_is_redacted_under_the_new_name():
    body = chat(metadata={EMAIL: f"also {EMAIL}", "other": "x"})
    shape = check_request("chat/completions", body)
    inspect_input(profile(), "chat/completions", body, shape.sites)
    assert body["metadata"] == {"[EMAIL_1]": "also [EMAIL_2]", "other": "x"}
    assert list(body["metadata"]) == ["[EMAIL_1]", "other"]  # order kept


def test_free_form_keys_and_their_nested_values_are_redacted_together():
    body = chat(tools=[{"type": "function", "function": {"name": "f", "parameters": {EMAIL: {EMAIL: EMAIL}}}}])
    shape = check_request("chat/completions", body)
    inspect_input(profile(), "chat/completions", body, shape.sites)
    sent = orjson.dumps(body)
    assert EMAIL.encode() not in sent and sent.count(b"[EMAIL_") == 3


def test_a_textual_data_url_is_redacted_and_sent_encoded_as_it_came():
    body = user_parts({"type": "file", "file": {"file_data": data_url(f"write to {EMAIL}")}})
    shape = check_request("chat/completions", body)
    inspect_input(profile(), "chat/completions", body, shape.sites)
    sent = body["messages"][0]["content"][0]["file"]["file_data"]
    assert sent.startswith("data:text/plain;base64,")
    assert base64.b64decode(sent.split(",", 1)[1]).decode() == "write to [EMAIL_1]"


def test_binary_content_is_counted_not_read():
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(100)).decode()
    wav = base64.b64encode(b"RIFF\xff\xfe" + bytes(44)).decode()
    body = user_parts({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                      {"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}})
    shape = check_request("chat/completions", body)
    assert shape.binary_bytes == 108 + 50 and not shape.remote_urls
    assert not [s for s in shape.sites if "image_url" in s.field or "input_audio" in s.field]


@pytest.mark.parametrize("part", [
    {"type": "image_url", "image_url": {"url": data_url(f"to {EMAIL}", "image/png")}},  # text labelled an image
    {"type": "file", "file": {"file_data": base64.b64encode(f"to {EMAIL}".encode()).decode()}},  # bare base64
    {"type": "input_audio", "input_audio": {"data": base64.b64encode(f"to {EMAIL}".encode()).decode(), "format": "mp3"}},
])
def test_text_dressed_as_binary_is_still_text(part):
    body = user_parts(part)
    shape = check_request("chat/completions", body)
    assert shape.binary_bytes == 0 and [site.text for site in shape.sites] == [f"to {EMAIL}"]
    inspect_input(profile(), "chat/completions", body, shape.sites)
    assert EMAIL.encode() not in orjson.dumps(body) and base64.b64encode(f"to {EMAIL}".encode()) not in orjson.dumps(body)


def test_remote_urls_are_listed_for_the_policy_to_refuse():
    body = user_parts({"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}})
    assert check_request("chat/completions", body).remote_urls == ["messages[0].content[0].image_url.url"]


@pytest.mark.parametrize(("body", "param"), [
    (user_parts({"type": EMAIL, "text": "x"}), "messages[0].content[0].type"),
    (user_parts({"type": "text", "text": "x", EMAIL: 1}), "messages[0].content[0].<key 2>"),
    (chat(**{EMAIL: 1}), "<key 2>"),
    (chat(**{AWS_KEY.lower(): 1}), "<key 2>"),  # field-shaped, but a key: never echoed
    (chat(messages=[{"role": "user", "tool_call_id": EMAIL}]), "messages[0].tool_call_id"),
    (user_parts({"type": "image_url", "image_url": {"url": f"file:///etc/{EMAIL}"}}), "messages[0].content[0].image_url.url"),
    (user_parts({"type": "image_url", "image_url": {"url": "data:text/plain;base64,@@@"}}),
     "messages[0].content[0].image_url.url"),
    (chat(messages=[{"role": EMAIL, "content": "x"}]), "messages[0].role"),
    (chat(max_tokens=-1), "max_tokens"),
    (chat(temperature=float("inf")), "temperature"),
    (chat(temperature=True), "temperature"),
    (chat(logit_bias={EMAIL: 1}), "logit_bias.keys()[0]"),
    (chat(n=10**30), "n"),
    (chat(stop=["a", "b", "c", "d", "e"]), "stop"),
    (chat(stop=[1]), "stop"),
    (chat(documents=[EMAIL]), "documents"),
    (chat(chat_template=EMAIL), "chat_template"),
    ({"model": "m", "prompt": "x", "prompt_embeds": "AAAA"}, "prompt_embeds"),
    ({"model": "m"}, "messages"),
    (chat(messages=[]), "messages"),
], ids=lambda value: value if isinstance(value, str) else "")
def test_what_is_not_in_the_model_is_refused_by_its_path_never_its_value(body, param):
    endpoint = "completions" if "prompt" in body else "chat/completions"
    error = refused(endpoint, body)
    assert error.status == 400 and error.param == param
    assert EMAIL not in error.message and AWS_KEY not in error.message and AWS_KEY.lower() not in error.message


def test_an_unknown_field_with_a_plain_name_is_named():
    assert refused("chat/completions", chat(guided_json={})).param == "guided_json"
    assert "extra_fields" in refused("chat/completions", chat(guided_json={})).message


def test_token_ids_are_valid_but_marked_unreadable():
    assert check_request("completions", {"model": "m", "prompt": [1, 2, 3]}).token_ids == "prompt"
    assert check_request("embeddings", {"model": "m", "input": [[1], [2]]}).token_ids == "input"
    assert refused("embeddings", {"model": "m", "input": [[1], [-2]]}).param == "input[1][0]"
    assert check_request("embeddings", {"model": "m", "input": ["a", "b"]}).token_ids is None


def test_a_percent_encoded_address_in_a_url_is_found_and_redacted():
    body = user_parts({"type": "image_url", "image_url": {"url": "https://h.example/u/jane.doe%40example.com/a%20b.png"}})
    shape = check_request("chat/completions", body)
    inspection = inspect_input(profile(), "chat/completions", body, shape.sites)
    assert [v.rule for v in inspection.verdicts] == ["pii.email"]
    assert body["messages"][0]["content"][0]["image_url"]["url"] == "https://h.example/u/[EMAIL_1]/a%20b.png"


def test_ids_are_not_judged_by_their_randomness():
    body = chat(messages=[{"role": "tool", "tool_call_id": "call_8fJk2LmN9pQrX7vB3wYz1KdT", "content": "ok"}])
    shape = check_request("chat/completions", body)
    assert inspect_input(profile(), "chat/completions", body, shape.sites).verdicts == []


def test_a_random_token_in_a_query_string_is_a_secret_but_one_in_a_path_is_not():
    def verdicts(url: str) -> list[str]:
        body = user_parts({"type": "image_url", "image_url": {"url": url}})
        shape = check_request("chat/completions", body)
        try:
            return [v.rule for v in inspect_input(profile(), "chat/completions", body, shape.sites).verdicts]
        except Blocked as blocked:
            return [v.rule for v in blocked.verdicts]
    assert verdicts("https://cdn.example.com/a8F3kd9QzX7mB2vN4pL6tR1y/cat.png") == []
    assert verdicts("https://api.example.com/img?token=a8F3kd9QzX7mB2vN4pL6tR1yW5") == ["secrets.high_entropy"]


def test_nesting_is_measured_without_recursion():
    deep: Any = "x"
    for _ in range(10_000):  # ten times Python's recursion limit
        deep = [deep]
    assert nesting_problem(deep) is not None
    assert len(text_sites(deep, "messages", {}, "messages")) == 1  # walked, not recursed
    assert nesting_problem(orjson.loads(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)) is None
    assert nesting_problem(orjson.loads(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))) is not None
    assert nesting_problem({EMAIL: [[[]]]}, 2) == "<key 0>[0]"  # positions, never keys


def test_the_output_token_bound_is_the_policy_s_and_the_route_s_context():
    embedded = Deployment.model_validate({"engine": "embedded", "model": "m", "settings": {"context_size": 1024}})
    remote = Deployment.model_validate({"engine": "vllm", "model": "m", "url": "http://h/v1"})
    assert output_token_limit(None, [remote])[0] == DEFAULT_OUTPUT_TOKENS
    assert output_token_limit(500, [remote])[0] == 500
    assert output_token_limit(None, [embedded])[:1] + output_token_limit(None, [embedded])[2:] == (
        1023, "context_length_exceeded")
    assert output_token_limit(None, [embedded, remote])[0] == DEFAULT_OUTPUT_TOKENS  # one context unknown
    sized = Deployment.model_validate({"engine": "vllm", "model": "m", "url": "http://h/v1", "context_length": 32768})
    assert output_token_limit(None, [embedded, sized])[:1] + output_token_limit(None, [embedded, sized])[2:] == (
        32767, "context_length_exceeded")  # the largest context on the route
    assert output_token_limit(1000, [sized])[0] == 1000  # the policy's bound when lower
    with pytest.raises(ValueError, match="context_size, not 'context_length'"):
        Deployment.model_validate({"engine": "embedded", "model": "m", "context_length": 4096})


def test_extra_fields_in_the_policy_are_field_names_and_never_unreadable_ones():
    def with_requests(rules: str) -> str:
        return STARTER_POLICY.replace("    route: [", f"    requests: {rules}\n    route: [", 1)

    aliases = load_policy_text(with_requests("{extra_fields: [documents, guided_json]}")).document.aliases
    assert aliases["chat-small"].requests.extra_fields == ("documents", "guided_json")
    for bad in ("prompt_embeds", "Bad-Name", "documents, documents"):
        with pytest.raises(PolicyError):
            load_policy_text(with_requests(f"{{extra_fields: [{bad}]}}"))


# -- fuzz: anything JSON is a checked request or a 400, never another exception ------------------

KEYS = st.one_of(st.sampled_from(["role", "content", "type", "text", "image_url", "url", "tool_calls", "id", "function",
                                  "name", "arguments", "max_tokens", "n", "stop", "metadata", "tools", "parameters",
                                  "response_format", "json_schema", "schema", "prediction", "documents", "messages",
                                  "prompt", "input", "logit_bias", "user", "file", "file_data", "input_audio", "data"]),
                 st.text(max_size=12))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**64), max_value=2**64),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
                    st.sampled_from([EMAIL, AWS_KEY, "user", "text", "image_url", "function", "data:text/plain,hi",
                                     "https://h/x?k=v", "data:image/png;base64,AAAA", "data:;base64,@@"]))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(KEYS, inner, max_size=5)), max_leaves=25)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(endpoint=st.sampled_from(["chat/completions", "completions", "embeddings"]),
       body=st.dictionaries(KEYS, JSON, max_size=6))
def test_any_json_body_is_a_shape_or_a_400_naming_no_caller_text(endpoint, body):
    body = {"model": "m", **body}
    keys = {key for key in body if isinstance(key, str)}
    try:
        shape = check_request(endpoint, body, frozenset({"documents"}))
    except ApiError as error:
        assert error.status == 400 and error.param
        assert EMAIL not in error.message and AWS_KEY not in error.message
        return
    for site in shape.sites:
        assert EMAIL not in site.field and AWS_KEY not in site.field
    try:
        inspect_input(profile(), endpoint, body, shape.sites, shape.binary_bytes)
    except Blocked:
        pass
    orjson.dumps(body)  # what is forwarded can be written
    assert keys  # the body had fields

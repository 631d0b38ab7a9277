"""Adversarial review of issue 16's request side: the limits hold without costing the gateway
more than the body itself."""

from __future__ import annotations

import base64
import time
import tracemalloc

import orjson
import pytest

from gatehouse.api.errors import ApiError
from gatehouse.api.request_model import MAX_TEXT_SITES, check_request
from gatehouse.api.validation import MAX_DEPTH, nesting_problem
from gatehouse.guardrails.inspect import inspect_input


def test_measuring_a_wide_deep_body_holds_only_the_current_path():
    # 60 levels down, then 100,000 empty arrays: the old walk kept a path string per pending
    # container (hundreds of bytes each), tens of megabytes for a body a tenth of the size cap
    depth = 60
    value = orjson.loads(b"[" * depth + b",".join([b"[]"] * 100_000) + b"]" * depth)
    tracemalloc.start()
    try:
        assert nesting_problem(value) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_the_nesting_limit_is_exact_and_reports_the_first_deep_place():
    assert nesting_problem(orjson.loads(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)) is None
    assert nesting_problem(orjson.loads(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))) == "[0]" * MAX_DEPTH
    assert nesting_problem({"a": [], "b": {"c": [[]]}}, 3) == "<key 1>.<key 0>[0]"
    assert nesting_problem([[], [[]], [[[]]]], 3) == "[2][0][0]"
    assert nesting_problem([], 0) == "the body"
    assert nesting_problem("text", 0) is None


def test_a_url_python_cannot_split_is_a_400_not_a_500():
    for address in ("https://[::1", "https://[::1/x", "http://]/"):
        body = {"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": address}}]}]}
        with pytest.raises(ApiError) as refused:
            check_request("chat/completions", body)
        assert refused.value.status == 400
        assert refused.value.param == "messages[0].content[0].image_url.url"


def image_part(address: str) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": address}}]}]}


def test_a_data_url_s_type_and_parameters_are_scanned_and_written_back():
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\xff").decode()
    body = image_part(f"data:image/png;note=AKIAIOSFODNN7EXAMPLE;base64,{png}")
    shape = check_request("chat/completions", body)
    assert [site.text for site in shape.sites] == ["image/png;note=AKIAIOSFODNN7EXAMPLE;base64"]
    assert shape.binary_bytes == 10
    assert [site.text for site in check_request("chat/completions", image_part("data:AKIAIOSFODNN7EXAMPLE/x,hi")).sites] == [
        "AKIAIOSFODNN7EXAMPLE/x", "hi"]  # a made-up type is text too
    assert check_request("chat/completions", image_part(f"data:image/png;base64,{png}")).sites == []  # a plain type is not
    # both parts redacted: each write keeps the other's
    text = base64.b64encode(b"call +15551234567").decode()
    body = image_part(f"data:text/plain;to=+15551234567;base64,{text}")
    head, payload = check_request("chat/completions", body).sites
    head.write("text/plain;to=[PHONE_1];base64")
    payload.write("call [PHONE_2]")
    assert body["messages"][0]["content"][0]["image_url"]["url"] == (
        "data:text/plain;to=[PHONE_1];base64," + base64.b64encode(b"call [PHONE_2]").decode())


def test_a_body_cut_into_many_short_strings_is_refused_before_any_scan():
    # 400,000 distinct short strings in a tool schema: ~20 s of detector time before the limit
    many = [f"{index:x}" for index in range(400_000)]
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"a": many}}}]}
    with pytest.raises(ApiError) as refused:
        check_request("chat/completions", body)
    assert (refused.value.status, refused.value.code) == (400, "too_many_strings")
    for endpoint, field in (("embeddings", "input"), ("completions", "prompt")):
        with pytest.raises(ApiError) as refused:
            check_request(endpoint, {"model": "m", field: many[:MAX_TEXT_SITES + 1]})
        assert refused.value.code == "too_many_strings"
    assert len(check_request("embeddings", {"model": "m", "input": many[:MAX_TEXT_SITES]}).sites) == MAX_TEXT_SITES


def test_a_large_tool_catalogue_repeating_its_words_is_not_too_many_strings():
    # 400 tools, each schema of 20 properties: 50,000 strings, most of them the same words
    schema = {"type": "object", "properties": {f"p{n}": {"type": "string", "description": "a value"} for n in range(20)}}
    tools = [{"type": "function", "function": {"name": f"tool_{n}", "parameters": schema}} for n in range(400)]
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools}
    assert len(check_request("chat/completions", body).sites) > 2 * MAX_TEXT_SITES


def redacting_profile():
    from gatehouse.guardrails.profiles import ProfileIndex
    from gatehouse.guardrails.schema import Guardrails
    guardrails = Guardrails.model_validate({"default": "standard", "profiles": {"standard": {
        "pii": {"action": "redact", "kinds": ["email"]}}}})
    return ProfileIndex(guardrails).default


def tool_with(properties: dict) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": properties}}}]}


def test_redacted_keys_keep_their_order_and_their_values():
    body = tool_with({"a": 1, "x@example.com": "mail y@example.com", "b": {"z@example.com": 2}, "c": 3})
    shape = check_request("chat/completions", body)
    inspect_input(redacting_profile(), "chat/completions", body, shape.sites)
    assert body["tools"][0]["function"]["parameters"]["properties"] == {
        "a": 1, "[EMAIL_1]": "mail [EMAIL_2]", "b": {"[EMAIL_3]": 2}, "c": 3}
    assert list(body["tools"][0]["function"]["parameters"]["properties"]) == ["a", "[EMAIL_1]", "b", "c"]
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "metadata": {"k": "v", "x@example.com": "y@example.com"}}
    inspect_input(redacting_profile(), "chat/completions", body, check_request("chat/completions", body).sites)
    assert body["metadata"] == {"k": "v", "[EMAIL_1]": "[EMAIL_2]"}


def test_renaming_thousands_of_keys_is_not_quadratic():
    # 10,000 addresses as a schema's property names (a 300 KB body): one rebuild of the object
    # per renamed key took over a minute; all at once, well under a second
    body = tool_with({f"user{n}@example.com": {"type": "string"} for n in range(10_000)})
    shape = check_request("chat/completions", body)
    started = time.perf_counter()
    inspect_input(redacting_profile(), "chat/completions", body, shape.sites)
    assert time.perf_counter() - started < 5
    names = list(body["tools"][0]["function"]["parameters"]["properties"])
    assert names[:2] == ["[EMAIL_1]", "[EMAIL_2]"] and len(names) == 10_000


def test_walking_a_free_form_value_makes_no_path_for_what_holds_no_text():
    # 300,000 numbers 50 levels down in a tool schema: the old walk made a path string for each
    # (hundreds of bytes apiece), ~100 MB for a 600 KB body
    depth = 50
    schema = orjson.loads(b"[" * depth + b",".join([b"1"] * 300_000) + b"]" * depth)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"deep": schema, "then": "text"}}}]}
    tracemalloc.start()
    try:
        shape = check_request("chat/completions", body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000
    assert [site.field for site in shape.sites] == [
        "messages[0].content", "tools[0].function.name", "tools[0].function.parameters.keys()[0]",
        "tools[0].function.parameters.keys()[1]", "tools[0].function.parameters.<key 1>"]

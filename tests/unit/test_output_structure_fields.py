"""An answer's structure keys (role, type, id, index, tool_call_id) are structure only when they
have its shape: an id an engine filled from what the model wrote, or a role that holds an
address, is model text and is scanned; an object key no answer uses is not passed on. Whole and
streamed (the OpenAI SDK joins a role's or an id's pieces, so a split value counts too)."""

from __future__ import annotations

import asyncio
import copy

import orjson
import pytest

from gatehouse.core.sse import SSE_DONE, sse_event
from gatehouse.guardrails.output import StreamGuard, guard_response
from gatehouse.guardrails.profiles import ProfileIndex
from gatehouse.guardrails.schema import Guardrails

PROFILE = ProfileIndex(Guardrails.model_validate({"profiles": {"p": {
    "output": True, "pii": {"action": "redact", "kinds": ["email"]}}}})).profiles["p"]
EMAIL = "jane.doe@example.com"

WHOLE = [
    {"message": {"role": EMAIL, "content": "hi"}},
    {"message": {"content": "hi", "tool_calls": [{"id": EMAIL, "type": "function", "function": {"name": "f", "arguments": "{}"}}]}},
    {"message": {"content": "hi", "tool_calls": [{"id": "call_1", "type": EMAIL, "function": {"name": "f", "arguments": "{}"}}]}},
    {"message": {"content": "hi", "tool_call_id": f"to {EMAIL}"}},
    {"message": {"content": "hi", "index": EMAIL}},
    {"message": {"content": {"index": EMAIL}}},
    {"message": {"content": "hi", EMAIL: "x"}},
    {"message": {"content": "hi", "extra": {f"<{EMAIL}>": 1}}},
]


@pytest.mark.parametrize("choice", WHOLE)
def test_text_in_a_structure_key_or_as_a_key_does_not_leave_a_whole_answer(choice):
    body = {"choices": [copy.deepcopy(choice)]}
    guard_response(PROFILE, body)
    assert EMAIL not in orjson.dumps(body).decode()


def test_structure_with_its_shape_is_left_alone():
    message = {"role": "assistant", "content": "hi", "tool_calls": [
        {"id": "call_Zq8xL2mN4pQ7rS9tU1vW3yA5", "type": "function", "index": 0, "function": {"name": "f", "arguments": "{}"}},
        {"id": "functions.get_weather:0", "type": "function", "index": 1, "function": {"name": "g", "arguments": "{}"}}]}
    body = {"choices": [{"index": 0, "message": copy.deepcopy(message)}]}
    assert guard_response(PROFILE, body) == [] and body["choices"][0]["message"] == message


def run(events: list[bytes]) -> str:
    async def source():  # type: ignore[no-untyped-def]
        for event in events:
            yield event

    async def drain() -> list[bytes]:
        return [event async for event in StreamGuard(PROFILE).wrap(source())]
    return b"".join(asyncio.run(drain())).decode()


def chunk(delta: dict, finish: str | None = None) -> bytes:
    return sse_event(orjson.dumps({"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}))


@pytest.mark.parametrize("deltas", [
    [{"role": "jane.doe@"}, {"role": "example.com"}],
    [{"tool_calls": [{"index": 0, "id": EMAIL, "type": "function", "function": {"name": "f", "arguments": ""}}]}],
    [{"tool_calls": [{"index": 0, "id": "jane.doe@", "type": "function"}]}, {"tool_calls": [{"index": 0, "id": "example.com"}]}],
    [{"tool_calls": [{"index": 0, "id": "jane.doe", "type": "function"}]}, {"tool_calls": [{"index": 0, "id": "@example.com"}]}],
    [{"role": "jane.doe"}, {"role": "@example.com"}],
    [{EMAIL: "x"}],
    [{"content": "hi", "extra": {EMAIL: "x"}}],
])
def test_text_in_a_structure_key_or_as_a_key_does_not_leave_a_stream(deltas):
    out = run([chunk(delta) for delta in deltas] + [chunk({}, "stop"), SSE_DONE])
    joined = "".join(  # what a client assembles: every string of every delta, in order
        value for line in out.split("\n") if line.startswith("data: {")
        for value in _strings(orjson.loads(line[6:])["choices"]))
    assert EMAIL not in out and EMAIL not in joined


def _strings(value):  # type: ignore[no-untyped-def]
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_a_well_behaved_stream_keeps_its_structure():
    out = run([chunk({"role": "assistant"}),
               chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
               chunk({"role": "assistant", "tool_calls": [{"index": 0, "type": "function", "function": {"arguments": '{"a": 1}'}}]}),
               chunk({}, "tool_calls"), SSE_DONE])
    deltas = [orjson.loads(line[6:])["choices"][0]["delta"] for line in out.split("\n") if line.startswith("data: {")]
    assert any(delta.get("role") == "assistant" for delta in deltas)
    assert [call["id"] for delta in deltas for call in delta.get("tool_calls", []) if "id" in call] == ["call_1"]
    assert "".join(call.get("function", {}).get("arguments", "") for delta in deltas
                   for call in delta.get("tool_calls", [])) == '{"a": 1}'


def test_nothing_after_done_is_sent():
    out = run([chunk({"content": "a"}), SSE_DONE, chunk({"content": f"more {EMAIL}"}), SSE_DONE])
    assert out.count("[DONE]") == 1 and out.endswith("data: [DONE]\n\n") and "more" not in out


def test_a_data_line_after_a_lone_carriage_return_is_read():
    hidden = sse_event(orjson.dumps({"choices": [{"index": 0, "delta": {"content": f"to {EMAIL}"}, "finish_reason": None}]}))
    out = run([b": keep-alive\r" + hidden, b"event: x\r" + hidden, chunk({}, "stop"), SSE_DONE])
    assert EMAIL not in out  # a client splits lines at a lone CR too: it would read the data line

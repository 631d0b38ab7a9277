"""Answers of shapes no engine should send do not crash the output rules or restoring (a
RecursionError or TypeError there is a 500): nesting hundreds of levels deep is dropped, and
``choices`` that is not a list is not iterated."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from gatehouse.core.sse import SSE_DONE, sse_event
from gatehouse.guardrails.output import StreamGuard, guard_response
from gatehouse.guardrails.profiles import ProfileIndex
from gatehouse.guardrails.restore import Restorer
from gatehouse.guardrails.schema import Guardrails

PROFILE = ProfileIndex(Guardrails.model_validate({"profiles": {"p": {
    "output": True, "pii": {"action": "redact", "kinds": ["email"]}}}})).profiles["p"]
FLAGGING = ProfileIndex(Guardrails.model_validate({"profiles": {"p": {
    "output": True, "pii": {"action": "flag", "kinds": ["email"]}}}})).profiles["p"]
EMAIL = "jane.doe@example.com"


def deep(levels: int) -> bytes:
    return b"[" * levels + orjson.dumps(f"to {EMAIL}") + b"]" * levels


@pytest.mark.parametrize("levels", [200, 1000])
def test_an_answer_nested_hundreds_deep_is_answered_without_it(levels):
    message = orjson.loads(b'{"role": "assistant", "content": "hi", "x": ' + deep(levels) + b"}")
    body = {"choices": [{"index": 0, "message": message}]}
    Restorer({"[EMAIL_1]": EMAIL}).restore_response(body)
    guard_response(PROFILE, body)
    assert body["choices"][0]["message"]["content"] == "hi" and EMAIL not in orjson.dumps(body).decode()

    async def source():  # type: ignore[no-untyped-def]
        yield sse_event(b'{"choices": [{"index": 0, "delta": {"content": "hi", "x": ' + deep(levels) + b'}, "finish_reason": null}]}')
        yield SSE_DONE

    async def drain() -> list[bytes]:
        return [event async for event in StreamGuard(PROFILE, Restorer({"[EMAIL_1]": EMAIL})).wrap(source())]
    out = b"".join(asyncio.run(drain())).decode()
    assert EMAIL not in out and '"content":"hi"' in out


@pytest.mark.parametrize("choices", [5, 2.5, True])
def test_choices_that_are_not_a_list_do_not_crash(choices):
    for profile in (PROFILE, FLAGGING):
        body = {"choices": choices}
        Restorer({"[EMAIL_1]": EMAIL}).restore_response(body)
        guard_response(profile, body)


def test_token_ids_that_repeat_the_answer_are_refused_and_dropped():
    from gatehouse.guardrails.answer_fields import unscannable_parameter

    assert unscannable_parameter("chat/completions", {"return_token_ids": True}) == "return_token_ids"
    assert unscannable_parameter("chat/completions", {"return_token_ids": False}) is None
    body = {"choices": [{"index": 0, "message": {"content": f"to {EMAIL}"}, "token_ids": [1, 2, 3]}]}
    guard_response(PROFILE, body)
    assert "token_ids" not in body["choices"][0]

    async def source():  # type: ignore[no-untyped-def]
        yield sse_event(orjson.dumps({"choices": [{"index": 0, "delta": {"content": "hi"}, "token_ids": [7], "finish_reason": None}]}))
        yield sse_event(orjson.dumps({"choices": [{"index": 0, "delta": {}, "token_ids": [8], "finish_reason": "stop"}]}))
        yield SSE_DONE

    async def drain() -> list[bytes]:
        return [event async for event in StreamGuard(PROFILE).wrap(source())]
    assert b"token_ids" not in b"".join(asyncio.run(drain()))

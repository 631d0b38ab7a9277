"""A guarded stream does not re-read what it holds on every chunk: an answer in one-character
chunks (an engine, or an upstream, may send them so) costs a look at the held text only once
it has grown by an eighth, so the work per character is a constant, not the held length."""

from __future__ import annotations

import asyncio

import orjson

from gatehouse.core.sse import SSE_DONE, sse_event
from gatehouse.guardrails import output
from gatehouse.guardrails.profiles import ProfileIndex
from gatehouse.guardrails.schema import Guardrails

PROFILE = ProfileIndex(Guardrails.model_validate({"profiles": {"p": {
    "output": True, "pii": {"action": "redact"}, "secrets": {"action": "block"}}}})).profiles["p"]


def run(text: str) -> str:
    events = [sse_event(orjson.dumps({"choices": [{"index": 0, "delta": {"content": char}, "finish_reason": None}]}))
              for char in text] + [SSE_DONE]

    async def source():  # type: ignore[no-untyped-def]
        for event in events:
            yield event

    async def drain() -> list[bytes]:
        return [event async for event in output.StreamGuard(PROFILE).wrap(source())]
    return "".join(orjson.loads(event[6:])["choices"][0]["delta"].get("content", "")
                   for event in asyncio.run(drain()) if event != SSE_DONE)


def counting(monkeypatch) -> list[int]:  # type: ignore[no-untyped-def]
    calls: list[int] = []
    real = output.open_start

    def counted(text: str, *rest: int) -> int:
        calls.append(len(text))
        return real(text, *rest)
    monkeypatch.setattr(output, "open_start", counted)
    return calls


def test_prose_in_one_character_chunks_is_looked_at_seldom(monkeypatch):
    calls = counting(monkeypatch)
    prose = "the team reviewed the quarterly numbers before the meeting, write to jane.doe@example.com. " * 60
    body = {"choices": [{"index": 0, "message": {"content": prose}}]}
    output.guard_response(PROFILE, body)
    assert run(prose) == body["choices"][0]["message"]["content"]  # what it would be unstreamed
    assert len(calls) < len(prose) / 8


def test_a_long_open_run_is_not_reread_per_character(monkeypatch):
    calls = counting(monkeypatch)
    run("see bob@" + "a" * 8000 + " ok")  # an address held whole, as long as it grows
    assert sum(calls) < 40 * 8000  # each look reads the held run; one per character would be ~8000²/2

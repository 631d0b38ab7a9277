"""A stream is held back until no match can be open: for any chunking of a text with matches of
any length planted in it, in any field, nothing of a match is released before it is judged,
and the released text is the unstreamed redaction — unless the hold's bound is hit, and then
the choice stops, saying so, with nothing of the match released."""

from __future__ import annotations

import asyncio

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gatehouse.core.sse import SSE_DONE, sse_event
from gatehouse.guardrails.hold import LIMIT, open_start, window_start
from gatehouse.guardrails.output import HOLD_RULE, StreamGuard, guard_response
from gatehouse.guardrails.profiles import ProfileIndex
from gatehouse.guardrails.schema import Guardrails

PROFILE = ProfileIndex(Guardrails.model_validate({"profiles": {"p": {
    "output": True, "pii": {"action": "redact", "kinds": ["email"]}, "secrets": {"action": "redact"}}}})).profiles["p"]
BLOCKING = ProfileIndex(Guardrails.model_validate({"profiles": {"p": {
    "output": True, "secrets": {"action": "block"}}}})).profiles["p"]
FIELDS = ("content", "reasoning_content", "arguments")
WORDS = st.sampled_from(["the", "a", "report", "is", "ready,", "see", "below.", "\n", "ok", "x" * 30, "–", "12", "(b)"])


def address(labels: int) -> str:  # bob.smith@a.a.a…com: as long as it likes (the domain is unbounded)
    return "bob.smith@" + "a." * labels + "com"


def token(length: int) -> str:  # a GitHub token of any allowed length
    return "ghp_" + ("Zq8x" * 70)[:length]


def key_block(lines: int, words: int = 0) -> str:  # the header's words are unbounded too
    return ("-----BEGIN " + "RSA " * words + "PRIVATE KEY-----\n" + "MIIEpAIBAAKCAQEA7bq\n" * lines
            + "-----END RSA PRIVATE KEY-----")


def aws_secret(spaces: int) -> str:
    return "aws_secret_access_key" + " " * spaces + "= wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


SECRETS = st.one_of(st.integers(1, 400).map(address), st.integers(36, 251).map(token),
                    st.builds(key_block, st.integers(1, 120), st.integers(0, 150)),
                    st.one_of(st.sampled_from([300, 600]), st.integers(0, 600)).map(aws_secret))


CUTS = st.one_of(st.lists(st.integers(0, 10_000), max_size=40), st.integers(-9, -1).map(lambda size: [size]))


def events(field: str, pieces: list[str]) -> list[bytes]:
    def chunk(delta: dict, finish: str | None = None) -> bytes:
        return sse_event(orjson.dumps({"id": "c", "object": "chat.completion.chunk",
                                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}))

    out = [chunk({"role": "assistant"})]
    for text in pieces:
        if field == "arguments":
            out.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": text}}]}))
        else:
            out.append(chunk({field: text}))
    return [*out, chunk({}, "stop"), SSE_DONE]


def released(out: list[bytes], field: str) -> tuple[list[str], list[str | None]]:
    pieces, finishes = [], []
    for event in out:
        if event == SSE_DONE:
            continue
        for choice in orjson.loads(event[6:])["choices"]:
            delta = choice.get("delta", {})
            if field == "arguments":
                text = "".join(call.get("function", {}).get("arguments", "") for call in delta.get("tool_calls", []))
            else:
                text = delta.get(field) or ""
            pieces.append(text)
            finishes.append(choice.get("finish_reason"))
    return pieces, finishes


def stream(profile, field: str, pieces: list[str]) -> tuple[list[bytes], StreamGuard]:
    guard = StreamGuard(profile)

    async def source():  # type: ignore[no-untyped-def]
        for event in events(field, pieces):
            yield event

    async def collect() -> list[bytes]:
        return [event async for event in guard.wrap(source())]
    return asyncio.run(collect()), guard


def split(text: str, cuts: list[int]) -> list[str]:
    """At the given points, or (a single negative number) into pieces of that many characters."""
    if len(cuts) == 1 and cuts[0] < 0:
        return [text[i:i - cuts[0]] for i in range(0, len(text), -cuts[0])]
    points = sorted({cut % (len(text) + 1) for cut in cuts} | {0, len(text)})
    return [text[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]


def unstreamed(profile, field: str, text: str) -> tuple[str, str]:
    message: dict = ({"tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": text}}]}
                     if field == "arguments" else {field: text})
    body = {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
    guard_response(profile, body)
    message = body["choices"][0]["message"]
    said = message["tool_calls"][0]["function"]["arguments"] if field == "arguments" else message[field]
    return said, body["choices"][0]["finish_reason"]


@settings(max_examples=80, deadline=None)
@given(before=st.lists(WORDS, max_size=60), after=st.lists(WORDS, max_size=120), secret=SECRETS,
       field=st.sampled_from(FIELDS), cuts=CUTS)
@example(before=["hi"], after=["word"] * 90, secret=aws_secret(600), field="content", cuts=[-3])  # its name far back
def test_a_planted_match_of_any_length_is_never_released_part_way(before, after, secret, field, cuts):
    text = " ".join(before) + " " + secret + " " + " ".join(after)
    out, guard = stream(PROFILE, field, split(text, cuts))
    pieces, finishes = released(out, field)
    sent = ""
    for piece in pieces:
        sent += piece
        assert secret not in sent
    core = secret[-12:]  # the end of the match: were any of it released before the rest was judged, it shows
    assert core not in sent
    expected, _ = unstreamed(PROFILE, field, text)
    assert sent == expected
    assert HOLD_RULE not in [v.rule for v in guard.verdicts] and finishes[-1] == "stop"


@settings(max_examples=40, deadline=None)
@given(secret=SECRETS, field=st.sampled_from(FIELDS), cuts=CUTS)
def test_a_block_stops_the_choice_where_the_unstreamed_answer_is_cut(secret, field, cuts):
    text = "here it is: " + secret + " and more"
    out, _ = stream(BLOCKING, field, split(text, cuts))
    pieces, finishes = released(out, field)
    expected, finish = unstreamed(BLOCKING, field, text)
    if "ghp_" in secret or "PRIVATE" in secret or "aws_secret" in secret:
        assert finish == "content_filter" and "content_filter" in finishes and "stop" not in finishes
    assert "".join(pieces) == expected


def test_an_open_match_longer_than_the_bound_stops_the_choice_and_releases_none_of_it():
    secret = address(LIMIT)  # bob.smith@a.a.a.… : an open address longer than any field may be held
    text = "Write to " + secret + " today"
    out, guard = stream(PROFILE, "content", [text[i:i + 50] for i in range(0, len(text), 50)])
    pieces, finishes = released(out, "content")
    assert "".join(pieces) == "Write to " and "bob" not in "".join(pieces)
    assert finishes[-1] == "content_filter" and "stop" not in finishes
    assert [v.rule for v in guard.verdicts] == [HOLD_RULE] and out[-1] == SSE_DONE


def test_what_stays_open_without_the_detectors():
    assert window_start("a" * 10 + " " * 5 + "bbb", 0, 3) == 15
    assert window_start("x\u200by\u200bz", 0, 2) == 2  # invisible characters do not count
    assert open_start("see bob.smith@exa", 0, 3) == 4  # an address is open from its start
    assert open_start("see you all later", 0, 3) == 12  # the last word may be the start of a token
    assert open_start("-----BEGIN RSA PRIVATE KEY-----\nab cd ef gh", 0, 3) == 0
    assert open_start("-----BEGIN X-----\nab\n-----END X----- ok then", 0, 3) == 40


TERMS = ProfileIndex(Guardrails.model_validate({"profiles": {"p": {
    "output": True, "terms": {"action": "redact", "terms": ["project falcon"]}}}})).profiles["p"]


@settings(max_examples=40, deadline=None)
@given(padding=st.builds(str.__mul__, st.sampled_from([" ", "\n", "\u200b", "\u00ad", " \u0301", " \u200b"]),
                         st.one_of(st.sampled_from([400, 1500]), st.integers(0, 1500))),
       before=st.lists(WORDS, max_size=80), cuts=CUTS)
def test_a_banned_term_padded_with_blanks_or_invisible_characters_is_still_caught(padding, before, cuts):
    text = " ".join(before) + " project " + padding + "falcon is on " + "word " * 80
    out, guard = stream(TERMS, "content", split(text, cuts))
    sent = "".join(released(out, "content")[0])
    assert "falcon" not in sent and sent == unstreamed(TERMS, "content", text)[0]
    assert open_start("see \uff42\uff4f\uff42\uff20\uff45\uff58", 0, 3) == 4  # fullwidth forms, as normalisation folds them
    assert open_start("see bob\u200b@exa", 0, 3) == 4  # an invisible character does not end a run

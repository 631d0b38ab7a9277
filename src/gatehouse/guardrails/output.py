"""Guardrails on what the model says: whole responses, and streams as tokens arrive.

Every field that carries model text is scanned (``answer_fields``): content in any shape,
reasoning, refusals, tool-call names and arguments. In a stream each such field of each choice
is held back on its own until nothing that could still complete a match lies in what is
released (``hold``), so a match of any length is redacted or stopped before any of it reaches
the caller; the structure of a delta (its role, a tool call's id) goes on at once. A block ends
the choice the way OpenAI's content filter does — ``finish_reason: "content_filter"`` — keeping
what was safely released before it; so does a field whose open match outgrows what may be held.
"""

from __future__ import annotations

import copy
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gatehouse.core.sse import sse_event
from gatehouse.guardrails.answer_fields import (
    OUTPUT_DETECTORS,
    Path,
    bound_depth,
    carries_structure,
    drop_logprobs,
    drop_odd_keys,
    is_restorable,
    key_of,
    label,
    masks_output,
    model_texts,
    piece,
    set_text,
    settle_structure,
    without_text,
)
from gatehouse.guardrails.findings import Finding
from gatehouse.guardrails.hold import CONTEXT, LIMIT, STEP, WINDOW, WORDS, open_start, release_point, window_start
from gatehouse.guardrails.inspect import Verdict, redact
from gatehouse.guardrails.normalise import normalise
from gatehouse.guardrails.profiles import EffectiveProfile
from gatehouse.guardrails.restore import Restorer
from gatehouse.guardrails.schema import TermsRule

LINE_END = re.compile(rb"\r\n|\r|\n")
HOLD_RULE = "output.hold_limit"  # the verdict of a field stopped because its open match outgrew LIMIT


def _findings(profile: EffectiveProfile | None, text: str) -> list[Finding]:
    if profile is None:
        return []
    return sorted(profile.scan(text, OUTPUT_DETECTORS), key=lambda f: (f.start, -f.end))


def _apply(profile: EffectiveProfile | None, text: str, findings: list[Finding], counters: dict[str, int],
           field: str, offset: int, verdicts: list[Verdict]) -> tuple[str, bool]:
    """Redact ``text``; on a block, cut it before the match. Returns (text, blocked)."""
    redactions: list[Finding] = []
    cut: int | None = None
    for finding in findings:
        assert profile is not None  # findings come from the profile's scan: with no profile there are none
        rule = profile.rules[finding.detector]
        verdicts.append(Verdict(f"{finding.detector}.{finding.kind}", rule.action, rule.shadow, field,
                                offset + finding.start, offset + finding.end, finding.score))
        if rule.shadow or rule.action == "flag":
            continue
        if rule.action == "block":
            cut = finding.start
            break
        redactions.append(finding)
    if cut is None:
        return redact(text, redactions, counters), False
    return redact(text[:cut], [f for f in redactions if f.start < cut], counters), True


def guard_response(profile: EffectiveProfile, body: dict[str, Any]) -> list[Verdict]:
    """Apply output rules to every field of model text of a whole (non-streamed) response, in
    place; a block cuts that field before the match and ends the choice as ``content_filter``."""
    verdicts: list[Verdict] = []
    masking = masks_output(profile)
    if masking and "choices" in body and not isinstance(body["choices"], list):
        body["choices"] = []  # not the shape of an answer: nothing in it is passed on unread
    choices = body.get("choices")
    for index, choice in enumerate(choices if isinstance(choices, list) else []):
        if not isinstance(choice, dict):
            continue
        bound_depth(choice)
        if masking:
            for key in ("message", "delta"):
                if key in choice:
                    choice[key] = drop_odd_keys(choice[key])
        blocked = False
        for path, text in list(model_texts(choice)):
            changed, stopped = _apply(profile, text, _findings(profile, text), {}, label(index, path), 0, verdicts)
            if changed != text:
                set_text(choice, path, changed)
            blocked = blocked or stopped
        if masking:
            drop_logprobs(choice)
        if blocked:
            choice["finish_reason"] = "content_filter"
    return verdicts


def _data(event: bytes) -> bytes | None:
    """The data of a server-sent event (``data:`` with or without a space; several data lines
    are one value, joined by newlines), or None. Lines end at CR, LF or CRLF, as the standard
    and clients (the OpenAI SDK, EventSource) read them: a data line after a lone CR is data."""
    lines = [line[5:].strip() for line in LINE_END.split(event) if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


def _window(profile: EffectiveProfile | None) -> tuple[int, int]:
    """The hold window, in characters and in words: longer than any bounded match, the
    profile's longest banned term included."""
    rule = profile.rules.get("terms") if profile is not None else None
    terms = rule.terms if isinstance(rule, TermsRule) else ()
    return (max([WINDOW, *(len(normalise(term).text) + 2 for term in terms)]),
            max([WORDS, *(len(term.split()) + 2 for term in terms)]))


class _Field:
    """One field of one choice in a stream: what is held, and the context released before it."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name        # the verdicts' field
        self.pending = ""       # received, not yet released
        self.context = ""       # the end of what was released, raw (CONTEXT visible characters), seen again by the detectors
        self.offset = 0         # characters of the field already released or dropped
        self.counters: dict[str, int] = {}
        self.look_at = 0        # len(pending) at which to scan again while a found match is open


class _Choice:
    def __init__(self) -> None:
        self.fields: dict[tuple[str | int, ...], _Field] = {}  # by key_of(path)
        self.template: dict[str, Any] | None = None  # the last chunk's envelope (id, object, model…)
        self.stopped = False
        self.structure: dict[tuple[str | int, ...], Any] = {}  # each structure key's first value (settle_structure)


class StreamGuard:
    """Output rules (``profile``) and restoration (``restorer``) on a stream; either may be None."""

    def __init__(self, profile: EffectiveProfile | None, restorer: Restorer | None = None) -> None:
        self.profile = profile
        self.restorer = restorer
        self.fed: dict[int, tuple[str | int, ...]] = {}  # by choice: the message-text field the restorer last read
        self.masking = masks_output(profile)
        self.window, self.words = _window(profile)
        self.verdicts: list[Verdict] = []
        self.choices: dict[int, _Choice] = {}

    # -- one field ------------------------------------------------------------------------

    def _release(self, index: int, field: _Field, final: bool) -> tuple[str, bool]:
        """What of ``field`` can go now, redacted; and whether the choice must stop."""
        if self.profile is None:
            released, field.pending = field.pending, ""
            return released, False
        if not final and len(field.pending) < field.look_at:
            return "", False  # a match found last time is still open: nothing new can be released
        base = len(field.context)
        text = field.context + field.pending
        # at the bound only the window counts: the words before an open run that outgrew it are released
        words = self.words if len(field.pending) <= LIMIT else 0
        cut = len(text) if final else open_start(text, base, self.window, words)
        if cut < base + STEP and not final and len(field.pending) <= LIMIT:
            # a run or a key block is open, or too little is safe to be worth a scan: look again
            # once what is held has grown by an eighth (each look reads it all: per character,
            # a constant, not the held length), and at the bound in time
            field.look_at = min(len(field.pending) + max(16, len(field.pending) // 8), LIMIT + 1)
            return "", False
        findings = _findings(self.profile, text)
        cut = cut if final else release_point(text, base, findings, cut)
        if cut <= base and not final:
            grown = len(field.pending) + max(64, len(field.pending) // 4)
            field.look_at = min(grown, LIMIT + 1) if findings else 0  # the bound is still checked in time
            return "", self._over_limit(index, field)
        field.look_at = 0
        taken = [Finding(f.detector, f.kind, max(f.start, base) - base, f.end - base, f.score)
                 for f in findings if f.end > base and f.start < cut]
        released, blocked = _apply(self.profile, text[base:cut], taken, field.counters, field.name, field.offset,
                                   self.verdicts)
        released_raw = text[:cut]  # measured in visible characters: a pattern's prefix may sit across a run of blanks
        field.context = released_raw[window_start(released_raw, max(0, cut - LIMIT), CONTEXT):]
        field.pending, field.offset = text[cut:], field.offset + cut - base
        return released, blocked or (not final and self._over_limit(index, field))

    def _over_limit(self, index: int, field: _Field) -> bool:
        if len(field.pending) <= LIMIT:
            return False
        self.verdicts.append(Verdict(HOLD_RULE, "block", False, field.name, field.offset,
                                     field.offset + len(field.pending), 1.0))
        return True

    def _feed(self, index: int, field: _Field, text: str) -> str:
        if self.restorer is not None and is_restorable(field.path):
            # one reading across a choice's message text, whatever its shape (a string, parts),
            # as a client shows it and as a whole answer is read: a tag one part opens holds the next
            self.fed[index] = key_of(field.path)
            return self.restorer.feed(index, text)
        return text

    # -- events ---------------------------------------------------------------------------

    def _event(self, state: _Choice, choice: dict[str, Any]) -> bytes:
        payload: dict[str, Any] = copy.deepcopy(state.template) if state.template else {"object": "chat.completion.chunk"}
        payload.pop("usage", None)
        payload["choices"] = [choice]
        return sse_event(orjson.dumps(payload))

    def _piece(self, index: int, state: _Choice, field: _Field, text: str) -> bytes:
        choice = {"index": index, **piece(field.path, text), "finish_reason": None}
        if field.path[0] == "delta":
            choice.setdefault("logprobs", None)
        return self._event(state, choice)

    def _stop(self, index: int, state: _Choice) -> bytes:
        state.stopped = True
        for field in state.fields.values():
            field.pending = ""
        chat = any(field.path[0] == "delta" for field in state.fields.values()) or not state.fields
        shape: dict[str, Any] = {"delta": {}} if chat else {"text": ""}
        return self._event(state, {"index": index, **shape, "finish_reason": "content_filter"})

    def _release_all(self, index: int, state: _Choice, final: bool,
                     only: tuple[str | int, ...] | None = None) -> list[bytes]:
        events: list[bytes] = []
        for key, field in list(state.fields.items()):
            if state.stopped:
                break
            if only is not None and key != only:
                continue
            if final and self.restorer is not None and self.fed.get(index) == key:
                field.pending += self.restorer.flush(index)  # what is held goes where it was last fed
            released, stop = self._release(index, field, final)
            if released:
                events.append(self._piece(index, state, field, released))
            if stop:
                events.append(self._stop(index, state))
        return events

    async def wrap(self, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            async for event in self._guarded(events):
                yield event
            for event in self._flush_all():  # a stream that ended without [DONE] or finish_reason
                yield event
        finally:
            closer = getattr(events, "aclose", None)
            if closer is not None:  # free the engine at once, as the relay does for an unguarded stream
                await closer()

    async def _guarded(self, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for event in events:
            data = _data(event)
            if data is None:  # a comment (keep-alive), an event with no data: no model text
                yield event
                continue
            if data == b"[DONE]":
                for out in self._flush_all():
                    yield out
                yield event
                return  # the answer is over: what an engine sends after it would be judged after its record
            try:
                payload = orjson.loads(data)
            except orjson.JSONDecodeError:
                payload = None
            if not isinstance(payload, dict) or ("choices" in payload and not isinstance(payload["choices"], list)):
                if self.profile is None:
                    yield event
                continue  # data the output rules cannot read is not passed on unread
            choices = payload.get("choices")
            if not choices:
                yield event  # usage, errors: no model text
                continue
            for out in self._chunk(payload, choices):
                yield out

    def _chunk(self, payload: dict[str, Any], choices: list[Any]) -> list[bytes]:
        events: list[bytes] = []
        passthrough: list[dict[str, Any]] = []
        for choice in choices:
            self._choice(payload, choice, events, passthrough)
        if passthrough:
            events.append(sse_event(orjson.dumps({**payload, "choices": passthrough})))
        return events

    def _choice(self, payload: dict[str, Any], choice: Any, events: list[bytes], passthrough: list[dict[str, Any]]) -> None:
        if not isinstance(choice, dict):
            return
        index = choice.get("index", 0)
        index = index if isinstance(index, int) and not isinstance(index, bool) else 0
        state = self.choices.setdefault(index, _Choice())
        if state.stopped:
            return  # the rest of a stopped choice is dropped
        state.template = {key: value for key, value in payload.items() if key != "choices"}
        bound_depth(choice)
        if self.masking and isinstance(choice.get("delta"), dict):
            settle_structure(choice["delta"], ("delta",), state.structure, state.fields)
        texts = list(model_texts(choice))
        for path, text in texts:
            field = state.fields.get(key_of(path))
            if field is None:  # the first chunk's shape is the field's: its skeleton goes with each piece
                field = state.fields[key_of(path)] = _Field(path, label(index, path))
            field.pending += self._feed(index, field, text)
        rest = {key: value for key, value in choice.items() if key not in ("message", "delta", "text")}
        if self.masking:
            drop_logprobs(rest)
        delta = without_text(choice["delta"]) if isinstance(choice.get("delta"), dict) else None
        finished = choice.get("finish_reason") is not None
        if delta is not None and carries_structure(delta) and not finished:
            events.append(self._event(state, {**rest, "delta": delta}))  # role, tool-call ids: at once
        for path, _ in texts:
            events += self._release_all(index, state, final=False, only=key_of(path))
        if finished and not state.stopped:
            events += self._release_all(index, state, final=True)
            if not state.stopped:
                passthrough.append({**rest, "delta": delta} if delta is not None else {**rest, "text": ""})
        elif not texts and delta is None and not finished:
            passthrough.append(choice)  # no model text in it (a completion choice with no text key)

    def _flush_all(self) -> list[bytes]:
        """Release what every choice still holds (the end of the stream)."""
        events: list[bytes] = []
        for index, state in self.choices.items():
            if not state.stopped:
                events += self._release_all(index, state, final=True)
        return events

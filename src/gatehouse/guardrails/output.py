"""Guardrails on what the model says: whole responses, and streams as tokens arrive.

A stream is held back by a small look-back window (``WINDOW`` characters per choice): text is
released only once nothing that could still complete a match lies in it, so a match is
redacted or stopped before any of it reaches the caller. A block ends the choice the way
OpenAI's content filter does — ``finish_reason: "content_filter"`` — keeping what was safely
released before it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gatehouse.core.sse import sse_event
from gatehouse.guardrails.findings import Finding
from gatehouse.guardrails.inspect import Verdict, redact
from gatehouse.guardrails.profiles import EffectiveProfile

PLACEHOLDER = re.compile(r"\[[A-Z0-9_]+_\d+\]")  # as inspect.redact writes them
OUTPUT_DETECTORS = ("pii", "secrets", "terms")  # injection is about what callers send
WINDOW = 256  # characters held back per choice: longer than any pattern needs to be recognised


class Restorer:
    """Puts a caller's redacted values back where the answer repeats their placeholders
    (rules with ``restore: true``), before the output rules look at the answer.

    Streamed text is held back only from an unclosed ``[`` near its end: a placeholder split
    across two chunks is restored whole, and nothing else waits."""

    def __init__(self, originals: dict[str, str]) -> None:
        self.originals = originals
        self.longest = max(map(len, originals))
        self.held: dict[int, str] = {}
        self.word: dict[int, str] = {}  # per choice, the released text since its last whitespace

    def apply(self, text: str, before: str = "") -> str:
        """Restore the placeholders in ``text`` (``before``: the text released just before it) —
        except inside a URL or a link target, where a client could send the value on to whoever
        the model (or a document it read) chose: ``https://x/?q=[EMAIL_1]`` stays as it is."""
        def put_back(match: re.Match[str]) -> str:
            word = _last_word(before + text[:match.start()])
            if "://" in word or "](" in word or word.lower().startswith(("www.", "mailto:", "data:")):
                return match.group(0)
            return self.originals.get(match.group(0), match.group(0))
        return PLACEHOLDER.sub(put_back, text)

    def _released(self, index: int, text: str) -> str:
        restored = self.apply(text, self.word.get(index, ""))
        self.word[index] = _last_word(self.word.get(index, "") + text)[-2048:]
        return restored

    def feed(self, index: int, text: str) -> str:
        text = self.held.pop(index, "") + text
        start = text.rfind("[", max(0, len(text) - self.longest + 1))
        if start != -1 and "]" not in text[start:]:
            self.held[index], text = text[start:], text[:start]
        return self._released(index, text)

    def flush(self, index: int) -> str:
        return self._released(index, self.held.pop(index, ""))

    def restore_response(self, body: dict[str, Any]) -> None:
        for choice in body.get("choices") or []:
            located = _content_key(choice) if isinstance(choice, dict) else None
            if located is not None:
                holder, key = located
                holder[key] = self.apply(holder[key])


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


def _content_key(choice: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """Where a choice (or a streamed delta) keeps its text: (container, key)."""
    for holder, key in ((choice.get("message"), "content"), (choice.get("delta"), "content"), (choice, "text")):
        if isinstance(holder, dict) and isinstance(holder.get(key), str):
            return holder, key
    return None


def guard_response(profile: EffectiveProfile, body: dict[str, Any]) -> list[Verdict]:
    """Apply output rules to a whole (non-streamed) response, in place."""
    verdicts: list[Verdict] = []
    for index, choice in enumerate(body.get("choices") or []):
        if not isinstance(choice, dict):
            continue
        located = _content_key(choice)
        if located is None:
            continue
        holder, key = located
        text, blocked = _apply(profile, holder[key], _findings(profile, holder[key]), {}, f"choices[{index}]", 0, verdicts)
        holder[key] = text
        if blocked:
            choice["finish_reason"] = "content_filter"
    return verdicts


def _last_word(text: str) -> str:
    """The word ``text`` ends in ("" when it ends in whitespace)."""
    if not text or text[-1].isspace():
        return ""
    return text.rsplit(None, 1)[-1]


def _data(event: bytes) -> bytes | None:
    """The data of a server-sent event (``data:`` with or without a space), or None."""
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            return line[5:].strip()
    return None


class _Choice:
    def __init__(self) -> None:
        self.pending = ""      # received, not yet released
        self.offset = 0        # characters of the output already released or dropped
        self.template: dict[str, Any] | None = None
        self.counters: dict[str, int] = {}
        self.stopped = False


class StreamGuard:
    """Output rules (``profile``) and restoration (``restorer``) on a stream; either may be None."""

    def __init__(self, profile: EffectiveProfile | None, restorer: Restorer | None = None) -> None:
        self.profile = profile
        self.restorer = restorer
        self.window = WINDOW if profile is not None else 0  # restoring alone holds back nothing more
        self.verdicts: list[Verdict] = []
        self.choices: dict[int, _Choice] = {}

    def _release(self, index: int, state: _Choice, final: bool) -> list[bytes]:
        if final and self.restorer is not None:
            state.pending += self.restorer.flush(index)
        text = state.pending
        findings = _findings(self.profile, text)
        cut = len(text) if final else max(0, len(text) - self.window)
        for finding in findings:  # never cut through a match: keep all of it for the next look
            if finding.start < cut < finding.end:
                cut = finding.start
        released, blocked = _apply(self.profile, text[:cut], [f for f in findings if f.end <= cut], state.counters,
                                   f"choices[{index}]", state.offset, self.verdicts)
        state.pending, state.offset = text[cut:], state.offset + cut
        events = [self._chunk(state, index, released)] if released else []
        if blocked:
            state.stopped, state.pending = True, ""
            events.append(self._chunk(state, index, None, finish="content_filter"))
        return events

    def _chunk(self, state: _Choice, index: int, text: str | None, finish: str | None = None) -> bytes:
        payload = copy.deepcopy(state.template) if state.template else {"object": "chat.completion.chunk", "choices": [{}]}
        choice: dict[str, Any] = {"index": index, "finish_reason": finish}
        if "delta" in (payload["choices"][0] if payload.get("choices") else {}):
            choice["delta"] = {"content": text} if text is not None else {}
        else:
            choice["text"] = text or ""
        payload["choices"] = [choice]
        payload.pop("usage", None)
        return sse_event(orjson.dumps(payload))

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
                continue
            try:
                payload = orjson.loads(data)
            except orjson.JSONDecodeError:
                yield event
                continue
            choices = payload.get("choices") if isinstance(payload, dict) else None
            if not isinstance(choices, list) or not choices:
                yield event  # usage, errors: no model text
                continue
            passthrough = []
            for choice in choices:
                if not isinstance(choice, dict):
                    continue
                index = choice.get("index", 0) if isinstance(choice.get("index", 0), int) else 0
                state = self.choices.setdefault(index, _Choice())
                if state.stopped:
                    continue  # the rest of a blocked choice is dropped
                located = _content_key(choice)
                if located is not None and located[1] in located[0]:
                    holder, key = located
                    state.pending += self.restorer.feed(index, holder[key]) if self.restorer else holder[key]
                    state.template = {**payload, "choices": [choice]}
                    if holder is choice.get("delta") and len(holder) > 1 and choice.get("finish_reason") is None:
                        # the role, tool calls…: go on at once, ahead of the text, which may be held
                        others = {**choice, "delta": {k: v for k, v in holder.items() if k != key}}
                        yield sse_event(orjson.dumps({**payload, "choices": [others]}))
                    for out in self._release(index, state, final=False):
                        yield out
                if choice.get("finish_reason") is not None:
                    for out in self._release(index, state, final=True):
                        yield out
                    if not state.stopped:
                        rest = {**choice}
                        if located is not None:
                            rest = copy.deepcopy(choice)
                            relocated = _content_key(rest)
                            assert relocated is not None  # a copy keeps its text where the choice does
                            holder, key = relocated
                            holder[key] = ""
                        passthrough.append(rest)
                elif located is None:
                    passthrough.append(choice)  # a role-only delta, tool calls: nothing to hold
            if passthrough:
                yield sse_event(orjson.dumps({**payload, "choices": passthrough}))

    def _flush_all(self) -> list[bytes]:
        """Release what every choice still holds (the end of the stream)."""
        events: list[bytes] = []
        for index, state in self.choices.items():
            held = self.restorer is not None and index in self.restorer.held
            if (state.pending or held) and not state.stopped:
                events += self._release(index, state, final=True)
        return events

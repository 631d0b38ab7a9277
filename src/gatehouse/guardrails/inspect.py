"""Apply a guardrail profile to a request's text, before it goes anywhere.

Verdicts name the rule, the action, where (which field, which offsets) — never the matched
text. Redaction replaces a span with a numbered placeholder (``[EMAIL_1]``); a block stops the
request with an error that names the rule; flag records; shadow records what the action would
have done and enforces nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gatehouse.guardrails.findings import Finding
from gatehouse.guardrails.profiles import EffectiveProfile

RAISES_TO_CONFIDENTIAL = frozenset({"pii", "secrets"})


@dataclass(frozen=True, slots=True)
class Verdict:
    rule: str       # detector.kind, e.g. pii.email
    action: str     # redact | block | flag
    shadow: bool
    field: str      # where in the request: messages[1].content, prompt, input[0]
    start: int
    end: int
    score: float

    def as_dict(self) -> dict:
        return {"rule": self.rule, "action": self.action, "shadow": self.shadow, "field": self.field,
                "start": self.start, "end": self.end, "score": round(self.score, 2)}


class Blocked(Exception):
    def __init__(self, verdict: Verdict, verdicts: list[Verdict]) -> None:
        super().__init__(verdict.rule)
        self.verdict = verdict
        self.verdicts = verdicts


@dataclass
class Inspection:
    verdicts: list[Verdict]
    sensitive: bool  # PII or secrets go upstream as they are (flagged or shadowed): at least confidential
    originals: dict[str, str] = field(default_factory=dict)  # placeholder → value, for rules with restore


SKIPPED_KEYS = frozenset({"role", "type", "id", "tool_call_id", "image_url", "input_audio", "file"})  # no caller prose


class Unscannable(Exception):
    """Text the detectors cannot read (token ids): refused rather than passed unseen."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


# Keys of the OpenAI request shapes: named in a verdict's field path as they are. Any other key
# is the caller's text (a JSON schema's property names, an extension's fields) and is named by
# its position only, so no decision record ever holds it.
SCHEMA_KEYS = frozenset({"content", "text", "name", "arguments", "function", "tool_calls", "description", "parameters",
                         "refusal", "properties", "items", "required", "enum", "title", "default", "strict", "audio",
                         "data", "reasoning_content", "examples"})


def _strings(value: Any, field: str, container: Any, key: Any) -> Iterator[tuple[str, str, Any, Any]]:
    if isinstance(value, str):
        yield field, value, container, key
    elif isinstance(value, dict):
        for position, (name, item) in enumerate(value.items()):
            if name not in SKIPPED_KEYS:
                label = name if name in SCHEMA_KEYS else f"<key {position}>"
                yield from _strings(item, f"{field}.{label}", value, name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{field}[{index}]", value, index)


def _texts(endpoint: str, body: dict[str, Any]) -> Iterator[tuple[str, str, Any, Any]]:
    """(field, text, container, key): every string of the caller's that goes upstream —
    message contents and their parts, names, tool-call arguments, tool descriptions; prompts,
    suffixes and embedding inputs. Token-id prompts and inputs cannot be read: Unscannable."""
    if endpoint == "chat/completions":
        yield from _strings(body.get("messages"), "messages", body, "messages")
        yield from _strings(body.get("tools"), "tools", body, "tools")
        return
    key = "prompt" if endpoint == "completions" else "input"
    value = body.get(key)
    items = value if isinstance(value, list) else [value]
    if any(isinstance(item, int | list) for item in items):
        raise Unscannable(key)
    yield from _strings(value, key, body, key)
    if endpoint == "completions":
        yield from _strings(body.get("suffix"), "suffix", body, "suffix")


def caller_text(endpoint: str, body: dict[str, Any]) -> str:
    """Every string of the caller's that goes upstream, one per line (for counting tokens)."""
    return "\n".join(text for _, text, _, _ in _texts(endpoint, body))


def redact(text: str, spans: list[Finding], counters: dict[str, int],
           originals: dict[str, str] | None = None, restorable: Callable[[Finding], bool] | None = None) -> str:
    """Replace each span (sorted by start) with a placeholder; overlapping spans become one,
    named after the first, so no part of either is left in the text. With ``originals``, each
    placeholder whose spans are all ``restorable`` is mapped to the text it replaced."""
    pieces: list[str] = []
    position = 0
    group: list[Finding] = []  # the spans behind the latest placeholder

    def remember() -> None:
        if originals is not None and group and restorable is not None and all(map(restorable, group)):
            originals[pieces[-1]] = text[group[0].start:position]

    for finding in spans:
        if finding.start < position:  # overlaps the previous placeholder: extend it
            position = max(position, finding.end)
            group.append(finding)
            continue
        remember()
        counters[finding.kind] = counters.get(finding.kind, 0) + 1
        pieces += [text[position:finding.start], f"[{finding.kind.upper()}_{counters[finding.kind]}]"]
        position, group = finding.end, [finding]
    remember()
    return "".join(pieces) + text[position:]


def inspect_input(profile: EffectiveProfile, endpoint: str, body: dict[str, Any]) -> Inspection:
    """Scan and act, changing ``body`` in place for redactions. Raises Blocked or Unscannable."""
    texts = list(_texts(endpoint, body))
    if profile.max_input_bytes is not None:  # before any scanning: an oversized body costs nothing more
        size = sum(len(text.encode()) for _, text, _, _ in texts)
        if size > profile.max_input_bytes:
            verdict = Verdict("size.max_input_bytes", "block", False, "*", 0, size, 1.0)
            raise Blocked(verdict, [verdict])
    verdicts: list[Verdict] = []
    blocked: Verdict | None = None
    sensitive = False
    counters: dict[str, int] = {}
    originals: dict[str, str] = {}

    def restorable(finding: Finding) -> bool:
        return profile.rules[finding.detector].restore

    for where, text, container, key in texts:
        redactions: list[Finding] = []
        for finding in sorted(profile.scan(text), key=lambda f: (f.start, -f.end)):
            rule = profile.rules[finding.detector]
            verdict = Verdict(f"{finding.detector}.{finding.kind}", rule.action, rule.shadow, where,
                              finding.start, finding.end, finding.score)
            verdicts.append(verdict)
            if rule.shadow:
                continue  # recorded; nothing enforced, not even a higher data class
            if rule.action == "flag":
                sensitive = sensitive or finding.detector in RAISES_TO_CONFIDENTIAL
            elif rule.action == "block" and blocked is None:
                blocked = verdict
            elif rule.action == "redact":
                redactions.append(finding)
        if redactions and blocked is None:
            container[key] = redact(text, redactions, counters, originals, restorable)
    if blocked is not None:
        raise Blocked(blocked, verdicts)
    return Inspection(verdicts, sensitive, originals)

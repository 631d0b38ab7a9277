"""Apply a guardrail profile to a request's text, before it goes anywhere.

Verdicts name the rule, the action, where (which field, which offsets) — never the matched
text. Redaction replaces a span with a numbered placeholder (``[EMAIL_1]``); a block stops the
request with an error that names the rule; flag records; shadow records what the action would
have done and enforces nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
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


def _texts(endpoint: str, body: dict[str, Any]) -> Iterator[tuple[str, str, Any, Any]]:
    """(field name, text, container, key): every piece of caller text the request carries."""
    if endpoint == "chat/completions":
        for index, message in enumerate(body.get("messages") or []):
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                yield f"messages[{index}].content", content, message, "content"
            elif isinstance(content, list):
                for part_index, part in enumerate(content):
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        yield f"messages[{index}].content[{part_index}].text", part["text"], part, "text"
    else:
        key = "prompt" if endpoint == "completions" else "input"
        value = body.get(key)
        if isinstance(value, str):
            yield key, value, body, key
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, str):
                    yield f"{key}[{index}]", item, value, index


def _redact(text: str, spans: list[Finding], counters: dict[str, int]) -> str:
    pieces, position = [], 0
    for finding in spans:
        counters[finding.kind] = counters.get(finding.kind, 0) + 1
        pieces += [text[position:finding.start], f"[{finding.kind.upper()}_{counters[finding.kind]}]"]
        position = finding.end
    return "".join(pieces) + text[position:]


def inspect_input(profile: EffectiveProfile, endpoint: str, body: dict[str, Any]) -> Inspection:
    """Scan and act, changing ``body`` in place for redactions. Raises Blocked."""
    verdicts: list[Verdict] = []
    blocked: Verdict | None = None
    sensitive = False
    counters: dict[str, int] = {}
    texts = list(_texts(endpoint, body))
    if profile.max_input_bytes is not None:
        size = sum(len(text.encode()) for _, text, _, _ in texts)
        if size > profile.max_input_bytes:
            blocked = Verdict("size.max_input_bytes", "block", False, "*", 0, size, 1.0)
            verdicts.append(blocked)
    for field, text, container, key in texts:
        redactions: list[Finding] = []
        for finding in sorted(profile.scan(text), key=lambda f: (f.start, -f.end)):
            rule = profile.rules[finding.detector]
            verdict = Verdict(f"{finding.detector}.{finding.kind}", rule.action, rule.shadow, field,
                              finding.start, finding.end, finding.score)
            verdicts.append(verdict)
            if rule.shadow or rule.action == "flag":
                sensitive = sensitive or finding.detector in RAISES_TO_CONFIDENTIAL
            elif rule.action == "block" and blocked is None:
                blocked = verdict
            elif rule.action == "redact" and not any(r.start < finding.end and finding.start < r.end for r in redactions):
                redactions.append(finding)
        if redactions and blocked is None:
            container[key] = _redact(text, redactions, counters)
    if blocked is not None:
        raise Blocked(blocked, verdicts)
    return Inspection(verdicts, sensitive)

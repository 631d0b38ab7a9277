"""Where a model's answer carries text, and what in an answer cannot be scanned as text.

Model text is every string of a choice's ``message`` (or a streamed ``delta``) but its
structure — content as a string or a list of parts, ``reasoning_content`` / ``reasoning``,
``refusal``, tool calls (names and arguments), the legacy ``function_call``, audio transcripts,
annotations, whatever an engine adds — and a completion choice's ``text``. Found by walking,
not by a list of known fields, so a field nobody listed is scanned, not passed.

Log-probabilities repeat the answer token by token (and offer the tokens the model nearly
chose), where no redaction can follow them: while output rules redact or block, a request that
asks for them is refused and any an engine sends anyway are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from gatehouse.guardrails.profiles import EffectiveProfile

OUTPUT_DETECTORS = ("pii", "secrets", "terms")  # injection is about what callers send
STRUCTURE = frozenset({"role", "type", "id", "index", "tool_call_id"})  # keys whose strings are not model prose
SKELETON = frozenset({"index", "type"})  # repeated with each streamed piece of a list item (clients key on them)
FIELD_NAME = re.compile(r"[a-z_]{1,40}")

# Path steps: a dict key, or a list item: its identity (its ``index`` field where it has one —
# streamed tool calls are keyed so — else its position), its position, and the skeleton to
# repeat when a piece of it is sent.
Item = tuple[int, int, tuple[tuple[str, Any], ...]]
Step = str | Item
Path = tuple[Step, ...]


def model_texts(choice: dict[str, Any]) -> Iterator[tuple[Path, str]]:
    """(path, text) for every string of model text in a choice (or a streamed chunk's choice)."""
    for key in ("text", "message", "delta"):  # whatever their shape: a message sent as a bare string is text too
        if key in choice:
            yield from _walk(choice[key], (key,))


def _walk(value: Any, path: Path) -> Iterator[tuple[Path, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for name, item in value.items():
            if name not in STRUCTURE:
                yield from _walk(item, (*path, name))
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from _walk(item, (*path, _item(position, item)))


def _item(position: int, item: Any) -> Item:
    if not isinstance(item, dict):
        return position, position, ()
    index = item.get("index")
    ident = index if isinstance(index, int) and not isinstance(index, bool) else position
    return ident, position, tuple((key, item[key]) for key in sorted(SKELETON) if isinstance(item.get(key), str | int))


def key_of(path: Path) -> tuple[str | int, ...]:
    """A field's identity across a stream's chunks: its path without the items' skeletons (a
    tool call's ``type`` comes in its first chunk only)."""
    return tuple(step if isinstance(step, str) else step[0] for step in path)


def set_text(choice: dict[str, Any], path: Path, text: str) -> None:
    """Replace the string at ``path`` (as ``model_texts`` found it) in place."""
    holder: Any = choice
    for step in path[:-1]:
        holder = holder[step] if isinstance(step, str) else holder[step[1]]  # by position: two items may share an index
    last = path[-1]
    holder[last if isinstance(last, str) else last[1]] = text


def piece(path: Path, text: str) -> dict[str, Any]:
    """A choice fragment that carries ``text`` at ``path`` and nothing else: what a stream sends
    for a released piece of one field (``{"delta": {"tool_calls": [{"index": 0, "type":
    "function", "function": {"arguments": "…"}}]}}``)."""
    value: Any = text
    for step in reversed(path[1:]):
        if isinstance(step, str):
            value = {step: value}
        else:
            value = [{**dict(step[2]), **value}] if isinstance(value, dict) else [value]
    head = path[0]
    assert isinstance(head, str)  # a path starts at a key of the choice: message, delta or text
    return {head: value}


def without_text(value: Any) -> Any:
    """A copy of a message or delta with its model text taken out: its structure (role, ids,
    types), which a stream can send at once. An object keeps its emptied objects (clients expect
    a tool call's ``function``); a list keeps only the items that still say something."""
    if isinstance(value, dict):
        kept = {}
        for name, item in value.items():
            if name in STRUCTURE:
                kept[name] = item
            elif not isinstance(item, str):
                stripped = without_text(item)
                if stripped != []:
                    kept[name] = stripped
        return kept
    if isinstance(value, list):
        return [stripped for stripped in map(without_text, value) if carries_structure(stripped)]
    return value


def carries_structure(value: Any) -> bool:
    """Whether a stripped delta says anything (a role, an id, a flag) beyond list keys and Nones."""
    if isinstance(value, dict):
        return any((name not in SKELETON and item is not None and not isinstance(item, dict | list))
                   or carries_structure(item) for name, item in value.items())
    if isinstance(value, list):
        return any(map(carries_structure, value))
    return False


def is_restorable(path: Path) -> bool:
    """Message text a caller reads, where their own values may come back: content (a string or
    a text part) and a completion's text. Never reasoning, tool-call arguments or names."""
    return path == ("text",) or (len(path) >= 2 and path[1] == "content" and (len(path) == 2 or path[-1] == "text"))


def label(index: int, path: Path) -> str:
    """A verdict's field: ``choices[0].message.tool_calls[1].function.arguments``. Keys outside
    the usual shapes are named by position only."""
    out = f"choices[{index}]"
    for step in path:
        if isinstance(step, str):
            out += "." + (step if FIELD_NAME.fullmatch(step) else "<key>")
        else:
            out += f"[{step[0]}]"
    return out


def masks_output(profile: EffectiveProfile | None) -> bool:
    """Whether a profile's output rules change answers (redact or block, not shadowed)."""
    if profile is None or not profile.output:
        return False
    return any(rule.action in ("redact", "block") and not rule.shadow
               for detector, rule in profile.rules.items() if detector in OUTPUT_DETECTORS)


def unscannable_parameter(endpoint: str, body: dict[str, Any]) -> str | None:
    """The request parameter that asks for answer text the output rules cannot follow —
    ``logprobs``, ``top_logprobs``, or spoken output (``modalities``, ``audio``) — or None."""
    if endpoint == "embeddings":
        return None
    logprobs = body.get("logprobs")
    if logprobs is not None and logprobs is not False:  # completions: 0 still returns the sampled tokens
        return "logprobs"
    top = body.get("top_logprobs")
    if top is not None and not (type(top) is int and top == 0):
        return "top_logprobs"
    modalities = body.get("modalities")
    if isinstance(modalities, list) and "audio" in modalities:
        return "modalities"
    if body.get("audio") is not None:
        return "audio"
    return None


def drop_logprobs(choice: dict[str, Any]) -> None:
    if choice.get("logprobs") is not None:
        choice["logprobs"] = None

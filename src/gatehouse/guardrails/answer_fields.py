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
from collections.abc import Container, Iterator
from typing import Any

from gatehouse.guardrails.profiles import EffectiveProfile

OUTPUT_DETECTORS = ("pii", "secrets", "terms")  # injection is about what callers send
STRUCTURE = frozenset({"role", "type", "id", "index", "tool_call_id"})  # keys whose strings are not model prose …
WORD = re.compile(r"[a-z_]{1,32}")
IDENT = re.compile(r"[A-Za-z0-9_.:-]{1,96}")
SHAPES = {"role": WORD, "type": WORD, "id": IDENT, "tool_call_id": IDENT}  # … when they have structure's shape
SKELETON = frozenset({"index", "type"})  # repeated with each streamed piece of a list item (clients key on them)
FIELD_NAME = re.compile(r"[a-z_]{1,40}")
MAX_DEPTH = 32  # objects and lists nested deeper than this in a choice are no answer's shape: dropped
KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")  # an object key an answer may carry; others are not passed on

# Path steps: a dict key, or a list item: its identity (its ``index`` field where it has one —
# streamed tool calls are keyed so — else its position), its position, and the skeleton to
# repeat when a piece of it is sent.
Item = tuple[int, int, tuple[tuple[str, Any], ...]]
Step = str | Item
Path = tuple[Step, ...]


def bound_depth(choice: dict[str, Any]) -> None:
    """Replace, in place, whatever a choice nests deeper than ``MAX_DEPTH`` with None, reading it
    without recursion: the walks below recurse, and an engine's answer nested a few hundred
    levels deep would otherwise end in a RecursionError (a 500) rather than an answer."""
    stack: list[tuple[Any, int]] = [(choice, 0)]
    while stack:
        holder, depth = stack.pop()
        slots = holder.items() if isinstance(holder, dict) else enumerate(holder)
        for slot, item in list(slots):
            if isinstance(item, dict | list):
                if depth >= MAX_DEPTH:
                    holder[slot] = None
                else:
                    stack.append((item, depth + 1))


def is_structure(name: str, value: Any) -> bool:
    """Whether ``value`` under key ``name`` is an answer's structure, not model text: an
    ``index`` that is a number, a ``role`` or ``type`` that is a word, an ``id`` or
    ``tool_call_id`` that is an identifier. An engine may fill an id from what the model wrote
    (some tool-call parsers do), so one with another shape (``jane.doe@example.com``) is text."""
    if name == "index":
        return type(value) is int
    shape = SHAPES.get(name)
    return shape is not None and isinstance(value, str) and shape.fullmatch(value) is not None


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
            if KEY.fullmatch(name) and not is_structure(name, item):
                yield from _walk(item, (*path, name))
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from _walk(item, (*path, _item(position, item)))


def _item(position: int, item: Any) -> Item:
    if not isinstance(item, dict):
        return position, position, ()
    index = item.get("index")
    ident = index if type(index) is int else position  # is_structure("index", …), spelled so mypy narrows it
    return ident, position, tuple((key, item[key]) for key in sorted(SKELETON) if is_structure(key, item.get(key)))


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
    a tool call's ``function``); a list keeps only the items that still say something. Keys
    no answer uses (``jane.doe@example.com``) go, with what they hold."""
    if isinstance(value, dict):
        kept = {}
        for name, item in value.items():
            if not KEY.fullmatch(name):
                continue
            if is_structure(name, item):
                kept[name] = item
            elif not isinstance(item, str):
                stripped = without_text(item)
                if stripped != []:
                    kept[name] = stripped
        return kept
    if isinstance(value, list):
        return [stripped for stripped in map(without_text, value) if carries_structure(stripped)]
    return value


def settle_structure(value: Any, path: tuple[str | int, ...], seen: dict[tuple[str | int, ...], Any],
                     texts: Container[tuple[str | int, ...]]) -> None:
    """Hold a stream's structure to what it first said, in place: a client joins the pieces of a
    role or an id as it does content (``jane.doe`` then ``@example.com``), so a structure key
    that has said something may only repeat it, and one that carried text stays text; what
    differs is dropped. ``seen``: each structure key's first value (by ``key_of`` path);
    ``texts``: the keys of the text fields so far."""
    if isinstance(value, dict):
        for name in list(value):
            item, key = value[name], (*path, name)
            if name in SHAPES and item is not None:
                if key in seen:
                    if item != seen[key]:
                        del value[name]
                elif key in texts:
                    if is_structure(name, item):
                        del value[name]
                elif is_structure(name, item):
                    seen[key] = item
            elif isinstance(item, dict | list):
                settle_structure(item, key, seen, texts)
    elif isinstance(value, list):
        for position, item in enumerate(value):
            settle_structure(item, (*path, _item(position, item)[0]), seen, texts)


def drop_odd_keys(value: Any) -> Any:
    """``value`` without the object entries whose keys no answer uses (a whole answer's copy of
    what ``without_text`` leaves out of a stream's structure): their keys are never scanned."""
    if isinstance(value, dict):
        return {name: drop_odd_keys(item) for name, item in value.items() if KEY.fullmatch(name)}
    if isinstance(value, list):
        return [drop_odd_keys(item) for item in value]
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
    ``logprobs``, ``top_logprobs``, spoken output (``modalities``, ``audio``), vLLM's
    ``return_token_ids`` (where an alias allows it) — or None."""
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
    if body.get("return_token_ids") not in (None, False):  # vLLM: the answer again, as token ids
        return "return_token_ids"
    return None


def drop_logprobs(choice: dict[str, Any]) -> None:
    """Drop what repeats a choice's text token by token: log-probabilities, and the ``token_ids``
    vLLM adds when asked (``return_token_ids``), which the public tokenizer turns back into text."""
    if choice.get("logprobs") is not None:
        choice["logprobs"] = None
    choice.pop("token_ids", None)

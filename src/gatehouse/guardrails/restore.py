"""Putting a caller's redacted values back where the answer repeats their placeholders (rules
with ``restore: true``) — but never where a client would send them somewhere.

A placeholder is restored only when it stands as a word of prose: the whitespace-delimited word
around it is the placeholder, with at most quotes, brackets, emphasis or sentence punctuation
beside it, and it is not inside an HTML tag (any attribute: ``src``, ``href``, ``srcset``,
``style``…), an autolink ``<…>``, a markdown link destination ``](…)``, a CSS ``url(…)`` or a
reference-style link definition ``[label]: …`` (until the blank line that ends it). Anything
else — ``https://x/?q=[EMAIL_1]``, ``//evil/[EMAIL_1]``, ``mailto:x?body=[EMAIL_1]``,
``evil.com/[EMAIL_1]`` — keeps its placeholder: a prompt-injected document could otherwise
have the model write a link that carries the value to whoever it names.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

from gatehouse.guardrails.answer_fields import is_restorable, model_texts, set_text

PLACEHOLDER = re.compile(r"\[[A-Z0-9_]+_\d+\]")  # as inspect.redact writes them
PUNCTUATION = r"[)\"'*_~.,;:!?]*"
BEFORE = re.compile(r"(?:<[^<>]*>)*[(\"'*_~]*")                   # what may touch a restored value on its left
AFTER = re.compile(PUNCTUATION + r"(?:<[^<>]*>?" + PUNCTUATION + ")*")  # … and on its right (closed tags too)
LINK_DEFINITION = re.compile(r" {0,3}\[[^\]]*\]:")
TAG_OPENERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ/!?")
MAX_AFTER = 64  # characters a placeholder waits for its word to end before it is left as it is


class Markup:
    """Whether the text so far leaves the reader inside a construct that holds a URL, one
    character at a time (so a stream split anywhere reads the same as a whole answer)."""

    def __init__(self) -> None:
        self.tag = False       # inside <…>
        self.after_lt = False  # the last character was a '<' outside a tag
        self.quote = ""        # the quote a tag attribute or a link title is open with
        self.depth = 0         # parentheses open in a link destination or url(
        self.definition = False
        self.line = ""         # the current line, up to its first 1000 characters
        self.last = ""         # the last four characters, lower-cased

    @property
    def in_url(self) -> bool:
        return self.tag or self.after_lt or self.depth > 0 or self.definition

    def advance(self, text: str) -> None:
        for char in text:
            self._step(char)

    def _step(self, char: str) -> None:
        if self.after_lt:
            self.after_lt = False
            self.tag = char in TAG_OPENERS
        if self.tag or self.depth:
            if self.quote:
                self.quote = "" if char == self.quote else self.quote
            elif char in "\"'":
                self.quote = char
            elif self.tag and char == ">":
                self.tag = False
            elif self.depth and char == "(":
                self.depth += 1
            elif self.depth and char == ")":
                self.depth -= 1
        elif char == "<":
            self.after_lt = True
        elif char == "(" and (self.last.endswith("]") or self.last[-3:] == "url"):
            self.depth = 1
        if char == "\n":
            if not self.line.strip():  # a blank line ends a paragraph and what it had open
                self.definition, self.depth, self.quote = False, 0, ""
            self.line = ""
        elif len(self.line) < 1000:
            self.line += char
            if char == ":" and not self.definition and LINK_DEFINITION.fullmatch(self.line):
                self.definition = True
        self.last = (self.last + char.lower())[-4:]


class _Place:
    """One field's restoring state in a stream: held text, the markup so far, the last word."""

    def __init__(self) -> None:
        self.held = ""
        self.markup = Markup()
        self.word = ""  # the released text since its last whitespace (up to 2048 characters)


def _word_before(text: str) -> str:
    if not text or text[-1].isspace():
        return ""
    return text.rsplit(None, 1)[-1]


def _word_after(text: str) -> str:
    return text.split(None, 1)[0] if text and not text[0].isspace() else ""


class Restorer:
    """Restores one request's placeholders: a whole answer (``restore_response``) or streamed
    fields (``feed`` and ``flush``, per field key). Restoring happens before the output rules,
    which judge what the caller will read."""

    def __init__(self, originals: dict[str, str]) -> None:
        self.originals = originals
        self.longest = max(map(len, originals))
        self.places: dict[Hashable, _Place] = {}

    def apply(self, text: str) -> str:
        """Restore the placeholders of a whole text."""
        return self._restore(_Place(), text)

    def _restore(self, place: _Place, text: str) -> str:
        pieces, position = [], 0
        for match in PLACEHOLDER.finditer(text):
            place.markup.advance(text[position:match.start()])
            before = _word_before(place.word + text[:match.start()])
            after = _word_after(text[match.end():])
            keep = (place.markup.in_url or not BEFORE.fullmatch(before) or not AFTER.fullmatch(after)
                    or match.group() not in self.originals)
            pieces += [text[position:match.start()], match.group() if keep else self.originals[match.group()]]
            place.markup.advance(match.group())
            position = match.end()
        place.markup.advance(text[position:])
        place.word = _word_before(place.word + text)[-2048:]
        return "".join(pieces) + text[position:]

    def feed(self, key: Hashable, text: str) -> str:
        """The restored text of a field's next piece that can be released: a placeholder is held
        until it closes and the word it is in has ended (or is plainly not prose)."""
        place = self.places.setdefault(key, _Place())
        text = place.held + text
        hold = len(text)
        start = text.rfind("[", max(0, len(text) - self.longest + 1))
        if start != -1 and "]" not in text[start:]:
            hold = start
        for match in PLACEHOLDER.finditer(text):
            rest = text[match.end():]
            if not any(map(str.isspace, rest)) and AFTER.fullmatch(rest) and len(rest) < MAX_AFTER:
                hold = min(hold, match.start())
                break
        place.held, text = text[hold:], text[:hold]
        return self._restore(place, text)

    def flush(self, key: Hashable) -> str:
        """What a field still holds, restored (the end of the stream)."""
        place = self.places.get(key)
        if place is None or not place.held:
            return ""
        text, place.held = place.held, ""
        return self._restore(place, text)

    def restore_response(self, body: dict[str, Any]) -> None:
        """Restore the message text of a whole response in place (not reasoning, not tool calls)."""
        for choice in body.get("choices") or []:
            if isinstance(choice, dict):
                place = _Place()  # one reading across a message's text parts: a client shows them as one text
                for path, text in list(model_texts(choice)):
                    if is_restorable(path):
                        set_text(choice, path, self._restore(place, text))

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

from gatehouse.guardrails.answer_fields import bound_depth, is_restorable, model_texts, set_text

PLACEHOLDER = re.compile(r"\[[A-Z0-9_]+_\d+\]")  # as inspect.redact writes them
PUNCTUATION = r"[)\"'*_~.,;:!?]*"
BEFORE = re.compile(r"(?:<[^<>]*>)*[(\"'*_~]*")                   # what may touch a restored value on its left
AFTER = re.compile(PUNCTUATION + r"(?:<[^<>]*>?" + PUNCTUATION + ")*")  # … and on its right (closed tags too)
MAX_AFTER = 64  # characters a placeholder waits for its word to end before it is left as it is
MAX_WORD = 2048  # a word longer than this is no word of prose: nothing in it or after it in it is restored
LONG_WORD = "\x00"  # what stands for such a word: it matches no BEFORE
WORD = re.compile(r"\S*")
RAW_TEXT = frozenset({"style", "textarea", "title", "xmp", "iframe", "noembed", "noframes"})  # text, not tags, until their end tag
OPAQUE = frozenset({"script", "noscript", "plaintext"})  # where they end depends on the reader: nothing after is restored
SPACE = frozenset("\t\n\f\r ")
LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
TAG_OPENERS = LETTERS | frozenset("/!?")
CONTAINER = re.compile(r"(?:[ \t>]|[-+*](?=[ \t])|\d{1,9}[.)](?=[ \t]))*")  # blockquote and list markers, indentation


class Markup:
    """Whether the text so far leaves the reader inside a construct that holds a URL, one
    character at a time (so a stream split anywhere reads the same as a whole answer).

    HTML is read the way a browser's tokenizer reads it: a quote opens an attribute's value only
    after its ``=``, a comment ends at ``-->`` (or ``<!-->``), ``<style>``'s text holds no tags.
    Markdown link destinations and titles (with ``<…>`` and backslash escapes) and reference
    definitions (also inside block quotes and list items, their labels over several lines) are
    tracked beside it. Where the two readings could part — a tag inside a markdown link or
    definition, ``<script>`` — nothing more is restored."""

    def __init__(self) -> None:
        self.html = "data"     # the HTML tokenizer's state ("data": outside any tag or comment)
        self.name = ""         # the tag being read, lower case (its first 10 characters); "/" first for an end tag
        self.raw = ""          # inside this raw-text element (<style>…), until its end tag
        self.opaque = False    # nothing more is restored
        self.quote = ""        # the quote a link title is open with
        self.depth = 0         # parentheses open in a link destination or url(
        self.angle = False     # inside a <…> link destination
        self.escaped = False   # the last character was a backslash inside a link
        self.lt = False        # the last character was a "<" inside a link or definition
        self.label = 0         # 1: a line's text began with "[" (maybe a definition's label); 2: its "]" just came
        self.definition = False
        self.line = ""         # the current line, up to its first 1000 characters
        self.last = ""         # the last twelve characters, lower-cased

    @property
    def in_url(self) -> bool:
        return self.opaque or self.html != "data" or bool(self.raw) or self.depth > 0 or self.definition

    def advance(self, text: str) -> None:
        for char in text:
            self._step(char)

    def _step(self, char: str) -> None:
        if self.opaque:
            pass
        elif self.raw:
            self._raw(char)
        elif self.html != "data":
            self._tag(char)
        else:
            self._markdown(char)
        if char == "\n":
            if not self.line.strip():  # a blank line ends a paragraph and the markdown it had open
                self.definition, self.depth, self.quote, self.angle, self.label = False, 0, "", False, 0
                self.escaped = self.lt = False
            self.line = ""
        elif len(self.line) < 1000:
            self.line += char
        self.last = (self.last + char.lower())[-12:]

    # -- markdown -------------------------------------------------------------------------

    def _markdown(self, char: str) -> None:
        if self.depth or self.definition or self.label == 1:
            self._link(char)
            return
        if self.label == 2:  # "[label]" began the line: a ":" next makes it a definition
            self.label = 0
            if char == ":":
                self.definition = True
                return
        if char == "<":
            self.html = "open"
        elif char == "(" and (self.last.endswith("]") or self.last[-3:] == "url"):
            self.depth = 1
        elif char == "[" and CONTAINER.fullmatch(self.line):
            self.label = 1

    def _link(self, char: str) -> None:
        """Inside a link destination or title, a definition, or what may be a definition's label:
        no HTML is read here, so a tag here stops restoring (a renderer may read it as one)."""
        if self.lt:
            self.lt = False
            if char in TAG_OPENERS:
                self.opaque = True
                return
        if self.escaped:
            self.escaped = False
        elif char == "\\":
            self.escaped = True
        elif char == "<":
            self.lt = True
            self.angle = self.angle or not self.quote and not self.label == 1
        elif self.angle:
            self.angle = char not in ">\n"
        elif self.quote:
            self.quote = "" if char == self.quote else self.quote
        elif self.label == 1:
            self.label = 2 if char == "]" else 1
        elif self.depth:
            if char in "\"'":
                self.quote = char
            elif char == "(":
                self.depth += 1
            elif char == ")":
                self.depth -= 1

    # -- HTML -----------------------------------------------------------------------------

    def _emit(self) -> None:
        """A tag's ">": back to text — or into a raw-text element's, or nothing more restored."""
        self.html = "data"
        if self.name in OPAQUE:
            self.opaque = True
        elif self.name in RAW_TEXT:
            self.raw = self.name

    def _raw(self, char: str) -> None:
        if (char in SPACE or char in "/>") and self.last.endswith("</" + self.raw):
            self.raw, self.name, self.html = "", "/" + self.raw, "name"
            self._tag(char)

    def _tag(self, char: str) -> None:  # noqa: C901 — one branch per tokenizer state, as the HTML standard lists them
        state = self.html
        if state == "open":
            if char in LETTERS:
                self.html, self.name = "name", char.lower()
            elif char == "/":
                self.html = "end"
            elif char == "!":
                self.html = "bang"
            elif char == "?":
                self.html = "bogus"
            else:
                self.html = "data"
                self._markdown(char)
        elif state == "end":
            if char in LETTERS:
                self.html, self.name = "name", "/" + char.lower()
            else:
                self.html = "data" if char == ">" else "bogus"
        elif state == "name":
            if char in SPACE:
                self.html = "before"
            elif char == "/":
                self.html = "self"
            elif char == ">":
                self._emit()
            elif len(self.name) < 10:
                self.name += char.lower()
        elif state in ("before", "after", "self", "quoted"):
            if char in SPACE:
                self.html = "before" if state in ("self", "quoted") else state
            elif char == "/":
                self.html = "self"
            elif char == ">":
                self._emit()
            elif char == "=" and state == "after":
                self.html = "value"
            else:
                self.html = "attr"  # "=" first in a name is part of it
        elif state == "attr":
            if char in SPACE:
                self.html = "after"
            elif char == "/":
                self.html = "self"
            elif char == ">":
                self._emit()
            elif char == "=":
                self.html = "value"
        elif state == "value":
            if char == '"':
                self.html = "dq"
            elif char == "'":
                self.html = "sq"
            elif char == ">":
                self._emit()
            elif char not in SPACE:
                self.html = "unquoted"
        elif state in ("dq", "sq"):
            if char == ('"' if state == "dq" else "'"):
                self.html = "quoted"
        elif state == "unquoted":
            if char in SPACE:
                self.html = "before"
            elif char == ">":
                self._emit()
        else:
            self._comment(state, char)

    def _comment(self, state: str, char: str) -> None:
        """``<!--`` … ``-->`` as the standard ends them (``<!-->``, ``--!>`` too); ``<!x`` and ``<?x`` at ``>``."""
        if state == "bang":
            self.html = "bang-" if char == "-" else ("data" if char == ">" else "bogus")
        elif state == "bang-":
            self.html = "c-start" if char == "-" else ("data" if char == ">" else "bogus")
        elif state == "bogus":
            self.html = "data" if char == ">" else "bogus"
        elif state == "c-start":
            self.html = "c-start-" if char == "-" else ("data" if char == ">" else "comment")
        elif state == "c-start-":
            self.html = "c-end" if char == "-" else ("data" if char == ">" else "comment")
        elif state == "comment":
            self.html = "c-end-" if char == "-" else "comment"
        elif state == "c-end-":
            self.html = "c-end" if char == "-" else "comment"
        elif state == "c-end":
            self.html = "data" if char == ">" else {"!": "c-bang", "-": "c-end"}.get(char, "comment")
        elif state == "c-bang":
            self.html = "c-end-" if char == "-" else ("data" if char == ">" else "comment")


class _Place:
    """One field's restoring state in a stream: held text, the markup so far, the last word."""

    def __init__(self) -> None:
        self.held = ""
        self.markup = Markup()
        self.word = ""  # the released text since its last whitespace (LONG_WORD past MAX_WORD characters)


def _last_word(word: str, text: str) -> str:
    """The word being read once ``text`` follows ``word``: the text since its last whitespace.
    One of over ``MAX_WORD`` characters becomes a mark that matches no prose (a URL is as long
    as it likes: ``//evil/?`` and 3000 brackets is not a word of prose at its end)."""
    if not text:
        return word
    if text[-1].isspace():
        return ""
    parts = text.rsplit(None, 1)
    joined = parts[-1] if len(parts) == 2 or text[0].isspace() else word + text
    return joined if len(joined) <= MAX_WORD else LONG_WORD


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
        """Restore ``text``, reading on from ``place``. The markup and the word read are what
        the caller will see (a value put back, not its placeholder); one pass, so an answer of
        many placeholders costs their number, not its square."""
        pieces, position, word = [], 0, place.word
        for match in PLACEHOLDER.finditer(text):
            prose = text[position:match.start()]
            place.markup.advance(prose)
            word = _last_word(word, prose)
            after = WORD.match(text, match.end())
            value = match.group()
            if (not place.markup.in_url and BEFORE.fullmatch(word) and after is not None
                    and AFTER.fullmatch(after.group()) and value in self.originals):
                value = self.originals[value]
            pieces += [prose, value]
            place.markup.advance(value)
            word = _last_word(word, value)
            position = match.end()
        rest = text[position:]
        place.markup.advance(rest)
        place.word = _last_word(word, rest)
        return "".join(pieces) + rest

    def feed(self, key: Hashable, text: str) -> str:
        """The restored text of a field's next piece that can be released: a placeholder is held
        until it closes and the word it is in has ended (or is plainly not prose)."""
        place = self.places.setdefault(key, _Place())
        text = place.held + text
        hold = len(text)
        start = text.rfind("[", max(0, len(text) - self.longest + 1))
        if start != -1 and "]" not in text[start:]:
            hold = start
        # only a placeholder near the end can still be waiting for its word to end
        for match in PLACEHOLDER.finditer(text, max(0, len(text) - MAX_AFTER - self.longest)):
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
        choices = body.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if isinstance(choice, dict):
                bound_depth(choice)
                place = _Place()  # one reading across a message's text parts: a client shows them as one text
                for path, text in list(model_texts(choice)):
                    if is_restorable(path):
                        set_text(choice, path, self._restore(place, text))

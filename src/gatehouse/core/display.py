"""Text that a policy or the store carries, made safe to show a person (ADR 0017).

A policy's names, models, URLs, descriptions and messages, and what callers stored (reasons,
notes, purposes), reach terminals, prompts and chat channels. Shown raw, an escape sequence
(``ESC [8m`` conceals the rest of a row), a carriage return or backspace (overwrites it), a
bidirectional override (reorders it), a zero-width character (hides a difference) or a
Cyrillic letter in a Latin name (looks the same) makes a person read something the document
does not say; so does a combining mark drawn over an ASCII letter (``o̸``) or stacked over the
line. ``shown`` writes each of them as a visible escape (``\\x1b``, ``\\u202e``,
``\\u043e``) and leaves every other character as it is; ``warnings`` says which kinds a text
held, so that a caller can say so next to it. The data itself is never changed: plans, JSON
and the store keep the exact text; only what is put in front of a person goes through here.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from typing import Any

CONTROL = "control characters"
BIDI = "bidirectional controls"
INVISIBLE = "invisible characters"
LOOKALIKE = "look-alike letters"
KINDS = (CONTROL, BIDI, INVISIBLE, LOOKALIKE)  # the order warnings are listed in

_BIDI = frozenset([0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])
# letters that draw nothing, and selectors that change how the character before them is drawn
_BLANK_LETTERS = frozenset([0x115F, 0x1160, 0x3164, 0xFFA0, 0x2800, 0x034F, 0x180B, 0x180C, 0x180D, 0x180F,
                            *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)])
# scripts whose letters pass for one another (a, а, α); a word mixing two of them is suspect
_CONFUSABLE_SCRIPTS = frozenset({"LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE", "COPTIC"})
_PLAIN_ASCII = re.compile(r"[\x20-\x7e]*")
_WORD = re.compile(r"\S+")


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


@lru_cache(maxsize=8192)
def _kind(char: str) -> str | None:
    """Why one character, on its own, may not be shown as it is."""
    code = ord(char)
    category = unicodedata.category(char)
    if category == "Cc":
        return CONTROL  # C0, DEL, C1 (CSI as \x9b included)
    if code in _BIDI:
        return BIDI
    if code in _BLANK_LETTERS or category in ("Cf", "Zl", "Zp", "Co", "Cn", "Cs"):
        return INVISIBLE  # zero-width, tags, line separators, private use, unassigned
    if category == "Zs" and char != " ":
        return INVISIBLE  # a space that is not one: no-break, em, ideographic
    if not char.isascii() and category[0] in "LNPS":
        folded = unicodedata.normalize("NFKC", char)
        if folded != char and folded.isascii() and (category[0] == "L" or (len(folded) == 1 and folded != " ")):
            return LOOKALIKE  # fullwidth and mathematical letters, digits and signs: Ａ, 𝐚, １, ¹, ／, ＠
    return None


@lru_cache(maxsize=8192)
def _script(char: str) -> str | None:
    if not char.isalpha():
        return None
    script = unicodedata.name(char, "").split(" ", 1)[0]
    return script if script in _CONFUSABLE_SCRIPTS else None


def _lookalikes(word: str) -> set[int]:
    """Offsets of the letters that do not belong in a word mixing confusable scripts: those of
    every script but Latin when Latin is among them, else all but the most common one."""
    if len({_script(char) for char in word} - {None}) < 2:
        return set()  # the common case: one script, or none that looks like another
    scripts = [(offset, script) for offset, char in enumerate(word) if (script := _script(char))]
    counts = Counter(script for _, script in scripts)
    keep = "LATIN" if "LATIN" in counts else min(counts, key=lambda s: (-counts[s], s))
    return {offset for offset, script in scripts if script != keep}


MAX_STACKED_MARKS = 3  # combining marks on one letter; more is drawing over the line, not writing


def _overdrawn(text: str, offset: int, stacked: int) -> bool:
    """A combining mark that changes how plain ASCII looks (``o`` with a stroke through it: no
    precomposed letter), an enclosing one, one with nothing before it, or one stacked too high."""
    char = text[offset]
    if unicodedata.category(char) == "Me" or stacked > MAX_STACKED_MARKS or offset == 0:
        return True
    before = text[offset - 1]
    return before.isascii() and before.isalnum() and len(unicodedata.normalize("NFC", before + char)) != 1


@lru_cache(maxsize=8192)
def _combining(char: str) -> bool:
    return unicodedata.category(char) in ("Mn", "Me")


def _marks(text: str) -> dict[int, str]:
    """Each offset that must be escaped, with why."""
    marks: dict[int, str] = {}
    stacked = 0
    for offset, char in enumerate(text):
        kind = _kind(char)
        if _combining(char):
            stacked += 1
            if kind is None and _overdrawn(text, offset, stacked):
                kind = LOOKALIKE
        else:
            stacked = 0
        if kind is not None:
            marks[offset] = kind
    for match in _WORD.finditer(text):
        if not match.group().isascii():
            for offset in _lookalikes(match.group()):
                marks.setdefault(match.start() + offset, LOOKALIKE)
    for offset, char in enumerate(text):  # a mark after an escape would be drawn over the escape
        if marks and offset - 1 in marks and offset not in marks and _combining(char):
            marks[offset] = LOOKALIKE
    return marks


def shown(value: object) -> str:
    """``value`` as text a person can read safely: control, bidirectional and invisible
    characters, and look-alike letters, written as visible escapes; all else unchanged."""
    text = "" if value is None else str(value)
    if _PLAIN_ASCII.fullmatch(text):
        return text  # the common case: printable ASCII holds nothing to hide
    marked = _marks(text)
    if not marked:
        return text
    return "".join(_escape(char) if offset in marked else char for offset, char in enumerate(text))


def warnings(value: object) -> list[str]:
    """The kinds of hidden or look-alike characters ``value`` holds (``KINDS``, in that order);
    empty when ``shown`` leaves it as it is."""
    text = "" if value is None else str(value)
    if _PLAIN_ASCII.fullmatch(text):
        return []
    found = set(_marks(text).values())
    return [kind for kind in KINDS if kind in found]


def texts(value: Any) -> Iterator[str]:
    """Every string in a JSON-like value (keys included), for checking a whole plan or event;
    walked with a stack, not recursion (a plan can hold a million rows)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, Mapping):
            for key, inner in reversed(list(item.items())):
                stack.append(inner)
                stack.append(key)
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(reversed(list(item)))


def flagged(values: Iterable[str]) -> list[tuple[str, list[str]]]:
    """The distinct texts among ``values`` that hold something ``shown`` escapes, each shown
    and with its warnings, in the order first met."""
    seen: dict[str, list[str]] = {}
    for text in dict.fromkeys(values):  # each distinct text judged once (a plan repeats its keys a million times)
        if found := warnings(text):
            seen[text] = found
    return [(shown(text), found) for text, found in seen.items()]


def shown_all(value: Any) -> Any:
    """A JSON-like value with every string in it (keys included) ``shown``: for text that goes
    to people through a channel Gatehouse does not render itself (webhooks, pagers)."""
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, Mapping):
        return {shown_all(key): shown_all(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [shown_all(item) for item in value]
    return value


def json_safe(encoded: str) -> str:
    """JSON text with every control, bidirectional and invisible character inside its strings
    written as a ``\\u`` escape: the same value once parsed, and nothing a terminal acts on
    when printed (orjson leaves DEL, C1 controls and U+202E as they are)."""
    if encoded.isascii() and "\x7f" not in encoded:
        return encoded
    out: list[str] = []
    for char in encoded:
        if ord(char) >= 0x7F and _kind(char) in (CONTROL, BIDI, INVISIBLE):
            data = char.encode("utf-16-be", "surrogatepass")
            out.extend(f"\\u{int.from_bytes(data[i:i + 2], 'big'):04x}" for i in range(0, len(data), 2))
        else:
            out.append(char)
    return "".join(out)

"""How much of a streamed field can be released: none of a match that could still be completing.

Text is released only up to a point where no match can start before it and end after it,
whatever comes next. For a detector whose matches are bounded, holding the last ``WINDOW``
visible, non-blank characters is enough (blanks and invisible characters are not counted, so
padding a match with them does not push its start out of the window). The detectors' unbounded
matches are held while they are open, however long they grow:

- a trailing run of token characters (keys, JWTs, high-entropy tokens of any length);
- a trailing run of address characters that holds an ``@`` (an address's domain is unbounded);
- a ``-----BEGIN`` with no ``-----END`` after it (a private key block);
- any finding that reaches the end of the held text (it may go on: ``order-\\d+``).

What is held is bounded (``LIMIT`` characters per field); a field whose open match outgrows it
is stopped, never released part-way. Released text is kept as context (``CONTEXT`` visible
characters, with the blanks between them) for the detectors' look-behinds and for the prefixes
some patterns need before what they report (``aws_secret_access_key =`` before a key).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence

from gatehouse.guardrails.findings import Finding
from gatehouse.guardrails.normalise import INVISIBLE

WINDOW = 256      # visible, non-blank characters held back: more than any bounded match needs
WORDS = 32        # … and whitespace-separated words (an escaped digit is one character to the detectors, ten here)
LIMIT = 8192      # characters one field may hold while a match is open; beyond it the choice stops
CONTEXT = 256     # visible characters of released text the detectors see again, for look-behinds and prefixes
STEP = 64         # characters released at a time at least (the detectors run once per step, not per chunk)
MARK_RANGES = ((0x0300, 0x036F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF), (0xFE20, 0xFE2F))  # combining marks
HIDDEN = "".join(map(chr, sorted(INVISIBLE))) + "".join(chr(c) for low, high in MARK_RANGES for c in range(low, high + 1))
ESCAPES = "%&#;\\"  # what percent, \x / \u escapes and HTML entities are written with: normalisation reads through them
TOKEN_ASCII = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_.-" + ESCAPES
CONTROLS = "".join(chr(c) for c in [*range(0x20), 0x7F] if not chr(c).isspace())  # ASCII that normalisation drops


def _wide(chars: str) -> str:
    """The fullwidth forms of ASCII characters (ＡＫＩＡ, ＠): normalisation folds them back."""
    return "".join(chr(ord(char) + 0xFEE0) for char in chars)


TOKEN_RUN = TOKEN_ASCII + _wide(TOKEN_ASCII) + HIDDEN  # invisible characters inside a run do not end it
ADDRESS_RUN = TOKEN_RUN + "@" + _wide("@")
KEY_BEGIN, KEY_END = "-----BEGIN", "-----END"
TOKEN_SET, ADDRESS_SET = frozenset(TOKEN_RUN), frozenset(ADDRESS_RUN)

TOKEN_CHARS = re.compile(f"[{re.escape(TOKEN_ASCII + CONTROLS)}]*")  # for ASCII text; other text is read by dropped()
ADDRESS_CHARS = re.compile(f"[{re.escape(TOKEN_ASCII + CONTROLS + '@')}]*")

# Not counted in the window: blanks, and what normalisation drops (invisible characters, marks,
# controls, unassigned code points) or reads as a blank (U+2800), so padding a match with them
# cannot push its start out of it.
def dropped(char: str) -> bool:
    """Whether normalisation drops ``char`` (or reads it as a blank): it does not count."""
    point = ord(char)
    if point < 0x80:
        return char in CONTROLS
    category = unicodedata.category(char)
    return category[0] == "C" or category in ("Mn", "Me") or point in INVISIBLE or point == 0x2800


@functools.lru_cache(maxsize=16)
def _counted(window: int) -> re.Pattern[str]:
    blank = "\\s" + re.escape(CONTROLS)
    return re.compile(f"(?:[{blank}]*[^{blank}]){{{window}}}")


@functools.lru_cache(maxsize=16)
def _words(count: int) -> re.Pattern[str]:
    blank = "\\s" + re.escape(CONTROLS)
    return re.compile(f"(?:[{blank}]*+[^{blank}]\\S*+){{{count}}}")


def window_start(text: str, start: int, window: int) -> int:
    """Where the shortest tail of ``text[start:]`` holding ``window`` counted characters begins
    (``start`` when there are fewer). Read backwards, in one pass."""
    tail = text[start:][::-1]
    if tail.isascii():  # the common case: in C
        found = _counted(window).match(tail)
        return len(text) - found.end() if found else start
    seen = 0
    for position, char in enumerate(tail):
        if not (char.isspace() or dropped(char)):
            seen += 1
            if seen == window:
                return len(text) - position - 1
    return start


def words_start(text: str, start: int, count: int) -> int:
    """Where the last ``count`` whitespace-separated words of ``text[start:]`` begin (``start``
    when there are fewer); a word of only uncounted characters is no word."""
    tail = text[start:][::-1]
    if tail.isascii():
        found = _words(count).match(tail)
        return len(text) - found.end() if found else start
    seen, counted = 0, False
    for position, char in enumerate(tail):
        if char.isspace():
            counted = False
            continue
        if not counted and not dropped(char):
            counted = True
            seen += 1
        if seen == count and counted:
            end = position  # this word is the count-th: it begins where its characters end, read backwards
            while end + 1 < len(tail) and not tail[end + 1].isspace():
                end += 1
            return len(text) - end - 1
    return start


def _run(pattern: re.Pattern[str], members: frozenset[str], tail: str) -> int:
    if tail.isascii():
        found = pattern.match(tail)
        return found.end() if found else 0
    for position, char in enumerate(tail):
        if char not in members and not dropped(char):
            return position
    return len(tail)


def open_start(text: str, start: int, window: int = WINDOW, words: int = 0) -> int:
    """Where a match could still be open in ``text[start:]``, judged without the detectors:
    the window (and, given ``words``, as many words), token and address runs, an unterminated
    key block. ``len(text)``: nowhere."""
    cut = window_start(text, start, window)
    if words:
        cut = min(cut, words_start(text, start, words))
    tail = text[start:][::-1]
    cut = min(cut, len(text) - _run(TOKEN_CHARS, TOKEN_SET, tail))
    address = _run(ADDRESS_CHARS, ADDRESS_SET, tail)
    if "@" in tail[:address] or "\uff20" in tail[:address]:  # an @, or its fullwidth form
        cut = min(cut, len(text) - address)
    begin = text.rfind(KEY_BEGIN, start)
    if begin != -1 and text.find(KEY_END, begin) == -1:
        cut = min(cut, begin)
    return cut


def release_point(text: str, start: int, findings: Sequence[Finding], cut: int) -> int:
    """How far ``text[start:]`` can be released given ``cut`` (``open_start``) and the
    detectors' ``findings`` in ``text``: never inside a finding, nor past the start of one that
    reaches the end."""
    for finding in findings:
        if finding.end >= len(text) and finding.start < cut:
            cut = max(finding.start, start)
    moved = True
    while moved:  # lowering the cut can land it inside an earlier finding
        moved = False
        for finding in findings:
            if finding.start < cut < finding.end and finding.start >= start:
                cut, moved = finding.start, True
    return cut

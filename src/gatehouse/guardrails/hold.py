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
from collections.abc import Sequence

from gatehouse.guardrails.findings import Finding
from gatehouse.guardrails.normalise import INVISIBLE

WINDOW = 256      # visible, non-blank characters held back: more than any bounded match needs
LIMIT = 8192      # characters one field may hold while a match is open; beyond it the choice stops
CONTEXT = 256     # visible characters of released text the detectors see again, for look-behinds and prefixes
STEP = 64         # characters released at a time at least (the detectors run once per step, not per chunk)
MARK_RANGES = ((0x0300, 0x036F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF), (0xFE20, 0xFE2F))  # combining marks
HIDDEN = "".join(map(chr, sorted(INVISIBLE))) + "".join(chr(c) for low, high in MARK_RANGES for c in range(low, high + 1))
TOKEN_ASCII = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_.-"


def _wide(chars: str) -> str:
    """The fullwidth forms of ASCII characters (ＡＫＩＡ, ＠): normalisation folds them back."""
    return "".join(chr(ord(char) + 0xFEE0) for char in chars)


TOKEN_RUN = TOKEN_ASCII + _wide(TOKEN_ASCII) + HIDDEN  # invisible characters inside a run do not end it
ADDRESS_RUN = TOKEN_RUN + "%@" + _wide("%@")
KEY_BEGIN, KEY_END = "-----BEGIN", "-----END"


TOKEN_CHARS = re.compile(f"[{re.escape(TOKEN_RUN)}]*")
ADDRESS_CHARS = re.compile(f"[{re.escape(ADDRESS_RUN)}]*")

# Not counted in the window: blanks, invisible characters, the common combining marks (what
# normalisation drops), so padding a match with them cannot push its start out of it.
UNCOUNTED = frozenset(HIDDEN)


@functools.lru_cache(maxsize=16)
def _counted(window: int) -> re.Pattern[str]:
    return re.compile(f"(?:\\s*\\S){{{window}}}")


def window_start(text: str, start: int, window: int) -> int:
    """Where the shortest tail of ``text[start:]`` holding ``window`` counted characters begins
    (``start`` when there are fewer). Read backwards, in one pass."""
    tail = text[start:][::-1]
    if tail.isascii():  # the common case: only blanks to skip, in C
        found = _counted(window).match(tail)
        return len(text) - found.end() if found else start
    seen = 0
    for position, char in enumerate(tail):
        if not (char.isspace() or char in UNCOUNTED):
            seen += 1
            if seen == window:
                return len(text) - position - 1
    return start


def _run(pattern: re.Pattern[str], tail: str) -> int:
    found = pattern.match(tail)
    return found.end() if found else 0


def open_start(text: str, start: int, window: int = WINDOW) -> int:
    """Where a match could still be open in ``text[start:]``, judged without the detectors:
    the window, token and address runs, an unterminated key block. ``len(text)``: nowhere."""
    cut = window_start(text, start, window)
    tail = text[start:][::-1]
    cut = min(cut, len(text) - _run(TOKEN_CHARS, tail))
    address = _run(ADDRESS_CHARS, tail)
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

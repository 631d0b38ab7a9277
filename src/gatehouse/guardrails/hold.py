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
is stopped, never released part-way. Released text is kept as context (``CONTEXT`` characters)
for the detectors' look-behinds.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from gatehouse.guardrails.findings import Finding
from gatehouse.guardrails.normalise import INVISIBLE

WINDOW = 256      # visible, non-blank characters held back: more than any bounded match needs
LIMIT = 8192      # characters one field may hold while a match is open; beyond it the choice stops
CONTEXT = 256     # characters of released text the detectors see again, for look-behinds
HIDDEN = "".join(map(chr, sorted(INVISIBLE)))
TOKEN_RUN = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_.-" + HIDDEN
ADDRESS_RUN = TOKEN_RUN + "%@"
KEY_BEGIN, KEY_END = "-----BEGIN", "-----END"


# Not counted in the window: blanks, invisible characters, the common combining marks (what
# normalisation drops), so padding a match with them cannot push its start out of it.
UNCOUNTED = r"\s" + "".join(f"\\U{ord(char):08x}" for char in HIDDEN) + r"\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"


@functools.lru_cache(maxsize=16)
def _counted(window: int) -> re.Pattern[str]:
    return re.compile(f"(?:[{UNCOUNTED}]*[^{UNCOUNTED}]){{{window}}}")


def window_start(text: str, start: int, window: int) -> int:
    """Where the shortest tail of ``text[start:]`` holding ``window`` counted characters begins
    (``start`` when there are fewer). Read backwards, in one pass."""
    found = _counted(window).match(text[start:][::-1])
    return len(text) - found.end() if found else start


def open_start(text: str, start: int, window: int = WINDOW) -> int:
    """Where a match could still be open in ``text[start:]``, judged without the detectors:
    the window, token and address runs, an unterminated key block. ``len(text)``: nowhere."""
    cut = window_start(text, start, window)
    token = len(text.rstrip(TOKEN_RUN))
    cut = min(cut, max(token, start))
    address = len(text.rstrip(ADDRESS_RUN))
    if "@" in text[address:]:
        cut = min(cut, max(address, start))
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

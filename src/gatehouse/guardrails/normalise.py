"""Text as the detectors read it, built once per text and shared by all of them (ADR 0019).

A ``TextView`` renders the caller's text the way a reader (or a model) would take it, with a
map back to the caller's offsets, so a finding points at the characters actually sent:

- ``plain``: character escapes decoded (``%40``, ``\\x40``, ``\\u0040``, ``&#64;``, ``&commat;``),
  then NFKC, combining marks and invisible characters dropped, look-alike letters (Cyrillic,
  Greek, Cherokee, small capitals) mapped to Latin, other scripts' digits and dashes to ASCII;
  case kept, for ``pii`` and ``secrets``, whose formats are case-sensitive;
- ``decoded``: ``plain`` with each base64 or hex run that decodes to readable text replaced by
  its decoding (rendered the same way, nested encodings too); every decoded character maps to
  the whole encoded run, so redacting a finding there replaces the run; ``None`` if none did;
- ``folded``: each of those case-folded with whitespace runs made one space, for ``injection``
  and ``terms``.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property, lru_cache

from gatehouse.guardrails.findings import Finding

# Characters that render as nothing: zero-width, joiners, bidi controls, soft hyphen, tags.
INVISIBLE = frozenset([0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5,
                       0x180B, 0x180C, 0x180D, 0x180E, 0x180F, 0x200B, 0x200C, 0x200D, 0x200E,
                       0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2060, 0x2061, 0x2062, 0x2063, 0x2064, 0x2066,
                       0x2067, 0x2068, 0x2069, 0x206A, 0x206B, 0x206C, 0x206D, 0x206E, 0x206F, 0x3164, 0xFEFF, 0xFFA0]
                      + list(range(0xE0000, 0xE0080)) + list(range(0xE0100, 0xE01F0)) + list(range(0xFE00, 0xFE10)))
# Cyrillic and Greek letters that look like Latin ones (after case folding).
HOMOGLYPHS = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "ɡ": "g", "һ": "h", "ӏ": "l", "ԛ": "q",
    "ԝ": "w", "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u",
    "χ": "x", "ω": "w", "ı": "i", "ℓ": "l", "օ": "o", "ո": "n", "ս": "u", "ɪ": "i", "ɢ": "g", "ɴ": "n", "ᴏ": "o",
    "ʀ": "r", "ᴇ": "e", "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ʜ": "h", "ᴊ": "j", "ᴋ": "k", "ʟ": "l", "ᴍ": "m",
    "ᴘ": "p", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ʏ": "y", "ᴢ": "z",
})
# The same with case kept, for the plain rendering: capitals map to capitals (АKIA… is AKIA…);
# dashes, and the dots IDNA reads as dots, map to their ASCII selves.
LOOK_ALIKES = str.maketrans({
    **{chr(key): value for key, value in HOMOGLYPHS.items() if isinstance(value, str)},
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T", "У": "Y",
    "Х": "X", "Ѕ": "S", "І": "I", "Ј": "J", "Ԛ": "Q", "Ԝ": "W", "Ӏ": "I", "Һ": "H", "Α": "A", "Β": "B", "Ε": "E",
    "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    "Օ": "O", "Ս": "U", "\u13aa": "A", "\u13f4": "B", "\u13df": "C", "\u13ac": "E", "\u13bb": "H", "\u13ab": "J",
    "\u13e6": "K", "\u13de": "L", "\u13b7": "M", "\u13e2": "P", "\u13da": "S", "\u13a2": "T", "\u13d9": "V",
    "\u13b3": "W", "\u13c3": "Z", "ɑ": "a", "ȷ": "j", "ϲ": "c", "Ϲ": "C", "ϳ": "j",
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2043": "-",
    "\u2212": "-", "\ufe58": "-", "\u3002": ".",
})
# Escapes a reader decodes in place: percent and \x bytes (UTF-8), \u code points, HTML entities.
ESCAPE = re.compile(r"(?:%[0-9A-Fa-f]{2})+|(?:\\x[0-9A-Fa-f]{2})+|\\u[0-9A-Fa-f]{4}"
                    r"|&(?:#[0-9]{1,7};?|#[xX][0-9A-Fa-f]{1,6};?|[A-Za-z][A-Za-z0-9]{1,31};)")
ESCAPE_ROUNDS = 3  # %2540 is %40 is @: escapes of escapes, a few levels deep
# base64 (either alphabet) or hex; never a lower-case word (an encoding of text mixes cases, hex of it has digits)
ENCODED_RUN = re.compile(r"(?<![A-Za-z0-9+/_-])(?=[a-z]*[A-Z0-9+/_-])[A-Za-z0-9+/_-]{8,}={0,6}")  # base32 pads to 6
SHORT_RUN = 12  # a base64 run shorter than this (6 to 8 bytes: a@b.co) counts only if it decodes to printable ASCII
HEX = re.compile(r"(?:0[xX])?(?:[0-9A-Fa-f]{2}){6,}")  # 6 bytes or more
URL_SAFE = str.maketrans("-_", "+/")
BASE32 = re.compile(r"[A-Z2-7]{8,}")
ENCODED_DEPTH = 3  # base64 of base64 of base64 is decoded; each level is at most 3/4 of the one above
READABLE = 0.95    # a decoding counts when this share of it is printable text: random tokens decode to noise
SPECIAL = re.compile(r"[^\x20-\x7e\t\n\r\x0b\x0c]+")  # not printable ASCII, nor its whitespace
ASCII_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
SPACE_RUN = re.compile(r"(?:\s*[^\S ]|  )\s*")  # whitespace other than a single space


@dataclass(frozen=True, slots=True)
class Normalised:
    """A rendering of a text, and where each of its characters came from in ``source`` (the
    rendering below it; with none, the caller's text). ``pieces`` are (start here, start
    there, end there, linear): a linear piece maps character by character, any other maps each
    of its characters to all of ``start there:end there``. No pieces: the same offsets."""

    text: str
    pieces: tuple[tuple[int, int, int, bool], ...] | None = None
    source: Normalised | None = None
    starts: tuple[int, ...] = ()  # each piece's start here, for bisecting

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Where ``text[start:end]`` came from in the caller's text: from the first character
        it came from to the last, with whatever was dropped in between."""
        if not self.text:
            return 0, 0
        first = min(max(start, 0), len(self.text) - 1)
        last = min(max(end - 1, first), len(self.text) - 1)
        if self.pieces is None:
            begin, finish = first, last + 1
        else:
            begin, finish = self._from(first)[0], self._from(last)[1]
        return (begin, finish) if self.source is None else self.source.span(begin, finish)

    def _from(self, index: int) -> tuple[int, int]:
        assert self.pieces is not None
        here, there, there_end, linear = self.pieces[bisect_right(self.starts, index) - 1]
        if linear:
            return there + index - here, there + index - here + 1
        return there, there_end


class Builder:
    """Writes a rendering piece by piece, keeping the map to the text it is rendered from."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pieces: list[tuple[int, int, int, bool]] = []
        self.length = 0

    def copy(self, text: str, at: int) -> None:
        """``text``, one character for each from ``at`` on."""
        if not text:
            return
        if self.pieces and self.pieces[-1][3] and self.pieces[-1][2] == at:
            here, there, _, _ = self.pieces[-1]
            self.pieces[-1] = (here, there, at + len(text), True)
        else:
            self.pieces.append((self.length, at, at + len(text), True))
        self.parts.append(text)
        self.length += len(text)

    def put(self, text: str, start: int, end: int) -> None:
        """``text`` in place of ``start:end``, as a whole."""
        if len(text) == 1 and end - start == 1:
            self.copy(text, start)
        elif text:
            self.pieces.append((self.length, start, end, False))
            self.parts.append(text)
            self.length += len(text)

    def build(self, source: Normalised) -> Normalised:
        text = "".join(self.parts)
        if text == source.text and self.pieces == [(0, 0, len(text), True)]:
            return source
        return Normalised(text, tuple(self.pieces), source, tuple(piece[0] for piece in self.pieces))


def unescape(layer: Normalised) -> Normalised:
    """Percent and ``\\x`` escapes (as UTF-8), ``\\u`` escapes and HTML entities decoded in
    place, a few rounds deep; each decoded character maps to its escape."""
    for _ in range(ESCAPE_ROUNDS):
        text = layer.text
        if "%" not in text and "&" not in text and "\\" not in text:
            return layer
        builder, position = Builder(), 0
        for match in ESCAPE.finditer(text):
            builder.copy(text[position:match.start()], position)
            _unescape_one(builder, match.group(), match.start())
            position = match.end()
        builder.copy(text[position:], position)
        decoded = builder.build(layer)
        if decoded is layer:
            return layer
        layer = decoded
    return layer


def _unescape_one(builder: Builder, token: str, at: int) -> None:
    if token[0] == "&":
        value = html.unescape(token)
        if value != token:
            builder.put(value, at, at + len(token))
        else:
            builder.copy(token, at)
    elif token.startswith("\\u"):
        point = int(token[2:], 16)
        if 0xD800 <= point <= 0xDFFF:
            builder.copy(token, at)  # half a surrogate pair is no character
        else:
            builder.put(chr(point), at, at + 6)
    else:  # %XX… or \xXX…: bytes, read as UTF-8 where they are
        width = 3 if token[0] == "%" else 4
        raw = bytes(int(token[index + width - 2:index + width], 16) for index in range(0, len(token), width))
        index = 0
        while index < len(raw):
            size = _utf8_size(raw[index])
            try:
                char = raw[index:index + size].decode() if size else None
            except UnicodeDecodeError:
                char = None
            if char is None:  # not UTF-8: left as it was written
                builder.copy(token[index * width:(index + 1) * width], at + index * width)
                index += 1
            else:
                builder.put(char, at + index * width, at + (index + size) * width)
                index += size


def _utf8_size(lead: int) -> int:
    return 1 if lead < 0x80 else 2 if 0xC2 <= lead <= 0xDF else 3 if 0xE0 <= lead <= 0xEF else 4 if 0xF0 <= lead <= 0xF4 else 0


@lru_cache(maxsize=8192)
def plain_character(char: str) -> str:
    """A character the plain rendering does not copy (not ASCII, or an ASCII control), as it
    writes it: "" for one that shows nothing."""
    if 0xE0020 <= ord(char) <= 0xE007E:
        return chr(ord(char) - 0xE0000)  # a tag character: invisible, but a model reads it as this ASCII one
    if ord(char) in INVISIBLE or unicodedata.category(char)[0] == "C" or unicodedata.category(char) in ("Mn", "Me"):
        return ""  # invisible, a control, unassigned, private use, or a mark riding on the letter before it
    if char.isspace() or char == "\u2800":
        return " "
    digit = unicodedata.decimal(char, None)
    if digit is not None:
        return str(digit)  # ٤ and ４ are 4
    decomposed = "".join(c for c in unicodedata.normalize("NFKD", char) if unicodedata.category(c) not in ("Mn", "Me"))
    return unicodedata.normalize("NFKC", decomposed).translate(LOOK_ALIKES)


TAGS = re.compile("[\U000E0000-\U000E007F]+")  # tag characters: shown as nothing, read by models as ASCII


def without_tags(layer: Normalised) -> Normalised:
    """``layer`` with its tag characters dropped: the text as a reader sees it (the plain
    rendering reads them as the ASCII they smuggle, which a tag space inside an address would
    break in two)."""
    text = layer.text
    builder, position = Builder(), 0
    for match in TAGS.finditer(text):
        builder.copy(text[position:match.start()], position)
        position = match.end()
    builder.copy(text[position:], position)
    return builder.build(layer)


def characters(layer: Normalised) -> Normalised:
    """NFKC, invisible characters, controls and marks dropped, look-alikes to Latin; case
    kept. Printable ASCII passes as it is (the common case costs a check or two)."""
    text = layer.text
    if text.isascii() and not ASCII_CONTROL.search(text):
        return layer
    builder, position = Builder(), 0
    for match in SPECIAL.finditer(text):
        builder.copy(text[position:match.start()], position)
        for index in range(match.start(), match.end()):
            builder.put(plain_character(text[index]), index, index + 1)
        position = match.end()
    builder.copy(text[position:], position)
    return builder.build(layer)


def readable(raw: bytes) -> str | None:
    """``raw`` as text, if it is UTF-8 and nearly all printable: what an encoding of text
    decodes to, and what random bytes almost never do."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return None
    if len(text) < 4:
        return None
    if text.isprintable():
        return text
    unprintable = sum(1 for char in text if not readable_character(char))
    return text if unprintable <= len(text) * (1 - READABLE) else None


def readable_character(char: str) -> bool:
    """Printable, whitespace (not the ASCII separators), or hidden on purpose (zero-width…)."""
    return (char.isprintable() or char in "\t\n\r" or (char.isspace() and char >= " ") or ord(char) in INVISIBLE
            or unicodedata.category(char) == "Cf")


def decode_run(run: str) -> str | None:
    """A base64 (standard or URL-safe), base32 or hex run, decoded, if it decodes to readable text."""
    if len(run) % 2 == 0 and HEX.fullmatch(run):  # hex, and only hex: read as base64, digests decode to noise
        return readable(bytes.fromhex(run[2:] if run[1] in "xX" else run))
    core = run.rstrip("=")
    if BASE32.fullmatch(core) and len(core) * 5 % 8 < 5:  # capitals and 2-7 only, a length base32 can have
        try:
            text = readable(base64.b32decode(core + "=" * (-len(core) % 8)))
        except binascii.Error:
            text = None
        if text is not None:
            return text
    if len(core) % 4 == 1 or core.isalpha() and (core[1:].islower() or core.isupper()):
        return None  # not base64, or a word (Capitalised, or in capitals)
    if "-" in core or "_" in core:
        if "+" in core or "/" in core:
            return None  # both alphabets: not one run
        core = core.translate(URL_SAFE)
    try:
        raw = binascii.a2b_base64(core + "=" * (-len(core) % 4), strict_mode=True)
    except binascii.Error:
        return None
    text = readable(raw)
    if text is not None and len(core) < SHORT_RUN and not (text.isascii() and text.isprintable()):
        return None  # a short word that happens to be base64 decodes to a few odd characters
    return text


def encoded_runs(text: str) -> Iterator[tuple[str, int, int]]:
    """(decoding, start, end) of each run in ``text`` that decodes to readable text. Lines of
    one run wrapped at a multiple of four characters (MIME, PEM) are decoded together."""
    matches = list(ENCODED_RUN.finditer(text))
    index = 0
    while index < len(matches):
        group = [matches[index]]
        while (index + len(group) < len(matches) and len(group[-1].group()) % 4 == 0
               and "=" not in group[-1].group()
               and text[group[-1].end():matches[index + len(group)].start()] in ("\n", "\r\n")):
            group.append(matches[index + len(group)])
        whole = decode_run("".join(match.group() for match in group)) if len(group) > 1 else None
        if whole is not None:
            yield whole, group[0].start(), group[-1].end()
        else:
            for match in group:
                decoded = decode_run(match.group()) or decode_glued(match.group())
                if decoded is not None:
                    yield decoded, *match.span()
        index += len(group)


def decode_glued(run: str) -> str | None:
    """A run that does not decode from its first character may have something glued before it
    (``path/…``, ``id-…``, ``key…``): decoded from after its last separator, or one to three
    characters in."""
    if len(run) < 2 * SHORT_RUN:
        return None
    cut = max(run.rfind(separator) for separator in "/+-_") + 1
    if 0 < cut <= len(run) - SHORT_RUN:
        decoded = decode_run(run[cut:])
        if decoded is not None:
            return decoded
    return next((decoded for skip in (1, 2, 3) if (decoded := decode_run(run[skip:])) is not None), None)


def plain(text: str) -> Normalised:
    return characters(unescape(Normalised(text)))


def deep_text(text: str, depth: int) -> str:
    """``text`` rendered plain and, on a line after it, with its encoded runs decoded,
    ``depth`` levels down: both, as for the caller's text itself (a card number is also hex
    that happens to decode), and all of it stands for one run, so no offsets are lost."""
    rendered = plain(text)
    decoded = decode_runs(rendered, depth) if depth > 0 else None
    return rendered.text if decoded is None else f"{rendered.text}\n{decoded.text}"


def decode_runs(layer: Normalised, depth: int = ENCODED_DEPTH) -> Normalised | None:
    """``layer`` with each encoded run replaced by its decoding, or None when none decodes."""
    return splice(layer, [(deep_text(decoded, depth - 1), start, end) for decoded, start, end in encoded_runs(layer.text)])


def splice(layer: Normalised, decodings: list[tuple[str, int, int]]) -> Normalised | None:
    """``layer`` with each (text, start, end) of ``decodings`` in place of ``start:end``."""
    if not decodings:
        return None
    builder, position = Builder(), 0
    for decoded, start, end in decodings:
        builder.copy(layer.text[position:start], position)
        builder.put(decoded, start, end)
        position = end
    builder.copy(layer.text[position:], position)
    rendered = builder.build(layer)
    return None if rendered is layer else rendered


def casefold(layer: Normalised) -> Normalised:
    text = layer.text
    if text.isascii():
        return Normalised(text.lower(), None, layer)
    folded = text.casefold()
    if len(folded) == len(text):  # one character for one: the offsets stand
        return Normalised(folded.translate(HOMOGLYPHS), None, layer)
    return casefold_each_character(layer)


def casefold_each_character(layer: Normalised) -> Normalised:
    """Case folding where it changes lengths (ß is ss), one character at a time."""
    builder = Builder()
    for index, char in enumerate(layer.text):
        builder.put(char.casefold().translate(HOMOGLYPHS), index, index + 1)
    return builder.build(layer)


def collapse_spaces(layer: Normalised) -> Normalised:
    """Every run of whitespace one space, mapped to the whole run."""
    text = layer.text
    builder, position = Builder(), 0
    for match in SPACE_RUN.finditer(text):
        builder.copy(text[position:match.start()], position)
        builder.put(" ", *match.span())
        position = match.end()
    if position == 0:
        return layer
    builder.copy(text[position:], position)
    return builder.build(layer)


def fold(layer: Normalised) -> Normalised:
    """Case folded, single spaces: what word rules and term lists match."""
    return collapse_spaces(casefold(layer))


def normalise(text: str) -> Normalised:
    """``text`` plain and folded: how terms are written into the term matcher, and compared."""
    return fold(plain(text))


class TextView:
    """One text as every detector reads it: built once, shared by the detectors that scan it."""

    def __init__(self, text: str) -> None:
        self.original = text
        self.plain = plain(text)
        # tag characters read both ways: as the ASCII a model reads, and as the nothing a reader sees
        self.untagged = characters(unescape(without_tags(Normalised(text)))) if TAGS.search(text) else None
        decodings = [(deep_text(decoded, ENCODED_DEPTH - 1), start, end)
                     for decoded, start, end in encoded_runs(self.plain.text)]
        self.decoded = splice(self.plain, decodings)
        # each decoded run: its full rendering, and where it was in the caller's text
        self.decodings = tuple((decoded, *self.plain.span(start, end)) for decoded, start, end in decodings)
        self.runs = tuple((start, end) for _, start, end in self.decodings)
        self.run_ends = tuple(end for _, end in self.runs)

    @property
    def layers(self) -> tuple[Normalised, ...]:
        """The renderings: plain, without tags (when it has any), then decoded (when a run decodes)."""
        return tuple(layer for layer in (self.plain, self.untagged, self.decoded) if layer is not None)

    @cached_property
    def folded(self) -> tuple[Normalised, ...]:
        return tuple(fold(layer) for layer in self.layers)

    def scan(self, find: Callable[[str], Iterable[Finding]], folded: bool = False) -> list[Finding]:
        """``find`` over each rendering (folded ones with ``folded``), its findings moved to the
        caller's offsets: from the decoded rendering, only those that reach into a decoded run
        (the rest the plain rendering found already)."""
        found: dict[tuple[str, str, int, int], Finding] = {}
        layers = self.folded if folded else self.layers
        for index, layer in enumerate(layers):
            only_runs = self.decoded is not None and index == len(layers) - 1  # the decoded rendering
            for finding in find(layer.text):
                start, end = layer.span(finding.start, finding.end)
                if only_runs and not self.in_run(start, end):
                    continue
                located = Finding(finding.detector, finding.kind, start, end, finding.score)
                found.setdefault((located.detector, located.kind, start, end), located)
        return sorted(found.values(), key=lambda f: (f.start, -f.end))

    def in_run(self, start: int, end: int) -> bool:
        """Whether the caller's ``start:end`` overlaps a decoded run."""
        position = bisect_right(self.run_ends, start)
        return position < len(self.runs) and self.runs[position][0] < end


def as_view(text: str | TextView) -> TextView:
    return text if isinstance(text, TextView) else TextView(text)


def decoded_variants(text: str | TextView) -> list[tuple[str, int, int]]:
    """Encoded runs that decode to readable prose, with their span in the caller's text:
    instructions hidden from a rule by encoding them. (ROT13 is handled by scanning the rotated
    text whole.)"""
    return [(decoded, start, end) for decoded, start, end in as_view(text).decodings
            if re.search(r"[A-Za-z]{3,} [A-Za-z]{2,}", decoded)]


def rot13(text: str) -> str:
    return codecs.encode(text, "rot13")

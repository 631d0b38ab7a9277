"""Text as a rule should see it: NFKC, case-folded, invisible characters removed, look-alike
letters mapped to Latin; with a map back to the original offsets, so a finding in the
normalised text still points at the characters the caller sent."""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass

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
BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}|[A-Za-z0-9_-]{16,}={0,2}")


@dataclass(frozen=True)
class Normalised:
    text: str
    origin: tuple[int, ...] | None = None  # origin[i]: where normalised character i came from …
    runs: tuple[tuple[int, int], ...] = ()  # … or, for ASCII, (normalised, original) offsets where a shift starts

    def _at(self, index: int) -> int:
        if self.origin is not None:
            return self.origin[min(index, len(self.origin) - 1)] if self.origin else 0
        position = bisect_right(self.runs, (index, float("inf"))) - 1
        if position < 0:
            return index
        normalised_at, original_at = self.runs[position]
        return index + original_at - normalised_at

    def span(self, start: int, end: int) -> tuple[int, int]:
        if not self.text:
            return 0, 0
        return self._at(start), self._at(max(end - 1, start)) + 1


SPACE_RUN = re.compile(r"\s+")


def normalise(text: str) -> Normalised:
    if text.isascii():  # the common case, in C: nothing to fold but case and whitespace
        lowered = text.lower()
        pieces, runs, position, removed = [], [], 0, 0
        for match in SPACE_RUN.finditer(lowered):
            if match.group() == " ":
                continue
            pieces.append(lowered[position:match.start()])
            pieces.append(" ")
            removed += len(match.group()) - 1
            position = match.end()
            runs.append((match.end() - removed, match.end()))
        if not runs:
            return Normalised(lowered)
        pieces.append(lowered[position:])
        return Normalised("".join(pieces), None, tuple(runs))
    return normalise_each_character(text)


def normalise_each_character(text: str) -> Normalised:
    out: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        if ord(char) in INVISIBLE or unicodedata.category(char) in ("Cf", "Mn", "Me"):
            continue  # invisible, or a combining mark riding on the letter before it
        decomposed = "".join(c for c in unicodedata.normalize("NFKD", char) if unicodedata.category(c) not in ("Mn", "Me"))
        folded = unicodedata.normalize("NFKC", decomposed).casefold().translate(HOMOGLYPHS)
        if char.isspace() or char == "\u2800":
            folded = " "
        for piece in folded:
            if piece == " " and out and out[-1] == " ":
                continue  # runs of whitespace are one space
            out.append(piece)
            origin.append(index)
    return Normalised("".join(out), tuple(origin))


def decoded_variants(text: str) -> list[tuple[str, int, int]]:
    """Base64 runs that decode to readable text, with their span: instructions hidden from a
    rule by encoding them. (ROT13 is handled by scanning the rotated text whole.)"""
    variants = []
    for match in BASE64_RUN.finditer(text):
        run = match.group()
        try:
            raw = (base64.urlsafe_b64decode if ("-" in run or "_" in run) else base64.b64decode)(run + "=" * (-len(run) % 4))
            decoded = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        printable = sum(ch.isprintable() or ch.isspace() for ch in decoded)
        if decoded and printable / len(decoded) > 0.95 and re.search(r"[A-Za-z]{3,} [A-Za-z]{2,}", decoded):
            variants.append((decoded, *match.span()))
    return variants


def rot13(text: str) -> str:
    return codecs.encode(text, "rot13")

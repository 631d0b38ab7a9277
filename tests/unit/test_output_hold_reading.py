"""The hold counts what the detectors read, not what is written: normalisation reads through
escapes (``&#64;`` is ``@``, ``\\u0040`` too) and drops marks, controls and unassigned code
points, so a match can span far more written characters than the window counts. Escapes are
held inside runs, what normalisation drops is not counted, and the last words are held whole
(an escaped digit is ten written characters and one read one)."""

from __future__ import annotations

from gatehouse.guardrails.hold import WORDS, open_start, window_start, words_start


def entities(text: str) -> str:
    return "".join(f"&#{ord(char)};" for char in text)


def test_an_escaped_address_or_token_is_held_whole():
    for written in (entities("bob.smith@example.com"), "".join(f"\\u{ord(c):04x}" for c in "bob@a.com"),
                    "bob.smith@" + entities("a." * 80) + "com", "bob.smith&commat;" + "a&period;" * 80):
        assert open_start("see " + written, 0, 3) == 4


def test_what_normalisation_drops_is_not_counted():
    for pad in ("\u0591", "\u064b", "\u0600", "\U000e0020", "\x01", "\x7f", "\u2800", "\U0004abcd"):
        assert window_start("ab" + pad * 10, 0, 2) == 0
        assert window_start("xab" + pad * 10, 0, 2) == 1


def test_the_last_words_are_held_however_long_each_is():
    card = " ".join(entities(entities("4111")) for _ in range(4))  # each group written 40 characters long
    text = "pay with card " + card
    assert window_start(text, 0, 64) > 14  # the window alone would release the card's first groups
    assert open_start(text, 0, 64, WORDS) == 0
    assert words_start("a bb ccc dddd", 0, 2) == 5 and words_start("a bb \x01\x01 cc dddd", 0, 3) == 2

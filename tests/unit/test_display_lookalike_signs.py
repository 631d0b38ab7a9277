"""Fullwidth and mathematical digits and signs read as ASCII ones (``m-v１`` as ``m-v1``,
``http://onprem.corp／@x`` as a path), and the braille blank draws nothing; ``shown`` marks them
as it marks look-alike letters, while ordinary typography (…, ™, –) stays as it is (ADR 0017;
review r25)."""

from __future__ import annotations

import pytest

from gatehouse.core.display import INVISIBLE, LOOKALIKE, shown, warnings


@pytest.mark.parametrize("text, marked", [
    ("m-v\uff11", "m-v\\uff11"),            # fullwidth digit one
    ("v\U0001d7cf", "v\\U0001d7cf"),        # mathematical bold digit one
    ("x\u00b9", "x\\xb9"),                  # superscript one
    ("onprem.corp\uff0f", "onprem.corp\\uff0f"),  # fullwidth solidus
    ("a\uff20b", "a\\uff20b"),              # fullwidth commercial at
])
def test_lookalike_digits_and_signs_are_marked(text: str, marked: str) -> None:
    assert shown(text) == marked
    assert warnings(text) == [LOOKALIKE]


def test_the_braille_blank_is_invisible() -> None:
    assert shown("on\u2800prem") == "on\\u2800prem"
    assert warnings("on\u2800prem") == [INVISIBLE]


@pytest.mark.parametrize("text", ["wait…", "Gatehouse™", "a – b", "naïve café", "½ of it", "№ 5"])
def test_ordinary_typography_is_left_alone(text: str) -> None:
    assert shown(text) == text and warnings(text) == []

"""What a person is shown of a policy's or the store's text: every character that would
conceal, overwrite, reorder or impersonate is a visible escape; everything else is as it was."""

import json
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from gatehouse.core.display import (
    BIDI,
    CONTROL,
    INVISIBLE,
    LOOKALIKE,
    flagged,
    json_safe,
    shown,
    shown_all,
    texts,
    warnings,
)

HIDING = {unicodedata.category(c) for c in "\x1b\x9b\u200b\u2028\u2029\ue000"}  # Cc Cf Zl Zp Co


def test_each_kind_is_escaped_and_named():
    cases = {
        "m-onprem\x1b[8m": ("m-onprem\\x1b[8m", [CONTROL]),
        "csi\x9b31m": ("csi\\x9b31m", [CONTROL]),
        "bell\x07 back\x08 cr\r del\x7f": ("bell\\x07 back\\x08 cr\\x0d del\\x7f", [CONTROL]),
        "line\nbreak\ttab": ("line\\x0abreak\\x09tab", [CONTROL]),
        "\u202eevil\u2066x\u2069": ("\\u202eevil\\u2066x\\u2069", [BIDI]),
        "a\u200bb\u2060c\ufeffd\u00a0e": ("a\\u200bb\\u2060c\\ufeffd\\xa0e", [INVISIBLE]),
        "tag\U000e0041": ("tag\\U000e0041", [INVISIBLE]),
        "m-\u043enprem": ("m-\\u043enprem", [LOOKALIKE]),
        "\uff21dmin": ("\\uff21dmin", [LOOKALIKE]),
    }
    for raw, (expected, kinds) in cases.items():
        assert shown(raw) == expected, raw
        assert warnings(raw) == kinds, raw


def test_ordinary_text_is_left_alone():
    for text in ("m-onprem", "http://10.0.0.5:8000/v1", "[bold]x[/]", "café naïve", "Модель для чата",
                 "Ελληνικά", "日本語のモデル", "path\\x1b", "", "emoji 🙂"):
        assert shown(text) == text and warnings(text) == [], text
    assert shown(None) == "" and shown(12) == "12"


def test_a_word_mixing_scripts_keeps_latin_and_escapes_the_rest():
    assert shown("pаypаl") == "p\\u0430yp\\u0430l"  # Cyrillic а twice
    assert shown("раураl") == "\\u0440\\u0430\\u0443\\u0440\\u0430l"  # mostly Cyrillic: still the Cyrillic go
    assert shown("αβγ-абв") == "\\u03b1\\u03b2\\u03b3-абв"  # no Latin: the most common script stays (tie: by name)
    assert shown("Модель gpt") == "Модель gpt"  # two words, each of one script


def test_combining_marks_that_draw_over_plain_letters_are_escaped():
    assert shown("m\u0336o\u0336del") == "m\\u0336o\\u0336del"  # struck through
    assert shown("ok\u20dd") == "ok\\u20dd"  # enclosing
    assert shown("\u0301start") == "\\u0301start"  # on whatever is printed before it
    assert shown("e" + "\u0301" * 5) == "e\u0301\u0301\u0301" + "\\u0301" * 2  # stacked past three
    assert shown("\u043e\u0301k") == "\\u043e\\u0301k"  # not drawn over the escape before it
    for text in ("cafe\u0301", "ไม่", "नमस्ते", "Ελληνικά"):
        assert shown(text) == text and warnings(text) == [], text


def test_flagged_texts_and_warnings_over_a_whole_value():
    value = {"deployments": {"d\u200b": {"model": "m\x1b[8m", "data_classes": ["internal"]}}, "n": 3}
    assert sorted(texts(value)) == sorted(["deployments", "d\u200b", "model", "m\x1b[8m", "data_classes", "internal", "n"])
    assert flagged(texts(value)) == [("d\\u200b", [INVISIBLE]), ("m\\x1b[8m", [CONTROL])]
    assert shown_all(value) == {"deployments": {"d\\u200b": {"model": "m\\x1b[8m", "data_classes": ["internal"]}},
                                "n": 3}


def test_json_stays_exact_and_holds_nothing_a_terminal_acts_on():
    value = {"model": "m\x7f\x9b\u202e\u200b\U000e0041\x1b", "plain": "Модель"}
    encoded = json_safe(json.dumps(value, ensure_ascii=False))
    assert json.loads(encoded) == value
    assert not any(unicodedata.category(c) in HIDING for c in encoded)
    assert "Модель" in encoded  # letters stay letters


def _hides(char: str) -> bool:
    return unicodedata.category(char) in {"Cc", "Cf", "Zl", "Zp", "Co", "Cn", "Cs"} or (
        unicodedata.category(char) == "Zs" and char != " ")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec=None), max_size=40))
def test_nothing_that_hides_survives_and_clean_text_is_unchanged(text):
    out = shown(text)
    assert not any(_hides(char) for char in out)
    if not warnings(text):
        assert out == text
    else:
        assert out != text
    assert shown(out) == out  # what is shown holds nothing left to escape


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.text(max_size=10) | st.integers() | st.none(),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=10))
def test_json_safe_never_changes_the_value(value):
    encoded = json.dumps(value, ensure_ascii=False)
    assert json.loads(json_safe(encoded)) == value

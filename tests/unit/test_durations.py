from datetime import timedelta

import pytest

from gatehouse.core.durations import format_duration, parse_duration


@pytest.mark.parametrize("text, expected", [
    ("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("90m", timedelta(minutes=90)),
    ("1w", timedelta(weeks=1)), ("5s", timedelta(seconds=5)), (" 2d ", timedelta(days=2)),
])
def test_parse(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "-1d", "0d", "1y", "1.5d", "abc"])
def test_parse_rejects_with_a_clear_message(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format_round_trips():
    for text in ("30d", "12h", "90m", "1w", "45s"):
        assert format_duration(parse_duration(text)) == text

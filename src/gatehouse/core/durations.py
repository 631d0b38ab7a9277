"""Human durations such as ``30d``, ``12h``, ``90m``, ``1w``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


MAX_DURATION = timedelta(days=36_525)


def is_zero_duration(text: str) -> bool:
    """``0``, ``0s``, ``0m``…: an explicit "none" where zero makes sense (a grace period)."""
    return re.fullmatch(r"\s*0+\s*[smhdw]?\s*", text or "") is not None


def parse_duration(text: str) -> timedelta:
    match = _PATTERN.match(text or "")
    if not match:
        raise ValueError(f"invalid duration {text!r}: use a number and a unit, e.g. 30d, 12h, 90m, 1w")
    amount, unit = int(match.group(1)), match.group(2)
    if amount <= 0:
        raise ValueError(f"invalid duration {text!r}: must be greater than zero")
    try:
        delta = timedelta(**{_UNITS[unit]: amount})
    except OverflowError:
        delta = MAX_DURATION * 2
    if delta > MAX_DURATION:
        raise ValueError(f"invalid duration {text!r}: at most 100 years")
    return delta


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"

"""Personal data by pattern and checksum: no NLP model, nothing downloaded.

Each pattern is cheap and anchored on word boundaries; what a pattern alone cannot tell apart
(a card number from any 16 digits, an IBAN from a product code) is settled by the number's
own checksum (Luhn, ISO 13616 mod 97) or structure (IP octets, SSN ranges). The patterns run
on the shared ``TextView`` (normalised, encodings decoded), so an address written in full-width
letters, with zero-width spaces inside or in base64 is found, at the characters the caller sent.
"""

from __future__ import annotations

import ipaddress
import re

from gatehouse.guardrails.findings import Finding
from gatehouse.guardrails.normalise import TextView, as_view

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,24}\b")
CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"   # international: +44 20 7946 0958
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}|\d{3}[.-]\d{3}[.-]\d{4}"                         # North American: (415) 555-2671
    r"|0\d{2,4} \d{3,4} ?\d{3,4})"                                                         # national trunk 0: 020 7946 0958
    r"(?: ?(?:x|ext\.?) ?\d{1,6})?(?![\w])")                                                  # an extension: x1234
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{1,4}){0,6}(?![\w:])")
US_SSN = re.compile(r"(?<![\d-])(\d{3})-(\d{2})-(\d{4})(?![\d-])")
UK_NINO = re.compile(r"\b(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
IBAN_LENGTHS = {"AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20,
                "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IS": 26, "IT": 27,
                "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25,
                "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26, "AE": 23, "SA": 24, "IL": 23, "BR": 29}
KINDS = ("email", "credit_card", "iban", "phone", "ip_address", "us_ssn", "uk_nino")


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    compact = text.replace(" ", "")
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _card(match: re.Match[str]) -> float:
    digits = re.sub(r"[ -]", "", match.group())
    if not 13 <= len(digits) <= 19 or not luhn_valid(digits) or len(set(digits)) < 2:
        return 0.0
    known = digits[0] == "4" or digits[:2] in {"30", "34", "35", "36", "37", "38", "50", "51", "52", "53", "54", "55",
                                               "62", "65", "67"} \
        or 2221 <= int(digits[:4]) <= 2720 or digits[:4] in {"6011", "1800", "2131"}
    return 0.95 if known else 0.4  # 16-digit ids and timestamps pass Luhn one time in ten


def _ssn(match: re.Match[str]) -> float:
    area, group, serial = match.groups()
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return 0.0
    return 0.85


def _ipv4(match: re.Match[str]) -> float:
    try:
        address = ipaddress.IPv4Address(match.group())
    except ValueError:
        return 0.0
    if all(int(octet) < 10 for octet in match.group().split(".")):
        return 0.3  # 1.2.3.4 is far more often a version number than an address
    return 0.6 if address.is_private or address.is_loopback else 0.8


def _ipv6(match: re.Match[str]) -> float:
    try:
        ipaddress.IPv6Address(match.group())
    except ValueError:
        return 0.0
    return 0.8


def _phone(match: re.Match[str]) -> float:
    digits = re.sub(r"\D", "", match.group())
    if not 9 <= len(digits) <= 15:
        return 0.0
    text = match.group()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) or (re.fullmatch(r"[\d.]+", text)
                                                       and not re.fullmatch(r"\d{3}\.\d{3}\.\d{4}", text)):
        return 0.0  # a date or a dotted version number, not a phone number
    return 0.75 if text.startswith("+") or "(" in text else 0.55


CHECKS = (
    ("email", EMAIL, lambda m: 0.95),
    ("iban", IBAN, lambda m: 0.95 if iban_valid(m.group()) else 0.0),  # before cards: its account number can pass Luhn
    ("credit_card", CARD, _card),
    ("us_ssn", US_SSN, _ssn),
    ("uk_nino", UK_NINO, lambda m: 0.8),
    ("ip_address", IPV4, _ipv4),
    ("ip_address", IPV6, _ipv6),
    ("phone", PHONE, _phone),
)


def find_pii(text: str | TextView, kinds: frozenset[str] | None = None, threshold: float = 0.5) -> list[Finding]:
    """Personal data in ``text`` as the view renders it; offsets are the caller's."""
    return as_view(text).scan(lambda rendered: _find_in(rendered, kinds, threshold))


def _find_in(text: str, kinds: frozenset[str] | None, threshold: float) -> list[Finding]:
    found: list[Finding] = []
    claimed = bytearray(len(text))  # characters a stronger kind already took (a card is not a phone)
    for kind, pattern, score_of in CHECKS:
        if kinds is not None and kind not in kinds:
            continue
        for match in pattern.finditer(text):
            start, end = match.span()
            if claimed.find(1, start, end) != -1:
                continue
            score = score_of(match)
            if score > 0 and score >= threshold:
                found.append(Finding("pii", kind, start, end, score))
                claimed[start:end] = b"\x01" * (end - start)
    return sorted(found, key=lambda f: f.start)

"""The Gatehouse key format.

``gth_`` + 12-char base62 key id + ``_`` + 32-char base62 secret + 6-char base62 CRC32
of everything before it. The checksum lets scanners and the gateway reject typos and
fakes offline, before any lookup. Only an HMAC-SHA256 of the key under a server-side
pepper is ever stored; the key id is the public handle for logs, revocation and leak
reports.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass

PREFIX = "gth_"
KEY_ID_LENGTH = 12
SECRET_LENGTH = 32
CHECKSUM_LENGTH = 6
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY_LENGTH = len(PREFIX) + KEY_ID_LENGTH + 1 + SECRET_LENGTH + CHECKSUM_LENGTH

#: One regex for scanners (gitleaks, GitHub custom patterns); the checksum removes false hits.
KEY_PATTERN = re.compile(r"\bgth_([0-9A-Za-z]{12})_([0-9A-Za-z]{32})([0-9A-Za-z]{6})\b")
KEY_ID_PATTERN = re.compile(r"^[0-9A-Za-z]{12}$")


class MalformedKey(ValueError):
    """The text is not a Gatehouse key, or its checksum does not match."""


@dataclass(frozen=True)
class ParsedKey:
    key_id: str
    secret: str
    text: str


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(ALPHABET[rest])
    return "".join(reversed(digits)).rjust(width, "0")


def _random_base62(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


def generate_key() -> ParsedKey:
    key_id = _random_base62(KEY_ID_LENGTH)
    secret = _random_base62(SECRET_LENGTH)
    body = f"{PREFIX}{key_id}_{secret}"
    return ParsedKey(key_id=key_id, secret=secret, text=body + checksum(body))


def parse_key(text: str) -> ParsedKey:
    """Split a key and verify its checksum; raises :class:`MalformedKey`."""
    if len(text) != KEY_LENGTH or not text.startswith(PREFIX):
        raise MalformedKey("not a Gatehouse key (expected gth_… of 55 characters)")
    match = KEY_PATTERN.fullmatch(text)
    if match is None:
        raise MalformedKey("not a Gatehouse key (unexpected characters)")
    body, given = text[:-CHECKSUM_LENGTH], text[-CHECKSUM_LENGTH:]
    if not hmac.compare_digest(checksum(body), given):
        raise MalformedKey("key checksum does not match (mistyped or truncated key)")
    return ParsedKey(key_id=match.group(1), secret=match.group(2), text=text)


def hash_secret(pepper: bytes, key: ParsedKey) -> str:
    """HMAC-SHA256 over key id and secret, so a hash cannot be moved to another key id."""
    message = f"{key.key_id}:{key.secret}".encode()
    return hmac.new(pepper, message, hashlib.sha256).hexdigest()


def secret_matches(pepper: bytes, key: ParsedKey, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(pepper, key), stored_hash)


# Looser than KEY_PATTERN on purpose: inside a URL a key may touch other characters, be
# upper-cased or have its underscores percent-encoded.
_KEY_IN_TEXT = re.compile(r"gth(?:_|%5f)([0-9a-z]{12})(?:_|%5f)[0-9a-z]{38}", re.IGNORECASE)


def mask_keys(text: str) -> str:
    """``text`` with every Gatehouse key in it reduced to its public key id (``gth_<id>_…``):
    for anything a caller sends that is kept or shown (a leak report's URL, say)."""
    return _KEY_IN_TEXT.sub(lambda match: f"gth_{match.group(1)}_…", text)

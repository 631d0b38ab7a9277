"""Credentials in text: known key formats (checked where the format allows), private keys,
JWTs, Gatehouse's own keys (checksum verified), and high-entropy tokens that are not prose.

The entropy check runs on single tokens, never across spaces, so ordinary sentences and long
words do not trip it; a token must mix letters and digits and be long enough to be a secret.
Like every detector, it reads the shared ``TextView``: ``AKIA\u200b…``, ``ＡＫＩＡ…``, a Cyrillic
``А`` or a base64 of the key is the key.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter

import orjson

from gatehouse.core.keyformat import MalformedKey, parse_key
from gatehouse.guardrails.findings import Finding
from gatehouse.guardrails.normalise import TextView, as_view

PATTERNS: tuple[tuple[str, re.Pattern[str], float], ...] = (
    ("private_key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
                               r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)"), 0.99),
    ("aws_access_key_id", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])"), 0.95),
    ("github_token", re.compile(r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,244})"
                                r"(?![A-Za-z0-9_])"), 0.95),
    ("slack_token", re.compile(r"(?<![A-Za-z0-9-])xox[abprs]-[A-Za-z0-9-]{10,200}"), 0.9),
    ("google_api_key", re.compile(r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])"), 0.9),
    ("stripe_key", re.compile(r"(?<![A-Za-z0-9_])(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,99}(?![A-Za-z0-9_])"), 0.9),
    ("huggingface_token", re.compile(r"(?<![A-Za-z0-9_])hf_[A-Za-z]{34,40}(?![A-Za-z0-9_])"), 0.9),
    ("gitlab_token", re.compile(r"(?<![A-Za-z0-9_-])glpat-[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])"), 0.95),
    ("npm_token", re.compile(r"(?<![A-Za-z0-9_])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9_])"), 0.95),
    ("sendgrid_key", re.compile(r"(?<![A-Za-z0-9_.-])SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])"), 0.95),
    ("openai_key", re.compile(r"(?<![A-Za-z0-9_-])sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,200}(?![A-Za-z0-9_-])"), 0.8),
    ("aws_secret_access_key", re.compile(
        r"(?i:aws_?secret_?access_?key|secret_?access_?key|aws_?secret)[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"), 0.9),
)
SRI = re.compile(r"sha(?:256|384|512)-")
JWT = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}(?![A-Za-z0-9_-])")
GATEHOUSE_KEY = re.compile(r"(?<![A-Za-z0-9_])gth_[A-Za-z0-9_]{20,120}(?![A-Za-z0-9_])")
TOKEN = re.compile(r"[A-Za-z0-9+/=_\-]{24,}")
KINDS = ("private_key", "aws_access_key_id", "aws_secret_access_key", "github_token", "slack_token", "google_api_key",
         "stripe_key", "openai_key", "huggingface_token", "gitlab_token", "npm_token", "sendgrid_key", "jwt",
         "gatehouse_key", "high_entropy")


def shannon_entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _jwt_header(token: str) -> bool:
    header = token.split(".", 1)[0]
    try:
        value = orjson.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(value, dict) and "alg" in value


def _gatehouse_key(token: str) -> bool:
    try:
        parse_key(token)
    except MalformedKey:
        return False
    return True


def _in_link_or_digest(text: str, start: int) -> bool:
    """A token inside a URL, a data: URI or a subresource-integrity digest is not a secret."""
    word_start = max(text.rfind(" ", 0, start), text.rfind("\n", 0, start), text.rfind('"', 0, start)) + 1
    word = text[word_start:start + 8]
    return "://" in word or word.startswith("data:") or bool(SRI.match(text, word_start))


def _high_entropy(token: str) -> float:
    core = token.strip("=-_")
    if len(core) < 24 or not (re.search(r"\d", core) and re.search(r"[A-Z]", core) and re.search(r"[a-z]", core)):
        return 0.0
    if re.fullmatch(r"[A-Za-z]+(?:[-_][A-Za-z]+)*\d*", core):
        return 0.0  # identifiers_like_this or CamelCaseWords2
    entropy = shannon_entropy(core)
    needed = 4.2 if len(core) < 40 else 4.0
    return 0.7 if entropy >= needed else 0.0


def find_secrets(text: str | TextView, kinds: frozenset[str] | None = None, threshold: float = 0.5) -> list[Finding]:
    """Credentials in ``text`` as the view renders it; offsets are the caller's."""
    return as_view(text).scan(lambda rendered: _find_in(rendered, kinds, threshold))


def _find_in(text: str, kinds: frozenset[str] | None, threshold: float) -> list[Finding]:
    found: list[Finding] = []
    claimed = bytearray(len(text))

    def add(kind: str, start: int, end: int, score: float) -> None:
        if (kinds is None or kind in kinds) and score > 0 and score >= threshold and claimed.find(1, start, end) == -1:
            found.append(Finding("secrets", kind, start, end, score))
            claimed[start:end] = b"\x01" * (end - start)

    for match in GATEHOUSE_KEY.finditer(text):
        if _gatehouse_key(match.group()):
            add("gatehouse_key", *match.span(), 0.99)
    for kind, pattern, score in PATTERNS:
        for match in pattern.finditer(text):
            start, end = match.span(1) if pattern.groups else match.span()
            add(kind, start, end, score)
    for match in JWT.finditer(text):
        if _jwt_header(match.group()):
            add("jwt", *match.span(), 0.9)
    if kinds is None or "high_entropy" in kinds:
        for match in TOKEN.finditer(text):
            if not _in_link_or_digest(text, match.start()):
                add("high_entropy", *match.span(), _high_entropy(match.group()))
    return sorted(found, key=lambda f: f.start)

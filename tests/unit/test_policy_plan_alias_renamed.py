"""An alias renamed (the old one gone, a new one on the same route) takes its callers' requests
under new rules: a ``remote_urls: false`` or a tight ``max_output_tokens`` left out of the new
alias is a loosening the plan must ask for, as it does when the alias keeps its name (issue 25,
review r25)."""

from __future__ import annotations

from gatehouse.policy.plan import plan
from gatehouse.policy.schema import PolicyDocument

ONPREM = {"engine": "openai", "url": "http://onprem/v1", "model": "m"}


def document(aliases: dict[str, dict]) -> PolicyDocument:
    return PolicyDocument.model_validate({
        "version": 1, "deployments": {"onprem": ONPREM, "other": ONPREM},
        "aliases": aliases,
        "grants": [{"name": "dev", "subjects": [{"environment": "dev"}], "aliases": sorted(aliases)}]})


STRICT = {"route": ["onprem"], "requests": {"remote_urls": False, "max_output_tokens": 1000}}


def guardrail_widenings(before: PolicyDocument, after: PolicyDocument) -> list[str]:
    return [w for w in plan(before, after, []).widenings if w.startswith("guardrail:")]


def test_renaming_an_alias_and_dropping_its_request_rules_is_a_loosening():
    assert guardrail_widenings(document({"chat": STRICT}), document({"chat-v2": {"route": ["onprem"]}})) == [
        "guardrail: alias chat-v2 (new; compared with chat, the same route): requests.remote_urls false → true",
        "guardrail: alias chat-v2 (new; compared with chat, the same route): requests.max_output_tokens 1000 → -"]


def test_a_rename_that_keeps_the_rules_or_a_new_alias_elsewhere_asks_nothing_more():
    assert guardrail_widenings(document({"chat": STRICT}), document({"chat-v2": STRICT})) == []
    # the old alias kept, or a new alias on another route: no rename, nothing to compare with
    assert guardrail_widenings(document({"chat": STRICT}), document({"chat": STRICT, "chat-v2": {"route": ["onprem"]}})) == []
    assert guardrail_widenings(document({"chat": STRICT}), document({"chat-v2": {"route": ["other"]}})) == []


def test_a_new_alias_shows_what_its_callers_may_send():
    """Not a rename (another route): nothing to compare with, so what it lets through is shown
    beside its grant rule (which is what the approver acknowledges)."""
    result = plan(document({"chat": STRICT}), document({"chat": STRICT, "chat-v2": {"route": ["other"]}}), [])
    [shown] = [g for g in result.guardrails if g.subject == "alias chat-v2 (new): requests"]
    assert (shown.before, shown.after, shown.loosens) == (
        "-", "remote_urls true; extra_fields -; max_output_tokens - (131072)", False)
    assert [w for w in result.widenings if w.startswith("rule:")] == ["rule: environment=dev → chat-v2 at internal"]

"""Guardrail profiles in the policy: validation, inheritance, who gets which, what a profile
does to a request, and how a change to them shows in a plan."""

from __future__ import annotations

import pytest

from gatehouse.guardrails.inspect import Blocked, inspect_input
from gatehouse.identity.view import IdentityView
from gatehouse.policy.compiled import CompiledPolicy
from gatehouse.policy.loader import PolicyError, load_policy_text
from gatehouse.policy.plan import plan
from gatehouse.policy.starter import STARTER_POLICY


def with_guardrails(section: str) -> CompiledPolicy:
    return CompiledPolicy(load_policy_text(STARTER_POLICY + section))


BASE = """
guardrails:
  default: standard
  profiles:
    standard:
      pii: {action: redact, kinds: [email]}
      secrets: {action: block}
    strict:
      inherits: standard
      injection: {action: block}
      pii: {action: block}
    open:
      inherits: standard
      secrets: {action: allow}
  assign:
    - {team: research, profile: strict}
    - {identity: special-app, profile: open}
    - {alias: chat-small, profile: standard}
"""


def test_inheritance_and_the_most_specific_assignment():
    profiles = with_guardrails(BASE).guardrail_profiles
    assert profiles.for_request("special-app", "research", "chat-small").name == "open"  # identity beats team
    assert profiles.for_request("bot", "research", "chat-small").name == "strict"          # team beats alias
    assert profiles.for_request("bot", None, "other").name == "standard"                    # the default
    strict = profiles.profiles["strict"]
    assert set(strict.rules) == {"pii", "secrets", "injection"} and strict.rules["pii"].action == "block"
    assert "secrets" not in profiles.profiles["open"].rules  # allow: the detector does not run at all


def test_no_guardrails_section_means_no_profile_and_the_same_version_hash():
    assert with_guardrails("").guardrail_profiles.for_request("bot", None, "chat-small") is None
    assert load_policy_text(STARTER_POLICY).version == load_policy_text(
        STARTER_POLICY + "guardrails: {profiles: {}, assign: []}\n").version


@pytest.mark.parametrize(("section", "problem"), [
    ("guardrails: {profiles: {a: {inherits: b}, b: {inherits: a}}}", "inherits itself"),
    ("guardrails: {profiles: {a: {inherits: nope}}}", "inherits unknown 'nope'"),
    ("guardrails: {default: nope}", "default profile 'nope' is not defined"),
    ("guardrails: {profiles: {a: {pii: {action: redact, kinds: [shoe_size]}}}}", "unknown kind(s) shoe_size"),
    ("guardrails: {profiles: {a: {injection: {action: redact}}}}", "redact is not an action"),
    ("guardrails: {profiles: {a: {terms: {action: block, patterns: ['x(?=y)']}}}}", "invalid perl operator"),
    ("guardrails: {profiles: {a: {terms: {action: block}}}}", "needs 'terms' or 'patterns'"),
    ("guardrails: {profiles: {a: {}}, assign: [{profile: a, team: x, alias: chat-small}]}", "exactly one of"),
    ("guardrails: {profiles: {a: {}}, assign: [{profile: a, alias: nope}]}", "unknown alias 'nope'"),
    ("guardrails: {profiles: {a: {pii: {action: shout}}}}", "Input should be"),
])
def test_bad_guardrail_sections_are_refused_with_their_line(section, problem):
    with pytest.raises(PolicyError) as refused:
        load_policy_text(STARTER_POLICY + section + "\n")
    assert any(problem in str(p) and p.line is not None for p in refused.value.problems), refused.value.problems


def test_inspection_redacts_blocks_and_leaves_other_fields_alone():
    profiles = with_guardrails(BASE).guardrail_profiles
    body = {"model": "chat-small", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "mail a@example.com"}, {"type": "image_url"}]}]}
    outcome = inspect_input(profiles.for_request("bot", None, "chat-small"), "chat/completions", body)
    assert body["messages"][1]["content"][0]["text"] == "mail [EMAIL_1]" and body["messages"][0]["content"] == "be brief"
    assert [v.field for v in outcome.verdicts] == ["messages[1].content[0].text"] and not outcome.sensitive
    prompt = {"prompt": ["fine", "key AKIAIOSFODNN7EXAMPLE"]}
    with pytest.raises(Blocked) as blocked:
        inspect_input(profiles.for_request("bot", None, "chat-small"), "completions", prompt)
    assert blocked.value.verdict.rule == "secrets.aws_access_key_id" and blocked.value.verdict.field == "prompt[1]"
    assert prompt["prompt"][1] == "key AKIAIOSFODNN7EXAMPLE"  # a blocked request is not rewritten


def test_a_verdict_names_a_caller_s_own_keys_by_position_never_by_their_text():
    profiles = with_guardrails(BASE).guardrail_profiles
    secret_key = "MY-PASSWORD-hunter2"
    body = {"model": "chat-small", "messages": [{"role": "user", "content": "hi", secret_key: ["a@example.com"]}]}
    outcome = inspect_input(profiles.for_request("bot", None, "chat-small"), "chat/completions", body)
    assert [v.field for v in outcome.verdicts] == ["messages[0].<key 2>[0]"]
    assert secret_key not in str([v.as_dict() for v in outcome.verdicts])


def test_a_plan_shows_guardrail_changes_and_loosening_is_a_widening():
    before = load_policy_text(STARTER_POLICY + BASE).document
    looser = BASE.replace("secrets: {action: block}", "secrets: {action: flag}").replace(
        "    - {team: research, profile: strict}\n", "")
    result = plan(before, load_policy_text(STARTER_POLICY + looser).document, [IdentityView("x", "research", "dev")])
    assert "guardrail: profile standard: secrets action=block → action=flag" in result.widenings
    assert "guardrail: assignment team=research strict → -" in result.widenings
    stricter = BASE.replace("pii: {action: redact, kinds: [email]}", "pii: {action: redact}")
    tightened = plan(before, load_policy_text(STARTER_POLICY + stricter).document, [])
    assert tightened.guardrails and tightened.widenings == []  # more kinds caught: shown, nothing to acknowledge
    restoring = BASE.replace("pii: {action: redact, kinds: [email]}", "pii: {action: redact, kinds: [email], restore: true}")
    assert any(w.startswith("guardrail: profile standard: pii") for w in plan(
        before, load_policy_text(STARTER_POLICY + restoring).document, []).widenings)  # values go back into answers
    classified = load_policy_text(STARTER_POLICY + BASE.replace(
        "injection: {action: block}", "injection: {action: block, classifier: c.py}")).document
    assert any(": injection action=block, classifier=c.py → action=block" in w for w in plan(classified, before, []).widenings)


def test_every_string_the_caller_sends_is_scanned_and_token_ids_are_refused():
    from gatehouse.guardrails.inspect import Unscannable

    profile = with_guardrails(BASE).guardrail_profiles.for_request("bot", None, "chat-small")
    hidden = {"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"key": "AKIAIOSFODNN7EXAMPLE"}'}}]}]}
    with pytest.raises(Blocked) as blocked:
        inspect_input(profile, "chat/completions", hidden)
    assert blocked.value.verdict.field == "messages[0].tool_calls[0].function.arguments"
    named = {"messages": [{"role": "user", "name": "x", "content": "hi"}],
             "tools": [{"type": "function", "function": {"name": "t", "description": "mail a@example.com"}}]}
    inspect_input(profile, "chat/completions", named)
    assert named["tools"][0]["function"]["description"] == "mail [EMAIL_1]"
    for body, endpoint in (({"prompt": [1, 2, 3]}, "completions"), ({"input": [[1, 2]]}, "embeddings")):
        with pytest.raises(Unscannable):
            inspect_input(profile, endpoint, body)


def test_overlapping_redactions_leave_nothing_of_either_and_shadow_enforces_nothing():
    profiles = with_guardrails(BASE.replace("      secrets: {action: block}\n    strict:", "      secrets: {action: block}\n"
                                            "      terms: {action: redact, terms: [project falcon]}\n    strict:")).guardrail_profiles
    body = {"messages": [{"role": "user", "content": "contact project falcon.jones@corp.com"}]}
    inspect_input(profiles.for_request("bot", None, "x"), "chat/completions", body)
    assert body["messages"][0]["content"] == "contact [TERM_1]"
    shadowed = with_guardrails(BASE.replace("pii: {action: redact, kinds: [email]}",
                                            "pii: {action: flag, shadow: true}")).guardrail_profiles
    outcome = inspect_input(shadowed.for_request("bot", None, "x"), "chat/completions",
                            {"messages": [{"role": "user", "content": "mail a@example.com"}]})
    assert outcome.verdicts[0].shadow and not outcome.sensitive  # not even a higher data class


def test_blank_terms_and_kinds_where_they_mean_nothing_are_refused():
    for section, problem in (("guardrails: {profiles: {a: {terms: {action: block, terms: [' ']}}}}", "visible characters"),
                             ("guardrails: {profiles: {a: {pii: {action: redact, kinds: []}}}}", "at least 1 item"),
                             ("guardrails: {profiles: {a: {injection: {action: block, kinds: [x]}}}}", "pii and secrets only")):
        with pytest.raises(PolicyError) as refused:
            load_policy_text(STARTER_POLICY + section + "\n")
        assert any(problem in str(p) for p in refused.value.problems), refused.value.problems


def test_loosening_through_inheritance_is_a_widening():
    family = ("guardrails:\n  profiles:\n    parent: {{pii: {{action: redact}}, injection: {{action: block}}, max_input_bytes: 1000}}\n"
              "    child: {{inherits: parent{extra}}}\n")
    before = load_policy_text(STARTER_POLICY + family.format(extra="")).document
    for extra in (", injection: {action: flag}", ", pii: {action: allow}", ", injection: {action: block, shadow: true}",
                  ", max_input_bytes: 100000000"):
        result = plan(before, load_policy_text(STARTER_POLICY + family.format(extra=extra)).document, [])
        assert [w for w in result.widenings if w.startswith("guardrail: profile child")], (extra, result.widenings)
    parent_edit = family.format(extra="").replace("pii: {action: redact}", "pii: {action: flag}")
    result = plan(before, load_policy_text(STARTER_POLICY + parent_edit).document, [])
    assert {w.split(":")[1].strip() for w in result.widenings} == {"profile parent", "profile child"}


def test_a_banned_term_is_short_enough_for_a_stream_to_hold():
    with pytest.raises(PolicyError) as refused:
        load_policy_text(STARTER_POLICY + "guardrails: {profiles: {a: {terms: {action: block, terms: ['" + "x" * 201 + "']}}}}\n")
    assert any("at most 200 characters" in str(p) for p in refused.value.problems)
    load_policy_text(STARTER_POLICY + "guardrails: {profiles: {a: {terms: {action: block, terms: ['" + "x" * 200 + "']}}}}\n")

import textwrap

import pytest

from gatehouse.identity.view import IdentityView
from gatehouse.policy.compiled import CompiledPolicy
from gatehouse.policy.loader import PolicyError, load_policy_text
from gatehouse.policy.starter import STARTER_POLICY

GOOD = textwrap.dedent("""\
    version: 1
    deployments:
      local:
        engine: embedded
        model: gemma-3-270m
      vllm:
        engine: vllm
        url: http://127.0.0.1:8000/v1
        model: Qwen/Qwen2.5-7B-Instruct
        credential: {env: VLLM_KEY}
    aliases:
      chat:
        route: [vllm, local]
      private:
        route: [local]
    grants:
      - name: dev
        subjects: [{environment: dev}]
        aliases: [chat]
      - name: research
        subjects:
          - team: research
            labels: {tier: gold}
          - identity: special-bot
        aliases: [private, chat]
    """)


def problems(text):
    with pytest.raises(PolicyError) as info:
        load_policy_text(text)
    return [str(p) for p in info.value.problems]


def test_starter_policy_is_valid():
    loaded = load_policy_text(STARTER_POLICY)
    assert loaded.document.aliases["chat-small"].route == ("embedded-gemma",)
    assert loaded.version.startswith("sha256:") and len(loaded.version) == 71


def test_version_ignores_comments_and_layout_but_not_content():
    base = load_policy_text(GOOD).version
    assert load_policy_text("# a comment\n" + GOOD.replace("route: [vllm, local]", "route:\n      - vllm\n      - local")).version == base
    assert load_policy_text(GOOD.replace("route: [vllm, local]", "route: [local, vllm]")).version != base


def test_unknown_field_is_reported_on_its_line():
    text = GOOD.replace("    model: gemma-3-270m\n", "    model: gemma-3-270m\n    modle: typo\n")
    assert problems(text) == ["line 6: deployments.local.modle: unknown field 'modle'"]


def test_unknown_deployment_in_route_names_the_line():
    found = problems(GOOD.replace("route: [local]", "route: [local, nowhere]"))
    assert found == ["line 15: aliases.private.route[1]: alias 'private' routes to unknown deployment 'nowhere'"]


def test_grant_naming_unknown_alias():
    found = problems(GOOD.replace("aliases: [private, chat]", "aliases: [private, chatt]"))
    assert found == ["line 25: grants[1].aliases[1]: grant 'research' names unknown alias 'chatt'"]


def test_duplicate_keys_are_errors_not_silently_merged():
    text = GOOD.replace("  private:\n", "  chat:\n    route: [local]\n  private:\n")
    assert any("duplicate key 'chat' (first at line 12)" in p for p in problems(text))


def test_several_problems_are_reported_together():
    text = GOOD.replace("engine: vllm", "engine: vlm").replace("version: 1", "version: 2")
    found = problems(text)
    assert any(p.startswith("line 1: version") for p in found)
    assert any(p.startswith("line 7: deployments.vllm.engine") for p in found)


@pytest.mark.parametrize("text, needle", [
    ("", "empty"),
    ("version: 1\ndeployments: [\n", "not valid YAML"),
    ("- a\n- b\n", "must be a mapping"),
    (GOOD.replace("url: http://127.0.0.1:8000/v1", "url: ftp://x"), "http:// or https://"),
    (GOOD.replace("credential: {env: VLLM_KEY}", "credential: {env: A, file: /b}"), "exactly one"),
    (GOOD.replace("    url: http://127.0.0.1:8000/v1\n", ""), "needs 'url'"),
    (GOOD.replace("subjects: [{environment: dev}]", "subjects: [{}]"), "at least one of"),
    (GOOD.replace("model: gemma-3-270m\n", "model: gemma-3-270m\n    settings: {slots: 16, batch_size: 8}\n", 1),
     "must be at least slots"),
])
def test_invalid_documents(text, needle):
    assert any(needle in p for p in problems(text)), problems(text)


def test_grants_match_on_attributes_and_names():
    policy = CompiledPolicy(load_policy_text(GOOD))
    dev = IdentityView("a", "payments", "dev")
    gold = IdentityView("b", "research", "prod", (("tier", "gold"),))
    silver = IdentityView("c", "research", "prod", (("tier", "silver"),))
    special = IdentityView("special-bot", None, "prod")
    assert policy.allowed_aliases(dev) == {"chat"}
    assert policy.allowed_aliases(gold) == {"chat", "private"}
    assert policy.allowed_aliases(silver) == frozenset()
    assert policy.allowed_aliases(special) == {"chat", "private"}


def test_fields_added_since_keep_the_hash_of_versions_stored_before_them():
    """A stored version's hash is its identity (approvals, activations): a new field at its
    default must not change it, and a value other than the default must."""
    base = load_policy_text(STARTER_POLICY)
    assert load_policy_text(STARTER_POLICY.replace("    route: [", "    requests: {}\n    route: [", 1)).version == base.version
    changed = load_policy_text(STARTER_POLICY.replace("    route: [", "    requests: {remote_urls: false}\n    route: [", 1))
    assert changed.version != base.version

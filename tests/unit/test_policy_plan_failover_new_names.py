"""A deployment new under its name can give up as early as a kept one whose timeouts are cut:
renaming the primary (same server, new name) with a tiny timeout hands every request on to the
fallback, and the plan must say so as a failover widening (issue 25, review r25)."""

from __future__ import annotations

from test_policy_plan_flows import BEFORE, CLOUD, LOCAL, ONPREM, PolicyDocument, document, traffic


def renamed(route: list[str], **deployments: dict) -> PolicyDocument:
    """The issue's policy with ``onprem`` replaced by the same server under another name."""
    return PolicyDocument.model_validate({
        "version": 1, "deployments": {"cloud": CLOUD, "local": LOCAL, **deployments},
        "aliases": {"chat": {"route": route}},
        "grants": [{"name": "dev-chat", "subjects": [{"environment": "dev"}], "aliases": ["chat"]}]})


def test_a_renamed_primary_with_a_tiny_timeout_is_a_failover_widening():
    after = renamed(["onprem2", "cloud"], onprem2={**ONPREM, "timeouts": {"first_token": 0.000001}})
    assert [w for w in traffic(BEFORE, after) if w.startswith("failover:")] == [
        "failover: onprem2 (on-prem, new; compared with onprem, the same server) timeouts.first_token 60.0 → 1e-06 "
        "can hand chat requests on to cloud (cloud) for public, internal"]


def test_a_rename_that_keeps_the_settings_asks_nothing_more():
    slow = {**ONPREM, "timeouts": {"first_token": 300}}
    before = renamed(["onprem", "cloud"], onprem=slow)
    assert [w for w in traffic(before, renamed(["onprem2", "cloud"], onprem2=slow)) if w.startswith("failover:")] == []
    # the same server renamed back to the defaults gives up five times sooner than before
    assert [w for w in traffic(before, renamed(["onprem2", "cloud"], onprem2=ONPREM)) if w.startswith("failover:")] == [
        "failover: onprem2 (on-prem, new; compared with onprem, the same server) timeouts.first_token 300.0 → 60.0 "
        "can hand chat requests on to cloud (cloud) for public, internal"]


def test_a_new_deployment_put_first_is_compared_with_the_same_model_or_the_defaults():
    before = document(["local", "cloud"])
    after = document(["tiny", "cloud"], tiny={**LOCAL, "settings": {"slots": 1, "batch_size": 8, "max_waiting": 0}})
    [line] = [w for w in traffic(before, after) if w.startswith("failover:")]
    assert line == ("failover: tiny (on-prem, new; compared with local, the same model) settings.batch_size 512 → 8; "
                    "settings.max_waiting 64 → 0; settings.slots 8 → 1 can hand chat requests on to cloud (cloud) "
                    "for public, internal")
    assert traffic(before, document(["fresh", "cloud"], fresh=LOCAL))[-1].startswith("traffic:")  # as local: no failover line
    other = {**LOCAL, "model": "other-model", "settings": {"max_waiting": 0}}
    [line] = [w for w in traffic(before, document(["other", "cloud"], other=other)) if w.startswith("failover:")]
    assert line.startswith("failover: other (on-prem, new; compared with the defaults) settings.max_waiting 64 → 0 ")


def test_a_new_deployment_in_lanes_new_to_the_alias_is_asked_for_by_the_grant_rule():
    empty = PolicyDocument.model_validate({"version": 1, "deployments": {"cloud": CLOUD},
                                           "aliases": {"chat": {"route": ["cloud"]}}})  # nobody granted: no lanes
    after = renamed(["onprem2", "cloud"], onprem2={**ONPREM, "timeouts": {"first_token": 1}})
    widenings = traffic(empty, after)
    assert not [w for w in widenings if w.startswith("failover:")]


def test_keeping_the_old_deployment_defined_is_no_way_around_the_comparison():
    slow = {**ONPREM, "timeouts": {"first_token": 300}}
    before = renamed(["onprem", "cloud"], onprem=slow)
    after = renamed(["onprem2", "cloud"], onprem=slow, onprem2=ONPREM)  # onprem kept, unused
    assert [w for w in traffic(before, after) if w.startswith("failover:")] == [
        "failover: onprem2 (on-prem, new; compared with onprem, the same server) timeouts.first_token 300.0 → 60.0 "
        "can hand chat requests on to cloud (cloud) for public, internal"]

"""The plan's access diff is exact: for random inventories and random pairs of policies, its
gained and lost sets equal a brute-force evaluation of both policies over every identity × alias."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gatehouse.core.classification import DATA_CLASSES
from gatehouse.identity.view import IdentityView
from gatehouse.policy.access import subject_text
from gatehouse.policy.plan import plan
from gatehouse.policy.schema import PolicyDocument

ALIASES = ["a1", "a2", "a3", "a4"]
DEPLOYMENTS = {"onprem": {"engine": "openai", "url": "http://x/v1", "model": "m", "location": "on-prem",
                          "data_classes": ["public", "internal", "confidential", "restricted"]},
               "cloud": {"engine": "openai", "url": "http://y/v1", "model": "m", "location": "cloud",
                         "data_classes": ["public", "internal"]}}
LABELS = [("tier", "gold"), ("tier", "silver"), ("pci", "yes")]

identities = st.lists(st.builds(
    IdentityView,
    name=st.sampled_from([f"id{i}" for i in range(8)]),
    team=st.sampled_from([None, "red", "blue"]),
    environment=st.sampled_from(["dev", "prod"]),
    labels=st.lists(st.sampled_from(LABELS), unique_by=lambda kv: kv[0], max_size=2).map(lambda kvs: tuple(sorted(kvs))),
), max_size=8, unique_by=lambda view: view.name)

subjects = st.fixed_dictionaries({}, optional={
    "identity": st.sampled_from([f"id{i}" for i in range(8)]),
    "team": st.sampled_from(["red", "blue"]),
    "environment": st.sampled_from(["dev", "prod"]),
    "labels": st.lists(st.sampled_from(LABELS), unique_by=lambda kv: kv[0], min_size=1, max_size=2).map(dict),
}).filter(bool)

grants = st.lists(st.fixed_dictionaries({
    "subjects": st.lists(subjects, min_size=1, max_size=2),
    "aliases": st.lists(st.sampled_from(ALIASES), min_size=1, max_size=3, unique=True),
    "max_data_class": st.sampled_from(DATA_CLASSES),
}), max_size=5)

routes = st.lists(st.sampled_from(list(DEPLOYMENTS)), min_size=1, max_size=2, unique=True)


@st.composite
def policies(draw) -> PolicyDocument:  # type: ignore[no-untyped-def]
    return PolicyDocument.model_validate({
        "version": 1, "deployments": DEPLOYMENTS,
        "aliases": {alias: {"route": draw(routes)} for alias in ALIASES},
        "grants": [{"name": f"g{i}", **grant} for i, grant in enumerate(draw(grants))],
    })


def subject_matches(subject, identity: IdentityView) -> bool:  # type: ignore[no-untyped-def]
    labels = dict(identity.labels)
    return (subject.identity in (None, identity.name) and subject.team in (None, identity.team)
            and subject.environment in (None, identity.environment)
            and all(labels.get(k) == v for k, v in (subject.labels or {}).items()))


def brute_force(document: PolicyDocument, identity: IdentityView, alias: str) -> str | None:
    """Written apart from the code under test: every grant, every subject, field by field."""
    best = None
    for grant in document.grants:
        if alias not in grant.aliases:
            continue
        for subject in grant.subjects:
            if subject_matches(subject, identity):
                if best is None or DATA_CLASSES.index(grant.max_data_class) > DATA_CLASSES.index(best):
                    best = grant.max_data_class
    return best


@settings(max_examples=300, deadline=None)
@given(before=policies(), after=policies(), inventory=identities)
def test_the_access_diff_is_exact(before, after, inventory):
    result = plan(before, after, inventory)
    gained, lost = set(), set()
    for identity in inventory:
        for alias in ALIASES:
            old, new = brute_force(before, identity, alias), brute_force(after, identity, alias)
            if old == new:
                continue
            if new is not None and (old is None or DATA_CLASSES.index(new) > DATA_CLASSES.index(old)):
                gained.add((identity.name, alias, old, new))
            else:
                lost.add((identity.name, alias, old, new))
    assert {(c.identity, c.alias, c.before, c.after) for c in result.gained} == gained
    assert {(c.identity, c.alias, c.before, c.after) for c in result.lost} == lost
    assert (not result.widenings) == (not gained and not any(r.change == "added" for r in result.rules)
                                      and not any(f.change == "starts" for f in result.flows)
                                      and not any(r.widens for r in result.routes)
                                      and not any(s.widens for s in result.shares) and not result.failover)
    # Approvers acknowledge rules, not identities: every gain must come through an added rule
    # whose subject matches the identity, at the class it gains.
    added = {(r.who, r.alias, r.data_class) for r in result.rules if r.change == "added"}
    for name, alias, _, new in gained:
        identity = next(view for view in inventory if view.name == name)
        assert any((subject_text(subject), alias, new) in added
                   for grant in after.grants if alias in grant.aliases and grant.max_data_class == new
                   for subject in grant.subjects if subject_matches(subject, identity)), (name, alias, new)


def test_a_plan_names_routes_flows_and_violations():
    before = PolicyDocument.model_validate({
        "version": 1, "deployments": DEPLOYMENTS,
        "aliases": {"a1": {"route": ["onprem"]}, "a2": {"route": ["onprem"]}},
        "grants": [{"name": "g", "subjects": [{"team": "red"}], "aliases": ["a1"], "max_data_class": "restricted"}]})
    after = PolicyDocument.model_validate({
        "version": 1, "deployments": DEPLOYMENTS,
        "aliases": {"a1": {"route": ["onprem", "cloud"]}, "a3": {"route": ["cloud"]}},
        "grants": [{"name": "g", "subjects": [{"team": "red"}], "aliases": ["a1"], "max_data_class": "restricted"}]})
    result = plan(before, after, [IdentityView("x", "red", "dev")])
    assert result.access == [] and result.rules == []
    routes = {r.alias: r.description for r in result.routes}
    assert routes == {"a1": "adds cloud", "a2": "alias removed", "a3": "new alias"}
    # Restricted data now falls back to a cloud deployment that may not receive it.
    assert {(v.deployment, v.data_class) for v in result.violations} == {("cloud", "confidential"), ("cloud", "restricted")}
    assert "flow: restricted data → cloud (cloud)" in result.widenings
    assert plan(before, before, [IdentityView("x", "red", "dev")]).widenings == []  # "no new access"


def test_what_callers_may_send_is_reviewed_like_a_guardrail():
    def document(requests: dict) -> PolicyDocument:  # type: ignore[type-arg]
        return PolicyDocument.model_validate({
            "version": 1, "deployments": DEPLOYMENTS, "aliases": {"a1": {"route": ["onprem"], "requests": requests}},
            "grants": [{"name": "g", "subjects": [{"team": "red"}], "aliases": ["a1"]}]})
    strict = document({"extra_fields": ["documents"], "remote_urls": False, "max_output_tokens": 512})
    people = [IdentityView("x", "red", "dev")]
    looser = {
        "requests.extra_fields": {"extra_fields": ["documents", "chat_template"], "remote_urls": False,
                                  "max_output_tokens": 512},
        "requests.remote_urls": {"extra_fields": ["documents"], "max_output_tokens": 512},
        "requests.max_output_tokens": {"extra_fields": ["documents"], "remote_urls": False},  # the default is higher
    }
    for setting, requests in looser.items():
        widenings = plan(strict, document(requests), people).widenings
        assert [w for w in widenings if setting in w] == [w for w in widenings if w.startswith("guardrail: alias a1")]
        assert len([w for w in widenings if setting in w]) == 1, (setting, widenings)
    tighter = document({"remote_urls": False, "max_output_tokens": 256})
    assert plan(strict, tighter, people).widenings == []  # fewer fields, a lower bound: nothing to acknowledge
    assert {g.subject for g in plan(strict, tighter, people).guardrails} == {
        "alias a1: requests.extra_fields", "alias a1: requests.max_output_tokens"}

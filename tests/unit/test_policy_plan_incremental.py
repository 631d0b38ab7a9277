"""Incremental plans are exact: for random policies and random *changes* to them (grants
added, removed, re-classed, given or stripped of aliases and subjects), the plan computed over
the identities the change reaches equals a brute-force evaluation of both versions over every
identity × alias, and the plan id covers exactly the identities that can move."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gatehouse.core.classification import DATA_CLASSES
from gatehouse.identity.view import IdentityView
from gatehouse.policy.access import AccessIndex, access_of
from gatehouse.policy.access_diff import Reach, in_reach
from gatehouse.policy.loader import LoadedPolicy, version_of
from gatehouse.policy.plan import plan
from gatehouse.policy.planning import compute_plan
from gatehouse.policy.schema import PolicyDocument

ALIASES = ["a1", "a2", "a3", "a4", "a5"]
NAMES = [f"id{i}" for i in range(12)]
LABELS = [("tier", "gold"), ("tier", "silver"), ("pci", "yes"), ("pci", "no"), ("region", "eu")]
DEPLOYMENTS = {"onprem": {"engine": "openai", "url": "http://x/v1", "model": "m", "location": "on-prem"}}

labels = st.lists(st.sampled_from(LABELS), unique_by=lambda kv: kv[0], max_size=3).map(lambda kvs: tuple(sorted(kvs)))
inventories = st.lists(st.builds(IdentityView, name=st.sampled_from(NAMES), team=st.sampled_from([None, "red", "blue"]),
                                 environment=st.sampled_from(["dev", "prod"]), labels=labels),
                       max_size=12, unique_by=lambda view: view.name).map(lambda views: sorted(views, key=lambda v: v.name))
subjects = st.fixed_dictionaries({}, optional={
    "identity": st.sampled_from(NAMES),
    "team": st.sampled_from(["red", "blue"]),
    "environment": st.sampled_from(["dev", "prod"]),
    "labels": st.lists(st.sampled_from(LABELS), unique_by=lambda kv: kv[0], min_size=1, max_size=2).map(dict),
}).filter(bool)
grants = st.fixed_dictionaries({
    "subjects": st.lists(subjects, min_size=1, max_size=3),
    "aliases": st.lists(st.sampled_from(ALIASES), min_size=1, max_size=3, unique=True),
    "max_data_class": st.sampled_from(DATA_CLASSES),
})


def document(grant_list: list[dict]) -> PolicyDocument:
    return PolicyDocument.model_validate({
        "version": 1, "deployments": DEPLOYMENTS, "aliases": {alias: {"route": ["onprem"]} for alias in ALIASES},
        "grants": [{"name": f"g{i}", **grant} for i, grant in enumerate(grant_list)]})


def loaded(doc: PolicyDocument) -> LoadedPolicy:
    return LoadedPolicy(doc, "", version_of(doc))


@st.composite
def changes(draw) -> tuple[PolicyDocument, PolicyDocument]:  # type: ignore[no-untyped-def]
    """A policy, and the same policy after a few edits of the kinds a person makes."""
    base = draw(st.lists(grants, max_size=6))
    edited = [dict(grant, subjects=list(grant["subjects"]), aliases=list(grant["aliases"])) for grant in base]
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["add", "remove", "class", "alias+", "alias-", "subject+", "subject-", "subject~"]))
        if kind == "add" or not edited:
            edited.append(draw(grants))
            continue
        grant = edited[draw(st.integers(0, len(edited) - 1))]
        if kind == "remove":
            edited.remove(grant)
        elif kind == "class":
            grant["max_data_class"] = draw(st.sampled_from(DATA_CLASSES))
        elif kind == "alias+":
            grant["aliases"] = list(dict.fromkeys([*grant["aliases"], draw(st.sampled_from(ALIASES))]))
        elif kind == "alias-" and len(grant["aliases"]) > 1:
            grant["aliases"].pop(draw(st.integers(0, len(grant["aliases"]) - 1)))
        elif kind == "subject+":
            grant["subjects"].append(draw(subjects))
        elif kind == "subject-" and len(grant["subjects"]) > 1:
            grant["subjects"].pop(draw(st.integers(0, len(grant["subjects"]) - 1)))
        elif kind == "subject~":
            grant["subjects"][draw(st.integers(0, len(grant["subjects"]) - 1))] = draw(subjects)
    return document(base), document(edited)


def brute_force(doc: PolicyDocument, identity: IdentityView, alias: str) -> str | None:
    """Written apart from the code under test: every grant, every subject, field by field."""
    have = dict(identity.labels)
    best = None
    for grant in doc.grants:
        if alias in grant.aliases and any(
                s.identity in (None, identity.name) and s.team in (None, identity.team)
                and s.environment in (None, identity.environment)
                and all(have.get(k) == v for k, v in (s.labels or {}).items()) for s in grant.subjects):
            if best is None or DATA_CLASSES.index(grant.max_data_class) > DATA_CLASSES.index(best):
                best = grant.max_data_class
    return best


def full_diff(before: PolicyDocument, after: PolicyDocument, inventory: list[IdentityView]) -> list[tuple]:
    """Every identity, every alias: what the plan must list, in its order (identities as given, aliases sorted)."""
    return [(identity.name, alias, old, new) for identity in inventory for alias in sorted(ALIASES)
            if (old := brute_force(before, identity, alias)) != (new := brute_force(after, identity, alias))]


@settings(max_examples=150, deadline=None)
@given(change=changes(), inventory=inventories)
def test_the_incremental_plan_equals_the_brute_force_diff(change, inventory):
    before, after = change
    expected = full_diff(before, after, inventory)
    assert [tuple(c) for c in plan(before, after, inventory).access] == expected
    # what change control records: the same diff, over the identities the change reaches
    planned = compute_plan(before, loaded(after), "base", inventory)
    assert [tuple(c) for c in planned.plan.access] == expected
    assert planned.identities == len(inventory)


@settings(max_examples=150, deadline=None)
@given(change=changes(), inventory=inventories)
def test_an_identity_out_of_reach_keeps_its_access(change, inventory):
    before, after = change
    reach = Reach.of(before, after)
    reached = {view.name for view in in_reach(reach, inventory)}
    for identity in inventory:
        if identity.name not in reached:
            assert access_of(before, identity) == access_of(after, identity), identity
    for name, alias, _, _ in full_diff(before, after, inventory):
        assert name in reached and alias in reach.aliases


@settings(max_examples=100, deadline=None)
@given(change=changes(), inventory=inventories, extra=inventories)
def test_the_plan_id_covers_exactly_the_identities_that_can_move(change, inventory, extra):
    before, after = change
    reach = Reach.of(before, after)
    names = {view.name for view in inventory}
    outside = [view for view in extra if view.name not in names and not in_reach(reach, [view])]
    inside = [view for view in extra if view.name not in names and in_reach(reach, [view])]
    planned = compute_plan(before, loaded(after), "base", inventory)
    more = sorted(inventory + outside, key=lambda v: v.name)
    assert compute_plan(before, loaded(after), "base", more).plan_id == planned.plan_id  # nothing there can move
    if inside:  # someone the change can reach: the approver must see a plan that includes them
        more = sorted(inventory + inside[:1], key=lambda v: v.name)
        assert compute_plan(before, loaded(after), "base", more).plan_id != planned.plan_id


@settings(max_examples=100, deadline=None)
@given(doc=st.lists(grants, max_size=6).map(document), inventory=inventories,
       narrowed=st.sets(st.sampled_from(ALIASES)).map(frozenset))
def test_an_index_narrowed_to_some_aliases_answers_for_those(doc, inventory, narrowed):
    full, narrow = AccessIndex(doc), AccessIndex(doc, aliases=narrowed)
    for identity in inventory:
        expected = {alias: level for alias, level in access_of(doc, identity).items() if alias in narrowed}
        assert narrow.access(identity) == expected
        assert full.access(identity) == access_of(doc, identity)


def test_the_reach_is_the_rules_that_change_not_the_grants_edited():
    red = {"subjects": [{"team": "red"}], "aliases": ["a1", "a2"], "max_data_class": "internal"}
    blue = {"subjects": [{"team": "blue"}], "aliases": ["a1"], "max_data_class": "public"}
    before = document([red, blue])
    # renamed, reordered, split into two grants with the same rules: nobody can move
    split = [{**red, "aliases": ["a2"]}, blue, {**red, "aliases": ["a1"]}]
    assert Reach.of(before, document(split)).requirements == ()
    assert Reach.of(before, document([blue, red])).requirements == ()
    # a subject given the same rule twice, or a lower class beside a higher one, changes nothing either
    assert Reach.of(before, document([red, blue, {**red, "max_data_class": "public"}])).requirements == ()
    # raising one class reaches that subject on that alias only
    raised = Reach.of(before, document([red, {**blue, "max_data_class": "confidential"}]))
    assert raised.requirements == ((None, "blue", None, ()),) and raised.aliases == {"a1"}


def test_a_change_that_touches_no_grant_reads_nobody():
    grant = {"subjects": [{"environment": "dev"}], "aliases": ["a1"], "max_data_class": "internal"}
    before = document([grant])
    rerouted = PolicyDocument.model_validate({**before.model_dump(mode="json"),
                                              "deployments": {**DEPLOYMENTS, "cloud": {**DEPLOYMENTS["onprem"],
                                                                                       "location": "cloud"}},
                                              "aliases": {alias: {"route": ["onprem", "cloud"]} for alias in ALIASES}})
    inventory = [IdentityView("a", "red", "dev"), IdentityView("b", None, "prod", (("tier", "gold"),))]
    assert in_reach(Reach.of(before, rerouted), inventory) == []
    planned = compute_plan(before, loaded(rerouted), "base", inventory)
    assert planned.plan.access == [] and planned.identities == 2
    assert compute_plan(before, loaded(rerouted), "base", inventory[:1]).plan_id == planned.plan_id


def test_named_identities_keep_their_own_answer():
    """Identities of one team, environment and labels share answers unless a subject names one of them."""
    shared = {"subjects": [{"team": "red"}], "aliases": ["a1"], "max_data_class": "internal"}
    named = {"subjects": [{"identity": "id1"}], "aliases": ["a2"], "max_data_class": "public"}
    inventory = [IdentityView("id0", "red", "dev"), IdentityView("id1", "red", "dev"), IdentityView("id2", "red", "dev")]
    result = plan(document([shared]), document([shared, named]), inventory)
    assert [tuple(c) for c in result.access] == [("id1", "a2", None, "public")]
    result = plan(document([shared, named]), document([{**shared, "max_data_class": "confidential"}, named]), inventory)
    assert [tuple(c) for c in result.access] == [(name, "a1", "internal", "confidential") for name in ("id0", "id1", "id2")]

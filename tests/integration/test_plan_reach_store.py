"""Plans read only the identities a change can reach, on SQLite and a real PostgreSQL server:
the SQL pre-filter never leaves out an identity the definition of matching would include
(odd names, label keys with quotes and dots, duplicate keys written behind the API's back,
non-string values, retired identities), and a plan from the store equals the plan over every
identity. Stored versions read from their JSON are their content or an error."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, text, update

from gatehouse.core.errors import GatehouseError
from gatehouse.identity.view import identity_views, identity_views_in
from gatehouse.policy import change_control, planning
from gatehouse.policy.access_diff import Reach, in_reach
from gatehouse.policy.loader import load_policy_text
from gatehouse.policy.schema import PolicyDocument
from gatehouse.policy.versions import loaded_version, store_version, stored_version
from gatehouse.store.models import Identity, Person, PolicyVersion, RoleAssignment

TEAMS = ["red", "blue", "o'brien", 'quo"te', "ünï"]
KEYS = ["tier", "pci", 'we"ird', "dot.ted", "$.path", ""]
VALUES = ["gold", "silver", "yes", "", "x'y"]
ODD = [  # (name, team, environment, labels as stored JSON text): written behind the API's back
    ("odd-dup", "red", "dev", '{"tier": "silver", "tier": "gold"}'),  # Python and PostgreSQL both read the last
    ("odd-null", None, "prod", "null"),
    ("odd-escaped", "red", "prod", '{"tier": "g\\u006fld"}'),
]


def policy(*grants: str) -> str:
    lines = "\n".join(f"  - {grant}" for grant in grants) or "  []"
    return ("version: 1\ndeployments:\n  local: {engine: openai, url: 'http://127.0.0.1:9/v1', model: m, location: on-prem}\n"
            f"aliases:\n  small: {{route: [local]}}\n  big: {{route: [local]}}\ngrants:\n{lines}\n"
            ).replace("grants:\n  []", "grants: []")


@pytest.fixture
def inventory(db):
    now = datetime.now(UTC)
    with db.write() as session:
        session.execute(insert(Person), [{"id": 1, "email": "owner@example.com", "team": "red", "status": "active",
                                          "created_at": now, "revision": 1}])
        rows = []
        for n in range(60):
            labels = {KEYS[(n + k) % len(KEYS)]: VALUES[(n * 3 + k) % len(VALUES)] for k in range(n % 3)}
            rows.append({"id": n + 1, "name": f"svc-{n}" if n % 7 else f"sv'c {n}", "owner_id": 1,
                         "team": None if n % 5 == 0 else TEAMS[n % len(TEAMS)], "environment": ["dev", "prod"][n % 2],
                         "labels": labels, "status": "retired" if n % 11 == 0 else "active", "data_clearance": "internal",
                         "created_at": now, "created_by": "test", "revision": 1})
        session.execute(insert(Identity), rows)
        for offset, (name, team, environment, labels) in enumerate(ODD):
            session.execute(text("INSERT INTO identities (id, name, owner_id, team, environment, labels, status, "
                                 "data_clearance, created_at, created_by, revision, stewards) VALUES (:id, :name, 1, "
                                 ":team, :env, :labels, 'active', 'internal', :now, 'test', 1, '[]')"),
                            {"id": 100 + offset, "name": name, "team": team, "env": environment, "labels": labels,
                             "now": now})
    return db


subjects = st.fixed_dictionaries({}, optional={
    "identity": st.sampled_from(["svc-1", "sv'c 7", "odd-dup", "nobody"]),
    "team": st.sampled_from(TEAMS),
    "environment": st.sampled_from(["dev", "prod"]),
    "labels": st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), min_size=1, max_size=2),
}).filter(lambda s: s.get("identity") or s.get("team") or s.get("environment") or s.get("labels"))


def document(subject_lists: list[list[dict]]) -> PolicyDocument:
    return PolicyDocument.model_validate({
        "version": 1, "deployments": {"local": {"engine": "openai", "url": "http://x/v1", "model": "m"}},
        "aliases": {"small": {"route": ["local"]}},
        "grants": [{"name": f"g{i}", "subjects": subjects_, "aliases": ["small"]} for i, subjects_ in enumerate(subject_lists)]})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(grants=st.lists(st.lists(subjects, min_size=1, max_size=3), min_size=1, max_size=4))
def test_the_sql_pre_filter_leaves_nobody_out(inventory, grants):
    reach = Reach.of(document([]), document(grants))
    with inventory.read() as session:
        expected = in_reach(reach, identity_views_in(session))
        assert planning.reached_views_in(session, reach) == expected


@pytest.mark.parametrize("odd", ["re\x00d", "\ud800", "red\n"])
def test_a_subject_no_database_can_be_asked_about_is_matched_here(inventory, odd):
    for subject in ({"team": odd}, {"identity": odd}, {"environment": odd}, {"labels": {odd: "gold"}},
                    {"labels": {"tier": odd}}, {"team": "red", "labels": {"tier": odd}}):
        reach = Reach.of(document([]), document([[subject], [{"team": "blue"}]]))
        with inventory.read() as session:
            assert planning.reached_views_in(session, reach) == in_reach(reach, identity_views_in(session))


def test_odd_labels_are_read_as_python_reads_them(inventory):
    gold = Reach.of(document([]), document([[{"labels": {"tier": "gold"}}]]))
    with inventory.read() as session:
        assert {view.name for view in planning.reached_views_in(session, gold)} >= {"odd-dup", "odd-escaped"}
        assert "odd-null" not in {view.name for view in planning.reached_views_in(session, gold)}
        assert planning.identity_count(session) == len(identity_views_in(session))


@pytest.mark.parametrize("labels", ['{"tier": 5}', '{"tier": {"gold": true}}', '["tier"]', '"gold"', "{bad"])
def test_labels_the_api_never_writes_stop_the_plan_with_a_clear_error(inventory, labels):
    if labels == "{bad" and not inventory.is_sqlite:
        pytest.skip("PostgreSQL refuses what is not JSON")
    with inventory.write() as session:
        session.execute(text("UPDATE identities SET labels = :labels WHERE name = 'odd-dup'"), {"labels": labels})
    reach = Reach.of(document([]), document([[{"team": "red"}]]))
    with inventory.read() as session, pytest.raises(GatehouseError, match="'odd-dup' has labels that are not text"):
        planning.reached_views_in(session, reach)


def test_a_plan_from_the_store_equals_the_plan_over_every_identity(inventory):
    with inventory.write() as session:
        session.add(RoleAssignment(person_id=1, role="policy-admin", granted_by="test", granted_at=datetime.now(UTC)))
    base = load_policy_text(policy("{name: red, subjects: [{team: red}], aliases: [small]}",
                                   "{name: eu, subjects: [{labels: {tier: gold}}], aliases: [big]}"))
    assert change_control.activate_served_file(inventory, "local:test", base, "policy.yaml") == "activated"
    for grants in (["{name: red, subjects: [{team: red}], aliases: [small, big], max_data_class: confidential}",
                    "{name: eu, subjects: [{labels: {tier: gold}}], aliases: [big]}"],
                   ["{name: red, subjects: [{team: red}], aliases: [small]}"],
                   ["{name: red, subjects: [{team: red}], aliases: [small]}",
                    "{name: eu, subjects: [{labels: {tier: gold}}], aliases: [big]}",
                    "{name: one, subjects: [{identity: \"sv'c 7\"}, {environment: prod}], aliases: [small]}"]):
        candidate = load_policy_text(policy(*grants))
        change_control.propose(inventory, "person:owner@example.com", candidate, "why")
        planned = planning.plan_version(inventory, candidate.version)
        everyone = planning.compute_plan(base.document, candidate, base.version, identity_views(inventory))
        assert planned.plan.access == everyone.plan.access and planned.plan.rules == everyone.plan.rules
        assert planned.plan_id == everyone.plan_id and planned.identities == everyone.identities
        assert planning.plan_document(inventory, candidate).plan_id == planned.plan_id
        assert planning.plan_between(inventory, base, candidate).plan_id == planned.plan_id
        with inventory.read() as session:  # what change control computes, from the source text
            assert planning.plan_in(session, stored_version(session, candidate.version), base.version).plan_id \
                == planned.plan_id


def test_a_stored_version_read_from_its_json_is_its_content(db):
    versions = [load_policy_text(policy(f"{{name: g{n}, subjects: [{{team: red}}], aliases: [small]}}")) for n in range(4)]
    other = load_policy_text(policy("{name: red, subjects: [{team: red}], aliases: [small, big]}"))
    with db.write() as session:
        for loaded in versions:
            store_version(session, "local:test", loaded, None)

    def alter(loaded, **values) -> None:
        with db.write() as session:
            session.execute(update(PolicyVersion).where(PolicyVersion.hash == loaded.version).values(**values))

    def read(loaded) -> PolicyDocument:
        with db.read() as session:
            return planning.stored_document(stored_version(session, loaded.version))

    intact, json_swapped, json_broken, both = versions
    assert read(intact) == intact.document
    alter(json_swapped, document=other.document.model_dump(mode="json"))  # the text intact: the text decides
    assert read(json_swapped) == json_swapped.document
    alter(json_broken, document={"version": 7})
    assert read(json_broken) == json_broken.document
    alter(both, document=other.document.model_dump(mode="json"), source=other.text)  # an error, never other content
    with pytest.raises(GatehouseError, match="store was altered"):
        read(both)
    # a version once read is its content, whatever is written over it later; change control reads the text and refuses
    alter(intact, document=other.document.model_dump(mode="json"), source=other.text)
    assert read(intact) == intact.document
    with db.read() as session, pytest.raises(GatehouseError, match="store was altered"):
        loaded_version(stored_version(session, intact.version))

"""An approval is bound to the approver as they were (issue 25): it records their role grants
when they approve, and counts only while that same approver grant stands. A revoke voids it
for good: granting the role again does not bring it back, through the admin API or the
command line; the approver approves again if they still agree.

On SQLite and on a real PostgreSQL server.
"""

from __future__ import annotations

import json
from datetime import timedelta

import test_admin_api_governance as governance
import test_cli
from alembic import command
from alembic.config import Config
from sqlalchemy import select, text

from gatehouse.core.clock import utcnow
from gatehouse.policy.approvals import grant_stamp
from gatehouse.store.db import MIGRATIONS_DIR, Database
from gatehouse.store.models import PolicyApproval

org = governance.org  # one installation behind its admin API: bob policy-admin and approver, carol approver
webhook = governance.webhook
gh = test_cli.gh  # the command line on a fresh installation
ok, refused = governance.ok, governance.refused
CAROL = "carol@example.com"


def approved_by_carol(org: governance.Org) -> str:
    """bob proposes the wider version; carol approves it over its plan. Returns the version."""
    ref = ok(org("bob").post("/admin/policy/versions", json={"source": governance.WIDER, "message": "finance: big"}),
             201)["version"]
    plan = ok(org("carol").get(f"/admin/policy/versions/{ref}/plan"))
    body = {"plan_id": plan["plan_id"], "acknowledge": [w["id"] for w in plan["widenings"]]}
    ok(org("carol").post(f"/admin/policy/versions/{ref}/approve", json=body))
    return str(ref)


def approve_again(org: governance.Org, ref: str) -> None:
    plan = ok(org("carol").get(f"/admin/policy/versions/{ref}/plan"))
    ok(org("carol").post(f"/admin/policy/versions/{ref}/approve",
                         json={"plan_id": plan["plan_id"], "acknowledge": [w["id"] for w in plan["widenings"]]}))


def counts(org: governance.Org, ref: str) -> list[bool]:
    return [a["counts"] for a in ok(org("audrey").get(f"/admin/policy/versions/{ref}"))["approvals"]]


def test_an_approval_records_the_roles_its_approver_held(org, db):
    ref = approved_by_carol(org)
    with db.read() as session:
        approval = session.execute(select(PolicyApproval).where(PolicyApproval.version == ref)).scalar_one()
        assert set(approval.roles) == {"approver"} and approval.roles["approver"].endswith("+00:00")
    entry = [e for e in governance.audit_log(org) if e["action"] == "policy.approve"][-1]
    assert entry["details"]["roles"] == approval.roles  # and the audit log says so


def test_a_revoked_approver_role_voids_the_approval_for_good(org):
    ref = approved_by_carol(org)
    assert counts(org, ref) == [True]
    ok(org("admin2").delete(f"/admin/people/{CAROL}/roles/approver"))
    assert counts(org, ref) == [False]
    ok(org("admin2").post(f"/admin/people/{CAROL}/roles", json={"role": "approver"}), 201)
    assert counts(org, ref) == [False]  # the new grant is not the one she approved under
    assert "needs 1 approval" in refused(org("bob").post(f"/admin/policy/versions/{ref}/apply"), 409)["message"]
    ok(org(governance.ROOT).delete(f"/admin/people/{CAROL}/roles/approver"))  # another admin, another round trip
    ok(org(governance.ROOT).post(f"/admin/people/{CAROL}/roles", json={"role": "approver"}), 201)
    refused(org("bob").post(f"/admin/policy/versions/{ref}/apply"), 409)
    approve_again(org, ref)  # a new approval, under the grant she holds now
    assert counts(org, ref) == [True]
    assert ok(org("bob").post(f"/admin/policy/versions/{ref}/apply"))["version"] == ref


def test_losing_another_role_leaves_the_approval_standing(org):
    ok(org("admin2").post(f"/admin/people/{CAROL}/roles", json={"role": "auditor"}), 201)
    ref = approved_by_carol(org)
    ok(org("admin2").delete(f"/admin/people/{CAROL}/roles/auditor"))
    assert counts(org, ref) == [True]
    assert ok(org("bob").post(f"/admin/policy/versions/{ref}/apply"))["version"] == ref


def test_the_recorded_roles_cannot_be_sent_or_forged_through_the_api(org):
    ref = ok(org("bob").post("/admin/policy/versions", json={"source": governance.WIDER, "message": "m"}), 201)["version"]
    plan = ok(org("carol").get(f"/admin/policy/versions/{ref}/plan"))
    body = {"plan_id": plan["plan_id"], "acknowledge": [w["id"] for w in plan["widenings"]]}
    for field, value in (("roles", {"approver": "2000-01-01T00:00:00+00:00"}), ("approver", f"person:{CAROL}")):
        refused(org("carol").post(f"/admin/policy/versions/{ref}/approve", json={**body, field: value}),
                400, "unknown_field", field)
    ok(org("admin2").delete(f"/admin/people/{CAROL}/roles/approver"))
    refused(org("carol").post(f"/admin/policy/versions/{ref}/approve", json=body), 403)  # no role, no approval
    assert counts(org, ref) == []


def test_a_departed_approvers_approval_stays_void(org):
    ref = approved_by_carol(org)
    ok(org("admin2").post(f"/admin/people/{CAROL}/depart"))
    assert counts(org, ref) == [False]
    refused(org("bob").post(f"/admin/policy/versions/{ref}/apply"), 409)


def test_from_the_command_line_a_re_granted_role_does_not_revive_an_approval(gh, home, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # one table row, one line
    test_cli.activate_policy_file(home)
    bob = test_cli.admin_key(gh, "bob@example.com", "policy-admin")
    carol = test_cli.admin_key(gh, CAROL, "approver")
    gh("person", "add", "alice@example.com", "--team", "platform")
    wider = (home / "policy.yaml").read_text().replace("aliases: [chat-small]",
                                                        "aliases: [chat-small]\n    max_data_class: confidential")
    (home / "wider.yaml").write_text(wider)
    ref = json.loads(gh("policy", "propose", str(home / "wider.yaml"), "-m", "wider", "--json", key=bob).stdout)["version"]
    plan = json.loads(gh("policy", "plan", ref, "--json", key=carol).stdout)
    acks = [arg for w in plan["widenings"] for arg in ("--ack", w["id"])]
    gh("policy", "approve", ref, "--plan", plan["plan_id"], *acks, key=carol)
    gh("person", "revoke-role", CAROL, "approver")
    gh("person", "grant-role", CAROL, "approver")
    shown = json.loads(gh("policy", "show", ref, "--json", key=carol).stdout)
    assert [(a["approver"], a["counts"]) for a in shown["approvals"]] == [(f"person:{CAROL}", False)]
    assert "role ended since" in gh("policy", "show", ref, key=carol).output
    assert json.loads(gh("policy", "list", "--json", key=carol).stdout)[0]["approvals"] == []
    refused_apply = gh("policy", "apply", ref, key=bob, code=1).output
    assert "needs 1 approval" in refused_apply and "has: none" in refused_apply
    gh("policy", "approve", ref, "--plan", plan["plan_id"], *acks, key=carol)  # carol approves again
    assert "applied" in gh("policy", "apply", ref, "--wait", "0", key=bob).output


def test_approvals_from_before_the_upgrade_are_bound_to_the_grant_that_held_then(database_url):
    """0010 binds an older approval to the approver grant its approver holds now if that grant
    is older than the approval; one given before the grant that stands now stays void."""
    db = Database(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    then = utcnow() - timedelta(days=2)
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0009")
        connection.execute(text("INSERT INTO people (id, email, status, created_at, revision) VALUES "
                                "(1, 'kept@example.com', 'active', :then, 0), (2, 'regranted@example.com', 'active', "
                                ":then, 0)"), {"then": then})
        connection.execute(text("INSERT INTO role_assignments (person_id, role, granted_by, granted_at) VALUES "
                                "(1, 'approver', 'x', :then), (1, 'auditor', 'x', :later), (2, 'approver', 'x', :later)"),
                           {"then": then, "later": then + timedelta(days=1)})
        connection.execute(text("INSERT INTO policy_versions (hash, document, source, state, created_at, created_by) "
                                "VALUES ('sha256:v', '{}', '', 'draft', :then, 'local:x')"), {"then": then})
        connection.execute(text("INSERT INTO policy_approvals (version, plan_id, inventory, gains, approver, acknowledged, "
                                "created_at) VALUES ('sha256:v', 'p', 'i', 'g', 'person:kept@example.com', '[]', :at), "
                                "('sha256:v', 'p', 'i', 'g', 'person:regranted@example.com', '[]', :at)"),
                           {"at": then + timedelta(hours=1)})
    db.upgrade()
    with db.read() as session:
        rows = {a.approver: a.roles for a in session.execute(select(PolicyApproval)).scalars()}
    assert rows == {"person:kept@example.com": {"approver": grant_stamp(then)},  # the auditor grant came later
                    "person:regranted@example.com": {}}
    db.dispose()

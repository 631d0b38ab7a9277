"""Every separation-of-duties rule of issue 14 through the control-plane API, on SQLite and on a
real PostgreSQL server: each refusal next to the case the rule allows, with real admin keys
against ``create_control_app``.

Also: the acting person is whoever authenticated (a body naming someone else is an unknown
field; ``GATEHOUSE_ACTOR`` changes nothing), reads are filtered by role and ownership, and
every endpoint answers bad input with a 4xx in the OpenAI error shape and a request id, never
a 500.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete
from starlette.testclient import TestClient

from gatehouse.app.control import create_control_app
from gatehouse.core.config import Settings
from gatehouse.identity.bootstrap import bootstrap
from gatehouse.policy import change_control
from gatehouse.policy.loader import load_policy_text
from gatehouse.store.db import Database
from gatehouse.store.models import AuditCheckpoint

from helpers import Receiver

PEPPER = "admin-api-test-pepper"
ROOT = "root@example.com"


def email(name: str) -> str:
    return name if "@" in name else f"{name}@example.com"


def policy(*grants: str) -> str:
    """Aliases small and big on one on-prem deployment; the grants given as YAML flow lines."""
    lines = "\n".join(f"  - {grant}" for grant in grants) or "  []"
    return ("version: 1\ndeployments:\n  local: {engine: openai, url: 'http://127.0.0.1:9/v1', model: m, "
            "location: on-prem}\naliases:\n  small: {route: [local]}\n  big: {route: [local]}\n"
            f"change_control: {{approvers: 1}}\ngrants:\n{lines}\n").replace("grants:\n  []", "grants: []")


DEV_SMALL = "{name: dev-small, subjects: [{environment: dev}], aliases: [small]}"
FINANCE_BIG = "{name: finance-big, subjects: [{team: finance}], aliases: [big]}"
BASE = policy(DEV_SMALL)
WIDER = policy(DEV_SMALL, FINANCE_BIG)
CLOSED = policy()


class Org:
    """One installation behind its control-plane API, and the people in it, each with their key."""

    def __init__(self, db: Database, settings: Settings, root_key: str) -> None:
        self.db = db
        self.settings = settings
        self.app = create_control_app(settings)
        self.apps = [self.app]
        self.keys = {ROOT: root_key}

    def client(self, who: str | None, app: Any = None) -> TestClient:
        headers = {"authorization": f"Bearer {self.keys.get(email(who), who)}"} if who else {}
        return TestClient(app or self.app, headers=headers)

    def __call__(self, who: str | None) -> TestClient:
        return self.client(who)

    def other_app(self, **changes: Any) -> Any:
        """The same store served with other settings (no webhook, other limits)."""
        app = create_control_app(dataclasses.replace(self.settings, **changes))
        self.apps.append(app)
        return app

    def add(self, name: str, *roles: str, team: str = "platform") -> str:
        """A person, their roles (granted by root) and an admin key (issued by root)."""
        root = self(ROOT)
        added = root.post("/admin/people", json={"email": email(name), "team": team})
        assert added.status_code == 201, added.text
        for role in roles:
            granted = root.post(f"/admin/people/{email(name)}/roles", json={"role": role})
            assert granted.status_code == 201, granted.text
        issued = root.post(f"/admin/people/{email(name)}/admin-keys", json={"ttl": "1d"})
        assert issued.status_code == 201 and issued.json()["enrolment"] is True, issued.text
        own = self.client(issued.json()["key"]).post("/admin/admin-keys/redeem", json={"ttl": "1d"})  # theirs now
        assert own.status_code == 201, own.text
        self.keys[email(name)] = own.json()["key"]
        return str(own.json()["key"])

    def close(self) -> None:
        for app in self.apps:
            app.state.db.dispose()


@pytest.fixture(scope="module")
def webhook() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def org(db: Database, database_url: str, home, monkeypatch: pytest.MonkeyPatch, webhook: Receiver) -> Iterator[Org]:
    monkeypatch.setenv("GATEHOUSE_PEPPER", PEPPER)  # the app reads the pepper from its settings: the same one
    monkeypatch.setenv("GATEHOUSE_DATABASE_URL", database_url)
    monkeypatch.setenv("GATEHOUSE_NOTIFY_WEBHOOK", webhook.url)
    monkeypatch.delenv("GATEHOUSE_ACTOR", raising=False)
    webhook.received.clear()
    root = bootstrap(db, "local:init", ROOT, pepper=PEPPER.encode(), ttl=timedelta(days=1))
    assert change_control.activate_served_file(db, "local:serve", load_policy_text(BASE), "policy.yaml") == "activated"
    installation = Org(db, Settings.from_env(), root.admin_key)
    installation.add("admin2", "identity-admin")
    installation.add("alice")
    installation.add("bob", "policy-admin", "approver")
    installation.add("carol", "approver")
    installation.add("audrey", "auditor")
    installation.add("opal", "operator")
    yield installation
    installation.close()


def refused(response: Any, status: int | None = None, code: str | None = None, param: str | None = None) -> dict:
    """A 4xx in the OpenAI error shape, with a request id; the error body."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if status is not None:
        assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert response.headers["x-gatehouse-request-id"].startswith("req_")
    if code is not None:
        assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error
    return dict(error)


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["x-gatehouse-request-id"].startswith("req_")
    return response.json()


def create(org: Org, who: str, name: str, owner: str, **fields: Any) -> Any:
    return org(who).post("/admin/identities", json={"name": name, "owner": email(owner), **fields})


def audit_log(org: Org) -> list[dict]:
    return ok(org("audrey").get("/admin/audit?limit=500"))["entries"]


# -- who is acting --------------------------------------------------------------------------

def test_whoami_is_whoever_authenticated(org: Org) -> None:
    me = ok(org("bob").get("/admin/whoami"))
    assert me["email"] == "bob@example.com" and me["roles"] == ["approver", "policy-admin"]
    assert me["key_id"] == org.keys["bob@example.com"][4:16]
    refused(org(None).get("/admin/whoami"), 401, "missing_admin_key")
    refused(org("gth_nope").get("/admin/whoami"), 401, "invalid_admin_key")


def test_a_body_naming_someone_else_is_refused_as_unknown(org: Org) -> None:
    ok(create(org, "admin2", "rootless", "alice", environment="prod"), 201)  # pending: admin2 requested it
    error = refused(org("admin2").post("/admin/identities/rootless/approve", json={"as": ROOT}), 400, "unknown_field")
    assert error["param"] == "as"
    refused(org("alice").post("/admin/people", json={"email": "x@example.com", "actor": f"person:{ROOT}"}), 403)
    refused(org(ROOT).post("/admin/people", json={"email": "x@example.com", "actor": "person:admin2@example.com"}),
            400, "unknown_field", "actor")
    refused(org(ROOT).post("/admin/identities", json={"name": "x", "owner": "alice@example.com", "created_by": ROOT}),
            400, "unknown_field", "created_by")
    assert ok(org("audrey").get("/admin/identities/rootless"))["status"] == "pending"
    assert ok(org(ROOT).post("/admin/identities/rootless/approve", json={"reason": "checked"}))["status"] == "active"


def test_gatehouse_actor_in_the_environment_changes_nothing(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEHOUSE_ACTOR", ROOT)
    refused(org("alice").post("/admin/people", json={"email": "eve@example.com"}), 403)
    refused(org(None).post("/admin/people", json={"email": "eve@example.com"}), 401)
    assert ok(org("alice").get("/admin/whoami"))["email"] == "alice@example.com"
    ok(create(org, "alice", "alices-bot", "alice"), 201)
    ok(org("admin2").post("/admin/people", json={"email": "eve@example.com"}), 201)
    entries = {(e["action"], e["target"]): e["actor"] for e in audit_log(org)}
    assert entries[("identity.create", "identity:alices-bot")] == "person:alice@example.com"
    assert entries[("person.add", "person:eve@example.com")] == "person:admin2@example.com"
    assert not any(entry["actor"] == f"person:{ROOT}" and entry["target"] == "person:eve@example.com"
                   for entry in audit_log(org))


# -- nobody approves their own identity request -----------------------------------------------

def test_nobody_approves_their_own_identity_request(org: Org) -> None:
    assert ok(create(org, ROOT, "root-bot", ROOT, environment="prod"), 201)["status"] == "pending"
    assert "own" in refused(org(ROOT).post("/admin/identities/root-bot/approve"), 403)["message"]
    refused(org("alice").post("/admin/identities/root-bot/approve"), 403, "forbidden")  # not an identity-admin
    assert ok(org("admin2").post("/admin/identities/root-bot/approve"))["status"] == "active"


# -- nobody approves their own policy change --------------------------------------------------

def test_nobody_approves_their_own_policy_change(org: Org) -> None:
    proposed = ok(org("bob").post("/admin/policy/versions", json={"source": WIDER, "message": "finance uses big"}), 201)
    ref = proposed["version"]
    plan = ok(org("bob").get(f"/admin/policy/versions/{ref}/plan"))
    acks = [w["id"] for w in plan["widenings"]]
    assert acks  # finance gains big
    body = {"plan_id": plan["plan_id"], "acknowledge": acks}
    assert "own" in refused(org("bob").post(f"/admin/policy/versions/{ref}/approve", json=body), 403)["message"]
    refused(org("alice").post(f"/admin/policy/versions/{ref}/approve", json=body), 403)  # no approver role
    approval = ok(org("carol").post(f"/admin/policy/versions/{ref}/approve", json=body))
    assert approval["approver"] == "person:carol@example.com"
    assert ok(org("bob").post(f"/admin/policy/versions/{ref}/apply"))["version"] == ref


def test_a_document_is_planned_before_it_is_proposed(org: Org) -> None:
    planned = ok(org("carol").post("/admin/policy/plan", json={"source": WIDER}))
    assert planned["to"].startswith("sha256:") and planned["widenings"]
    against = ok(org("carol").post("/admin/policy/plan", json={"source": WIDER, "against": WIDER}))
    assert against["widenings"] == []
    refused(org("alice").post("/admin/policy/plan", json={"source": WIDER}), 403)  # not a policy reader
    assert ok(org(ROOT).post("/admin/policy/plan", json={"source": WIDER}))["plan_id"] == planned["plan_id"]
    refused(org("carol").post("/admin/policy/plan", json={"source": "version: [1"}), 400, param="source")
    refused(org("carol").post("/admin/policy/plan", json={"source": WIDER, "against": "nope: 1"}), 400, param="against")


# -- nobody changes their own roles -----------------------------------------------------------

def test_nobody_changes_their_own_roles(org: Org) -> None:
    assert "own roles" in refused(org(ROOT).post(f"/admin/people/{ROOT}/roles", json={"role": "auditor"}),
                                  403)["message"]
    refused(org("admin2").delete("/admin/people/admin2@example.com/roles/identity-admin"), 403)
    refused(org("bob").post("/admin/people/bob@example.com/roles", json={"role": "identity-admin"}), 403)
    refused(org("bob").post("/admin/people/carol@example.com/roles", json={"role": "policy-admin"}), 403)
    ok(org(ROOT).post("/admin/people/admin2@example.com/roles", json={"role": "auditor"}), 201)
    ok(org("admin2").delete(f"/admin/people/{ROOT}/roles/identity-admin"))
    roles = ok(org("alice").get("/admin/roles"))["roles"]
    assert ("admin2@example.com", "auditor") in {(r["email"], r["role"]) for r in roles}
    assert (ROOT, "identity-admin") not in {(r["email"], r["role"]) for r in roles}


# -- issuing an admin credential needs identity-admin -----------------------------------------

def test_issuing_an_admin_key_needs_identity_admin(org: Org, webhook: Receiver) -> None:
    ok(org(ROOT).post("/admin/people", json={"email": "dave@example.com"}), 201)
    for who in ("alice", "bob", "carol", "audrey", "opal"):
        refused(org(who).post("/admin/people/dave@example.com/admin-keys", json={"ttl": "1d"}), 403)
    refused(org("carol").post("/admin/people/carol@example.com/admin-keys"), 403)  # not even for oneself
    webhook.received.clear()
    issued = ok(org("admin2").post("/admin/people/dave@example.com/admin-keys", json={"ttl": "2h"}), 201)
    assert issued["person"] == "dave@example.com" and issued["key"].startswith(f"gth_{issued['key_id']}_")
    assert ok(org.client(issued["key"]).get("/admin/whoami"))["enrolment"] is True
    # what admin2 saw is an enrolment key: it does nothing but get dave a key of his own, once
    refused(org.client(issued["key"]).get("/admin/people"), 403)
    refused(org.client(issued["key"]).post("/admin/people", json={"email": "x@example.com"}), 403)
    own = ok(org.client(issued["key"]).post("/admin/admin-keys/redeem"), 201)
    refused(org.client(issued["key"]).post("/admin/admin-keys/redeem"), 401)  # single use: now revoked
    assert ok(org.client(own["key"]).get("/admin/whoami")) == {
        "email": "dave@example.com", "roles": [], "key_id": own["key_id"], "enrolment": False}
    assert any(e.get("event") == "admin_key.redeemed" for e in webhook.received)
    issued = {**own, "key_id": own["key_id"]}
    told = [event for event in webhook.received if event.get("event") == "admin_key.issued"]
    assert told and told[-1]["person"] == "dave@example.com" and told[-1]["issued_by"] == "person:admin2@example.com"
    assert issued["key"] not in str(webhook.received) and issued["key"] not in str(audit_log(org))
    # a person revokes their own admin key; another's needs identity-admin
    refused(org("alice").delete(f"/admin/admin-keys/{issued['key_id']}"), 403)
    ok(org.client(issued["key"]).delete(f"/admin/admin-keys/{issued['key_id']}"))
    refused(org.client(issued["key"]).get("/admin/whoami"), 401)
    bob_key = org.keys["bob@example.com"][4:16]
    ok(org(ROOT).delete(f"/admin/admin-keys/{bob_key}"))
    refused(org("bob").get("/admin/whoami"), 401)


# -- a departed person can do nothing ---------------------------------------------------------

def test_a_departed_persons_key_does_nothing(org: Org) -> None:
    org.add("leaver", "identity-admin")
    ok(org(ROOT).post("/admin/people", json={"email": "ap@example.com"}), 201)
    issued = ok(org("leaver").post("/admin/people/ap@example.com/admin-keys", json={"ttl": "1h"}), 201)  # allowed today
    departed = ok(org(ROOT).post("/admin/people/leaver@example.com/depart"))
    assert departed["person"] == "leaver@example.com" and departed["admin_keys_revoked"]
    assert "notification" in departed
    attempts = [
        ("POST", "/admin/people/ap@example.com/admin-keys", {"ttl": "1h"}),
        ("POST", "/admin/people", {"email": "x@example.com"}),
        ("POST", "/admin/identities", {"name": "x-bot", "owner": "ap@example.com"}),
        ("POST", "/admin/people/ap@example.com/roles", {"role": "approver"}),
        ("DELETE", f"/admin/admin-keys/{issued['key_id']}", None),
        ("GET", "/admin/people", None),
        ("GET", "/admin/audit", None),
    ]
    for method, path, body in attempts:
        refused(org("leaver").request(method, path, json=body), 401, "invalid_admin_key")
    ok(org.client(issued["key"]).get("/admin/whoami"))  # what leaver did before leaving stands until revoked
    refused(org(ROOT).post("/admin/people/leaver@example.com/depart"), 400)  # already departed


# -- an owner cannot raise their identity's clearance by any sequence of moves ----------------

def test_an_owner_cannot_raise_their_own_clearance(org: Org) -> None:
    ok(create(org, "alice", "alice-bot", "alice"), 201)
    refused(org("alice").post("/admin/identities/alice-bot/clearance", json={"clearance": "restricted"}), 403)
    ok(create(org, "admin2", "a2-bot", "admin2"), 201)
    assert "own" in refused(org("admin2").post("/admin/identities/a2-bot/clearance",
                                               json={"clearance": "confidential"}), 403)["message"]
    # lowering is the owner's to do; raising is an identity-admin's who never held it
    assert ok(org("alice").post("/admin/identities/alice-bot/clearance",
                                json={"clearance": "public"}))["data_clearance"] == "public"
    assert ok(org(ROOT).post("/admin/identities/a2-bot/clearance",
                             json={"clearance": "confidential"}))["data_clearance"] == "confidential"


def test_an_owner_cannot_raise_clearance_by_transfer_raise_transfer_back(org: Org) -> None:
    ok(create(org, "admin2", "a2-bot", "admin2"), 201)
    plan = ok(org("admin2").post("/admin/identities/a2-bot/transfer/plan", json={"owner": "alice@example.com"}))
    assert plan["owner"] == ["admin2@example.com", "alice@example.com"] and not plan["widens"]
    moved = ok(org("admin2").post("/admin/identities/a2-bot/transfer", json={"owner": "alice@example.com",
                                                                            "expect": plan}))
    assert moved["owner"][1] == "alice@example.com"
    assert ok(org("audrey").get("/admin/identities/a2-bot"))["owner"] == "alice@example.com"
    refused(org("admin2").post("/admin/identities/a2-bot/clearance", json={"clearance": "restricted"}), 403)
    back = ok(org("admin2").post("/admin/identities/a2-bot/transfer/plan", json={"owner": "admin2@example.com"}))
    ok(org("admin2").post("/admin/identities/a2-bot/transfer", json={"owner": "admin2@example.com", "expect": back}))
    info = ok(org("audrey").get("/admin/identities/a2-bot"))
    assert info["owner"] == "admin2@example.com" and info["data_clearance"] == "internal"
    # an identity-admin who never held it may raise it
    ok(org(ROOT).post("/admin/identities/a2-bot/clearance", json={"clearance": "confidential"}))


def test_a_widening_move_needs_an_outside_identity_admin(org: Org) -> None:
    ok(org(ROOT).post("/admin/people", json={"email": "fin@example.com", "team": "finance"}), 201)
    ok(org("bob").post("/admin/policy/versions", json={"source": WIDER, "message": "finance uses big"}), 201)
    ref = load_policy_text(WIDER).version
    plan = ok(org("carol").get(f"/admin/policy/versions/{ref}/plan"))
    ok(org("carol").post(f"/admin/policy/versions/{ref}/approve",
                         json={"plan_id": plan["plan_id"], "acknowledge": [w["id"] for w in plan["widenings"]]}))
    ok(org("bob").post(f"/admin/policy/versions/{ref}/apply"))
    ok(create(org, "admin2", "a2-bot", "admin2"), 201)
    move = {"team": "finance"}
    planned = ok(org("admin2").post("/admin/identities/a2-bot/transfer/plan", json=move))
    assert planned["widens"] and planned["gained"] == ["big"]
    refused(org("admin2").post("/admin/identities/a2-bot/transfer", json={**move, "expect": planned}), 403)
    refused(org("alice").post("/admin/identities/a2-bot/transfer", json={**move, "expect": planned}), 403)
    ok(org(ROOT).post("/admin/identities/a2-bot/transfer", json={**move, "expect": planned}))
    assert ok(org("audrey").get("/admin/identities/a2-bot"))["team"] == "finance"


def test_a_transfer_refuses_a_plan_that_changed_since_it_was_shown(org: Org) -> None:
    ok(create(org, "admin2", "a2-bot", "admin2"), 201)
    plan = ok(org(ROOT).post("/admin/identities/a2-bot/transfer/plan", json={"owner": "alice@example.com"}))
    stale = {**plan, "aliases_after": ["big"]}
    refused(org(ROOT).post("/admin/identities/a2-bot/transfer", json={"owner": "alice@example.com", "expect": stale}),
            409, "plan_changed", "expect")
    other = ok(org(ROOT).post("/admin/identities/a2-bot/transfer/plan", json={"owner": "carol@example.com"}))
    refused(org(ROOT).post("/admin/identities/a2-bot/transfer", json={"owner": "alice@example.com", "expect": other}),
            409, "plan_changed")
    assert ok(org("audrey").get("/admin/identities/a2-bot"))["owner"] == "admin2@example.com"
    ok(org(ROOT).post("/admin/identities/a2-bot/transfer", json={"owner": "alice@example.com", "expect": plan}))


# -- team and labels that select grants: another identity-admin approves them ------------------

def test_team_and_labels_at_creation_wait_for_another_identity_admin(org: Org) -> None:
    plain = ok(create(org, "alice", "plain-bot", "alice"), 201)
    assert plain["status"] == "active"  # dev, the owner's team, no labels: nothing to approve
    asked = ok(create(org, "alice", "fin-bot", "alice", team="finance", labels={"tier": "gold"}), 201)
    assert asked["status"] == "pending" and asked["team"] == "finance" and asked["labels"] == {"tier": "gold"}
    refused(org("alice").post("/admin/identities/fin-bot/keys", json={"ttl": "1h"}), 400)  # not active: no key
    refused(org("alice").post("/admin/identities/fin-bot/approve"), 403)
    labelled = ok(create(org, ROOT, "gold-bot", "alice", labels={"tier": "gold"}), 201)
    assert labelled["status"] == "pending"
    refused(org(ROOT).post("/admin/identities/gold-bot/approve"), 403)  # root requested it
    assert ok(org("admin2").post("/admin/identities/fin-bot/approve"))["status"] == "active"
    assert ok(org("admin2").post("/admin/identities/gold-bot/approve"))["status"] == "active"
    assert ok(org("alice").post("/admin/identities/fin-bot/keys", json={"ttl": "1h"}), 201)["key"].startswith("gth_")


# -- keys ---------------------------------------------------------------------------------------------

def test_an_owner_issues_rotates_and_revokes_their_keys(org: Org) -> None:
    ok(create(org, "alice", "alice-bot", "alice"), 201)
    refused(org("carol").post("/admin/identities/alice-bot/keys", json={"ttl": "1h"}), 403)  # not its keeper
    issued = ok(org("alice").post("/admin/identities/alice-bot/keys", json={"ttl": "1h", "scopes": ["small"]}), 201)
    assert issued["identity"] == "alice-bot" and issued["scopes"] == ["small"]
    assert issued["key"].startswith(f"gth_{issued['key_id']}_")
    listed = ok(org("alice").get("/admin/keys?identity=alice-bot"))["keys"]
    assert [k["key_id"] for k in listed] == [issued["key_id"]] and "key" not in listed[0]
    refused(org("carol").post(f"/admin/keys/{issued['key_id']}/rotate", json={"grace": "0s"}), 403)
    rotated = ok(org("alice").post(f"/admin/keys/{issued['key_id']}/rotate", json={"grace": "0s", "ttl": "2h"}), 201)
    assert rotated["old_key_id"] == issued["key_id"] and rotated["identity"] == "alice-bot"
    assert rotated["key"].startswith(f"gth_{rotated['key_id']}_")
    refused(org("carol").post(f"/admin/keys/{rotated['key_id']}/revoke", json={"reason": "x"}), 403)
    revoked = ok(org("alice").post(f"/admin/keys/{rotated['key_id']}/revoke", json={"reason": "done"}))
    assert revoked == {"key_id": rotated["key_id"], "status": "revoked"}
    written = str(audit_log(org))
    assert issued["key"] not in written and rotated["key"] not in written


# -- only an identity-admin clears an attention or orphan flag ----------------------------------

def test_only_an_identity_admin_clears_attention(org: Org) -> None:
    ok(create(org, "alice", "alice-bot", "alice"), 201)
    issued = ok(org("alice").post("/admin/identities/alice-bot/keys", json={"ttl": "1h"}), 201)
    leak = ok(org("alice").post("/admin/keys/leaked", json={"key": issued["key"], "source": "a paste"}))
    assert leak["key_id"] == issued["key_id"] and issued["key"] not in str(leak)
    assert ok(org("alice").get("/admin/identities/alice-bot"))["attention"]
    refused(org("alice").post("/admin/identities/alice-bot/attended", json={"note": "rotated"}), 403)
    refused(org("audrey").post("/admin/identities/alice-bot/attended", json={"note": "rotated"}), 403)
    assert ok(org(ROOT).post("/admin/identities/alice-bot/attended", json={"note": "rotated"}))["attention"] is None


def test_an_orphan_is_resumed_only_after_an_identity_admin_clears_it(org: Org) -> None:
    org.add("pat")
    ok(create(org, "pat", "orphan", "pat"), 201)
    ok(org(ROOT).post("/admin/people/pat@example.com/roles", json={"role": "operator"}), 201)
    departed = ok(org(ROOT).post("/admin/people/pat@example.com/depart"))
    assert departed["suspended"] == ["orphan"]
    for who in ("alice", "opal", "audrey"):
        refused(org(who).post("/admin/identities/orphan/attended", json={"note": "x"}), 403)
        refused(org(who).post("/admin/identities/orphan/resume"), 403)
    ok(org(ROOT).post("/admin/identities/orphan/attended", json={"note": "new owner found"}))
    refused(org(ROOT).post("/admin/identities/orphan/resume"), 400)  # its owner is still the one who left
    plan = ok(org(ROOT).post("/admin/identities/orphan/transfer/plan", json={"owner": "alice@example.com"}))
    ok(org(ROOT).post("/admin/identities/orphan/transfer", json={"owner": "alice@example.com", "expect": plan}))
    assert ok(org(ROOT).post("/admin/identities/orphan/resume"))["status"] == "active"


# -- a pending identity whose owner left cannot be approved --------------------------------------

def test_a_pending_identity_whose_owner_left_is_not_approved(org: Org) -> None:
    org.add("pat")
    ok(create(org, "pat", "pats-prod", "pat", environment="prod"), 201)
    ok(create(org, "alice", "alices-prod", "alice", environment="prod"), 201)
    ok(org(ROOT).post("/admin/people/pat@example.com/depart"))
    refused(org("admin2").post("/admin/identities/pats-prod/approve"), 403)
    ok(org(ROOT).post("/admin/identities/pats-prod/attended", json={"note": "owner left"}))
    refused(org("admin2").post("/admin/identities/pats-prod/approve"), 403)  # still: its owner is gone
    assert ok(org("admin2").post("/admin/identities/pats-prod/reject", json={"reason": "owner left"}))["status"] == "retired"
    assert ok(org("admin2").post("/admin/identities/alices-prod/approve"))["status"] == "active"


# -- break-glass: a webhook, a limit, a review by someone else -------------------------------------

def test_break_glass_needs_a_webhook_and_is_rate_limited(org: Org, webhook: Receiver) -> None:
    glass = {"source": CLOSED, "reason": "INC-7: everyone off", "ttl": "10m"}
    silent = org.other_app(notify_webhook=None)
    error = refused(org.client("bob", silent).post("/admin/policy/break-glass", json=glass))
    assert "GATEHOUSE_NOTIFY_WEBHOOK" in error["message"]
    assert ok(org("carol").get("/admin/policy/status"))["break_glass"] is False
    refused(org("carol").post("/admin/policy/break-glass", json=glass), 403)  # not a policy-admin
    webhook.received.clear()
    broken = ok(org("bob").post("/admin/policy/break-glass", json=glass))
    assert broken["kind"] == "break-glass" and broken["notification"] == "delivered"
    assert any(event.get("event") == "policy.break_glass" for event in webhook.received)
    ok(org("bob").post("/admin/policy/rollback", json={"reason": "INC-7 over"}))
    refused(org("bob").post("/admin/policy/break-glass", json=glass), 429, "break_glass_limit")  # per person
    org.add("bea", "policy-admin")
    org.add("cal", "policy-admin")
    few = org.other_app(break_glass_per_installation=2)
    ok(org.client("bea", few).post("/admin/policy/break-glass", json=glass))
    ok(org("bea").post("/admin/policy/rollback", json={"reason": "over"}))
    refused(org.client("cal", few).post("/admin/policy/break-glass", json=glass), 429)  # per installation
    # reviewed afterwards by an approver other than whoever broke the glass
    seq = broken["seq"]
    refused(org("bob").post(f"/admin/policy/break-glass/{seq}/review", json={"note": "fine"}), 403)
    reviewed = ok(org("carol").post(f"/admin/policy/break-glass/{seq}/review", json={"note": "checked INC-7"}))
    assert reviewed["reviewed_by"] == "person:carol@example.com"
    refused(org("carol").post(f"/admin/policy/break-glass/{seq}/review", json={"note": "again"}), 409)


# -- governed reads ---------------------------------------------------------------------------------

def test_people_read_only_what_they_own_or_back_up(org: Org) -> None:
    ok(create(org, "alice", "alice-bot", "alice"), 201)
    ok(create(org, "admin2", "a2-bot", "admin2", backup_owner="alice@example.com"), 201)
    ok(create(org, "admin2", "hidden-bot", "admin2"), 201)
    for name in ("alice-bot", "hidden-bot"):
        ok(org(ROOT).post(f"/admin/identities/{name}/keys", json={"ttl": "1h"}), 201)
    seen = {row["name"] for row in ok(org("alice").get("/admin/identities"))["identities"]}
    assert seen == {"alice-bot", "a2-bot"}
    ok(org("alice").get("/admin/identities/a2-bot"))
    refused(org("alice").get("/admin/identities/hidden-bot"), 403)
    refused(org("alice").get("/admin/identities/no-such-bot"), 403)  # nor whether it exists
    refused(org("alice").post("/admin/identities/hidden-bot/transfer/plan", json={"owner": "alice@example.com"}), 403)
    assert {k["identity"] for k in ok(org("alice").get("/admin/keys"))["keys"]} == {"alice-bot"}
    refused(org("alice").get("/admin/keys?identity=hidden-bot"), 403)
    for who in ("audrey", ROOT):
        everything = {row["name"] for row in ok(org(who).get("/admin/identities"))["identities"]}
        assert everything == {"alice-bot", "a2-bot", "hidden-bot"}
        assert {k["identity"] for k in ok(org(who).get("/admin/keys"))["keys"]} == {"alice-bot", "hidden-bot"}
    refused(org(ROOT).get("/admin/identities/no-such-bot"), 404)
    assert ok(org("alice").get("/admin/people/bob@example.com"))["roles"] == ["approver", "policy-admin"]
    assert "alice@example.com" in {p["email"] for p in ok(org("alice").get("/admin/people"))["people"]}


def test_reviews_are_read_by_their_owners_and_the_auditors(org: Org) -> None:
    ok(create(org, "alice", "alice-bot", "alice"), 201)
    ok(create(org, "admin2", "a2-bot", "admin2"), 201)
    refused(org("alice").post("/admin/reviews", json={"due": "14d"}), 403)
    opened = ok(org(ROOT).post("/admin/reviews", json={"due": "14d"}), 201)
    assert opened["identities"] == 2
    assert {r["identity"] for r in ok(org("alice").get("/admin/reviews"))["reviews"]} == {"alice-bot"}
    assert {r["identity"] for r in ok(org("audrey").get("/admin/reviews"))["reviews"]} == {"alice-bot", "a2-bot"}
    refused(org("alice").post("/admin/identities/a2-bot/attest", json={"decision": "keep"}), 403)
    attested = ok(org("alice").post("/admin/identities/alice-bot/attest", json={"decision": "keep"}))
    assert attested["decision"] == "keep"
    refused(org("alice").post("/admin/reviews/enforce"), 403)
    assert ok(org(ROOT).post("/admin/reviews/enforce")) == {"suspended": []}


def test_the_audit_log_is_read_by_the_roles_that_answer_for_it(org: Org) -> None:
    refused(org("alice").get("/admin/audit"), 403)
    for who in ("audrey", ROOT, "bob", "carol", "opal"):
        entries = ok(org(who).get("/admin/audit?limit=5"))["entries"]
        assert len(entries) == 5 and entries[-1]["seq"] > entries[0]["seq"]
    checkpoint = ok(org("audrey").post("/admin/audit/checkpoint"), 201)
    verified = ok(org("audrey").get("/admin/audit/verify"))
    assert verified["ok"] and verified["checkpoints_verified"] >= 1 and verified["entries"] >= checkpoint["size"]
    assert ok(org("audrey").get("/admin/audit/public-key"))["public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    refused(org("alice").post("/admin/audit/checkpoint"), 403)


def test_the_server_side_verify_names_a_checkpoint_the_cadence_requires_and_the_store_lacks(org: Org) -> None:
    every = 5
    auditor = org.client("audrey", org.other_app(audit_checkpoint_every=every))
    entries = ok(auditor.get("/admin/audit/verify"))["entries"]
    assert entries >= 2 * every
    with org.db.write() as session:  # an insider drops every stored checkpoint
        session.execute(delete(AuditCheckpoint))
    verified = ok(auditor.get("/admin/audit/verify"))
    assert not verified["ok"] and f"no signed checkpoint at {every} entries" in verified["problems"][0]


def test_incidents_are_checked_by_an_operator(org: Org) -> None:
    refused(org("alice").post("/admin/incidents/check"), 403)
    checked = ok(org("opal").post("/admin/incidents/check"))
    assert checked["opened"] == [] and checked["thresholds"] == 0


def test_the_control_app_serves_health_and_no_inference(org: Org) -> None:
    health = org(None).get("/healthz")
    assert health.status_code == 200 and health.json()["policy_version"] == load_policy_text(BASE).version
    refused(org(ROOT).post("/v1/chat/completions", json={"model": "small", "messages": []}), 404, "not_found")
    refused(org(ROOT).put("/admin/people"), 405, "method_not_allowed")


# -- bad input: 4xx in the error shape, never a 500 ---------------------------------------------------

ALICE = "alice@example.com"
BAD_KEY = "gth_" + "A" * 12 + "_" + "b" * 38

BAD_INPUT = [
    # people, roles, admin keys
    ("POST", "/admin/people", {}, "email"),
    ("POST", "/admin/people", {"email": 5}, "email"),
    ("POST", "/admin/people", {"email": "not-an-address"}, None),
    ("POST", "/admin/people", {"email": "a" * 300 + "@example.com"}, "email"),
    ("POST", "/admin/people", {"email": "x@example.com", "team": ["platform"]}, "team"),
    ("POST", "/admin/people", {"email": "x@example.com", "team": "Not A Team"}, None),
    ("POST", "/admin/people", {"email": "x@example.com", "nickname": "x"}, "nickname"),
    ("POST", "/admin/people", {"email": "x\u0000@example.com"}, "email"),
    ("POST", "/admin/people/nobody@example.com/depart", None, None),
    ("POST", f"/admin/people/{ALICE}/depart", {"when": "now"}, "when"),
    ("POST", f"/admin/people/{ALICE}/roles", {}, "role"),
    ("POST", f"/admin/people/{ALICE}/roles", {"role": 3}, "role"),
    ("POST", f"/admin/people/{ALICE}/roles", {"role": "king"}, None),
    ("POST", f"/admin/people/{ALICE}/roles", {"role": "auditor", "granted_by": ROOT}, "granted_by"),
    ("DELETE", f"/admin/people/{ALICE}/roles/king", None, None),
    ("DELETE", f"/admin/people/{ALICE}/roles/auditor", None, None),  # she does not hold it
    ("POST", f"/admin/people/{ALICE}/admin-keys", {"ttl": "forever"}, "ttl"),
    ("POST", f"/admin/people/{ALICE}/admin-keys", {"ttl": 30}, "ttl"),
    ("POST", f"/admin/people/{ALICE}/admin-keys", {"ttl": "0d"}, "ttl"),
    ("POST", f"/admin/people/{ALICE}/admin-keys", {"ttl": "99999w"}, "ttl"),
    ("POST", f"/admin/people/{ALICE}/admin-keys", {"ttl": "999d"}, None),  # over the maximum
    ("POST", "/admin/people/nobody@example.com/admin-keys", {"ttl": "1d"}, None),
    ("DELETE", "/admin/admin-keys/not-a-key-id!", None, None),
    ("DELETE", "/admin/admin-keys/AAAAAAAAAAAA", None, None),
    ("GET", "/admin/people/nobody@example.com", None, None),
    # identities
    ("POST", "/admin/identities", {}, "name"),
    ("POST", "/admin/identities", {"name": 1, "owner": ALICE}, "name"),
    ("POST", "/admin/identities", {"name": "ok-bot"}, "owner"),
    ("POST", "/admin/identities", {"name": "Bad Name", "owner": ALICE}, None),
    ("POST", "/admin/identities", {"name": "ok-bot", "owner": "nobody@example.com"}, None),
    ("POST", "/admin/identities", {"name": "ok-bot", "owner": ALICE, "labels": ["tier=gold"]}, "labels"),
    ("POST", "/admin/identities", {"name": "ok-bot", "owner": ALICE, "labels": {"tier": 1}}, "labels"),
    ("POST", "/admin/identities", {"name": "ok-bot", "owner": ALICE, "environment": "e" * 60}, "environment"),
    ("POST", "/admin/identities", {"name": "ok-bot", "owner": ALICE, "data_clearance": "top-secret"}, None),
    ("POST", "/admin/identities", {"name": "ok-bot", "owner": ALICE, "backup_owner": ALICE}, None),
    ("POST", "/admin/identities", {"name": "ok-bot", "owner": ALICE, "status": "active"}, "status"),
    ("POST", "/admin/identities/target-bot/suspend", {"reason": 5}, "reason"),
    ("POST", "/admin/identities/target-bot/suspend", {"why": "x"}, "why"),
    ("POST", "/admin/identities/target-bot/resume", None, None),  # not suspended
    ("POST", "/admin/identities/no-such-bot/retire", None, None),
    ("POST", "/admin/identities/target-bot/approve", {"reason": []}, "reason"),
    ("POST", "/admin/identities/target-bot/approve", None, None),  # not pending
    ("POST", "/admin/identities/target-bot/reject", {"approved_by": ROOT}, "approved_by"),
    ("POST", "/admin/identities/target-bot/clearance", {}, "clearance"),
    ("POST", "/admin/identities/target-bot/clearance", {"clearance": "ultra"}, None),
    ("POST", "/admin/identities/target-bot/attended", {"note": 1}, "note"),
    ("POST", "/admin/identities/target-bot/attended", None, None),  # nothing to attend to
    ("POST", "/admin/identities/target-bot/transfer/plan", {}, "owner"),
    ("POST", "/admin/identities/target-bot/transfer/plan", {"owner": 5}, "owner"),
    ("POST", "/admin/identities/target-bot/transfer/plan", {"team": "Bad Team"}, None),
    ("POST", "/admin/identities/target-bot/transfer/plan", {"owner": "nobody@example.com"}, None),
    ("POST", "/admin/identities/target-bot/transfer", {"owner": ALICE}, "expect"),
    ("POST", "/admin/identities/target-bot/transfer", {"owner": ALICE, "expect": "yes"}, "expect"),
    ("POST", "/admin/identities/target-bot/transfer", {"owner": ALICE, "expect": {}}, "expect"),
    ("POST", "/admin/identities/target-bot/transfer", {"owner": ALICE, "expect": {}, "by": ROOT}, "by"),
    # keys
    ("POST", "/admin/identities/target-bot/keys", {"ttl": "1y"}, "ttl"),
    ("POST", "/admin/identities/target-bot/keys", {"ttl": "999d"}, None),
    ("POST", "/admin/identities/target-bot/keys", {"scopes": "small"}, "scopes"),
    ("POST", "/admin/identities/target-bot/keys", {"scopes": [1]}, "scopes"),
    ("POST", "/admin/identities/target-bot/keys", {"scopes": ["has space"]}, None),
    ("POST", "/admin/identities/no-such-bot/keys", None, None),
    ("GET", "/admin/keys?identity=no-such-bot", None, None),
    ("POST", "/admin/keys/not-a-key-id!/revoke", None, None),
    ("POST", "/admin/keys/AAAAAAAAAAAA/revoke", {"reason": 3}, "reason"),
    ("POST", "/admin/keys/AAAAAAAAAAAA/revoke", None, None),
    ("POST", "/admin/keys/AAAAAAAAAAAA/rotate", {"grace": "soon"}, "grace"),
    ("POST", "/admin/keys/AAAAAAAAAAAA/rotate", {"ttl": "x"}, "ttl"),
    ("POST", "/admin/keys/AAAAAAAAAAAA/rotate", {"grace": "1h", "scopes": ["small"]}, "scopes"),
    ("POST", "/admin/keys/AAAAAAAAAAAA/rotate", {"grace": "1h"}, None),
    ("POST", "/admin/keys/leaked", {}, "key"),
    ("POST", "/admin/keys/leaked", {"key": 5}, "key"),
    ("POST", "/admin/keys/leaked", {"key": "gth_garbage"}, None),
    ("POST", "/admin/keys/leaked", {"key": BAD_KEY}, None),
    ("POST", "/admin/keys/leaked", {"key": "AAAAAAAAAAAA", "source": {"url": "x"}}, "source"),
    # reviews
    ("POST", "/admin/reviews", {}, "due"),
    ("POST", "/admin/reviews", {"due": "two weeks"}, "due"),
    ("POST", "/admin/reviews", {"due": 14}, "due"),
    ("POST", "/admin/reviews", {"due": "14d", "identities": ["x"]}, "identities"),
    ("POST", "/admin/identities/target-bot/attest", {}, "decision"),
    ("POST", "/admin/identities/target-bot/attest", {"decision": "maybe"}, None),
    ("POST", "/admin/identities/target-bot/attest", {"decision": "keep"}, None),  # no open review
    ("POST", "/admin/reviews/enforce", {"now": True}, "now"),
    # audit
    ("GET", "/admin/audit?limit=0", None, "limit"),
    ("GET", "/admin/audit?limit=abc", None, "limit"),
    ("GET", "/admin/audit?limit=99999999999999999999", None, "limit"),
    ("POST", "/admin/audit/checkpoint", {"size": 1}, "size"),
    # policy
    ("POST", "/admin/policy/plan", {}, "source"),
    ("POST", "/admin/policy/plan", {"source": 5}, "source"),
    ("POST", "/admin/policy/plan", {"source": "version: [1"}, "source"),
    ("POST", "/admin/policy/plan", {"source": BASE, "base": BASE}, "base"),
    ("POST", "/admin/policy/versions", {"source": WIDER}, "message"),
    ("POST", "/admin/policy/versions", {"source": WIDER, "message": "x", "author": ROOT}, "author"),
    ("POST", "/admin/policy/versions/sha256:zz/approve", {"plan_id": 5}, "plan_id"),
    ("POST", "/admin/policy/versions/sha256:zz/approve", {"plan_id": "p", "acknowledge": "all"}, "acknowledge"),
    ("POST", "/admin/policy/versions/sha256:zz/approve", {"plan_id": "p"}, None),
    ("POST", "/admin/policy/versions/sha256:zz/reject", {}, "reason"),
    ("POST", "/admin/policy/versions/sha256:zz/apply", None, None),
    ("POST", "/admin/policy/rollback", {"reason": ""}, "reason"),
    ("POST", "/admin/policy/break-glass", {"reason": "x"}, None),
    ("POST", "/admin/policy/break-glass", {"source": CLOSED, "reason": "x", "ttl": "forever"}, "ttl"),
    ("POST", "/admin/policy/break-glass", {"source": CLOSED, "reason": "x", "ttl": "9h"}, None),
    ("POST", "/admin/policy/break-glass", {"version": "sha256:zz", "reason": "x"}, None),
    ("POST", "/admin/policy/break-glass", {"source": CLOSED, "reason": "x", "approved": True}, "approved"),
    ("POST", "/admin/policy/break-glass/abc/review", {"note": "x"}, "seq"),
    ("POST", "/admin/policy/break-glass/999/review", {"note": "x"}, None),
    ("POST", "/admin/policy/break-glass/1/review", {}, "note"),
    ("POST", "/admin/policy/break-glass/1/review", {"note": "x", "reviewer": ROOT}, "reviewer"),
    # incidents
    ("POST", "/admin/incidents/check", {"force": True}, "force"),
    ("POST", "/admin/incidents/inc-nope/acknowledge", {"note": 1}, "note"),
    ("POST", "/admin/incidents/inc-nope/acknowledge", None, None),
    ("POST", "/admin/incidents/inc-nope/close", {}, "note"),
    ("GET", "/admin/incidents/inc-nope", None, None),
    ("GET", "/admin/incidents?status=%00", None, "status"),
    # a NUL or an overlong name in the path (PostgreSQL refuses NUL in text)
    ("GET", "/admin/people/%00@example.com", None, None),
    ("POST", "/admin/people/%00@example.com/depart", None, None),
    ("DELETE", f"/admin/people/{ALICE}/roles/%00", None, None),
    ("GET", "/admin/identities/%00", None, None),
    ("GET", "/admin/identities/" + "x" * 5000, None, None),
    ("POST", "/admin/identities/%00/suspend", None, None),
    ("POST", "/admin/identities/%00/attest", {"decision": "keep"}, None),
    ("POST", "/admin/identities/%00/keys", None, None),
    ("GET", "/admin/keys?identity=%00", None, "identity"),
    ("POST", "/admin/keys/%00/revoke", None, None),
    ("DELETE", "/admin/admin-keys/%00", None, None),
    ("GET", "/admin/policy/versions/%00", None, None),
    ("GET", "/admin/policy/versions/%00/plan", None, None),
    ("GET", "/admin/incidents/%00", None, None),
    ("POST", "/admin/incidents/%00/close", {"note": "x"}, None),
]


@pytest.fixture
def ops(org: Org) -> TestClient:
    """Someone holding every role but identity-admin's... and an identity-admin too: every role
    check passes, so what is refused is the input itself."""
    org.add("ops", "identity-admin", "policy-admin", "approver", "auditor", "operator")
    ok(create(org, ROOT, "target-bot", ALICE), 201)
    return org("ops")


def _group(path: str) -> str:
    if "/keys" in path or "/admin-keys" in path:
        return "keys"
    if "/attest" in path or path.startswith("/admin/reviews"):
        return "reviews"
    return path.split("/")[2]


@pytest.mark.parametrize("group", sorted({_group(path) for _, path, _, _ in BAD_INPUT}))
def test_bad_input_is_a_4xx_in_the_error_shape(ops: TestClient, group: str) -> None:
    """Every case of the group is tried (one store for all of them: each is refused, so none
    changes what the next one sees), and every one that is not refused properly is named."""
    wrong = []
    for method, path, body, param in BAD_INPUT:
        if _group(path) != group:
            continue
        response = ops.request(method, path, json=body)
        try:
            error = refused(response)
            assert param is None or error["param"] == param, error
        except (AssertionError, KeyError, ValueError) as exc:
            wrong.append(f"{method} {path} {body}: {response.status_code} {exc}")
    assert wrong == []


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b"null", b"\"text\"", b"\xff\xfe", b"{\"email\": \"x@example.com\"" * 2])
def test_a_body_that_is_not_a_json_object_is_a_400(ops: TestClient, raw: bytes) -> None:
    response = ops.post("/admin/people", content=raw, headers={"content-type": "application/json"})
    assert refused(response, 400)["code"] == "invalid_json"


def test_a_huge_body_is_a_413(ops: TestClient) -> None:
    response = ops.post("/admin/people", content=b" " * (2 * 1024 * 1024), headers={"content-type": "application/json"})
    refused(response, 413, "request_too_large")


def test_an_identity_admin_cannot_keep_a_key_in_someone_elses_name(org: Org) -> None:
    """Issuing two enrolment keys and exchanging one first (or after) gets the issuer nothing
    that lasts: the newest enrolment key is the only one that counts, and an exchange stops
    every other key the person holds — so the person always finds out."""
    org.add("cleo", "approver")
    issue = lambda: ok(org(ROOT).post("/admin/people/cleo@example.com/admin-keys"), 201)["key"]  # noqa: E731
    kept, given = issue(), issue()
    refused(org.client(kept).post("/admin/admin-keys/redeem"), 401)  # superseded by the newer one
    stolen = ok(org.client(given).post("/admin/admin-keys/redeem"), 201)["key"]  # root, before cleo
    assert ok(org.client(stolen).get("/admin/whoami"))["email"] == "cleo@example.com"
    refused(org.client(given).post("/admin/admin-keys/redeem"), 401)  # cleo's own try fails: she knows
    fresh = issue()
    own = ok(org.client(fresh).post("/admin/admin-keys/redeem"), 201)["key"]  # cleo, with a new one
    refused(org.client(stolen).get("/admin/whoami"), 401)  # what root took stops now
    assert ok(org.client(own).get("/admin/whoami"))["email"] == "cleo@example.com"
    again = issue()
    ok(org.client(again).post("/admin/admin-keys/redeem"), 201)  # root tries once more …
    refused(org.client(own).get("/admin/whoami"), 401)  # … and cleo's own key stops: she knows again

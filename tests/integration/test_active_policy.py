"""One source of the active policy: the version the store says is active.

Findings, the inventory, identity transfers and ``/admin/findings`` all judge identities by
the applied version — never by a policy file that may say something else. The scenario is
the one found by trying it as an adversary would: a grant ``team=finance → big`` is approved
and applied while the file on disk still lacks it, and an identity-admin who owns an
identity moves it into finance.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient
from typer.testing import CliRunner

from gatehouse.api.inventory import InventoryApi
from gatehouse.authz import Forbidden
from gatehouse.cli.main import app as cli_app
from gatehouse.core import clock
from gatehouse.core.config import Settings
from gatehouse.core.errors import GatehouseError
from gatehouse.identity import governance, service
from gatehouse.identity.bootstrap import bootstrap
from gatehouse.identity.view import IdentityView
from gatehouse.oversight import transfers
from gatehouse.oversight.findings import Thresholds, compute_findings
from gatehouse.oversight.inventory import inventory
from gatehouse.policy import change_control, planning, versions
from gatehouse.policy.loader import load_policy_text
from gatehouse.policy.starter import STARTER_POLICY
from gatehouse.store.db import Database
from gatehouse.store.models import PolicyActivation

from helpers import own_admin_key

ROOT = "local:root"  # only for what needs no person: serve's first activation
ADMIN = "person:root@example.com"  # the bootstrapped first identity-admin
PEPPER = b"pepper"
ALICE, BOB, CAROL = (f"person:{n}@example.com" for n in ("alice", "bob", "carol"))

WITH_BIG = STARTER_POLICY + """\
  - name: finance-big
    subjects:
      - team: finance
    aliases: [big]
"""
WITH_BIG = WITH_BIG.replace("""aliases:
  chat-small:""", """aliases:
  big:
    route: [embedded-gemma]
  chat-small:""")


def apply_with_approval(db: Database, text: str) -> str:
    """bob proposes, carol approves, bob applies: the applied version's hash."""
    loaded = load_policy_text(text)
    change_control.propose(db, BOB, loaded, "give finance the big model")
    planned = planning.plan_version(db, loaded.version)
    change_control.approve(db, CAROL, loaded.version, planned.plan_id, planned.widening_ids)
    change_control.apply(db, BOB, loaded.version)
    return loaded.version


@pytest.fixture
def org(db: Database) -> Database:
    bootstrap(db, ROOT, "root@example.com", pepper=PEPPER, ttl=timedelta(hours=1))
    for name, team in (("alice", "platform"), ("bob", "platform"), ("carol", "platform")):
        service.add_person(db, ADMIN, f"{name}@example.com", team=team)
    governance.change_role(db, ADMIN, "alice@example.com", "identity-admin", True)
    governance.change_role(db, ALICE, "bob@example.com", "policy-admin", True)
    governance.change_role(db, ALICE, "carol@example.com", "approver", True)
    governance.change_role(db, ALICE, "carol@example.com", "identity-admin", True)
    assert change_control.activate_served_file(db, ROOT, load_policy_text(STARTER_POLICY), "policy.yaml") == "activated"
    service.create_identity(db, ALICE, "bot", "alice@example.com", environment="dev")
    return db


def test_a_transfer_is_judged_by_the_applied_version(org: Database) -> None:
    applied = apply_with_approval(org, WITH_BIG)
    plan = transfers.plan_transfer(org, "bot", None, "finance")
    assert plan.policy_version == applied and plan.gained == ["big"]
    with pytest.raises(Forbidden, match="neither its old nor its new owner"):
        transfers.transfer_identity(org, ALICE, plan)  # alice owns bot: she may not widen its access
    transfers.transfer_identity(org, CAROL, plan)
    info = service.describe_identity(org, "bot")
    active = versions.active_compiled(org)
    assert active is not None and info["team"] == "finance"
    assert active.allowed_aliases(IdentityView.of("bot", info["team"], "dev", {})) == {"big", "chat-small"}


def test_a_plan_made_before_another_version_was_applied_is_refused(org: Database) -> None:
    plan = transfers.plan_transfer(org, "bot", None, "finance")
    assert plan.gained == []  # under the starter policy nothing is granted by team
    apply_with_approval(org, WITH_BIG)
    with pytest.raises(GatehouseError, match="active policy changed since the plan was shown"):
        transfers.transfer_identity(org, ALICE, plan)  # the gains it showed are no longer the truth
    assert service.describe_identity(org, "bot")["team"] == "platform"


def test_findings_and_inventory_judge_the_applied_version(org: Database, settings: Settings) -> None:
    applied = apply_with_approval(org, WITH_BIG)
    policy = versions.active_compiled(org)
    assert policy is not None and policy.version == applied
    transfers.transfer_identity(org, CAROL, transfers.plan_transfer(org, "bot", None, "finance"))
    rows = {row["name"]: row for row in inventory(org, policy, settings)}
    assert rows["bot"]["aliases"] == ["big", "chat-small"] and rows["bot"]["grants"] == ["dev-chat-small", "finance-big"]
    found = [f.detail for f in compute_findings(org, policy, Thresholds(unused=timedelta(0))) if f.kind == "grant_unused"]
    assert sorted(found) == ["grant 'dev-chat-small' allows chat-small, not called in 0 days",
                             "grant 'finance-big' allows big, not called in 0 days"]


@pytest.fixture
def cli_home(home: Path, shared_models_dir: Path, monkeypatch: pytest.MonkeyPatch):
    home.mkdir(parents=True)
    (home / "models").symlink_to(shared_models_dir, target_is_directory=True)
    runner = CliRunner()

    def run(*args: str, code: int = 0, key: str | None = None) -> str:
        if key:
            monkeypatch.setenv("GATEHOUSE_ADMIN_KEY", key)
        else:
            monkeypatch.delenv("GATEHOUSE_ADMIN_KEY", raising=False)
        result = runner.invoke(cli_app, list(args))
        assert result.exit_code == code, f"{args}: {result.exit_code}\n{result.output}"
        assert "Traceback" not in result.output
        return result.output

    run("init", "--admin", "root@example.com")  # root stays signed in through the profile
    db = Database(f"sqlite:///{home / 'gatehouse.db'}")
    yield run, db, home
    db.dispose()


def test_the_cli_judges_the_applied_version_not_the_file(cli_home) -> None:
    run, db, home = cli_home
    root = "person:root@example.com"
    for name in ("alice", "bob", "carol"):
        service.add_person(db, root, f"{name}@example.com", team="platform")
    governance.change_role(db, root, "alice@example.com", "identity-admin", True)
    governance.change_role(db, root, "bob@example.com", "policy-admin", True)
    governance.change_role(db, root, "carol@example.com", "approver", True)
    governance.change_role(db, root, "carol@example.com", "identity-admin", True)
    keys = {name: own_admin_key(db, root, f"{name}@example.com", Settings.from_env().pepper())
            for name in ("alice", "carol")}
    change_control.activate_served_file(db, ROOT, load_policy_text((home / "policy.yaml").read_text()), "policy.yaml")
    service.create_identity(db, ALICE, "bot", "alice@example.com", environment="dev")
    applied = apply_with_approval(db, WITH_BIG)
    assert "big" not in (home / "policy.yaml").read_text()  # the file still says otherwise

    refused = run("identity", "transfer", "bot", "--team", "finance", "--yes", code=1, key=keys["alice"])
    assert "gains: big" in refused and "neither its old nor its new owner" in refused
    moved = json.loads(run("identity", "transfer", "bot", "--team", "finance", "--yes", "--json", key=keys["carol"]))
    assert moved["gained"] == ["big"] and moved["policy_version"] == applied
    audited = [e for e in json.loads(run("audit", "log", "--json")) if e["action"] == "identity.transfer"]
    assert audited[-1]["details"]["gained"] == ["big"] and audited[-1]["actor"] == "person:carol@example.com"

    listed = json.loads(run("inventory", "--json"))
    assert listed["policy_version"] == applied
    assert next(r for r in listed["inventory"] if r["name"] == "bot")["aliases"] == ["big", "chat-small"]
    found = json.loads(run("findings", "--json"))
    assert found["note"] is None


def test_the_admin_api_and_the_cli_judge_the_same_version(org: Database, settings: Settings) -> None:
    applied = apply_with_approval(org, WITH_BIG)
    governance.change_role(org, ALICE, "bob@example.com", "auditor", True)
    key = own_admin_key(org, ALICE, "bob@example.com", PEPPER)
    api = InventoryApi(org, PEPPER, settings)
    app = Starlette(routes=[Route("/admin/findings", api.findings), Route("/admin/inventory", api.inventory)])
    with TestClient(app) as client:
        for path in ("/admin/findings", "/admin/inventory"):
            answer = client.get(path, headers={"authorization": f"Bearer {key}"})
            assert answer.status_code == 200 and answer.json()["policy_version"] == applied
        rows = client.get("/admin/inventory", headers={"authorization": f"Bearer {key}"}).json()["inventory"]
    assert next(r for r in rows if r["name"] == "bot")["aliases"] == ["chat-small"]


# -- found by an adversarial review of the change --------------------------------------------

def test_before_any_version_is_active_an_owner_cannot_move_their_identity_between_teams(db: Database) -> None:
    bootstrap(db, ROOT, "root@example.com", pepper=PEPPER, ttl=timedelta(hours=1))
    for name in ("alice", "carol"):
        service.add_person(db, ADMIN, f"{name}@example.com", team="platform")
    governance.change_role(db, ADMIN, "alice@example.com", "identity-admin", True)
    governance.change_role(db, ADMIN, "carol@example.com", "identity-admin", True)
    service.create_identity(db, ALICE, "bot", "alice@example.com", environment="dev")
    plan = transfers.plan_transfer(db, "bot", None, "finance")
    assert plan.policy_version is None and plan.widens  # access nobody can judge yet is a widening
    with pytest.raises(Forbidden, match="no active policy version can judge"):
        transfers.transfer_identity(db, ALICE, plan)
    transfers.transfer_identity(db, CAROL, plan)  # another identity-admin may


def test_a_move_that_raises_the_data_class_on_an_alias_is_a_gain(org: Database) -> None:
    text = STARTER_POLICY + """\
  - name: finance-confidential
    subjects:
      - team: finance
    aliases: [chat-small]
    max_data_class: confidential
"""
    apply_with_approval(org, text)
    plan = transfers.plan_transfer(org, "bot", None, "finance")
    assert plan.aliases_before == plan.aliases_after == ["chat-small"]
    assert plan.gained == ["chat-small"] and plan.as_dict()["data_classes_changed"] == {
        "chat-small": ["internal", "confidential"]}
    with pytest.raises(Forbidden, match="neither its old nor its new owner"):
        transfers.transfer_identity(org, ALICE, plan)


def test_an_expired_break_glass_is_not_what_identities_are_judged_by(org: Database, monkeypatch) -> None:
    applied = apply_with_approval(org, WITH_BIG)
    activation, _ = change_control.break_glass(org, BOB, load_policy_text(STARTER_POLICY.replace(
        "aliases:\n  chat-small:", "aliases:\n  big:\n    route: [embedded-gemma]\n  chat-small:")),
        "finance grant off for an hour", timedelta(minutes=30),
        settings=dataclasses.replace(Settings.from_env(), notify_webhook="http://127.0.0.1:9/hook"))
    with org.write() as session:  # its time is up, and no gateway has recorded its end yet
        session.get(PolicyActivation, activation.seq).expires_at = clock.utcnow() - timedelta(seconds=1)
    assert versions.active_compiled(org).version == applied  # type: ignore[union-attr]  # a version is active
    plan = transfers.plan_transfer(org, "bot", None, "finance")
    assert plan.gained == ["big"]
    with pytest.raises(Forbidden):
        transfers.transfer_identity(org, ALICE, plan)


def test_a_move_and_an_apply_cannot_both_pass_unseen(org: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """The move is judged under the starter policy and held open; an apply that favours the
    target team plans meanwhile. Without the policy lock the apply's plan sees the identity in
    its old team and the move's judgement sees the old version: both commit, and an owner moved
    their identity into access nobody approved. With the lock, the apply waits for the move (the
    move gives up waiting for the apply's plan after a few seconds), then sees the identity in
    its new team and is refused as a gain its approver never saw."""
    big = load_policy_text(WITH_BIG)
    change_control.propose(org, BOB, big, "finance gets big")
    planned = planning.plan_version(org, big.version)
    change_control.approve(org, CAROL, big.version, planned.plan_id, planned.widening_ids)
    plan = transfers.plan_transfer(org, "bot", None, "finance")
    assert plan.gained == []
    judged, apply_planned = threading.Event(), threading.Event()
    judge, plan_in = transfers.active_compiled_in, change_control.plan_in

    def judged_then_wait(session):  # type: ignore[no-untyped-def]  # the patched function's own signature
        answer = judge(session)
        judged.set()
        apply_planned.wait(3)  # without the lock the apply plans meanwhile; with it, it cannot
        return answer

    def planned_then_signal(*args):  # type: ignore[no-untyped-def]  # the patched function's own signature
        answer = plan_in(*args)
        apply_planned.set()
        return answer

    monkeypatch.setattr(transfers, "active_compiled_in", judged_then_wait)
    monkeypatch.setattr(change_control, "plan_in", planned_then_signal)
    outcomes: dict[str, object] = {}

    def run(name: str, work) -> None:  # type: ignore[no-untyped-def]  # a thunk
        try:
            outcomes[name] = work()
        except Exception as exc:  # the outcome is what the test judges
            outcomes[name] = exc

    mover = threading.Thread(target=run, args=("move", lambda: transfers.transfer_identity(org, ALICE, plan)))
    mover.start()
    assert judged.wait(10)
    applier = threading.Thread(target=run, args=("apply", lambda: change_control.apply(org, BOB, big.version)))
    applier.start()
    mover.join(30)
    applier.join(30)
    monkeypatch.undo()
    moved = not isinstance(outcomes["move"], Exception)
    applied = not isinstance(outcomes["apply"], Exception)
    assert not (moved and applied), outcomes  # one of them saw the other
    active = versions.active_compiled(org)
    team = service.describe_identity(org, "bot")["team"]
    assert active is not None and "big" not in active.allowed_aliases(IdentityView.of("bot", team, "dev", {}))

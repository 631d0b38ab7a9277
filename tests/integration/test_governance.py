"""Joiners, roles, clearance, movers and access reviews — and every separation-of-duties
rule refusing what it must — on SQLite and on a real PostgreSQL server."""

from datetime import timedelta

import pytest
from sqlalchemy import update

from gatehouse.authz import Forbidden
from gatehouse.core import clock
from gatehouse.core.errors import GatehouseError, Unauthenticated
from gatehouse.identity import bootstrap, governance, service
from gatehouse.oversight import transfers
from gatehouse.policy import change_control
from gatehouse.policy.loader import load_policy_text
from gatehouse.runtime.keytable import KeyTable
from gatehouse.store.models import Person, ReviewCampaign

PEPPER = b"pepper"
ALICE, BOB, CAROL, DAVE = (f"person:{n}@example.com" for n in ("alice", "bob", "carol", "dave"))
ROOT = "person:root@example.com"  # the bootstrapped identity-admin
LOCAL = "local:root"  # a shell that names nobody


def bootstrapped(db):
    bootstrap.bootstrap(db, "local:init", "root@example.com", pepper=PEPPER, ttl=timedelta(hours=1))
    return db


@pytest.fixture
def org(db):
    bootstrapped(db)
    for name in ("alice", "bob", "carol", "dave"):
        service.add_person(db, ROOT, f"{name}@example.com", team="platform")
    governance.change_role(db, ROOT, "bob@example.com", "identity-admin", True)
    governance.change_role(db, BOB, "carol@example.com", "identity-admin", True)
    return db


def create(db, actor, name, owner="alice@example.com", environment="prod", **kwargs):
    return service.create_identity(db, actor, name, owner, environment=environment, **kwargs)


def issue(db, name):
    return service.issue_key(db, ROOT, name, pepper=PEPPER, ttl=timedelta(days=1), max_ttl=timedelta(days=90))


# -- joiners ------------------------------------------------------------------------------

def test_a_prod_identity_waits_for_another_identity_admin(org):
    identity = create(org, ALICE, "billing")
    assert identity.status == "pending"
    with pytest.raises(GatehouseError, match="keys are issued to active identities only"):
        issue(org, "billing")
    with pytest.raises(Forbidden, match="needs the identity-admin role"):
        governance.decide_identity(org, DAVE, "billing", approve=True)
    governance.decide_identity(org, BOB, "billing", approve=True)
    info = service.describe_identity(org, "billing")
    assert info["status"] == "active" and info["review_due_at"] is not None
    issue(org, "billing")
    with pytest.raises(GatehouseError, match="not pending"):
        governance.decide_identity(org, CAROL, "billing", approve=True)


def test_nobody_approves_their_own_request(org):
    create(org, BOB, "bobs-bot", owner="bob@example.com")
    with pytest.raises(Forbidden, match="nobody approves their own identity request"):
        governance.decide_identity(org, BOB, "bobs-bot", approve=True)
    # An identity-admin requesting for someone else cannot approve it either.
    create(org, CAROL, "for-alice")
    with pytest.raises(Forbidden, match="their own identity request"):
        governance.decide_identity(org, CAROL, "for-alice", approve=True)
    governance.decide_identity(org, BOB, "for-alice", approve=False, reason="no purpose given")
    assert service.describe_identity(org, "for-alice")["status"] == "retired"


@pytest.mark.parametrize("actor, owner, message", [
    (DAVE, "alice@example.com", "only for themselves"),
    (LOCAL, "alice@example.com", "needs a person: sign in with your own admin key"),
    ("person:ghost@example.com", "alice@example.com", "not an active person"),
])
def test_who_may_request_an_identity(org, actor, owner, message):
    with pytest.raises(Forbidden, match=message):
        create(org, actor, "requested", owner=owner)


def test_exempt_environments_need_no_approval(org):
    assert create(org, ROOT, "sandbox", environment="dev").status == "active"
    assert create(org, ROOT, "staging-bot", environment="staging",
                  exempt_environments=frozenset({"dev", "staging"})).status == "active"


# -- roles --------------------------------------------------------------------------------

def test_after_the_first_identity_admin_only_identity_admins_grant_roles(org):
    with pytest.raises(Forbidden, match="needs a person"):
        governance.change_role(org, LOCAL, "dave@example.com", "auditor", True)
    with pytest.raises(Forbidden, match="needs the identity-admin role"):
        governance.change_role(org, DAVE, "alice@example.com", "identity-admin", True)


def test_the_first_identity_admin_comes_only_from_the_bootstrap(db):
    # Before issue 14 anyone could appoint the first identity-admin through change_role while
    # none existed (and again once every one had departed); now no role is ever granted but
    # by an identity-admin, and the first one comes from the once-only bootstrap.
    with db.write() as session:  # people who exist before any identity-admin (a store set up by hand)
        for name in ("alice", "bob", "carol"):
            session.add(Person(email=f"{name}@example.com", status="active", created_at=clock.utcnow(), revision=0))
    with pytest.raises(Forbidden, match="changing roles needs the identity-admin role"):
        governance.change_role(db, "person:bob@example.com", "alice@example.com", "identity-admin", True)
    with pytest.raises(Forbidden, match="nobody changes their own roles"):
        governance.change_role(db, "person:alice@example.com", "alice@example.com", "identity-admin", True)
    with pytest.raises(Forbidden, match="needs a person"):
        governance.change_role(db, LOCAL, "alice@example.com", "identity-admin", True)
    bootstrap.bootstrap(db, "local:init", "alice@example.com", pepper=PEPPER, ttl=timedelta(hours=1))
    with pytest.raises(Forbidden, match="needs the identity-admin role"):  # alice was appointed; alice appoints now
        governance.change_role(db, "person:bob@example.com", "carol@example.com", "identity-admin", True)
    governance.change_role(db, "person:alice@example.com", "carol@example.com", "auditor", True)


def test_roles_are_granted_by_someone_else(org):
    with pytest.raises(Forbidden, match="nobody changes their own roles"):
        governance.change_role(org, BOB, "bob@example.com", "approver", True)
    with pytest.raises(Forbidden, match="nobody changes their own roles"):
        governance.change_role(org, BOB, "bob@example.com", "identity-admin", False)
    with pytest.raises(GatehouseError, match="unknown role"):
        governance.change_role(org, BOB, "dave@example.com", "superuser", True)
    governance.change_role(org, BOB, "dave@example.com", "auditor", True)
    with pytest.raises(GatehouseError, match="already holds"):
        governance.change_role(org, CAROL, "dave@example.com", "auditor", True)
    assert {(r["email"], r["role"]) for r in governance.list_roles(org)} >= {("dave@example.com", "auditor")}
    governance.change_role(org, CAROL, "dave@example.com", "auditor", False)
    assert "auditor" not in {r["role"] for r in governance.list_roles(org) if r["email"] == "dave@example.com"}


# -- clearance ----------------------------------------------------------------------------

def test_an_owner_cannot_raise_their_own_identity_s_clearance(org):
    create(org, ROOT, "bobs", owner="bob@example.com", environment="dev")
    with pytest.raises(Forbidden, match="cannot raise their own identity"):
        governance.set_clearance(org, BOB, "bobs", "restricted")
    with pytest.raises(Forbidden, match="needs the identity-admin role"):
        governance.set_clearance(org, DAVE, "bobs", "confidential")
    governance.set_clearance(org, CAROL, "bobs", "restricted")
    governance.set_clearance(org, BOB, "bobs", "public")  # lowering is anyone's to do
    assert service.describe_identity(org, "bobs")["data_clearance"] == "public"


def test_an_owner_cannot_create_their_identity_with_a_raised_clearance(org):
    with pytest.raises(Forbidden, match="cannot raise their own identity"):
        create(org, BOB, "secret-bot", owner="bob@example.com", environment="dev", data_clearance="restricted")
    with pytest.raises(Forbidden, match="needs a person"):
        create(org, LOCAL, "secret-bot", environment="dev", data_clearance="confidential")
    raised = create(org, CAROL, "secret-bot", owner="bob@example.com", environment="dev", data_clearance="restricted")
    # a raised clearance now also waits for an identity-admin who did not ask for it (issue 14)
    assert raised.data_clearance == "restricted" and raised.status == "pending"
    with pytest.raises(Forbidden, match="nobody approves their own identity request"):
        governance.decide_identity(org, CAROL, "secret-bot", approve=True)
    with pytest.raises(Forbidden, match="never owned, backed up or requested"):
        governance.decide_identity(org, BOB, "secret-bot", approve=True)  # its owner
    governance.decide_identity(org, ROOT, "secret-bot", approve=True)
    assert create(org, ROOT, "public-bot", environment="dev", data_clearance="public").status == "active"


def test_a_flagged_suspension_is_lifted_by_an_identity_admin(org):
    from gatehouse.identity.lifecycle import depart_person

    create(org, ROOT, "orphan", owner="dave@example.com", environment="dev")
    create(org, DAVE, "pending-orphan", owner="dave@example.com")
    depart_person(org, ROOT, "dave@example.com")
    assert service.describe_identity(org, "pending-orphan")["status"] == "pending"  # still needs its approval
    plan = transfers.plan_transfer(org, "orphan", "alice@example.com", None)
    transfers.transfer_identity(org, BOB, plan)
    with pytest.raises(Forbidden, match="identity-admin"):
        service.change_identity_status(org, ALICE, "orphan", "resume")
    service.change_identity_status(org, BOB, "orphan", "resume")
    assert service.describe_identity(org, "orphan")["status"] == "active"


# -- movers -------------------------------------------------------------------------------

POLICY = load_policy_text("""\
version: 1
deployments:
  m: {engine: openai, url: "http://127.0.0.1:9/v1", model: m}
aliases:
  chat: {route: [m]}
  finance-model: {route: [m]}
grants:
  - {name: all-dev, subjects: [{environment: dev}], aliases: [chat]}
  - {name: finance, subjects: [{team: finance}], aliases: [finance-model]}
""")


def test_a_move_shows_the_access_change_and_comes_up_for_review(org):
    create(org, ROOT, "mover", environment="dev", backup_owner_email="bob@example.com")
    change_control.activate_served_file(org, ROOT, POLICY, "test")
    plan = transfers.plan_transfer(org, "mover", "bob@example.com", "finance")
    assert plan.aliases_before == ["chat"] and plan.gained == ["finance-model"] and plan.lost == []
    with pytest.raises(Forbidden, match="needs the identity-admin role"):
        transfers.transfer_identity(org, ALICE, plan)  # the owner is not an identity-admin
    with pytest.raises(Forbidden, match="neither its old nor its new owner"):
        transfers.transfer_identity(org, BOB, plan)  # bob would widen access for himself
    with pytest.raises(Forbidden, match="never owned, backed up or requested it"):
        transfers.transfer_identity(org, ROOT, plan)  # root requested it
    transfers.transfer_identity(org, CAROL, plan)
    info = service.describe_identity(org, "mover")
    assert info["owner"] == "bob@example.com" and info["team"] == "finance" and info["backup_owner"] is None
    assert clock.as_utc(__import__("datetime").datetime.fromisoformat(info["review_due_at"])) <= clock.utcnow()
    with pytest.raises(GatehouseError, match="changed since the plan"):
        transfers.transfer_identity(org, CAROL, plan)  # the same plan again is stale
    from gatehouse.identity.lifecycle import depart_person

    depart_person(org, ROOT, "dave@example.com")
    with pytest.raises(GatehouseError, match="departed"):
        transfers.plan_transfer(org, "mover", "dave@example.com", None)


# -- access reviews -----------------------------------------------------------------------

def test_an_access_review_from_start_to_expiry(org):
    for name in ("kept", "retired-in-review", "forgotten"):
        create(org, ROOT, name, environment="dev")
    _, kept_key = issue(org, "kept")
    _, forgotten_key = issue(org, "forgotten")
    _, doomed_key = issue(org, "retired-in-review")
    with pytest.raises(Forbidden, match="identity-admin"):
        governance.start_review(org, ALICE, timedelta(days=14))
    campaign, count = governance.start_review(org, BOB, timedelta(days=14))
    assert count == 3
    with pytest.raises(Forbidden, match="only the owner"):
        governance.attest(org, BOB, "kept", "keep")
    with pytest.raises(GatehouseError, match="say what to narrow"):
        governance.attest(org, ALICE, "kept", "narrow")
    governance.attest(org, ALICE, "kept", "keep", "still used by billing")
    governance.attest(org, ALICE, "retired-in-review", "retire")
    with pytest.raises(GatehouseError, match="nothing to attest"):
        governance.attest(org, ALICE, "kept", "keep")
    assert governance.enforce_reviews(org) == []  # not due yet
    with org.write() as session:
        session.execute(update(ReviewCampaign).where(ReviewCampaign.id == campaign)
                        .values(due_at=clock.utcnow() - timedelta(seconds=1)))
    assert governance.enforce_reviews(org) == ["forgotten"]
    assert governance.enforce_reviews(org) == []  # closed once
    keys = KeyTable(PEPPER)
    keys.refresh(org)
    assert keys.authenticate(f"Bearer {kept_key}").identity.name == "kept"
    for key, code in ((forgotten_key, "identity_not_active"), (doomed_key, "revoked_api_key")):
        with pytest.raises(Unauthenticated) as refused:
            keys.authenticate(f"Bearer {key}")
        assert refused.value.code == code
    status = {row["identity"]: row for row in governance.review_status(org)}
    assert (status["kept"]["decision"], status["forgotten"]["decision"]) == ("keep", "expired")
    assert status["kept"]["status"] == "closed"
    assert "not attested" in service.describe_identity(org, "forgotten")["attention"]


def test_one_attestation_answers_every_open_review(org):
    create(org, ROOT, "twice-asked", environment="dev")
    first, _ = governance.start_review(org, BOB, timedelta(days=14))
    second, _ = governance.start_review(org, CAROL, timedelta(days=14))
    governance.attest(org, ALICE, "twice-asked", "keep")
    with org.write() as session:
        session.execute(update(ReviewCampaign).values(due_at=clock.utcnow() - timedelta(seconds=1)))
    assert governance.enforce_reviews(org) == []
    decisions = {(row["review"], row["decision"]) for row in governance.review_status(org)}
    assert decisions == {(first, "keep"), (second, "keep")}

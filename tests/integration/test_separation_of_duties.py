"""Issue 14's separation-of-duties rules, in the service layer, on SQLite and on a real
PostgreSQL server: one negative test per rule (and what the rule still allows), whatever entry
point calls the service function."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from gatehouse.authz import Forbidden
from gatehouse.core.clock import utcnow
from gatehouse.core.config import Settings
from gatehouse.core.errors import Conflict, GatehouseError, NotFound
from gatehouse.identity import admin_keys, bootstrap, governance, lifecycle, service
from gatehouse.oversight import transfers
from gatehouse.oversight.findings import compute_findings
from gatehouse.policy import change_control, planning
from gatehouse.policy import workers as policy_workers
from gatehouse.policy.change_control import BreakGlassLimit
from gatehouse.policy.loader import load_policy_text
from gatehouse.store.db import Database
from gatehouse.store.models import AdminKey, AuditEntry, Identity, Person, PolicyActivation

PEPPER = b"pepper"
DAY, MAX_TTL = timedelta(days=1), timedelta(days=90)
ROOT = "person:root@example.com"
ALICE, BOB, CAROL, DAVE, ERIN, LEAVER = (
    f"person:{n}@example.com" for n in ("alice", "bob", "carol", "dave", "erin", "leaver"))
PAT, PIA, AMY = "person:pat@example.com", "person:pia@example.com", "person:amy@example.com"

POLICY = load_policy_text("""\
version: 1
deployments:
  m: {engine: openai, url: "http://127.0.0.1:9/v1", model: m}
aliases:
  chat: {route: [m]}
  finance-model: {route: [m]}
change_control: {approvers: 1}
grants:
  - {name: all-dev, subjects: [{environment: dev}], aliases: [chat]}
  - {name: finance, subjects: [{team: finance}], aliases: [finance-model]}
""")
NARROWER = load_policy_text(POLICY.text.replace("  - {name: finance, subjects: [{team: finance}], aliases: [finance-model]}\n",
                                                ""))


@pytest.fixture
def appointment(db: Database) -> bootstrap.Appointment:
    return bootstrap.bootstrap(db, "local:init", "root@example.com", pepper=PEPPER, ttl=DAY)


@pytest.fixture
def org(db: Database, appointment: bootstrap.Appointment) -> Database:
    """root (bootstrapped), carol and dave: identity-admins; alice, bob, erin: people; leaver: departed."""
    for name in ("alice", "bob", "carol", "dave", "erin", "leaver"):
        service.add_person(db, ROOT, f"{name}@example.com", team="platform")
    service.add_person(db, ROOT, "fiona@example.com", team="finance")
    for name in ("carol", "dave", "leaver"):
        governance.change_role(db, ROOT, f"{name}@example.com", "identity-admin", True)
    lifecycle.depart_person(db, ROOT, "leaver@example.com")
    change_control.activate_served_file(db, "local:serve", POLICY, "policy.yaml")
    return db


def create(db: Database, actor: str, name: str, owner: str = "alice@example.com", **kwargs):  # type: ignore[no-untyped-def]  # passes through
    return service.create_identity(db, actor, name, owner, **kwargs)


def issue(db: Database, actor: str, name: str):  # type: ignore[no-untyped-def]  # passes through
    return service.issue_key(db, actor, name, pepper=PEPPER, ttl=DAY, max_ttl=MAX_TTL)


def stewards(db: Database, name: str) -> list[str]:
    with db.read() as session:
        return session.execute(select(Identity.stewards).where(Identity.name == name)).scalar_one()


def status(db: Database, name: str) -> str:
    return service.describe_identity(db, name)["status"]


# -- 1. every change needs an active person; who may do what -------------------------------

def _every_change(db: Database, actor: str, key_id: str, admin_key_id: str):  # type: ignore[no-untyped-def]  # thunks
    return {
        "add a person": lambda: service.add_person(db, actor, "new@example.com"),
        "create an identity": lambda: create(db, actor, "new-bot"),
        "issue a key": lambda: issue(db, actor, "bot"),
        "revoke a key": lambda: service.revoke_key(db, actor, key_id),
        "rotate a key": lambda: lifecycle.rotate_key(db, actor, key_id, pepper=PEPPER, grace=timedelta(0), ttl=None,
                                                     max_ttl=MAX_TTL),
        "suspend": lambda: service.change_identity_status(db, actor, "bot", "suspend"),
        "report a leak": lambda: lifecycle.report_leak(db, actor, key_id),
        "clear a flag": lambda: lifecycle.clear_attention(db, actor, "bot"),
        "depart someone": lambda: lifecycle.depart_person(db, actor, "bob@example.com"),
        "grant a role": lambda: governance.change_role(db, actor, "bob@example.com", "auditor", True),
        "approve an identity": lambda: governance.decide_identity(db, actor, "bot", approve=True),
        "lower a clearance": lambda: governance.set_clearance(db, actor, "bot", "public"),
        "raise a clearance": lambda: governance.set_clearance(db, actor, "bot", "confidential"),
        "start a review": lambda: governance.start_review(db, actor, DAY),
        "attest": lambda: governance.attest(db, actor, "bot", "keep"),
        "move an identity": lambda: transfers.transfer_identity(
            db, actor, transfers.plan_transfer(db, "bot", "bob@example.com", None)),
        "issue an admin key": lambda: admin_keys.issue_admin_key(db, actor, "bob@example.com", pepper=PEPPER, ttl=DAY,
                                                                 max_ttl=MAX_TTL),
        "revoke an admin key": lambda: admin_keys.revoke_admin_key(db, actor, admin_key_id),
        "propose a policy": lambda: change_control.propose(db, actor, NARROWER, "why"),
        "review a break-glass": lambda: change_control.review_break_glass(db, actor, 1, "checked"),
    }


@pytest.mark.parametrize("actor, message", [
    ("local:root", "needs a person"),
    ("system:reviews", "needs a person"),
    (LEAVER, "leaver@example.com is not an active person"),  # a departed identity-admin can do nothing
    ("person:ghost@example.com", "not an active person"),
])
def test_no_change_without_an_active_person(org: Database, appointment: bootstrap.Appointment, actor: str,
                                            message: str) -> None:
    create(org, ALICE, "bot", environment="dev")
    key, _ = issue(org, ALICE, "bot")
    for what, change in _every_change(org, actor, key.id, appointment.key_id).items():
        with pytest.raises(Forbidden, match=message):
            change()
        assert what  # every change is refused the same way
    assert status(org, "bot") == "active" and service.list_keys(org, "bot")[0]["status"] == "active"


def test_only_init_recovery_serve_and_the_system_jobs_act_without_a_person(org: Database) -> None:
    assert change_control.activate_served_file(org, "local:serve", POLICY, "policy.yaml") == "unchanged"
    assert governance.enforce_reviews(org) == []  # system:reviews
    assert change_control.expire_break_glass(org) is None  # system:break-glass
    for scanner in ("github-secret-scanning", "leak-report-token"):  # the actors POST /admin/leaks reports for
        create(org, ALICE, f"bot-{scanner}", environment="dev")
        _, text = issue(org, ALICE, f"bot-{scanner}")
        assert not lifecycle.report_leak(org, scanner, text, pepper=PEPPER).already_revoked


def test_people_are_added_and_departed_by_an_identity_admin(org: Database) -> None:
    with pytest.raises(Forbidden, match="adding a person needs the identity-admin role"):
        service.add_person(org, ALICE, "friend@example.com")
    with pytest.raises(Forbidden, match="recording a departure needs the identity-admin role"):
        lifecycle.depart_person(org, ALICE, "bob@example.com")
    service.add_person(org, CAROL, "friend@example.com")
    assert lifecycle.depart_person(org, CAROL, "friend@example.com").person == "friend@example.com"


def test_an_identity_is_requested_for_oneself_or_by_an_identity_admin(org: Database) -> None:
    with pytest.raises(Forbidden, match="only for themselves"):
        create(org, BOB, "for-alice", environment="dev")
    assert create(org, ALICE, "alices", environment="dev").status == "active"
    assert create(org, CAROL, "carols-for-alice", environment="dev").status == "active"


def test_keys_are_for_the_owner_the_backup_or_an_identity_admin(org: Database) -> None:
    create(org, ALICE, "bot", environment="dev", backup_owner_email="bob@example.com")
    with pytest.raises(Forbidden, match="issuing a key is for the owner or backup owner of 'bot'"):
        issue(org, ERIN, "bot")
    key, _ = issue(org, BOB, "bot")  # the backup owner
    with pytest.raises(Forbidden, match="rotating a key is for the owner"):
        lifecycle.rotate_key(org, ERIN, key.id, pepper=PEPPER, grace=timedelta(0), ttl=None, max_ttl=MAX_TTL)
    rotation = lifecycle.rotate_key(org, ALICE, key.id, pepper=PEPPER, grace=timedelta(0), ttl=None, max_ttl=MAX_TTL)
    with pytest.raises(Forbidden, match="revoking a key is for the owner"):
        service.revoke_key(org, ERIN, rotation.new_key_id)
    service.revoke_key(org, CAROL, rotation.new_key_id)  # an identity-admin
    assert {k["status"] for k in service.list_keys(org, "bot")} <= {"revoked", "expired"}


def test_status_changes_are_for_the_owner_the_backup_or_an_identity_admin(org: Database) -> None:
    create(org, ALICE, "bot", environment="dev", backup_owner_email="bob@example.com")
    for action in ("suspend", "retire"):
        with pytest.raises(Forbidden, match=f"{action.removesuffix('e')}ing an identity is for the owner"):
            service.change_identity_status(org, ERIN, "bot", action)
    service.change_identity_status(org, BOB, "bot", "suspend")
    with pytest.raises(Forbidden, match="resuming an identity is for the owner"):
        service.change_identity_status(org, ERIN, "bot", "resume")
    service.change_identity_status(org, ALICE, "bot", "resume")
    service.change_identity_status(org, CAROL, "bot", "retire")
    assert status(org, "bot") == "retired"


def test_a_flagged_identity_is_resumed_by_an_identity_admin_only(org: Database) -> None:
    create(org, ALICE, "bot", environment="dev")
    key, text = issue(org, ALICE, "bot")
    with pytest.raises(Forbidden, match="give the whole leaked key"):
        lifecycle.report_leak(org, ERIN, key.id)  # key ids are in logs: knowing one is no proof of a leak
    lifecycle.report_leak(org, ERIN, text, pepper=PEPPER)  # any active person may report the leaked key itself
    service.change_identity_status(org, ALICE, "bot", "suspend")
    with pytest.raises(Forbidden, match="resuming an identity flagged 'key .* leaked"):
        service.change_identity_status(org, ALICE, "bot", "resume")
    service.change_identity_status(org, CAROL, "bot", "resume")


def test_an_admin_key_is_issued_by_an_identity_admin_and_revoked_by_one_or_its_person(org: Database) -> None:
    with pytest.raises(Forbidden, match="issuing an admin key needs the identity-admin role"):
        admin_keys.issue_admin_key(org, ALICE, "alice@example.com", pepper=PEPPER, ttl=DAY, max_ttl=MAX_TTL)
    first, _ = admin_keys.issue_admin_key(org, CAROL, "alice@example.com", pepper=PEPPER, ttl=DAY, max_ttl=MAX_TTL)
    with pytest.raises(Forbidden, match="someone else's admin key needs the identity-admin role"):
        admin_keys.revoke_admin_key(org, ERIN, first.id)
    admin_keys.revoke_admin_key(org, ALICE, first.id)  # her own
    second, _ = admin_keys.issue_admin_key(org, CAROL, "alice@example.com", pepper=PEPPER, ttl=DAY, max_ttl=MAX_TTL)
    admin_keys.revoke_admin_key(org, DAVE, second.id)  # an identity-admin
    with pytest.raises(GatehouseError, match="already revoked"):
        admin_keys.revoke_admin_key(org, ALICE, second.id)


def test_lowering_a_clearance_is_for_the_owner_the_backup_or_an_identity_admin(org: Database) -> None:
    create(org, ALICE, "bot", environment="dev", backup_owner_email="bob@example.com")
    with pytest.raises(Forbidden, match="lowering a data clearance is for the owner"):
        governance.set_clearance(org, ERIN, "bot", "public")
    governance.set_clearance(org, BOB, "bot", "public")
    assert service.describe_identity(org, "bot")["data_clearance"] == "public"


# -- 2. the bootstrap never reopens ------------------------------------------------------------

def test_no_role_is_granted_without_an_identity_admin_even_when_none_is_left(
        org: Database, appointment: bootstrap.Appointment) -> None:
    with pytest.raises(Forbidden, match="nobody changes their own roles"):
        governance.change_role(org, CAROL, "carol@example.com", "identity-admin", False)
    for email in ("carol@example.com", "dave@example.com"):
        lifecycle.depart_person(org, ROOT, email)
    with pytest.raises(Forbidden, match="nobody records their own departure"):
        lifecycle.depart_person(org, ROOT, "root@example.com")
    with org.write() as session:  # the last identity-admin leaves all the same (as a directory sync would record)
        session.execute(update(Person).where(Person.email == "root@example.com").values(status="departed"))
    with pytest.raises(Forbidden, match="not an active person"):
        governance.change_role(org, ROOT, "bob@example.com", "identity-admin", True)
    with pytest.raises(Forbidden, match="changing roles needs the identity-admin role"):  # no bootstrap through here
        governance.change_role(org, ALICE, "bob@example.com", "identity-admin", True)
    with pytest.raises(Conflict, match="bootstrapped already"):
        bootstrap.bootstrap(org, "local:init", "bob@example.com", pepper=PEPPER, ttl=DAY)
    # The documented way back: recovery codes, several together.
    with pytest.raises(Forbidden, match="needs 2 different valid recovery codes"):
        bootstrap.recover(org, "local:ops", appointment.recovery_codes[:1], "erin@example.com", pepper=PEPPER, ttl=DAY)
    bootstrap.recover(org, "local:ops", appointment.recovery_codes[:2], "erin@example.com", pepper=PEPPER, ttl=DAY)
    governance.change_role(org, ERIN, "bob@example.com", "identity-admin", True)
    assert {r["role"] for r in governance.list_roles(org) if r["email"] == "bob@example.com"} == {"identity-admin"}


# -- 3. stewards: no sequence of moves raises clearance or access ------------------------------

def test_clearance_cannot_be_raised_by_handing_the_identity_away_first(org: Database) -> None:
    create(org, CAROL, "carols", owner="carol@example.com", environment="dev")
    with pytest.raises(Forbidden, match="cannot raise their own"):
        governance.set_clearance(org, CAROL, "carols", "restricted")
    transfers.transfer_identity(org, CAROL, transfers.plan_transfer(org, "carols", "alice@example.com", None))
    with pytest.raises(Forbidden, match="never owned, backed up or requested identity 'carols'; carol@example.com has"):
        governance.set_clearance(org, CAROL, "carols", "restricted")  # she owned it: still one of its stewards
    governance.set_clearance(org, DAVE, "carols", "restricted")  # an identity-admin who never held it may
    assert service.describe_identity(org, "carols")["data_clearance"] == "restricted"


def test_access_cannot_be_widened_by_a_former_owner(org: Database) -> None:
    create(org, CAROL, "carols", owner="carol@example.com", environment="dev")
    transfers.transfer_identity(org, CAROL, transfers.plan_transfer(org, "carols", "bob@example.com", None))
    widening = transfers.plan_transfer(org, "carols", None, "finance")
    assert widening.gained == ["finance-model"]
    with pytest.raises(Forbidden, match="neither its old nor its new owner, and has never owned"):
        transfers.transfer_identity(org, CAROL, widening)  # not its owner now, but she was
    transfers.transfer_identity(org, DAVE, widening)
    back = transfers.plan_transfer(org, "carols", "carol@example.com", None)
    assert not back.widens  # the team stays finance: the identity gains nothing …
    with pytest.raises(Forbidden, match="hands carols \\(team finance\\) to carol@example.com of team platform"):
        transfers.transfer_identity(org, CAROL, back)  # … but she would take a finance identity for herself
    transfers.transfer_identity(org, ROOT, back)  # someone who never held it decides
    assert service.describe_identity(org, "carols")["owner"] == "carol@example.com"


def test_an_identity_admin_cannot_take_another_team_s_identity_for_themselves(org: Database) -> None:
    create(org, CAROL, "finance-bot", owner="fiona@example.com", environment="dev")  # fiona's team: not pending
    assert status(org, "finance-bot") == "active"
    plan = transfers.plan_transfer(org, "finance-bot", "carol@example.com", None)
    with pytest.raises(Forbidden, match="of team platform"):
        transfers.transfer_identity(org, CAROL, plan)
    transfers.transfer_identity(org, DAVE, plan)


def test_stewards_are_remembered_through_moves_and_departures(org: Database) -> None:
    create(org, CAROL, "bot", environment="dev", backup_owner_email="bob@example.com")
    assert stewards(org, "bot") == ["alice@example.com", "bob@example.com", "carol@example.com"]
    transfers.transfer_identity(org, ROOT, transfers.plan_transfer(org, "bot", "erin@example.com", None))
    lifecycle.depart_person(org, ROOT, "bob@example.com")  # the backup leaves
    assert stewards(org, "bot") == ["alice@example.com", "bob@example.com", "carol@example.com", "erin@example.com"]
    assert service.describe_identity(org, "bot")["backup_owner"] is None


def test_identities_from_before_stewards_count_their_holders_and_requester(org: Database) -> None:
    create(org, CAROL, "old-bot", environment="dev", backup_owner_email="dave@example.com")
    with org.write() as session:  # as migration 0009 leaves an existing identity
        session.execute(update(Identity).where(Identity.name == "old-bot").values(stewards=[]))
    for admin in (CAROL, DAVE):  # the requester, the backup owner
        with pytest.raises(Forbidden, match="never owned, backed up or requested"):
            governance.set_clearance(org, admin, "old-bot", "confidential")
    governance.set_clearance(org, ROOT, "old-bot", "confidential")


# -- 4. team and labels that select grants ----------------------------------------------------

@pytest.mark.parametrize("extra", [{"team": "finance"}, {"labels": {"tier": "gold"}},
                                   {"data_clearance": "confidential"}])
def test_what_selects_grants_waits_for_an_identity_admin_who_is_no_steward(org: Database, extra) -> None:  # type: ignore[no-untyped-def]  # a parameter
    requester = CAROL if "data_clearance" in extra else ALICE  # a raised clearance is an identity-admin's to ask
    create(org, requester, "asks", environment="dev", backup_owner_email="dave@example.com", **extra)
    assert status(org, "asks") == "pending"  # even in dev, which needs no approval otherwise
    with pytest.raises(GatehouseError, match="active identities only"):
        issue(org, ALICE, "asks")
    if requester == CAROL:
        with pytest.raises(Forbidden, match="nobody approves their own identity request"):
            governance.decide_identity(org, CAROL, "asks", approve=True)
    with pytest.raises(Forbidden, match="never owned, backed up or requested identity 'asks'; dave@example.com has"):
        governance.decide_identity(org, DAVE, "asks", approve=True)  # its backup owner
    approver = ROOT if requester == CAROL else CAROL
    governance.decide_identity(org, approver, "asks", approve=True)
    assert status(org, "asks") == "active"


def test_the_owner_s_team_and_no_labels_need_no_approval_in_dev(org: Database) -> None:
    assert create(org, ALICE, "plain", environment="dev", team="platform").status == "active"


def test_a_clearance_above_the_baseline_is_never_asked_for_by_its_owner_or_backup(org: Database) -> None:
    with pytest.raises(Forbidden, match="an owner cannot raise"):
        create(org, CAROL, "x", owner="carol@example.com", environment="dev", data_clearance="restricted")
    with pytest.raises(Forbidden, match="a backup owner cannot raise"):
        create(org, CAROL, "x", environment="dev", backup_owner_email="carol@example.com", data_clearance="restricted")
    with pytest.raises(Forbidden, match="needs the identity-admin role"):
        create(org, ALICE, "x", environment="dev", data_clearance="restricted")


# -- 5. only an identity-admin clears a flag -------------------------------------------------

def test_only_an_identity_admin_clears_an_attention_or_orphan_flag(org: Database) -> None:
    create(org, ALICE, "orphan", environment="dev")
    _, text = issue(org, ALICE, "orphan")
    lifecycle.depart_person(org, ROOT, "alice@example.com")
    assert status(org, "orphan") == "suspended"
    transfers.transfer_identity(org, CAROL, transfers.plan_transfer(org, "orphan", "bob@example.com", None))
    for actor in (BOB, "local:root"):  # its new owner; a shell naming nobody
        with pytest.raises(Forbidden, match="clearing an identity's attention flag needs"):
            lifecycle.clear_attention(org, actor, "orphan", "x")
        with pytest.raises(Forbidden):
            service.change_identity_status(org, actor, "orphan", "resume")
    lifecycle.clear_attention(org, CAROL, "orphan", "bob owns it now")
    assert service.describe_identity(org, "orphan")["attention"] is None
    service.change_identity_status(org, BOB, "orphan", "resume")  # no flag left: its owner may


# -- 6. a pending identity whose owner left ------------------------------------------------------

def test_a_pending_identity_whose_owner_left_cannot_be_approved(org: Database) -> None:
    create(org, ALICE, "left-behind", environment="prod")
    create(org, ALICE, "rejected", environment="prod")
    lifecycle.depart_person(org, ROOT, "alice@example.com")
    with pytest.raises(Forbidden, match="alice@example.com, is departed: a request whose owner left cannot be approved"):
        governance.decide_identity(org, CAROL, "left-behind", approve=True)
    governance.decide_identity(org, CAROL, "rejected", approve=False, reason="owner left")  # rejecting still works
    assert status(org, "rejected") == "retired"
    transfers.transfer_identity(org, CAROL, transfers.plan_transfer(org, "left-behind", "bob@example.com", None))
    with pytest.raises(Forbidden, match="is flagged \\(orphaned"):  # a new owner, still flagged
        governance.decide_identity(org, DAVE, "left-behind", approve=True)
    lifecycle.clear_attention(org, DAVE, "left-behind", "bob takes it over")
    governance.decide_identity(org, DAVE, "left-behind", approve=True)
    assert status(org, "left-behind") == "active"


# -- 7. break-glass -----------------------------------------------------------------------------

@pytest.fixture
def policy_org(org: Database, settings: Settings) -> tuple[Database, Settings]:
    """pat and pia: policy-admins (pat approves too); amy: approver. Break-glass tells a webhook."""
    for name in ("pat", "pia", "amy"):
        service.add_person(org, ROOT, f"{name}@example.com", team="platform")
    for name, role in (("pat", "policy-admin"), ("pia", "policy-admin"), ("pat", "approver"), ("amy", "approver")):
        governance.change_role(org, ROOT, f"{name}@example.com", role, True)
    return org, replace(settings, notify_webhook="http://127.0.0.1:9/hook")


def end(db: Database, actor: str = PIA) -> None:
    change_control.rollback(db, actor, "over")


def test_break_glass_needs_a_reason_and_a_notification_channel(policy_org: tuple[Database, Settings]) -> None:
    db, settings = policy_org
    with pytest.raises(GatehouseError, match="needs a reason"):
        change_control.break_glass(db, PAT, NARROWER, " ", timedelta(hours=1), settings=settings)
    for silent in (None, "  "):
        with pytest.raises(GatehouseError, match="needs a notification channel"):
            change_control.break_glass(db, PAT, NARROWER, "incident 1", timedelta(hours=1),
                                       settings=replace(settings, notify_webhook=silent))
    activation, _ = change_control.break_glass(db, PAT, NARROWER, "incident 1", timedelta(hours=1), settings=settings)
    assert activation.kind == "break-glass"


def test_break_glass_is_limited_per_person(policy_org: tuple[Database, Settings]) -> None:
    db, settings = policy_org
    first, _ = change_control.break_glass(db, PAT, NARROWER, "incident 1", timedelta(hours=1), settings=settings)
    end(db)
    with pytest.raises(BreakGlassLimit, match="pat@example.com has used break-glass 1 time\\(s\\) in the last 1d"):
        change_control.break_glass(db, PAT, NARROWER, "incident 2", timedelta(hours=1), settings=settings)
    change_control.break_glass(db, PIA, NARROWER, "incident 2", timedelta(hours=1), settings=settings)  # someone else
    end(db)
    with db.write() as session:  # a day later, pat may again
        session.execute(update(PolicyActivation).where(PolicyActivation.seq == first.seq)
                        .values(at=utcnow() - timedelta(hours=25)))
    change_control.break_glass(db, PAT, NARROWER, "incident 3", timedelta(hours=1), settings=settings)


def test_break_glass_is_limited_per_installation(policy_org: tuple[Database, Settings]) -> None:
    db, settings = policy_org
    settings = replace(settings, break_glass_per_person=5, break_glass_per_installation=2)
    for number in (1, 2):
        change_control.break_glass(db, PAT, NARROWER, f"incident {number}", timedelta(hours=1), settings=settings)
        end(db)
    with pytest.raises(BreakGlassLimit, match="the limit for this installation"):
        change_control.break_glass(db, PIA, NARROWER, "incident 3", timedelta(hours=1), settings=settings)


def test_break_glass_expires_by_itself(policy_org: tuple[Database, Settings]) -> None:
    db, settings = policy_org
    activation, _ = change_control.break_glass(db, PAT, NARROWER, "incident 1", timedelta(hours=1), settings=settings)
    with db.write() as session:
        session.execute(update(PolicyActivation).where(PolicyActivation.seq == activation.seq)
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
    reverted = change_control.expire_break_glass(db)
    assert reverted is not None and reverted.version == POLICY.version


def test_break_glass_shows_until_another_approver_reviews_it(policy_org: tuple[Database, Settings]) -> None:
    db, settings = policy_org
    activation, _ = change_control.break_glass(db, PAT, NARROWER, "incident 1", timedelta(hours=1), settings=settings)
    shown = policy_workers.status(db)["break_glass_unreviewed"]
    assert [(row["seq"], row["actor"], row["reason"]) for row in shown] == [(activation.seq, PAT, "incident 1")]
    found = [f for f in compute_findings(db, None) if f.kind == "break_glass_unreviewed"]
    assert [(f.severity, f.subject, f.owner, f.action) for f in found] == [
        ("high", f"break-glass:{activation.seq}", "pat@example.com",
         f"gatehouse policy review-break-glass {activation.seq} --note …")]
    end(db)  # over, but still not reviewed
    assert len(policy_workers.status(db)["break_glass_unreviewed"]) == 1
    with pytest.raises(Forbidden, match="nobody reviews their own break-glass"):
        change_control.review_break_glass(db, PAT, activation.seq, "all fine")  # pat is an approver too
    with pytest.raises(Forbidden, match="needs the approver role"):
        change_control.review_break_glass(db, PIA, activation.seq, "all fine")
    with pytest.raises(GatehouseError, match="needs a note"):
        change_control.review_break_glass(db, AMY, activation.seq, "")
    with pytest.raises(NotFound, match="no break-glass activation 1 "):
        change_control.review_break_glass(db, AMY, 1, "the first activation was not a break-glass")
    reviewed = change_control.review_break_glass(db, AMY, activation.seq, "checked the records: incident 1 was real")
    assert reviewed.reviewed_by == AMY and reviewed.review_note.startswith("checked")
    assert policy_workers.status(db)["break_glass_unreviewed"] == []
    assert not [f for f in compute_findings(db, None) if f.kind == "break_glass_unreviewed"]
    with pytest.raises(Conflict, match="reviewed already"):
        change_control.review_break_glass(db, AMY, activation.seq, "again")


# -- 8. approvals of a policy version work as before ---------------------------------------------

def test_policy_approvals_work_as_before(policy_org: tuple[Database, Settings]) -> None:
    db, _ = policy_org
    change_control.propose(db, PIA, NARROWER, "drop finance")
    planned = planning.plan_version(db, NARROWER.version)
    change_control.propose(db, PAT, NARROWER, "me too")  # pat proposes the same content …
    with pytest.raises(Forbidden, match="nobody approves their own change"):
        change_control.approve(db, PAT, NARROWER.version, planned.plan_id, [])  # … so never approves it
    change_control.approve(db, AMY, NARROWER.version, planned.plan_id, [])
    assert change_control.apply(db, PIA, NARROWER.version).version == NARROWER.version


def test_recovery_is_open_when_the_only_identity_admin_can_no_longer_sign_in(
        db: Database, appointment: bootstrap.Appointment) -> None:
    """The sole identity-admin's key expired: nobody can issue them another, so the codes may act."""
    with pytest.raises(Forbidden, match="usable admin key exists"):
        bootstrap.recover(db, "local:ops", appointment.recovery_codes[:2], "root@example.com", pepper=PEPPER, ttl=DAY)
    with db.write() as session:
        session.execute(update(AdminKey).values(expires_at=utcnow() - timedelta(seconds=1)))
    again = bootstrap.recover(db, "local:ops", appointment.recovery_codes[:2], "root@example.com", pepper=PEPPER, ttl=DAY)
    assert again.email == "root@example.com" and again.key_id != appointment.key_id


def test_a_refused_recovery_is_recorded(db: Database, appointment: bootstrap.Appointment) -> None:
    with db.write() as session:
        session.execute(update(Person).values(status="departed"))
    with pytest.raises(Forbidden, match="needs 2 different valid recovery codes"):
        bootstrap.recover(db, "local:ops", ["ghr_nope_x", appointment.recovery_codes[0]], "eve@example.com",
                          pepper=PEPPER, ttl=DAY)
    with db.read() as session:
        actions = [entry.action for entry in session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars()]
    assert actions[-1] == "installation.recover_refused"

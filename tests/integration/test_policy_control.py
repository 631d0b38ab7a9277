"""Policy change control on SQLite and a real PostgreSQL server: propose, plan, approve (and
every refusal the issue names), apply, rollback, break-glass and the serve-time bootstrap."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select, update

from gatehouse import audit
from gatehouse.authz import Forbidden
from gatehouse.core.clock import utcnow
from gatehouse.core.config import Settings
from gatehouse.core.errors import Conflict, GatehouseError
from gatehouse.guardrails.injection_model import default_model
from gatehouse.identity import bootstrap, governance, service
from gatehouse.policy import change_control, planning, versions
from gatehouse.policy import views as policy_views
from gatehouse.policy import workers as policy_workers
from gatehouse.policy.approvals import NotApproved
from gatehouse.policy.change_control import StalePlan
from gatehouse.policy.loader import load_policy_text
from gatehouse.store.models import AuditEntry, Person, PolicyActivation

ROOT = "person:root@example.com"  # the bootstrapped identity-admin
LOCAL = "local:root"  # a shell that names nobody: only serve's first activation may be done by one
ALICE, BOB, CAROL, DAVE, ERIN, IVAN = (f"person:{n}@example.com" for n in ("alice", "bob", "carol", "dave", "erin", "ivan"))
# break-glass needs a notification channel (issue 14); the default limits apply
GLASS = Settings(Path("/nonexistent"), "sqlite://", Path("/nonexistent/policy.yaml"), timedelta(days=90), 1 << 20,
                 notify_webhook="http://127.0.0.1:9/hook")


def policy(*grants: str, approvers: int = 1, url: str = "http://127.0.0.1:9/v1") -> str:
    """Aliases small and big on one on-prem deployment; the grants given as YAML flow lines."""
    lines = "\n".join(f"  - {grant}" for grant in grants) or "  []"
    return (f"version: 1\ndeployments:\n  local: {{engine: openai, url: '{url}', model: m, location: on-prem}}\n"
            "aliases:\n  small: {route: [local]}\n  big: {route: [local]}\n"
            f"change_control: {{approvers: {approvers}}}\n"
            f"grants:\n{lines}\n").replace("grants:\n  []", "grants: []")


DEV_SMALL = "{name: dev-small, subjects: [{environment: dev}], aliases: [small]}"
SEC_BIG = "{name: sec-big, subjects: [{team: sec}, {identity: dev-app}], aliases: [big]}"
BASE = load_policy_text(policy(DEV_SMALL))
WIDER = load_policy_text(policy(DEV_SMALL, SEC_BIG))
NARROWER = load_policy_text(policy())


@pytest.fixture
def org(db):
    bootstrap.bootstrap(db, "local:init", "root@example.com", pepper=b"pepper", ttl=timedelta(hours=1))
    for name in ("alice", "bob", "carol", "dave", "erin", "ivan"):
        service.add_person(db, ROOT, f"{name}@example.com", team="platform")
    governance.change_role(db, ROOT, "alice@example.com", "identity-admin", True)
    governance.change_role(db, ROOT, "ivan@example.com", "identity-admin", True)
    governance.change_role(db, ALICE, "bob@example.com", "policy-admin", True)
    governance.change_role(db, ALICE, "bob@example.com", "approver", True)  # may approve others', never his own
    governance.change_role(db, ALICE, "carol@example.com", "approver", True)
    governance.change_role(db, ALICE, "erin@example.com", "approver", True)
    service.create_identity(db, ROOT, "dev-app", "alice@example.com", environment="dev")
    service.create_identity(db, ROOT, "sec-app", "alice@example.com", environment="dev", team="sec")
    governance.decide_identity(db, IVAN, "sec-app", approve=True)  # a team not its owner's waits for approval
    assert change_control.activate_served_file(db, LOCAL, BASE, "policy.yaml") == "activated"
    return db


def entries_of(db) -> list[AuditEntry]:
    with db.read() as session:
        return list(session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars())


def acks(planned) -> list[str]:
    return list(planned.widening_ids)


def approved(db, loaded, approver=CAROL, author=BOB):
    change_control.propose(db, author, loaded, "why")
    planned = planning.plan_version(db, loaded.version)
    change_control.approve(db, approver, loaded.version, planned.plan_id, acks(planned))
    return planned


def test_propose_stores_an_immutable_draft_once(org):
    with pytest.raises(Forbidden, match="policy-admin"):
        change_control.propose(org, CAROL, WIDER, "let sec use big")
    with pytest.raises(GatehouseError, match="needs a message"):
        change_control.propose(org, BOB, WIDER, "  ")
    row, created = change_control.propose(org, BOB, WIDER, "let sec use big")
    assert created and row.state == "draft" and row.hash == WIDER.version
    again, created = change_control.propose(org, BOB, load_policy_text(WIDER.text + "\n# same content\n"), "again")
    assert not created and again.hash == row.hash and again.message == "let sec use big"
    info = policy_views.describe_version(org, WIDER.version[7:20])
    assert info["author"] == BOB and info["source"] == WIDER.text


def test_the_plan_names_each_widening(org):
    change_control.propose(org, BOB, WIDER, "let sec use big")
    planned = planning.plan_version(org, WIDER.version)
    assert planned.base == BASE.version
    assert sorted(planned.widening_ids.values()) == ["rule: identity=dev-app → big at internal",
                                                     "rule: team=sec → big at internal"]
    assert sorted((c.identity, c.alias, c.after) for c in planned.plan.gained) == [
        ("dev-app", "big", "internal"), ("sec-app", "big", "internal")]
    assert planned.plan_id == planning.plan_version(org, WIDER.version).plan_id  # deterministic


def test_nobody_approves_their_own_change(org):
    change_control.propose(org, BOB, WIDER, "mine")
    planned = planning.plan_version(org, WIDER.version)
    with pytest.raises(Forbidden, match="nobody approves their own change"):
        change_control.approve(org, BOB, WIDER.version, planned.plan_id, acks(planned))


def test_approval_by_a_non_approver_is_refused(org):
    change_control.propose(org, BOB, WIDER, "why")
    planned = planning.plan_version(org, WIDER.version)
    with pytest.raises(Forbidden, match="needs the approver role"):
        change_control.approve(org, DAVE, WIDER.version, planned.plan_id, acks(planned))
    with pytest.raises(Forbidden, match="needs a person"):
        change_control.approve(org, LOCAL, WIDER.version, planned.plan_id, acks(planned))


def test_a_stale_plan_is_refused(org):
    change_control.propose(org, BOB, WIDER, "why")
    planned = planning.plan_version(org, WIDER.version)
    service.create_identity(org, ROOT, "late-app", "alice@example.com", environment="dev", team="sec")
    with pytest.raises(StalePlan, match="is stale"):
        change_control.approve(org, CAROL, WIDER.version, planned.plan_id, acks(planned))
    fresh = planning.plan_version(org, WIDER.version)
    assert fresh.plan_id != planned.plan_id
    change_control.approve(org, CAROL, WIDER.version, fresh.plan_id, acks(fresh))


def test_every_widening_must_be_acknowledged(org):
    change_control.propose(org, BOB, WIDER, "why")
    planned = planning.plan_version(org, WIDER.version)
    with pytest.raises(Forbidden, match="1 widening\\(s\\) not acknowledged: w-.*rule: team=sec → big"):
        change_control.approve(org, CAROL, WIDER.version, planned.plan_id,
                         [key for key, text in planned.widening_ids.items() if "dev-app" in text])
    with pytest.raises(GatehouseError, match="not widenings of this plan: w-0000000000"):
        change_control.approve(org, CAROL, WIDER.version, planned.plan_id, [*acks(planned), "w-0000000000"])


def test_a_narrowing_needs_no_acknowledgement_but_still_an_approval(org):
    change_control.propose(org, BOB, NARROWER, "close it all")
    planned = planning.plan_version(org, NARROWER.version)
    assert planned.widening_ids == {} and planned.plan.lost
    with pytest.raises(NotApproved, match="needs 1 approval"):
        change_control.apply(org, BOB, NARROWER.version)
    change_control.approve(org, CAROL, NARROWER.version, planned.plan_id, [])
    change_control.apply(org, BOB, NARROWER.version)
    assert versions.active_policy(org)[0].version == NARROWER.version


def test_apply_needs_a_policy_admin_and_the_number_of_approvers_the_active_version_sets(org):
    two = load_policy_text(policy(DEV_SMALL, approvers=2))
    approved(org, two)
    with pytest.raises(Forbidden, match="policy-admin"):
        change_control.apply(org, CAROL, two.version)
    change_control.apply(org, BOB, two.version)  # raising the bar takes the current bar: one approval
    wider = load_policy_text(policy(DEV_SMALL, SEC_BIG, approvers=2))
    approved(org, wider)
    with pytest.raises(NotApproved, match="needs 2 approval"):
        change_control.apply(org, BOB, wider.version)
    planned = planning.plan_version(org, wider.version)
    change_control.approve(org, ERIN, wider.version, planned.plan_id, acks(planned))
    activation = change_control.apply(org, BOB, wider.version)
    assert activation.kind == "apply" and activation.previous == two.version
    with pytest.raises(Conflict, match="already active"):
        change_control.apply(org, BOB, wider.version)
    entry = [e for e in entries_of(org) if e.action == "policy.activate"][-1]
    assert "carol@example.com" in entry.details and "erin@example.com" in entry.details
    lower = load_policy_text(policy(DEV_SMALL, SEC_BIG, approvers=1))
    change_control.propose(org, BOB, lower, "fewer approvals")
    assert "control: approvals a change needs drop from 2 to 1" in planning.plan_version(org, lower.version).widening_ids.values()


def test_nobody_who_proposed_the_same_content_approves_it(org):
    governance.change_role(org, ALICE, "dave@example.com", "policy-admin", True)
    change_control.propose(org, DAVE, WIDER, "dave's idea")
    row, created = change_control.propose(org, BOB, WIDER, "bob wants it too")
    assert not created and row.proposers == [BOB]
    planned = planning.plan_version(org, WIDER.version)
    with pytest.raises(Forbidden, match="nobody approves their own change"):
        change_control.approve(org, BOB, WIDER.version, planned.plan_id, acks(planned))
    assert [e.action for e in entries_of(org)].count("policy.propose") == 2


def test_a_version_nobody_proposed_as_a_person_needs_someone_besides_who_applies_it(org):
    governance.change_role(org, ALICE, "carol@example.com", "policy-admin", True)
    with org.write() as session:  # a version that came from a file, authored by a local user
        versions.store_version(session, "local:ops", WIDER, "served from a file")
    planned = planning.plan_version(org, WIDER.version)
    change_control.approve(org, CAROL, WIDER.version, planned.plan_id, acks(planned))
    with pytest.raises(NotApproved, match="has: none"):
        change_control.apply(org, CAROL, WIDER.version)  # carol cannot both approve and apply it
    change_control.apply(org, BOB, WIDER.version)


def test_a_departed_approver_no_longer_counts(org):
    approved(org, WIDER)
    with org.write() as session:
        session.execute(update(Person).where(Person.email == "carol@example.com").values(status="departed"))
    with pytest.raises(NotApproved, match="has: none"):
        change_control.apply(org, BOB, WIDER.version)


def test_approvals_from_an_earlier_stint_of_the_baseline_do_not_count(org):
    approved(org, WIDER)  # against BASE
    approved(org, NARROWER)
    change_control.apply(org, BOB, NARROWER.version)
    planned = planning.plan_version(org, BASE.version)  # going back widens: it needs its own approval
    change_control.approve(org, CAROL, BASE.version, planned.plan_id, acks(planned))
    change_control.rollback(org, BOB, "back to base")  # BASE is the baseline again …
    with pytest.raises(NotApproved, match="has: none"):  # … but carol's approval was for its earlier stint
        change_control.apply(org, BOB, WIDER.version)


def test_a_changed_deployment_is_a_widening(org):
    moved = load_policy_text(policy(DEV_SMALL, url="https://elsewhere.example/v1"))
    change_control.propose(org, BOB, moved, "new endpoint")
    planned = planning.plan_version(org, moved.version)
    assert list(planned.widening_ids.values()) == [
        "deployment: local changes url http://127.0.0.1:9/v1 → https://elsewhere.example/v1"]
    leaking = load_policy_text(policy(DEV_SMALL).replace("model: m,", "model: m, credential: {env: GATEHOUSE_DATABASE_URL},"))
    with pytest.raises(GatehouseError, match="cannot come from GATEHOUSE_DATABASE_URL"):
        change_control.propose(org, BOB, leaking, "send our database URL upstream")


def test_a_new_deployment_and_a_new_route_are_widenings(org):
    text = policy(DEV_SMALL).replace("aliases:\n", "  gpu2: {engine: openai, url: 'https://collector.example/v1', model: m, "
                                                  "credential: {file: /run/secrets/x}}\naliases:\n")
    added = load_policy_text(text)
    change_control.propose(org, BOB, added, "a second pool, on no route yet")
    widenings = list(planning.plan_version(org, added.version).widening_ids.values())
    assert widenings == ["deployment: gpu2 added engine openai, url https://collector.example/v1, model m, location on-prem, "
                         "data_classes [public, internal], credential file: /run/secrets/x"]
    rerouted = load_policy_text(text.replace("small: {route: [local]}", "small: {route: [local, gpu2]}"))
    change_control.propose(org, BOB, rerouted, "fall back to gpu2")
    assert "route: small now reaches gpu2" in planning.plan_version(org, rerouted.version).widening_ids.values()


def test_look_alike_subjects_are_different_rules(org):
    tricky = load_policy_text(policy('{name: odd, subjects: [{team: "sec & environment=dev"}], aliases: [big]}'))
    change_control.propose(org, BOB, tricky, "a team with an odd name")
    planned = planning.plan_version(org, tricky.version)
    assert 'rule: team="sec & environment=dev" → big at internal' in planned.widening_ids.values()


def test_the_applier_never_approves_their_own_apply(org):
    governance.change_role(org, ALICE, "carol@example.com", "policy-admin", True)
    change_control.propose(org, BOB, WIDER, "why")
    planned = planning.plan_version(org, WIDER.version)
    change_control.approve(org, CAROL, WIDER.version, planned.plan_id, acks(planned))
    with pytest.raises(NotApproved, match="has: none"):
        change_control.apply(org, CAROL, WIDER.version)  # carol approved it: someone else applies
    change_control.apply(org, BOB, WIDER.version)


def test_a_version_cannot_ask_for_more_approvals_than_there_are_approvers(org):
    greedy = load_policy_text(policy(DEV_SMALL, approvers=5))
    approved(org, greedy)
    with pytest.raises(Conflict, match="asks for 5 approval"):
        change_control.apply(org, BOB, greedy.version)

def test_an_approver_who_lost_the_role_no_longer_counts(org):
    approved(org, WIDER)
    governance.change_role(org, ALICE, "carol@example.com", "approver", False)
    with pytest.raises(NotApproved, match="has: none"):
        change_control.apply(org, BOB, WIDER.version)


def test_apply_refuses_a_widening_that_appeared_after_approval(org):
    approved(org, WIDER)
    service.create_identity(org, ROOT, "late-app", "alice@example.com", environment="dev", team="sec")
    with pytest.raises(NotApproved, match="who gains access changed since person:carol@example.com approved it"):
        change_control.apply(org, BOB, WIDER.version)


def test_an_approval_is_for_one_baseline(org):
    approved(org, WIDER)
    approved(org, NARROWER)
    change_control.apply(org, BOB, NARROWER.version)  # the baseline moves on
    with pytest.raises(NotApproved, match="needs 1 approval"):
        change_control.apply(org, BOB, WIDER.version)


def test_a_rejected_version_cannot_be_approved_or_applied(org):
    change_control.propose(org, BOB, WIDER, "why")
    planned = planning.plan_version(org, WIDER.version)
    with pytest.raises(Forbidden):
        change_control.reject(org, DAVE, WIDER.version, "no")
    change_control.reject(org, CAROL, WIDER.version, "too wide")
    with pytest.raises(Conflict, match="rejected"):
        change_control.approve(org, ERIN, WIDER.version, planned.plan_id, acks(planned))
    with pytest.raises(Conflict, match="rejected"):
        change_control.apply(org, BOB, WIDER.version)


def test_rollback_to_a_narrower_version_needs_no_approval(org):
    approved(org, WIDER)
    change_control.apply(org, BOB, WIDER.version)
    with pytest.raises(GatehouseError, match="needs a reason"):
        change_control.rollback(org, BOB, "")
    activation = change_control.rollback(org, BOB, "sec asked for too much")
    assert activation.kind == "rollback" and activation.version == BASE.version
    assert versions.active_policy(org)[0].version == BASE.version
    with pytest.raises(Conflict, match="no earlier active version"):  # BASE was the first: nothing before it
        change_control.rollback(org, BOB, "again")


def test_rollback_to_a_wider_version_needs_approval(org):
    approved(org, NARROWER)
    change_control.apply(org, BOB, NARROWER.version)
    with pytest.raises(NotApproved, match="needs 1 approval"):
        change_control.rollback(org, BOB, "we need dev-small back")
    planned = planning.plan_version(org, BASE.version)  # against the active NARROWER
    assert planned.widening_ids
    change_control.approve(org, CAROL, BASE.version, planned.plan_id, acks(planned))
    assert change_control.rollback(org, BOB, "we need dev-small back").version == BASE.version


def test_break_glass_is_short_lived_loud_and_returns_to_the_approved_version(org):
    with pytest.raises(GatehouseError, match="at most 4h"):
        change_control.break_glass(org, BOB, WIDER, "incident 7", timedelta(hours=5), settings=GLASS)
    with pytest.raises(Forbidden, match="policy-admin"):
        change_control.break_glass(org, CAROL, WIDER, "incident 7", timedelta(hours=1), settings=GLASS)
    activation, planned = change_control.break_glass(org, BOB, WIDER, "incident 7", timedelta(hours=1), settings=GLASS)
    assert activation.kind == "break-glass" and len(planned.widening_ids) == 2
    state = policy_workers.status(org)
    assert state["break_glass"] and state["active"] == WIDER.version and state["baseline"] == BASE.version
    change_control.propose(org, BOB, NARROWER, "meanwhile")
    assert planning.plan_version(org, NARROWER.version).base == BASE.version  # plans compare with the approved one
    assert change_control.expire_break_glass(org) is None  # not yet
    entries = [e for e in entries_of(org) if e.action == "policy.break_glass"]
    assert len(entries) == 1 and "incident 7" in entries[0].details
    with org.write() as session:
        session.execute(update(PolicyActivation).where(PolicyActivation.seq == activation.seq)
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
    reverted = change_control.expire_break_glass(org)
    assert reverted is not None and reverted.kind == "revert" and reverted.version == BASE.version
    assert change_control.expire_break_glass(org) is None  # once only
    assert versions.active_policy(org)[0].version == BASE.version
    moved = load_policy_text(policy(DEV_SMALL, url="https://elsewhere.example/v1"))
    with pytest.raises(Forbidden, match="new or changed: local"):
        change_control.break_glass(org, BOB, moved, "incident 8", timedelta(hours=1), settings=GLASS)
    assert [e.action for e in entries_of(org)][-2:] == ["policy.break_glass_expired", "policy.activate"]
    with org.read() as session:
        assert audit.verify(session).ok
    # bob has had his one break-glass of the day (issue 14): another policy-admin breaks it next
    governance.change_role(org, ALICE, "dave@example.com", "policy-admin", True)
    change_control.break_glass(org, DAVE, NARROWER, "incident 8", timedelta(hours=1), settings=GLASS)
    renewed = load_policy_text(NARROWER.text.replace("big: {route: [local]}", "big: {route: [local], description: again}"))
    with pytest.raises(Conflict, match="is not renewed"):
        change_control.break_glass(org, DAVE, renewed, "incident 8", timedelta(hours=4), settings=GLASS)


def test_serve_bootstraps_then_follows_the_store(db):
    assert change_control.activate_served_file(db, LOCAL, BASE, "p.yaml") == "activated"
    assert change_control.activate_served_file(db, LOCAL, BASE, "p.yaml") == "unchanged"
    assert change_control.activate_served_file(db, LOCAL, WIDER, "p.yaml") == "differs"
    assert versions.active_policy(db)[0].version == BASE.version


def test_single_person_mode_is_set_by_the_active_version(db):
    solo = load_policy_text(policy(DEV_SMALL, approvers=0))
    assert change_control.activate_served_file(db, LOCAL, solo, "p.yaml") == "activated"
    assert change_control.activate_served_file(db, LOCAL, WIDER, "p.yaml") == "activated"  # the file is applied, and recorded
    loaded, activation = versions.active_policy(db)
    assert loaded.version == WIDER.version and activation.kind == "apply" and activation.previous == solo.version
    assert change_control.activate_served_file(db, LOCAL, solo, "p.yaml") == "differs"  # WIDER asks for one approval


def test_a_break_glass_change_can_be_kept_and_apply_never_returns_to_it(org):
    activation, planned = change_control.break_glass(org, BOB, NARROWER, "incident 9", timedelta(hours=1), settings=GLASS)
    change_control.propose(org, BOB, NARROWER, "keep it")
    planned = planning.plan_version(org, NARROWER.version)
    assert planned.base == BASE.version
    change_control.approve(org, CAROL, NARROWER.version, planned.plan_id, acks(planned))
    kept = change_control.apply(org, BOB, NARROWER.version)
    assert kept.kind == "apply" and kept.expires_at is None and kept.back_to == BASE.version
    assert not policy_workers.status(org)["break_glass"]


def test_apply_during_break_glass_rolls_back_to_the_approved_version(org):
    approved(org, WIDER)
    change_control.break_glass(org, BOB, NARROWER, "incident 10", timedelta(hours=1), settings=GLASS)
    change_control.apply(org, BOB, WIDER.version)
    assert change_control.rollback(org, BOB, "undo").version == BASE.version  # not the unapproved break-glass version


def test_break_glass_cannot_revive_a_rejected_version(org):
    change_control.propose(org, BOB, NARROWER, "why")
    change_control.reject(org, CAROL, NARROWER.version, "no")
    with pytest.raises(Conflict, match="rejected"):
        change_control.break_glass(org, BOB, NARROWER, "incident 11", timedelta(hours=1), settings=GLASS)


def test_version_references(org):
    change_control.propose(org, BOB, WIDER, "why")
    with org.read() as session:
        assert versions.find_version(session, WIDER.version[7:13]).hash == WIDER.version
        assert versions.find_version(session, WIDER.version.upper()).hash == WIDER.version
        for bad in ("abc", "zzzzzzzz", "sha256:", "'; drop table"):
            with pytest.raises(GatehouseError, match="not a policy version"):
                versions.find_version(session, bad)
        with pytest.raises(GatehouseError, match="no stored policy version"):
            versions.find_version(session, "0" * 12)


def test_a_proposal_records_the_injection_models_its_profiles_would_run(org, home):
    guarded = load_policy_text(policy("{name: base, subjects: [{team: platform}], aliases: [small]}")
                               + "guardrails:\n  default: careful\n  profiles:\n    careful:\n"
                                 "      injection: {action: block}\n")
    change_control.propose(org, BOB, guarded, "guard the small alias")
    proposed = [e for e in entries_of(org) if e.action == "policy.propose"][-1]
    assert orjson.loads(proposed.details)["classifiers"] == {"careful": default_model().digest}

"""Rotation with grace, leak response and leavers, on SQLite and on a real PostgreSQL server."""


from datetime import timedelta

import pytest
from sqlalchemy import select

from gatehouse.core import clock
from gatehouse.core.errors import GatehouseError, NotFound, Unauthenticated
from gatehouse.core.keyformat import PREFIX, checksum
from gatehouse.identity import bootstrap, lifecycle, service
from gatehouse.runtime.keytable import KeyTable
from gatehouse.store.models import AuditEntry, Credential

PEPPER = b"pepper"
MAX_TTL = timedelta(days=90)
ACTOR = "person:root@example.com"  # the bootstrapped identity-admin


def issue(db, identity, ttl=timedelta(days=30), scopes=None):
    return service.issue_key(db, ACTOR, identity, pepper=PEPPER, ttl=ttl, max_ttl=MAX_TTL, scopes=scopes)


@pytest.fixture
def people(db):
    bootstrap.bootstrap(db, "local:init", "root@example.com", pepper=PEPPER, ttl=timedelta(hours=1))
    for email in ("alice@example.com", "bob@example.com", "carol@example.com"):
        service.add_person(db, ACTOR, email, team="platform")
    return db


def table(db) -> KeyTable:
    keys = KeyTable(PEPPER)
    keys.refresh(db)
    return keys


def last_audit(db, action):
    with db.read() as session:
        return session.execute(select(AuditEntry).where(AuditEntry.action == action)
                               .order_by(AuditEntry.seq.desc())).scalars().first()


# -- rotation -----------------------------------------------------------------------------

def test_rotation_issues_a_successor_and_both_work_during_the_grace(people):
    service.create_identity(people, ACTOR, "bot", "alice@example.com")
    old, old_text = issue(people, "bot", scopes=["chat"])
    rotation = lifecycle.rotate_key(people, ACTOR, old.id, pepper=PEPPER, grace=timedelta(hours=24), ttl=None,
                                    max_ttl=MAX_TTL)
    keys = table(people)
    assert keys.authenticate(f"Bearer {old_text}").key_id == old.id
    successor = keys.authenticate(f"Bearer {rotation.new_key}")
    assert successor.key_id == rotation.new_key_id and successor.scopes == frozenset({"chat"})
    with people.read() as session:
        stored_old, stored_new = session.get(Credential, old.id), session.get(Credential, rotation.new_key_id)
        assert stored_old.rotated_to == rotation.new_key_id
        grace_left = clock.as_utc(stored_old.expires_at) - clock.utcnow()
        assert timedelta(hours=23, minutes=59) < grace_left <= timedelta(hours=24)
        lifetime = clock.as_utc(stored_new.expires_at) - clock.as_utc(stored_new.created_at)
        assert abs(lifetime - timedelta(days=30)) < timedelta(seconds=5)  # the old key's lifetime
    entry = last_audit(people, "key.rotate")
    assert rotation.new_key_id in entry.details and rotation.new_key not in entry.details


def test_without_grace_the_old_key_stops_at_once(people):
    service.create_identity(people, ACTOR, "bot", "alice@example.com")
    old, old_text = issue(people, "bot")
    rotation = lifecycle.rotate_key(people, ACTOR, old.id, pepper=PEPPER, grace=timedelta(0), ttl=timedelta(days=7),
                                    max_ttl=MAX_TTL)
    keys = table(people)
    with pytest.raises(Unauthenticated) as refused:
        keys.authenticate(f"Bearer {old_text}")
    assert refused.value.code == "expired_api_key"
    assert keys.authenticate(f"Bearer {rotation.new_key}").key_id == rotation.new_key_id


@pytest.mark.parametrize("case, message", [
    ("twice", "already rotated"),
    ("revoked", "is revoked"),
    ("long grace", "over the maximum of 1w"),
    ("long ttl", "over the maximum"),
    ("unknown", "no key with id"),
    ("bad id", "invalid key id"),
])
def test_rotation_refusals(people, case, message):
    service.create_identity(people, ACTOR, "bot", "alice@example.com")
    key, _ = issue(people, "bot")
    key_id, grace, ttl = key.id, timedelta(hours=1), None
    if case == "twice":
        lifecycle.rotate_key(people, ACTOR, key.id, pepper=PEPPER, grace=grace, ttl=None, max_ttl=MAX_TTL)
    elif case == "revoked":
        service.revoke_key(people, ACTOR, key.id)
    elif case == "long grace":
        grace = timedelta(days=8)
    elif case == "long ttl":
        ttl = timedelta(days=91)
    elif case == "unknown":
        key_id = "A" * 12
    elif case == "bad id":
        key_id = "gth_nope"
    with pytest.raises(GatehouseError, match=message):
        lifecycle.rotate_key(people, ACTOR, key_id, pepper=PEPPER, grace=grace, ttl=ttl, max_ttl=MAX_TTL)


# -- leaks --------------------------------------------------------------------------------

def test_a_leaked_key_is_revoked_flagged_and_recorded(people):
    service.create_identity(people, ACTOR, "bot", "alice@example.com", backup_owner_email="bob@example.com")
    key, text = issue(people, "bot")
    outcome = lifecycle.report_leak(people, ACTOR, text, source="https://github.com/acme/app/blob/main/.env",
                                    reported_by="github-secret-scanning", pepper=PEPPER)
    assert (outcome.key_id, outcome.identity, outcome.owner, outcome.backup_owner) == (
        key.id, "bot", "alice@example.com", "bob@example.com")
    with pytest.raises(Unauthenticated) as refused:
        table(people).authenticate(f"Bearer {text}")
    assert refused.value.code == "revoked_api_key"
    info = service.describe_identity(people, "bot")
    assert "leaked" in info["attention"] and "github.com/acme" in info["attention"]
    assert info["keys"][0]["leaked_at"] is not None and info["keys"][0]["status"] == "revoked"
    entry = last_audit(people, "key.leak")
    assert "github-secret-scanning" in entry.details and "github.com/acme" in entry.details
    assert text not in entry.details and key.secret_hash not in entry.details


def test_a_leak_of_a_revoked_key_is_still_recorded_and_ids_work(people):
    service.create_identity(people, ACTOR, "bot", "alice@example.com")
    key, _ = issue(people, "bot")
    service.revoke_key(people, ACTOR, key.id)
    outcome = lifecycle.report_leak(people, ACTOR, key.id, source="pastebin")
    assert outcome.already_revoked and last_audit(people, "key.leak") is not None


def test_a_made_up_key_around_a_real_id_cannot_revoke_it(people):
    service.create_identity(people, ACTOR, "bot", "alice@example.com")
    key, text = issue(people, "bot")
    body = f"{PREFIX}{key.id}_{'x' * 32}"
    with pytest.raises(GatehouseError, match="does not match"):
        lifecycle.report_leak(people, ACTOR, body + checksum(body), pepper=PEPPER)
    assert table(people).authenticate(f"Bearer {text}").key_id == key.id


@pytest.mark.parametrize("text, error", [("gth_" + "a" * 12 + "_" + "a" * 38, "checksum"), ("nonsense", "invalid key id"),
                                         ("ZZZZZZZZZZZZ", "no key with id")])
def test_bad_leak_reports(people, text, error):
    with pytest.raises((GatehouseError, NotFound), match=error):
        lifecycle.report_leak(people, ACTOR, text)


def test_attention_is_cleared_by_hand_and_audited(people):
    service.create_identity(people, ACTOR, "bot", "alice@example.com")
    key, _ = issue(people, "bot")
    lifecycle.report_leak(people, ACTOR, key.id)
    lifecycle.clear_attention(people, ACTOR, "bot", "rotated; no misuse in the records")
    assert service.describe_identity(people, "bot")["attention"] is None
    with pytest.raises(GatehouseError, match="needs no attention"):
        lifecycle.clear_attention(people, ACTOR, "bot")


# -- leavers ------------------------------------------------------------------------------

def test_a_leaver_s_identities_pass_to_the_backup_or_are_suspended(people):
    service.create_identity(people, ACTOR, "with-backup", "alice@example.com", backup_owner_email="bob@example.com")
    service.create_identity(people, ACTOR, "alone", "alice@example.com")
    service.create_identity(people, ACTOR, "departed-backup", "bob@example.com",
                            backup_owner_email="carol@example.com")
    service.create_identity(people, ACTOR, "alice-is-backup", "carol@example.com", backup_owner_email="alice@example.com")
    service.create_identity(people, ACTOR, "old", "alice@example.com")
    service.change_identity_status(people, ACTOR, "old", "retire")
    _, alone_key = issue(people, "alone")
    _, kept_key = issue(people, "with-backup")
    report = lifecycle.depart_person(people, ACTOR, "alice@example.com")
    assert report.reassigned == [{"identity": "with-backup", "to": "bob@example.com"}]
    assert report.suspended == ["alone"] and report.backup_removed == ["alice-is-backup"]
    moved = service.describe_identity(people, "with-backup")
    assert moved["owner"] == "bob@example.com" and moved["backup_owner"] is None and moved["status"] == "active"
    assert clock.as_utc(clock.utcnow()) - clock.as_utc(
        __import__("datetime").datetime.fromisoformat(moved["review_due_at"])) < timedelta(minutes=1)
    orphan = service.describe_identity(people, "alone")
    assert orphan["status"] == "suspended" and "orphaned" in orphan["attention"]
    assert service.describe_identity(people, "alice-is-backup")["backup_owner"] is None
    assert service.describe_identity(people, "old")["status"] == "retired"
    keys = table(people)
    with pytest.raises(Unauthenticated) as refused:
        keys.authenticate(f"Bearer {alone_key}")
    assert refused.value.code == "identity_not_active"
    assert keys.authenticate(f"Bearer {kept_key}").identity.name == "with-backup"
    assert service.get_person(people, "alice@example.com").status == "departed"
    assert last_audit(people, "person.depart") is not None and last_audit(people, "identity.reassign") is not None
    with pytest.raises(GatehouseError, match="already departed"):
        lifecycle.depart_person(people, ACTOR, "alice@example.com")
    with pytest.raises(GatehouseError, match="departed"):
        service.create_identity(people, ACTOR, "new", "alice@example.com")


def test_a_leaked_admin_key_is_revoked_too(people):
    from gatehouse.identity.admin_keys import AdminAuthError, authenticate_admin, issue_admin_key

    row, text = issue_admin_key(people, ACTOR, "carol@example.com", pepper=PEPPER, ttl=timedelta(days=1),
                                max_ttl=MAX_TTL)
    body = f"{PREFIX}{row.id}_{'y' * 32}"
    with pytest.raises(GatehouseError, match="does not match"):
        lifecycle.report_leak(people, ACTOR, body + checksum(body), pepper=PEPPER)
    outcome = lifecycle.report_leak(people, ACTOR, text, source="slack", pepper=PEPPER)
    assert (outcome.key_id, outcome.owner, outcome.identity) == (row.id, "carol@example.com", None)
    with pytest.raises(AdminAuthError):
        authenticate_admin(people, PEPPER, f"Bearer {text}")
    assert last_audit(people, "admin_key.leak") is not None


def test_errors_never_echo_a_mistyped_key(people):
    mistyped = "GTH_" + "a" * 12 + "_" + "b" * 38
    with pytest.raises(GatehouseError) as refused:
        lifecycle.report_leak(people, ACTOR, mistyped)
    assert "b" * 20 not in str(refused.value)


def test_a_leak_report_s_url_never_keeps_the_key_it_points_at(people):
    service.create_identity(people, ACTOR, "bot", "alice@example.com")
    credential, text = issue(people, "bot")
    url = f"https://paste.example/raw?snippet={text}&line=3"
    outcome = lifecycle.report_leak(people, ACTOR, text, source=url, pepper=PEPPER)
    assert outcome.source == f"https://paste.example/raw?snippet=gth_{credential.id}_…&line=3"
    stored = (last_audit(people, "key.leak").details, service.describe_identity(people, "bot")["attention"],
              service.list_keys(people, "bot"))
    assert text[17:49] not in str(stored) and f"gth_{credential.id}_…" in str(stored)


def test_admin_authentication_does_not_tell_a_real_key_id_from_an_unknown_one(people):
    from gatehouse.identity.admin_keys import AdminAuthError, authenticate_admin

    service.create_identity(people, ACTOR, "bot", "alice@example.com")
    credential, text = issue(people, "bot")
    forged = f"{PREFIX}{credential.id}_{'x' * 32}"  # a real workload key id (ids are in logs), a made-up secret
    unknown = f"{PREFIX}{'Z' * 12}_{'x' * 32}"
    answers = []
    for token in (forged + checksum(forged), unknown + checksum(unknown), text):
        with pytest.raises(AdminAuthError) as refused:
            authenticate_admin(people, PEPPER, f"Bearer {token}")
        answers.append((refused.value.status, refused.value.code))
    assert answers == [(401, "invalid_admin_key"), (401, "invalid_admin_key"), (403, "admin_forbidden")]
